package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Re-shard timing.
const (
	reshardTick = 50 * time.Millisecond
	// reshardHeldWait bounds the wait, at cut-over, for the old set to
	// reach what the new set holds.
	reshardHeldWait = 30 * time.Second
	// reshardLateWait is how long after the cut-over the new set still
	// skips events the old set published that it receives late.
	reshardLateWait = 10 * time.Second
)

// reshardRun is one re-shard of a bot from its current set to next.
type reshardRun struct {
	m       *Manager
	old     *botRun
	next    *botRun
	ho      *handover
	cancel  context.CancelFunc
	started time.Time

	mu      sync.Mutex
	aborted bool
}

// ReshardStatus describes a bot's re-shard in progress.
type ReshardStatus struct {
	Bot     string    `json:"bot"`
	From    int       `json:"from"`
	To      int       `json:"to"`
	Started time.Time `json:"started"`
}

// Resharding lists the re-shards in progress.
func (m *Manager) Resharding() []ReshardStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ReshardStatus
	for _, br := range m.bots {
		if rs := br.reshard; rs != nil {
			out = append(out, ReshardStatus{Bot: br.cfg.Name, From: br.count, To: rs.next.count, Started: rs.started})
		} else if ho := br.ho.Load(); ho != nil && ho.newBot == br {
			// Cut over; the hand-over still skips late copies.
			out = append(out, ReshardStatus{Bot: br.cfg.Name, From: ho.oldBot.count, To: br.count, Started: ho.started})
		}
	}
	return out
}

// Reshard moves a running bot to count shards without a gap: a new set of
// count shards identifies in the background (in the identify buckets,
// counting on session_start_limit.remaining, refused with an error
// wrapping ErrStartLimitExhausted when fewer are left) while the old set
// keeps publishing; once every new shard is READY and has its guilds, the
// hand-over cuts over and the old set stops (see handover). cfg, when not
// nil, is the configuration the new set runs with (a reload that changed
// the shard count, and maybe the token or intents); nil keeps the bot's.
// Reshard returns once the new set is starting; ctx bounds the REST call.
// A bot running static ShardIDs cannot be re-sharded.
func (m *Manager) Reshard(ctx context.Context, bot string, count int, cfg *BotConfig) error {
	if count < 1 {
		return fmt.Errorf("re-shard bot %q: shard count %d: want at least 1", bot, count)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.running(); err != nil {
		return fmt.Errorf("re-shard bot %q: %w", bot, err)
	}
	m.mu.Lock()
	br := m.botLocked(bot)
	resharding := br != nil && br.reshard != nil
	m.mu.Unlock()
	switch {
	case br == nil:
		return fmt.Errorf("re-shard bot %q: %w", bot, ErrUnknownShard)
	case resharding:
		return fmt.Errorf("re-shard bot %q: %w (to %d shards)", bot, ErrResharding, br.reshard.next.count)
	case br.ho.Load() != nil:
		return fmt.Errorf("re-shard bot %q: %w (the last re-shard's hand-over is finishing)", bot, ErrResharding)
	case br.cfg.ShardIDs != nil:
		return fmt.Errorf("re-shard bot %q: it runs static shard_ids; give each process its new list and restart instead", bot)
	}
	b := br.cfg
	if cfg != nil {
		if err := checkBot(cfg); err != nil {
			return fmt.Errorf("re-shard bot %q: %w", bot, err)
		}
		b = *cfg
	}
	if count == br.count && cfg == nil {
		return nil
	}
	info, err := m.gatewayBot(ctx, b)
	if err != nil {
		return fmt.Errorf("re-shard bot %q: %w", bot, err)
	}
	lim := m.limitsOf(info)
	if lim.Remaining < count {
		return fmt.Errorf("re-shard bot %q to %d shards: %w: it needs %d session starts and Discord allows %d more (reset in %s)",
			bot, count, ErrStartLimitExhausted, count, lim.Remaining, lim.ResetAfter)
	}
	next := &botRun{cfg: b, url: info.URL, count: count, limits: lim, shards: map[int]*shard{}, fresh: true}
	for id := range count {
		s := newShard(m, next, id)
		next.shards[id] = s
		next.order = append(next.order, s)
	}

	if st, ok := m.cfg.Sink.(Stager); ok {
		if err := st.Stage(ctx, bot, count); err != nil {
			return fmt.Errorf("re-shard bot %q: %w", bot, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("re-shard bot %q: manager closed", bot)
	}
	rctx, cancel := context.WithCancel(m.runCtx)
	rs := &reshardRun{m: m, old: br, next: next, cancel: cancel, started: time.Now()}
	rs.ho = newHandover(rctx, m, br, next)
	rs.ho.started = rs.started
	br.reshard = rs
	br.ho.Store(rs.ho)
	next.ho.Store(rs.ho)
	for _, s := range next.order {
		m.launchLocked(s)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer cancel()
		rs.run(rctx)
	}()
	m.log.Info("re-shard started: the new set identifies while the old one publishes", "bot", bot, "from", br.count, "to", count,
		"session_starts_remaining", lim.Remaining, "max_concurrency", lim.MaxConcurrency)
	rs.control("started", "")
	return nil
}

// control reports a step of the re-shard (Kind "reshard", Detail).
func (rs *reshardRun) control(step, detail string) {
	if rs.m.cfg.OnControl == nil {
		return
	}
	d := fmt.Sprintf("%s: %d -> %d shards", step, rs.old.count, rs.next.count)
	if detail != "" {
		d += ": " + detail
	}
	rs.m.cfg.OnControl(ControlEvent{Bot: rs.old.cfg.Name, Shard: -1, Kind: ControlReshard, Detail: d, At: time.Now()})
}

// abortLocked stops the supervisor; the caller stops the shards. m.mu
// held.
func (rs *reshardRun) abortLocked() {
	rs.mu.Lock()
	rs.aborted = true
	rs.mu.Unlock()
	rs.cancel()
	rs.old.reshard = nil
}

func (rs *reshardRun) isAborted() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.aborted
}

// run supervises the re-shard: it waits for the new set, cuts over and
// stops the old set.
func (rs *reshardRun) run(ctx context.Context) {
	m := rs.m
	log := m.log.With("bot", rs.old.cfg.Name, "from", rs.old.count, "to", rs.next.count)
	t := time.NewTicker(reshardTick)
	defer t.Stop()
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for !rs.ho.loaded() {
		if !wait() {
			return
		}
		rs.ho.switchDead(false)
		for _, s := range rs.next.order {
			if st := s.status(); st.State == StateFailed {
				rs.fail(ctx, fmt.Sprintf("new shard %d failed: %s", s.id, st.LastError))
				return
			}
		}
	}
	loadedAt := time.Now()
	// The old set may lag (a replay after a restart, a backpressured
	// reader): skipping its guilds before it reached the new set's markers
	// would lose its backlog. Wait until each old shard has delivered an
	// event the new set received after now.
	rs.ho.markLoaded()
	caughtBy := time.Now().Add(reshardHeldWait)
	for !rs.ho.caughtUp() && time.Now().Before(caughtBy) {
		if !wait() {
			return
		}
		rs.ho.switchDead(false)
	}
	if !rs.ho.caughtUp() {
		log.Warn("re-shard: an old shard delivered nothing the new set also received (a quiet shard?); cutting over anyway")
	}
	m.opMu.Lock()
	if !rs.cutOver(ctx, log, loadedAt, wait) {
		m.opMu.Unlock()
		return
	}
	m.opMu.Unlock()
	overlap := time.Since(rs.started).Round(time.Millisecond)

	// Late copies of what the old set published still reach the new set
	// for a moment; then it publishes directly. Until then the bot is
	// still re-sharding: another re-shard would take the new set's events
	// away from this hand-over with events still held in it.
	late := time.Now().Add(reshardLateWait)
	for time.Now().Before(late) || !rs.ho.finish() {
		if !wait() {
			return
		}
	}
	rs.next.ho.Store(nil)
	log.Info("re-shard done", "overlap", overlap.String(), "handover", rs.ho.stats())
	rs.control("done", fmt.Sprintf("overlap %s, %s", overlap, rs.ho.stats()))
}

// cutOver switches every guild to the new set, stops the old set and puts
// the new one in its place; false when the re-shard was abandoned or the
// manager stops. m.opMu held.
func (rs *reshardRun) cutOver(ctx context.Context, log *slog.Logger, loadedAt time.Time, wait func() bool) bool {
	m := rs.m
	if rs.isAborted() || ctx.Err() != nil {
		return false
	}
	log.Info("re-shard: every new shard is ready with its guilds; cutting over", "loading", loadedAt.Sub(rs.started).Round(time.Millisecond).String())
	rs.ho.startCut()
	for _, s := range rs.old.order {
		rs.ho.flushOld(ctx, s.id)
	}
	rs.ho.finishCut()
	deadline := time.Now().Add(reshardHeldWait)
	for rs.ho.held() > 0 && time.Now().Before(deadline) {
		if !wait() {
			return false
		}
		rs.ho.switchDead(false)
	}
	if n := rs.ho.held(); n > 0 {
		log.Warn("re-shard: the old set did not reach what the new set holds; switching those guilds now (events may be doubled)", "guilds", n)
		rs.ho.switchDead(true)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := m.stopShards(sctx, rs.old.order)
	cancel()
	if err != nil {
		log.Warn("re-shard: stop the old set", "err", err)
	}
	rs.ho.switchDead(true)
	if st, ok := m.cfg.Sink.(Stager); ok {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := st.Promote(pctx, rs.old.cfg.Name, rs.next.count); err != nil {
			log.Warn("re-shard: promote the new set's checkpoints", "err", err)
		}
		cancel()
	}
	rs.ho.checkpoint()
	for _, s := range rs.old.order {
		if s.id >= rs.next.count && m.sessions != nil {
			if err := m.sessions.Delete(ctx, rs.old.cfg.Name, s.id); err != nil {
				log.Warn("re-shard: delete the checkpoint of a shard that no longer exists", "shard", s.id, "err", err)
			}
		}
	}
	m.mu.Lock()
	if i := slices.Index(m.bots, rs.old); i >= 0 {
		m.bots = slices.Clone(m.bots)
		m.bots[i] = rs.next
	}
	rs.old.reshard = nil
	rs.old.ho.Store(nil)
	m.mu.Unlock()
	log.Info("re-shard: cut over; the old set is closed", "after", time.Since(rs.started).Round(time.Millisecond).String())
	return true
}

// fail abandons the re-shard: the new set stops; the old set publishes
// everything again.
func (rs *reshardRun) fail(ctx context.Context, why string) {
	m := rs.m
	m.log.Error("re-shard failed; the old set keeps running", "bot", rs.old.cfg.Name, "from", rs.old.count, "to", rs.next.count, "why", why)
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	if rs.isAborted() {
		m.mu.Unlock()
		return
	}
	rs.aborted = true
	rs.old.reshard = nil
	m.mu.Unlock()
	rs.ho.switchDead(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := m.stopShards(sctx, rs.next.order); err != nil {
		m.log.Warn("re-shard: stop the new set", "err", err)
	}
	rs.old.ho.Store(nil)
	if st, ok := m.cfg.Sink.(Stager); ok {
		if err := st.Unstage(sctx, rs.old.cfg.Name, rs.next.count); err != nil {
			m.log.Warn("re-shard: unstage the new set", "err", err)
		}
	}
	if n := rs.ho.switches.Load(); n > 0 {
		why += fmt.Sprintf("; %d guilds had switched to the new set: their events around the switch may be missing or doubled", n)
	}
	rs.control("failed", why)
}

// shardingRequired answers close code 4011 on s: the bot re-shards to the
// count Discord recommends (twice s's count when that is not more) instead
// of stopping.
func (m *Manager) shardingRequired(s *shard) {
	bot, count := s.bot.cfg.Name, s.bot.count
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.runCtx == nil || m.autoPending[bot] {
		return
	}
	if m.autoPending == nil {
		m.autoPending = map[string]bool{}
	}
	m.autoPending[bot] = true
	ctx := m.runCtx
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer func() {
			m.mu.Lock()
			delete(m.autoPending, bot)
			m.mu.Unlock()
		}()
		m.autoReshard(ctx, bot, count, "close code 4011 (sharding required)")
	}()
}

// autoReshard re-shards bot above count to Discord's recommendation,
// retrying until it starts or ctx ends.
func (m *Manager) autoReshard(ctx context.Context, bot string, count int, why string) {
	for try := 1; ; try++ {
		m.mu.Lock()
		br := m.botLocked(bot)
		var rs *reshardRun
		if br != nil {
			rs = br.reshard
		}
		m.mu.Unlock()
		if br == nil {
			return
		}
		if rs != nil && rs.next.count == count {
			// The new set itself is too small: abandon it.
			rs.fail(ctx, "its shards were refused with "+why)
		} else if rs != nil || br.count > count {
			return // another re-shard already goes beyond count
		}
		info, err := m.gatewayBot(ctx, br.cfg)
		target := info.Shards
		if err == nil {
			if target <= count {
				target = count * 2
			}
			m.log.Warn("re-sharding", "bot", bot, "why", why, "from", count, "to", target, "recommended", info.Shards)
			err = m.autoStart(ctx, bot, target, why)
		}
		if err == nil || errors.Is(err, ErrUnknownShard) {
			return
		}
		delay := backoff(try + 3)
		if errors.Is(err, ErrStartLimitExhausted) {
			delay = max(m.limitsOf(info).ResetAfter, time.Minute)
		}
		m.log.Error("re-shard after "+why+" failed; retrying", "bot", bot, "err", err, "retry_in", delay)
		if !sleepCtx(ctx, delay) {
			return
		}
	}
}

// autoscale asks Discord, for each bot with Shards 0 (auto) and an
// AutoscaleEvery, for its recommended shard count every AutoscaleEvery,
// and re-shards a bot that runs fewer shards.
func (m *Manager) autoscale(ctx context.Context) {
	if m.cfg.OnDemand && m.cfg.ReshardVia == nil {
		// A fleet's shards follow leases: it re-shards through its plan.
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	next := map[string]time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.mu.Lock()
			var due []*botRun
			for _, br := range m.bots {
				every := br.cfg.AutoscaleEvery
				if br.cfg.Shards != 0 || every <= 0 || br.reshard != nil ||
					m.cfg.AutoscaleHere != nil && !m.cfg.AutoscaleHere(br.cfg.Name) {
					continue
				}
				at, ok := next[br.cfg.Name]
				if !ok {
					next[br.cfg.Name] = now.Add(every)
					continue
				}
				if now.Before(at) {
					continue
				}
				next[br.cfg.Name] = now.Add(every)
				due = append(due, br)
			}
			m.mu.Unlock()
			for _, br := range due {
				m.autoscaleBot(ctx, br)
			}
		}
	}
}

// MaxGuildsPerShard is the most guilds Discord lets one shard hold: an
// IDENTIFY of a shard that would hold more is closed with 4011.
const MaxGuildsPerShard = 2500

// autoscaleHeadroom: a re-shard for the guilds-per-shard threshold aims at
// this share of it, so that growth does not cross it again at once.
const autoscaleHeadroom = 0.8

// guildsOf is the number of guilds br's shards hold and whether every
// shard of its count runs here and is ready (the count is complete).
func (m *Manager) guildsOf(br *botRun) (int, bool) {
	m.mu.Lock()
	order := slices.Clone(br.order)
	m.mu.Unlock()
	total, ready := 0, 0
	for _, s := range order {
		st := s.status()
		if st.State == StateReady {
			ready++
		}
		total += st.Guilds
	}
	return total, ready == br.count && len(order) == br.count
}

// autoscaleTarget is the shard count br should run: Discord's
// recommendation, or more when its shards hold more than maxGuilds
// guilds on average; br.count when neither asks for more.
func autoscaleTarget(count, recommended, guilds, maxGuilds int) (int, string) {
	target, why := count, ""
	if recommended > target {
		target, why = recommended, fmt.Sprintf("Discord recommends %d shards", recommended)
	}
	if maxGuilds > 0 && guilds > maxGuilds*count {
		aim := max(int(float64(maxGuilds)*autoscaleHeadroom), 1)
		if n := (guilds + aim - 1) / aim; n > target {
			target, why = n, fmt.Sprintf("%d guilds on %d shards pass autoscale.max_guilds_per_shard (%d) on average", guilds, count, maxGuilds)
		}
	}
	return target, why
}

// autoscaleBot re-shards br when Discord recommends more shards, or when
// its shards hold more guilds on average than AutoscaleMaxGuilds.
func (m *Manager) autoscaleBot(ctx context.Context, br *botRun) {
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	info, err := m.gatewayBot(rctx, br.cfg)
	if err != nil {
		m.log.Warn("autoscale: GET /gateway/bot failed; checking again later", "bot", br.cfg.Name, "err", err)
		return
	}
	guilds, complete := m.guildsOf(br)
	maxGuilds := br.cfg.AutoscaleMaxGuilds
	if !complete {
		maxGuilds = 0 // a shard is not ready: its guilds are not all counted
	}
	target, why := autoscaleTarget(br.count, info.Shards, guilds, maxGuilds)
	if target <= br.count {
		m.log.Debug("autoscale: shard count is enough", "bot", br.cfg.Name, "shards", br.count, "recommended", info.Shards,
			"guilds", guilds, "max_guilds_per_shard", br.cfg.AutoscaleMaxGuilds)
		return
	}
	m.log.Info("autoscale: re-sharding", "bot", br.cfg.Name, "from", br.count, "to", target, "why", why)
	if err := m.autoStart(rctx, br.cfg.Name, target, "autoscale: "+why); err != nil {
		m.log.Error("autoscale: re-shard failed; checking again later", "bot", br.cfg.Name, "err", err)
	}
}

// autoStart starts a re-shard the Manager decided on (4011, autoscale):
// here, or through ReshardVia.
func (m *Manager) autoStart(ctx context.Context, bot string, count int, why string) error {
	if m.cfg.ReshardVia != nil {
		return m.cfg.ReshardVia(ctx, bot, count, why)
	}
	return m.Reshard(ctx, bot, count, nil)
}
