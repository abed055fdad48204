package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Version is feathery's version, sent in the REST User-Agent.
var Version = "0.1.0"

// Defaults of ManagerConfig.
const (
	DefaultRESTURL        = "https://discord.com/api/v10"
	DefaultIdentifyWindow = 5 * time.Second
	DefaultMaxPayload     = 16 << 20
)

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	// Bots are the bots to run; at least one.
	Bots []BotConfig
	// Sink receives every dispatch of every shard. Required.
	Sink Sink
	// Sessions loads the checkpoints the Sink saved; nil = a fresh
	// MemorySessionStore (nothing to resume from).
	Sessions SessionStore
	// Limiter spaces IDENTIFYs; nil = NewMemoryIdentifyLimiter().
	Limiter IdentifyLimiter
	// RESTURL is Discord's REST base; default "https://discord.com/api/v10".
	RESTURL string
	// IdentifyWindow is the identify rate-limit window per bucket; default 5s.
	IdentifyWindow time.Duration
	// MaxPayload bounds a websocket message and a decompressed payload;
	// default 16 MiB. A larger one closes the connection (the shard resumes).
	MaxPayload int
	// HTTPClient calls REST; default a client with a 30 s timeout.
	HTTPClient *http.Client
	// Logger; nil = discard.
	Logger *slog.Logger
	// OnControl is called, from the shard's goroutine, on state changes,
	// identifies, resumes, lost sessions and fatal errors. It must not block.
	OnControl func(ControlEvent)
	// OnConnectionEnd is called, from the shard's goroutine, each time a
	// connection ends, with its close code or INVALID_SESSION (metrics).
	// It must not block.
	OnConnectionEnd func(ConnectionEnd)
	// OnDemand starts no shard in Start: StartShard and StopShard run them
	// one by one (a fleet decides which this process owns). ShardIDs are
	// then ignored.
	OnDemand bool
	// ReshardVia, when set, takes the re-shards the Manager would start
	// by itself (close code 4011, autoscale): a fleet (OnDemand) re-shards
	// through its plan. AutoscaleHere, when set, says whether this process
	// is the one that checks bot's recommended shard count (a fleet checks
	// on one node).
	ReshardVia    func(ctx context.Context, bot string, count int, why string) error
	AutoscaleHere func(bot string) bool
	// Admit, when set, is asked before each connection of a shard; an
	// error wrapping ErrShardRevoked stops the shard instead (another
	// process owns it). Other errors are logged and the shard connects.
	Admit func(ctx context.Context, bot string, shard int) error
	// Dial opens a gateway websocket (tests); nil = gobwas/ws with a 15 s
	// timeout. The returned reader, if not nil, holds bytes that arrived with
	// the handshake and reads on from the connection.
	Dial func(ctx context.Context, url string) (net.Conn, *bufio.Reader, error)
}

// ShardStatus is a snapshot of one shard.
type ShardStatus struct {
	Bot        string        `json:"bot"`
	Shard      int           `json:"shard"`
	ShardCount int           `json:"shard_count"`
	State      State         `json:"state"`
	Session    string        `json:"session,omitempty"`
	Seq        int64         `json:"seq"`
	Latency    time.Duration `json:"latency_ns"` // last heartbeat round trip
	Events     uint64        `json:"events"`
	Bytes      uint64        `json:"bytes"`
	Reconnects uint64        `json:"reconnects"`
	Resumes    uint64        `json:"resumes"`
	Identifies uint64        `json:"identifies"`
	Guilds     int           `json:"guilds"` // guilds the session holds
	LastError  string        `json:"last_error,omitempty"`
}

// Manager runs the shards of one or more bots.
type Manager struct {
	cfg        ManagerConfig
	log        *slog.Logger
	sessions   SessionStore
	limiter    IdentifyLimiter
	maxPayload int
	http       *http.Client

	// opMu serializes the run-time changes (AddBot, RemoveBot,
	// ReplaceBot, Reshard's start and cut-over); taken before mu.
	opMu sync.Mutex

	mu      sync.Mutex
	bots    []*botRun // replaced, never changed in place, while running
	started bool
	closed  bool
	runCtx  context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// autoPending marks the bots an automatic re-shard is being started
	// for.
	autoPending map[string]bool
}

// botRun is a bot with what GET /gateway/bot said.
type botRun struct {
	cfg    BotConfig
	count  int
	url    string
	limits Limits
	shards map[int]*shard
	order  []*shard

	// reshard is the re-shard in progress (m.mu); ho its hand-over, set on
	// the old and the new set while they overlap.
	reshard *reshardRun
	ho      atomic.Pointer[handover]
	// fresh: the set's shards identify instead of loading saved sessions
	// (a re-shard's new set: the saved ones are the old set's).
	fresh bool
	// reshardTo is the count to re-shard to once started (the saved
	// sessions were made with count), 0 = none.
	reshardTo int
}

// checkBot reports what is wrong with b (BotConfig.Validate), naming it.
func checkBot(b *BotConfig) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("bot %q: %w", b.Name, err)
	}
	return nil
}

// NewManager validates cfg and returns a Manager; Start connects.
func NewManager(cfg ManagerConfig) (*Manager, error) {
	if cfg.Sink == nil {
		return nil, errors.New("new manager: Sink is required")
	}
	if len(cfg.Bots) == 0 {
		return nil, errors.New("new manager: no bots configured")
	}
	names := map[string]bool{}
	for i, b := range cfg.Bots {
		if err := b.Validate(); err != nil {
			return nil, fmt.Errorf("new manager: bots[%d] (%q): %w", i, b.Name, err)
		}
		if names[b.Name] {
			return nil, fmt.Errorf("new manager: bot name %q used twice", b.Name)
		}
		names[b.Name] = true
	}
	if cfg.RESTURL == "" {
		cfg.RESTURL = DefaultRESTURL
	}
	if cfg.IdentifyWindow <= 0 {
		cfg.IdentifyWindow = DefaultIdentifyWindow
	}
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = DefaultMaxPayload
	}
	m := &Manager{cfg: cfg, maxPayload: cfg.MaxPayload}
	m.log = cfg.Logger
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.sessions = cfg.Sessions
	if m.sessions == nil {
		m.sessions = NewMemorySessionStore()
	}
	m.limiter = cfg.Limiter
	if m.limiter == nil {
		m.limiter = NewMemoryIdentifyLimiter()
	}
	m.http = cfg.HTTPClient
	if m.http == nil {
		m.http = &http.Client{Timeout: 30 * time.Second}
	}
	return m, nil
}

// Start asks Discord for each bot's gateway URL, shard count and identify
// limits, then starts every shard and returns; shards identify in the
// background, bucket by bucket. ctx bounds the REST calls only.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started || m.closed {
		m.mu.Unlock()
		return errors.New("start manager: already started or closed")
	}
	m.started = true
	m.mu.Unlock()

	var bots []*botRun
	for _, b := range m.cfg.Bots {
		br, err := m.newBotRun(ctx, b)
		if err != nil {
			return fmt.Errorf("start bot %q: %w", b.Name, err)
		}
		bots = append(bots, br)
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("start manager: closed while starting")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	m.runCtx, m.cancel = runCtx, cancel
	m.bots = bots
	for _, br := range bots {
		for _, s := range br.order {
			m.launchLocked(s)
		}
		m.reshardAfterStartLocked(br)
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.autoscale(runCtx)
	}()
	return nil
}

// savedCount is the shard count every saved session of b was made with,
// when they all agree and differ from nothing else (intents); 0 otherwise.
// Only bots that run every shard (no ShardIDs) qualify.
func (m *Manager) savedCount(ctx context.Context, b BotConfig) int {
	if b.ShardIDs != nil {
		return 0
	}
	first, err := m.sessions.Load(ctx, b.Name, 0)
	if err != nil || first.ID == "" || first.ShardCount < 1 || first.Intents != b.Intents {
		return 0
	}
	for id := 1; id < first.ShardCount; id++ {
		s, err := m.sessions.Load(ctx, b.Name, id)
		if err != nil || s.ID == "" || s.ShardCount != first.ShardCount || s.Intents != b.Intents {
			return 0
		}
	}
	return first.ShardCount
}

// reshardAfterStartLocked starts, in the background, the re-shard br asks
// for once its shards resumed. m.mu held.
func (m *Manager) reshardAfterStartLocked(br *botRun) {
	to := br.reshardTo
	if to == 0 {
		return
	}
	ctx := m.runCtx
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for try := 1; ; try++ {
			err := m.Reshard(ctx, br.cfg.Name, to, nil)
			if err == nil || errors.Is(err, ErrUnknownShard) || errors.Is(err, ErrResharding) {
				return
			}
			m.log.Error("re-shard to the configured count failed; retrying", "bot", br.cfg.Name, "to", to, "err", err)
			if !sleepCtx(ctx, backoff(try+3)) {
				return
			}
		}
	}()
}

// newBotRun asks Discord for b's gateway URL, shard count and identify
// limits and makes its shards (not started).
func (m *Manager) newBotRun(ctx context.Context, b BotConfig) (*botRun, error) {
	info, err := m.gatewayBot(ctx, b)
	if err != nil {
		return nil, err
	}
	br := &botRun{cfg: b, url: info.URL, count: b.Shards, shards: map[int]*shard{}}
	if br.count == 0 {
		br.count = max(info.Shards, 1)
	}
	br.limits = m.limitsOf(info)
	// OnDemand (a fleet): the fleet's plan decides the count and re-shards.
	if saved := m.savedCount(ctx, b); !m.cfg.OnDemand && saved > 0 && saved != br.count {
		// The saved sessions were made with another count: resume them
		// and re-shard live, rather than drop them and lose what Discord
		// would replay.
		m.log.Warn("saved sessions were made with another shard count: resuming them, then re-sharding live",
			"bot", b.Name, "saved_shards", saved, "shards", br.count)
		br.reshardTo, br.count = br.count, saved
	}
	ids := b.ShardIDs
	if m.cfg.OnDemand {
		ids = []int{}
	} else if ids == nil {
		ids = make([]int, br.count)
		for i := range ids {
			ids[i] = i
		}
	}
	for _, id := range ids {
		if id < 0 || id >= br.count {
			return nil, fmt.Errorf("shard id %d not in 0..%d", id, br.count-1)
		}
		if br.shards[id] != nil {
			return nil, fmt.Errorf("shard id %d listed twice", id)
		}
		s := newShard(m, br, id)
		br.shards[id] = s
		br.order = append(br.order, s)
	}
	identifies := 0
	for _, s := range br.order {
		if sess, err := m.sessions.Load(ctx, b.Name, s.id); err != nil || sess.ID == "" {
			identifies++
		}
	}
	if br.limits.Remaining < identifies {
		m.log.Error("session start limit exhausted: shards without a saved session wait for the reset",
			"bot", b.Name, "remaining", br.limits.Remaining, "needed", identifies, "reset_after", br.limits.ResetAfter)
	}
	m.log.Info("starting bot", "bot", b.Name, "shards", br.count, "running", len(br.order),
		"max_concurrency", br.limits.MaxConcurrency, "session_starts_remaining", br.limits.Remaining)
	return br, nil
}

// limitsOf are the identify limits GET /gateway/bot reported.
func (m *Manager) limitsOf(info gatewayBotInfo) Limits {
	return Limits{
		MaxConcurrency: max(info.Limit.MaxConcurrency, 1),
		Window:         m.cfg.IdentifyWindow,
		Total:          info.Limit.Total,
		Remaining:      info.Limit.Remaining,
		ResetAfter:     time.Duration(info.Limit.ResetAfter) * time.Millisecond,
	}
}

// launchLocked runs s on its own context under the manager's. m.mu held.
func (m *Manager) launchLocked(s *shard) {
	ctx, cancel := context.WithCancel(m.runCtx)
	s.cancel, s.done = cancel, make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(s.done)
		defer cancel()
		s.run(ctx)
	}()
}

// botLocked returns the running bot named name. m.mu held.
func (m *Manager) botLocked(name string) *botRun {
	for _, br := range m.bots {
		if br.cfg.Name == name {
			return br
		}
	}
	return nil
}

// ShardState is the state of a running shard of bot; false when it does
// not run here.
func (m *Manager) ShardState(bot string, id int) (State, bool) {
	m.mu.Lock()
	br := m.botLocked(bot)
	var s *shard
	if br != nil {
		s = br.shards[id]
	}
	m.mu.Unlock()
	if s == nil {
		return StateIdle, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, true
}

// StartShard starts one shard of bot at run time (see OnDemand): it loads
// the saved session and RESUMEs it, or IDENTIFYs. A shard that stopped by
// itself (revoked, failed) is replaced.
func (m *Manager) StartShard(bot string, id int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.started || m.closed || m.runCtx == nil {
		return fmt.Errorf("start shard %d of bot %q: manager not running", id, bot)
	}
	br := m.botLocked(bot)
	if br == nil {
		return fmt.Errorf("start shard %d: unknown bot %q: %w", id, bot, ErrUnknownShard)
	}
	if id < 0 || id >= br.count {
		return fmt.Errorf("start shard %d of bot %q: not in 0..%d: %w", id, bot, br.count-1, ErrUnknownShard)
	}
	if old := br.shards[id]; old != nil {
		select {
		case <-old.done:
			br.removeLocked(old)
		default:
			return fmt.Errorf("start shard %d of bot %q: already running", id, bot)
		}
	}
	s := newShard(m, br, id)
	br.shards[id] = s
	i := sort.Search(len(br.order), func(i int) bool { return br.order[i].id > id })
	br.order = slices.Insert(br.order, i, s)
	m.launchLocked(s)
	return nil
}

// StopShard stops one shard gracefully, as Close does for all: it stops
// reading, flushes the Sink (if it is a Flusher) and closes its connection
// with code 4000, so the session stays resumable for the process that
// takes the shard next. It returns once the shard stopped; ctx bounds the
// flush and the wait.
func (m *Manager) StopShard(ctx context.Context, bot string, id int) error {
	m.mu.Lock()
	br := m.botLocked(bot)
	var s *shard
	if br != nil {
		s = br.shards[id]
	}
	if s == nil {
		m.mu.Unlock()
		return fmt.Errorf("stop shard %d of bot %q: %w", id, bot, ErrUnknownShard)
	}
	br.removeLocked(s)
	s.mu.Lock()
	s.closeCtx = ctx
	s.mu.Unlock()
	m.mu.Unlock()
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop shard %d of bot %q: %w", id, bot, ctx.Err())
	}
}

// removeLocked forgets s. m.mu held.
func (br *botRun) removeLocked(s *shard) {
	if br.shards[s.id] == s {
		delete(br.shards, s.id)
	}
	br.order = slices.DeleteFunc(br.order, func(x *shard) bool { return x == s })
}

type gatewayBotInfo struct {
	URL    string `json:"url"`
	Shards int    `json:"shards"`
	Limit  struct {
		Total          int   `json:"total"`
		Remaining      int   `json:"remaining"`
		ResetAfter     int64 `json:"reset_after"`
		MaxConcurrency int   `json:"max_concurrency"`
	} `json:"session_start_limit"`
}

// gatewayBot calls GET /gateway/bot for b, retrying rate limits (429, after
// the time Discord asks), server errors and network errors a few times.
// Errors never carry the token.
func (m *Manager) gatewayBot(ctx context.Context, b BotConfig) (gatewayBotInfo, error) {
	const attempts = 5
	for i := 1; ; i++ {
		info, retryAfter, err := m.gatewayBotOnce(ctx, b)
		if err == nil || retryAfter < 0 || i == attempts {
			return info, err
		}
		if retryAfter == 0 {
			retryAfter = backoff(i)
		}
		m.log.Warn("GET /gateway/bot failed; retrying", "bot", b.Name, "err", err, "retry_in", retryAfter)
		if !sleepCtx(ctx, retryAfter) {
			return info, fmt.Errorf("%w (then %w)", err, ctx.Err())
		}
	}
}

// gatewayBotOnce makes one GET /gateway/bot. retryAfter < 0 means the error
// is final; 0 means retry with backoff.
func (m *Manager) gatewayBotOnce(ctx context.Context, b BotConfig) (info gatewayBotInfo, retryAfter time.Duration, err error) {
	u := strings.TrimRight(m.cfg.RESTURL, "/") + "/gateway/bot"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return info, -1, fmt.Errorf("build GET /gateway/bot: %w", err)
	}
	req.Header.Set("Authorization", "Bot "+b.Token)
	req.Header.Set("User-Agent", "DiscordBot (https://github.com/feathery/feathery, "+Version+")")
	resp, err := m.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return info, -1, fmt.Errorf("GET /gateway/bot: %w", ctx.Err())
		}
		return info, 0, fmt.Errorf("GET /gateway/bot: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return info, 0, fmt.Errorf("read GET /gateway/bot reply: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return info, -1, fmt.Errorf("GET /gateway/bot: %w: token rejected (401)", ErrFatal)
	case resp.StatusCode == http.StatusTooManyRequests:
		var rl struct {
			RetryAfter float64 `json:"retry_after"`
		}
		_ = json.Unmarshal(body, &rl)
		wait := time.Duration(rl.RetryAfter * float64(time.Second))
		if secs, err := strconv.ParseFloat(resp.Header.Get("Retry-After"), 64); err == nil && wait == 0 {
			wait = time.Duration(secs * float64(time.Second))
		}
		return info, min(max(wait, 50*time.Millisecond), time.Minute), fmt.Errorf("GET /gateway/bot: rate limited (429)")
	case resp.StatusCode >= 500:
		return info, 0, fmt.Errorf("GET /gateway/bot: status %d", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return info, -1, fmt.Errorf("GET /gateway/bot: status %d: %s", resp.StatusCode, truncate(body))
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return info, -1, fmt.Errorf("decode GET /gateway/bot reply: %w", err)
	}
	if info.URL == "" {
		return info, -1, errors.New("decode GET /gateway/bot reply: no url")
	}
	return info, 0, nil
}

// Close stops every shard: each stops reading, flushes the Sink (if it is a
// Flusher) and closes its connection with code 4000, which keeps the session
// resumable for the next process. ctx bounds the flushes and the wait.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	for _, br := range m.bots {
		shards := br.order
		if rs := br.reshard; rs != nil {
			shards = append(slices.Clip(shards), rs.next.order...)
		}
		for _, s := range shards {
			s.mu.Lock()
			s.closeCtx = ctx
			s.mu.Unlock()
		}
	}
	cancel := m.cancel
	m.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close manager: %w", ctx.Err())
	}
}

// Status returns a snapshot of every shard, bot by bot in shard order
// (during a re-shard, the old set's shards then the new set's).
func (m *Manager) Status() []ShardStatus { return m.AppendStatus(nil) }

// AppendStatus appends Status to dst and returns it: a caller polling every
// second reuses its slice.
func (m *Manager) AppendStatus(dst []ShardStatus) []ShardStatus {
	// StartShard and StopShard change the shard lists: copy them.
	m.mu.Lock()
	var shards []*shard
	for _, br := range m.bots {
		shards = append(shards, br.order...)
		if rs := br.reshard; rs != nil {
			shards = append(shards, rs.next.order...)
		}
	}
	m.mu.Unlock()
	out := slices.Grow(dst, len(shards))
	for _, s := range shards {
		out = append(out, s.status())
	}
	return out
}

// Reconnect ends the current connection of one shard with a resumable close
// code and resumes its session on a new connection, as after op 7. A shard
// that is between connections takes the request on its next one.
func (m *Manager) Reconnect(bot string, shard int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, br := range m.bots {
		if br.cfg.Name != bot {
			continue
		}
		s := br.shards[shard]
		if s == nil {
			return fmt.Errorf("reconnect shard %d of bot %q: %w", shard, bot, ErrUnknownShard)
		}
		s.askReconnect()
		return nil
	}
	return fmt.Errorf("reconnect shard %d: unknown bot %q: %w", shard, bot, ErrUnknownShard)
}

// RequestGuildMembers queues a Request Guild Members (op 8, every member)
// for guildID on the shard of bot that holds it. It is sent within the send
// limit once that shard is ready, and again after RATE_LIMITED.
func (m *Manager) RequestGuildMembers(bot string, guildID uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, br := range m.bots {
		if br.cfg.Name != bot {
			continue
		}
		id := int((guildID >> 22) % uint64(br.count))
		s := br.shards[id]
		if s == nil {
			return fmt.Errorf("request guild members of %d: shard %d of bot %q does not run here", guildID, id, bot)
		}
		s.members.push(guildID, time.Time{})
		return nil
	}
	return fmt.Errorf("request guild members of %d: unknown bot %q", guildID, bot)
}
