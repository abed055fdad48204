package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// The broker mirrors the gateway's types field for field, so pointers and
// values convert for free. These fail to compile if the two ever differ.
var (
	_ = (*broker.Event)((*gateway.Event)(nil))
	_ = broker.Session(gateway.Session{})
	_ = gateway.Session(broker.Session{})
	_ = broker.Limits(gateway.Limits{})

	_ gateway.Sink            = publisherSink{}
	_ gateway.Flusher         = publisherSink{}
	_ gateway.Stager          = publisherSink{}
	_ gateway.SessionStore    = sessionStoreAdapter{}
	_ gateway.IdentifyLimiter = limiterAdapter{}
	_ gateway.RewoundError    = (*broker.CheckpointError)(nil)
)

// publisherSink is the gateway's Sink (and Flusher) over the broker's
// Publisher.
type publisherSink struct {
	pub *broker.Publisher
	// commit, when set, is asked before a re-shard's new set is promoted
	// (a fleet commits the new shard count first).
	commit func(ctx context.Context, bot string, count int) error
	// fleet: a re-shard abandoned here ends its staging in memory only;
	// what it left in Redis is cleared by the fleet's next coordinator
	// (another node may be staging by then).
	fleet bool
}

func (s publisherSink) Publish(ctx context.Context, ev *gateway.Event) error {
	err := s.pub.Publish(ctx, (*broker.Event)(ev))
	if errors.Is(err, broker.ErrFenced) {
		return fmt.Errorf("%w: %w", gateway.ErrShardRevoked, err)
	}
	return err
}

func (s publisherSink) Flush(ctx context.Context, bot string, shard int) error {
	return s.pub.Flush(ctx, bot, shard)
}

func (s publisherSink) Stage(ctx context.Context, bot string, count int) error {
	return s.pub.Stage(ctx, bot, count)
}

func (s publisherSink) Promote(ctx context.Context, bot string, count int) error {
	if s.commit != nil {
		if err := s.commit(ctx, bot, count); err != nil {
			return err
		}
	}
	return s.pub.Promote(ctx, bot, count)
}

func (s publisherSink) Unstage(ctx context.Context, bot string, count int) error {
	if s.fleet {
		s.pub.EndStaging(bot, count)
		return nil
	}
	return s.pub.Unstage(ctx, bot, count)
}

// sessionStoreAdapter is the gateway's SessionStore over the broker's; a
// session given up is deleted through the Publisher, which then stops
// expecting its checkpoint.
type sessionStoreAdapter struct {
	s   *broker.SessionStore
	pub *broker.Publisher
}

func (a sessionStoreAdapter) Load(ctx context.Context, bot string, shard int) (gateway.Session, error) {
	s, err := a.s.Load(ctx, bot, shard)
	if errors.Is(err, broker.ErrNoSession) {
		return gateway.Session{}, gateway.ErrNoSession
	}
	return gateway.Session(s), err
}

func (a sessionStoreAdapter) Delete(ctx context.Context, bot string, shard int) error {
	return a.pub.DeleteSession(ctx, bot, shard)
}

// limiterAdapter is the gateway's IdentifyLimiter over the broker's.
type limiterAdapter struct{ l *broker.IdentifyLimiter }

func (a limiterAdapter) Wait(ctx context.Context, bot string, shard int, lim gateway.Limits) error {
	err := a.l.Wait(ctx, bot, shard, broker.Limits(lim))
	if errors.Is(err, broker.ErrStartLimitExhausted) && !errors.Is(err, gateway.ErrStartLimitExhausted) {
		return fmt.Errorf("%w: %w", gateway.ErrStartLimitExhausted, err)
	}
	return err
}

func (a limiterAdapter) Sent(ctx context.Context, bot string, shard int, lim gateway.Limits) error {
	return a.l.Sent(ctx, bot, shard, broker.Limits(lim))
}

// daemonDeps are what runDaemon takes from its caller besides the config.
type daemonDeps struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// HTTPClient for Discord's REST API; nil = the gateway's default.
	HTTPClient *http.Client
	// ConfigPath is the file cfg was read from, read again by Reload
	// (with LookupEnv for ${VAR}); "" = no reload.
	ConfigPath string
	LookupEnv  func(string) (string, bool)
	// LevelVar is the logger's level, which Reload sets; nil = none.
	LevelVar *slog.LevelVar
}

// daemon is one running feathery: Redis client, publisher, gateway
// manager and admin API. runDaemon starts it; Close stops it.
type daemon struct {
	cfgMu   sync.Mutex // guards cfg, replaced by Reload
	cfg     *Config
	log     *slog.Logger
	started time.Time

	// Reload's inputs; reloadMu serializes reloads.
	cfgPath   string
	lookupEnv func(string) (string, bool)
	level     *slog.LevelVar
	reloadMu  sync.Mutex

	redis *broker.Client
	pub   *broker.Publisher
	cache *broker.Cache // nil when no bot keeps a cache
	mgr   *gateway.Manager
	admin *adminServer // nil when admin.addr is off

	fleetMu sync.Mutex
	fleet   *broker.Fleet // nil when fleet mode is off

	meter rateMeter
	// statusBuf is eventsTotal's, reused each second (the meter's goroutine).
	statusBuf []gateway.ShardStatus

	// The operations console: metrics, stream sampler, node status.
	metrics *metrics
	sampler *sampler
	status  *nodeStatus

	closeOnce sync.Once
	closeErr  error
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// runDaemon starts feathery from cfg: it connects to (or starts) Redis,
// builds the publisher, starts the admin API and the gateway manager, and
// returns once the shards are starting. ctx bounds the start-up only; the
// daemon runs until Close.
func runDaemon(ctx context.Context, cfg *Config, deps daemonDeps) (_ *daemon, err error) {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &daemon{cfg: cfg, log: log, started: time.Now(), cfgPath: deps.ConfigPath, lookupEnv: deps.LookupEnv, level: deps.LevelVar}
	defer func() {
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = d.Close(cctx) // the start-up error is the one to report
		}
	}()

	d.redis, err = broker.NewClient(redisConfig(cfg))
	if err != nil {
		return nil, err
	}
	log.Info("connected to redis", "redis", d.redis.String())
	if cfg.Redis.embedded() {
		if cfg.Redis.RequirePersistence {
			return nil, fmt.Errorf("%w: the embedded Redis keeps nothing across a restart; use redis.url with a Redis that has AOF", errPersistence)
		}
		log.Warn("the embedded Redis keeps nothing across a restart: checkpoints and streams are lost when feathery stops; use it to try feathery, not in production")
	} else {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := checkPersistence(pctx, d.redis.Redis(), cfg.Redis.RequirePersistence, log.With("component", "persistence"))
		cancel()
		if err != nil {
			return nil, err
		}
	}

	d.initConsole()
	pcfg := publisherConfig(cfg, d.redis.ClientSideCaching(), log.With("component", "publisher"))
	pcfg.Observer = d.metrics
	fleet := cfg.fleetEnabled()
	if fleet {
		pcfg.OnFenced = d.onFenced
	}
	if cc, ok := cacheConfig(cfg, log.With("component", "cache")); ok {
		d.cache, err = broker.NewCache(d.redis.Redis(), cc)
		if err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
		pcfg.Cache = d.cache
	}
	d.pub, err = broker.NewPublisher(d.redis.Redis(), pcfg)
	if err != nil {
		return nil, err
	}
	if err := d.pub.EnsureGroups(ctx); err != nil {
		return nil, fmt.Errorf("create consumer groups: %w", err)
	}

	keys := broker.NewKeys(cfg.Redis.Prefix)
	mcfg := gateway.ManagerConfig{
		Bots:     gatewayBots(cfg),
		Sink:     publisherSink{pub: d.pub, commit: d.commitReshard, fleet: fleet},
		Sessions: sessionStoreAdapter{broker.NewSessionStore(d.redis.Redis(), keys), d.pub},
		Limiter: limiterAdapter{broker.NewIdentifyLimiter(d.redis.Redis(), broker.IdentifyConfig{
			Keys:   keys,
			Logger: log.With("component", "identify"),
		})},
		RESTURL:        cfg.Discord.RESTURL,
		IdentifyWindow: cfg.IdentifyWindow.D(),
		HTTPClient:     deps.HTTPClient,
		Logger:         log.With("component", "gateway"),
		OnControl:      d.onControl,
		// Close codes and invalid sessions, for the metrics.
		OnConnectionEnd: d.metrics.connectionEnd,
		OnDemand:        fleet,
	}
	if fleet {
		mcfg.Admit = d.admit
		mcfg.ReshardVia, mcfg.AutoscaleHere = d.fleetReshard, d.autoscaleHere
	}
	d.mgr, err = gateway.NewManager(mcfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}

	if cfg.Admin.Addr != "off" {
		d.admin, err = startAdmin(cfg.Admin.Addr, cfg.Admin.Token, d, log.With("component", "admin"))
		if err != nil {
			return nil, err
		}
		if !isLoopback(d.admin.Addr()) {
			log.Warn("the admin API listens beyond loopback: anyone who reaches it sees the status; keep admin.token secret", "addr", d.admin.Addr())
		}
	}

	var mctx context.Context
	mctx, d.cancel = context.WithCancel(context.Background())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.meter.run(mctx, d.eventsTotal)
	}()
	d.startConsole(mctx)

	// In a fleet another node may be re-sharding: the fleet's next
	// coordinator clears an abandoned re-shard instead (fleetRunner.Reshard).
	for _, b := range cfg.Bots {
		if fleet {
			break
		}
		if err := d.dropStaged(ctx, b.Name); err != nil {
			return nil, err
		}
	}
	if err := d.mgr.Start(ctx); err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	if fleet {
		if err := d.startFleet(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// onControl forwards the gateway's control events to the control stream
// (the two vocabularies share their values: TestControlKinds). It must not
// block: the publisher queues them (dropping the oldest when full).
func (d *daemon) onControl(ev gateway.ControlEvent) {
	d.consoleControl(ev)
	state := ev.State.String()
	if ev.Kind == gateway.ControlReshard {
		state = ""
	}
	d.pub.Control(broker.ControlEvent{
		Bot: ev.Bot, Shard: ev.Shard, Kind: broker.ControlKind(ev.Kind), State: state,
		Session: ev.Session, Seq: ev.Seq, Err: ev.Err, Detail: ev.Detail, At: ev.At,
	})
	switch ev.Kind {
	case gateway.ControlFatal:
		d.log.Error("shard stopped for good", "bot", ev.Bot, "shard", ev.Shard, "err", ev.Err)
	case gateway.ControlGap:
		d.log.Warn("session lost: events after the last published seq were not replayed", "bot", ev.Bot, "shard", ev.Shard, "session", ev.Session, "seq", ev.Seq, "why", ev.Err)
	case gateway.ControlReshard:
		d.log.Info("re-shard", "bot", ev.Bot, "detail", ev.Detail)
	}
}

// dropStaged clears what a re-shard of bot that ended without its cut-over
// (a crash or stop during the overlap) left in Redis, before the bot's
// shards start: the old set's saved sessions resume, and each session of
// the abandoned new set is reported as a gap.
func (d *daemon) dropStaged(ctx context.Context, bot string) error {
	lost, err := d.pub.DropStaged(ctx, bot)
	if err != nil {
		return fmt.Errorf("bot %q: clear an interrupted re-shard: %w", bot, err)
	}
	if len(lost) == 0 {
		return nil
	}
	why := fmt.Sprintf("a re-shard to %d shards ended before its cut-over (crash or stop during the overlap): the new set's session is dropped; the old set resumes", lost[0].Count)
	d.onControl(gateway.ControlEvent{Bot: bot, Shard: -1, Kind: gateway.ControlReshard, Detail: fmt.Sprintf("interrupted: -> %d shards: %d sessions of the new set dropped", lost[0].Count, len(lost)), At: time.Now()})
	for _, s := range lost {
		d.onControl(gateway.ControlEvent{Bot: bot, Shard: s.Shard, Kind: gateway.ControlGap, Session: s.Session, Seq: s.Seq, Err: why, At: time.Now()})
	}
	return nil
}

// RedisAddr is the embedded Redis' address, "" when Redis is external.
func (d *daemon) RedisAddr() string {
	if d.redis == nil {
		return ""
	}
	return d.redis.Addr()
}

// AdminURL is the dashboard's URL, "" when the admin API is off.
func (d *daemon) AdminURL() string {
	if d.admin == nil {
		return ""
	}
	return d.admin.URL()
}

// Close stops the daemon: the gateway first (it flushes the publisher and
// closes the shards with a resumable code), then the publisher, the admin
// API and Redis. It is safe to call more than once.
func (d *daemon) Close(ctx context.Context) error {
	d.closeOnce.Do(func() {
		var errs []error
		if f := d.getFleet(); f != nil {
			// Hand the shards over one by one, then leave.
			if err := f.Drain(ctx); err != nil {
				errs = append(errs, err)
			}
			if err := f.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if d.mgr != nil {
			if err := d.mgr.Close(ctx); err != nil {
				errs = append(errs, fmt.Errorf("close gateway: %w", err))
			}
		}
		if d.pub != nil {
			if err := d.pub.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if d.cancel != nil {
			d.cancel()
			d.wg.Wait()
		}
		if d.admin != nil {
			if err := d.admin.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if d.redis != nil {
			d.redis.Close()
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// eventsTotal is the number of dispatches the shards received.
func (d *daemon) eventsTotal() uint64 {
	var n uint64
	d.statusBuf = d.mgr.AppendStatus(d.statusBuf[:0])
	for _, s := range d.statusBuf {
		n += s.Events
	}
	return n
}

// Status implements adminBackend.
func (d *daemon) Status(ctx context.Context) statusReport {
	r := statusReport{
		Version:         version(),
		StartedAt:       d.started,
		Uptime:          time.Since(d.started).Round(time.Second).String(),
		EventsPerSecond: d.meter.rate(),
		Redis:           d.redisStatus(ctx),
	}
	ps := d.pub.Stats()
	type shardKey struct {
		bot   string
		shard int
	}
	queue := map[shardKey]int{}
	for _, s := range ps.Shards {
		queue[shardKey{s.Bot, s.Shard}] = s.QueueDepth
	}
	for _, s := range d.mgr.Status() {
		row := shardRowOf(s)
		row.QueueDepth = queue[shardKey{s.Bot, s.Shard}]
		r.Shards = append(r.Shards, row)
	}
	sort.Slice(r.Shards, func(i, j int) bool {
		if r.Shards[i].Bot != r.Shards[j].Bot {
			return r.Shards[i].Bot < r.Shards[j].Bot
		}
		return r.Shards[i].Shard < r.Shards[j].Shard
	})
	r.Publisher = ps
	if d.cache != nil {
		cs := d.cache.Stats()
		r.Cache = &cs
	}
	r.Published, r.Filtered, r.Filters = publisherTotals(ps)
	r.Resharding = d.mgr.Resharding()
	return r
}

func (d *daemon) redisStatus(ctx context.Context) redisStatus {
	rs := redisStatus{Mode: "url", Addr: d.redis.String()}
	switch {
	case d.config().Redis.embedded():
		rs.Mode = "embedded"
		rs.Addr = d.redis.Addr()
	case len(d.config().Redis.Cluster) > 0:
		rs.Mode = "cluster"
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := d.redis.Redis()
	if err := c.Do(pctx, c.B().Ping().Build()).Error(); err != nil {
		rs.Error = err.Error()
	} else {
		rs.OK = true
	}
	return rs
}

// Health implements adminBackend: healthy when Redis answers and every
// shard is ready.
func (d *daemon) Health(ctx context.Context) healthReport {
	rs := d.redisStatus(ctx)
	h := healthReport{Redis: "ok"}
	if !rs.OK {
		h.Redis = rs.Error
	}
	for _, s := range d.mgr.Status() {
		h.ShardsTotal++
		if s.State == gateway.StateReady {
			h.ShardsReady++
		}
	}
	for _, inc := range d.pub.Incidents() {
		h.Checkpoints = append(h.Checkpoints, checkpointProblem{Bot: inc.Bot, Shard: inc.Shard, Key: inc.Key, Status: inc.Status, Detail: inc.Describe()})
	}
	h.OK = rs.OK && h.ShardsTotal > 0 && h.ShardsReady == h.ShardsTotal && len(h.Checkpoints) == 0
	switch {
	case !rs.OK:
		h.Detail = "redis unreachable"
	case len(h.Checkpoints) > 0:
		h.Detail = h.Checkpoints[0].Detail
	case h.ShardsTotal == 0:
		h.Detail = "no shards yet"
	case h.ShardsReady < h.ShardsTotal:
		h.Detail = fmt.Sprintf("%d of %d shards not ready", h.ShardsTotal-h.ShardsReady, h.ShardsTotal)
	}
	d.fleetHealth(&h)
	return h
}

// Reconnect implements adminBackend.
func (d *daemon) Reconnect(_ context.Context, bot string, shard int) error {
	err := d.mgr.Reconnect(bot, shard)
	if errors.Is(err, gateway.ErrUnknownShard) {
		return errNotFound
	}
	return err
}

// portOf returns the port of a host:port address.
func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return port
}

// isLoopback reports whether addr (host:port) is a loopback address.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkpointProblem is an open checkpoint incident on /healthz: the shard's
// stored checkpoint (Key) was found Status; the shard is resuming from it.
type checkpointProblem struct {
	Bot    string `json:"bot"`
	Shard  int    `json:"shard"`
	Key    string `json:"key"`
	Status string `json:"status"`
	Detail string `json:"detail"`
}
