package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
)

// ErrResharding is returned by the run-time changes of a bot while it is
// being re-sharded.
var ErrResharding = errors.New("bot is being re-sharded")

// ShardCount is the shard count in force of bot (known once Start
// returned), 0 for an unknown bot.
func (m *Manager) ShardCount(bot string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if br := m.botLocked(bot); br != nil {
		return br.count
	}
	return 0
}

// Bots returns the configuration of every running bot (ShardIDs and
// Shards as configured; ShardCount in Status has the count in force).
func (m *Manager) Bots() []BotConfig {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]BotConfig, 0, len(m.bots))
	for _, br := range m.bots {
		out = append(out, br.cfg)
	}
	return out
}

// AddBot starts a bot at run time: it asks Discord for the bot's gateway
// and limits, then starts its shards (each resumes its saved session or
// identifies). ctx bounds the REST call.
func (m *Manager) AddBot(ctx context.Context, b BotConfig) error {
	if b.Name == "" {
		return errors.New("add bot: no name")
	}
	if err := checkBot(&b); err != nil {
		return fmt.Errorf("add bot: %w", err)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.running(); err != nil {
		return fmt.Errorf("add bot %q: %w", b.Name, err)
	}
	m.mu.Lock()
	exists := m.botLocked(b.Name) != nil
	m.mu.Unlock()
	if exists {
		return fmt.Errorf("add bot %q: already running", b.Name)
	}
	br, err := m.newBotRun(ctx, b)
	if err != nil {
		return fmt.Errorf("add bot %q: %w", b.Name, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("add bot %q: manager closed", b.Name)
	}
	m.bots = append(slices.Clip(m.bots), br)
	for _, s := range br.order {
		m.launchLocked(s)
	}
	m.reshardAfterStartLocked(br)
	return nil
}

// RemoveBot stops a bot's shards gracefully, as Close does: each stops
// reading, flushes the Sink and closes its connection with code 4000, so
// its session stays resumable (a later AddBot of the same bot resumes).
// ctx bounds the flushes and the wait.
func (m *Manager) RemoveBot(ctx context.Context, name string) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.mu.Lock()
	br := m.botLocked(name)
	if br == nil {
		m.mu.Unlock()
		return fmt.Errorf("remove bot %q: %w", name, ErrUnknownShard)
	}
	var shards []*shard
	shards = append(shards, br.order...)
	if rs := br.reshard; rs != nil {
		shards = append(shards, rs.next.order...)
		rs.abortLocked()
	}
	m.bots = slices.DeleteFunc(slices.Clone(m.bots), func(x *botRun) bool { return x == br })
	m.mu.Unlock()
	if err := m.stopShards(ctx, shards); err != nil {
		return fmt.Errorf("remove bot %q: %w", name, err)
	}
	return nil
}

// ReplaceBot puts a bot's new configuration in force. Its shards stop
// gracefully and start again with it: they RESUME their sessions when
// only the compression, presence, large threshold, member requests or
// shard ids changed. A changed token or intents cannot resume: each
// shard's session is dropped with a gap ControlEvent naming it and the
// last seq the Sink accepted, and the shards identify. A changed shard
// count is a re-shard: use Reshard. ctx bounds the REST call, the
// flushes and the wait.
func (m *Manager) ReplaceBot(ctx context.Context, b BotConfig) error {
	if err := checkBot(&b); err != nil {
		return fmt.Errorf("replace bot: %w", err)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.running(); err != nil {
		return fmt.Errorf("replace bot %q: %w", b.Name, err)
	}
	m.mu.Lock()
	old := m.botLocked(b.Name)
	resharding := old != nil && old.reshard != nil
	m.mu.Unlock()
	switch {
	case old == nil:
		return fmt.Errorf("replace bot %q: %w", b.Name, ErrUnknownShard)
	case resharding:
		return fmt.Errorf("replace bot %q: %w; try again once it is done", b.Name, ErrResharding)
	case b.Shards != 0 && b.Shards != old.count:
		return fmt.Errorf("replace bot %q: shard count changes from %d to %d: re-shard instead", b.Name, old.count, b.Shards)
	}
	newSession := b.Token != old.cfg.Token || b.Intents != old.cfg.Intents
	br, err := m.newBotRun(ctx, b)
	if err != nil {
		return fmt.Errorf("replace bot %q: %w", b.Name, err)
	}
	if b.Shards == 0 {
		// "auto" keeps the count in force: re-sharding is Reshard's job.
		if br, err = m.botRunWithCount(br, old.count); err != nil {
			return fmt.Errorf("replace bot %q: %w", b.Name, err)
		}
	}
	if err := m.stopShards(ctx, old.order); err != nil {
		return fmt.Errorf("replace bot %q: %w", b.Name, err)
	}
	if newSession {
		why := "token changed"
		if b.Intents != old.cfg.Intents {
			why = fmt.Sprintf("intents changed from %d to %d", old.cfg.Intents, b.Intents)
		}
		for _, s := range old.order {
			s.dropSession(ctx, why)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("replace bot %q: manager closed", b.Name)
	}
	i := slices.Index(m.bots, old)
	m.bots = slices.Clone(m.bots)
	m.bots[i] = br
	for _, s := range br.order {
		m.launchLocked(s)
	}
	return nil
}

// botRunWithCount remakes br's shards for count shards (its ShardIDs
// checked against it).
func (m *Manager) botRunWithCount(br *botRun, count int) (*botRun, error) {
	if br.count == count {
		return br, nil
	}
	nb := &botRun{cfg: br.cfg, url: br.url, count: count, limits: br.limits, shards: map[int]*shard{}}
	ids := br.cfg.ShardIDs
	if ids == nil {
		ids = make([]int, count)
		for i := range ids {
			ids[i] = i
		}
	}
	for _, id := range ids {
		if id < 0 || id >= count {
			return nil, fmt.Errorf("shard id %d not in 0..%d", id, count-1)
		}
		s := newShard(m, nb, id)
		nb.shards[id] = s
		nb.order = append(nb.order, s)
	}
	return nb, nil
}

// SameGateway reports whether two configurations of a bot run the same
// shards the same way (nothing for ReplaceBot to do).
func SameGateway(a, b BotConfig) bool {
	return a.Name == b.Name && a.Token == b.Token && a.Intents == b.Intents && a.Shards == b.Shards &&
		slices.Equal(a.ShardIDs, b.ShardIDs) && a.Compression == b.Compression &&
		a.LargeThreshold == b.LargeThreshold && bytes.Equal(a.Presence, b.Presence) &&
		a.RequestMembers == b.RequestMembers && a.AutoscaleEvery == b.AutoscaleEvery &&
		a.AutoscaleMaxGuilds == b.AutoscaleMaxGuilds
}

// running reports an error unless the manager runs.
func (m *Manager) running() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.closed || m.runCtx == nil {
		return errors.New("manager not running")
	}
	return nil
}

// stopShards stops shards gracefully (flush, close with code 4000) and
// waits for them; ctx bounds the flushes and the wait.
func (m *Manager) stopShards(ctx context.Context, shards []*shard) error {
	for _, s := range shards {
		s.mu.Lock()
		s.closeCtx = ctx
		s.mu.Unlock()
		if s.cancel != nil {
			s.cancel()
		}
	}
	for _, s := range shards {
		if s.done == nil {
			continue
		}
		select {
		case <-s.done:
		case <-ctx.Done():
			return fmt.Errorf("stop shards: %w", ctx.Err())
		}
	}
	return nil
}

// dropSession forgets the stopped shard's session: it deletes the saved
// checkpoint and reports the gap (the session's events after the last seq
// the Sink accepted will never be received). The shard must have stopped.
func (s *shard) dropSession(ctx context.Context, why string) {
	if s.m.sessions != nil {
		if err := s.m.sessions.Delete(ctx, s.bot.cfg.Name, s.id); err != nil {
			s.log.Warn("delete saved session", "err", err)
		}
	}
	if s.session == "" {
		return
	}
	s.log.Warn("session dropped without RESUME; its events not yet received are lost", "session", s.session, "seq", s.seq.Load(), "why", why)
	s.control(ControlEvent{Kind: ControlGap, Session: s.session, Seq: s.seq.Load(), Err: why})
}
