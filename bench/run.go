package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/redis/rueidis"
)

// Options configure Run. Zero values take the defaults named on each field.
type Options struct {
	// Binary is the feathery executable; "" = os.Executable().
	Binary string
	// Shards of the traffic phase; default 4 (with FakeAddr: the fake's
	// recommendation).
	Shards int
	// Guilds and Members (per guild) of the traffic phase's world; default
	// 100 and 20.
	Guilds, Members int
	// Rate is the live traffic in dispatches per second; 0 = as fast as
	// possible (the fake sends until its queues are full).
	Rate float64
	// Mix is the event mix (event name -> weight); nil = the fake's default.
	Mix map[string]float64
	// Compression is none, zlib-stream or zstd-stream; default zlib-stream.
	Compression string
	// Cache turns feathery's Redis cache on in the traffic phase.
	Cache bool
	// Duration is how long traffic runs; default 10s.
	Duration time.Duration
	// RedisURL is an external Redis; "" starts redis-server on a free port.
	// With an external Redis every key goes under a fresh prefix, removed at
	// the end; nothing else is touched.
	RedisURL string
	// FakeAddr is a fake Discord in another process (`feathery
	// fakediscord`) for the traffic phase; "" runs one in-process. The
	// idle-shard and cache phases always use their own in-process fake.
	FakeAddr string
	// FakeToken is the fake's bot token; default "fake-token".
	FakeToken string
	// IdleShards is the shard count of the idle-shard memory phase; default
	// 1000; negative skips the phase.
	IdleShards int
	// MaxConcurrency and IdentifyWindow are the identify buckets of the
	// in-process fakes; defaults 16 and 1s.
	MaxConcurrency int
	IdentifyWindow time.Duration
	// CacheGuilds x CacheMembers is the world of the cache-memory phase;
	// defaults 100 x 1000; CacheGuilds < 0 skips the phase.
	CacheGuilds, CacheMembers int
	// Consumers is the number of group readers; default 4.
	Consumers int
	// GatherDelay is feathery's publisher.gather_delay in the traffic
	// phase (0 = its default).
	GatherDelay time.Duration
	// PlainReader reads the streams with XREAD (consumers.Tail) instead of
	// a consumer group, to take the group reader's per-entry XACK out of
	// the measurement.
	PlainReader bool
	// BenchRequests is redis-benchmark's -n; default 200000; negative skips.
	BenchRequests int
	// Floor runs, after the traffic phase, `feathery receive` on the same
	// fake at the rate the traffic phase carried: the gateway alone (read,
	// inflate, frame, peek; every dispatch dropped), the floor under
	// feathery's CPU per event.
	Floor bool
	// Seed of the fake worlds; default 1.
	Seed int64
	// DrainTimeout bounds the wait for the last events after traffic stops
	// (the clock restarts whenever more arrive); default 15s.
	DrainTimeout time.Duration
	// WorkDir keeps configs and feathery's logs; "" = a temporary directory,
	// removed at the end unless the run failed.
	WorkDir string
	// Progress receives a line a second while traffic runs; nil = none.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Guilds <= 0 {
		// Two guilds per shard at least, so that every shard has traffic.
		o.Guilds = max(100, 2*o.Shards)
	}
	if o.Members <= 0 {
		o.Members = 20
	}
	if o.Compression == "" {
		o.Compression = "zlib-stream"
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.FakeToken == "" {
		o.FakeToken = "fake-token"
	}
	if o.IdleShards == 0 {
		o.IdleShards = 1000
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 16
	}
	if o.IdentifyWindow <= 0 {
		o.IdentifyWindow = time.Second
	}
	if o.CacheGuilds == 0 {
		o.CacheGuilds = 100
	}
	if o.CacheMembers <= 0 {
		o.CacheMembers = 1000
	}
	if o.Consumers <= 0 {
		o.Consumers = 4
	}
	if o.BenchRequests == 0 {
		o.BenchRequests = 200000
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 15 * time.Second
	}
}

// Pacing of "as fast as possible" (Rate 0): the rate starts at startRate
// and is adjusted every paceEvery so that no more than maxBacklog events
// are sent and not yet read. A fixed huge rate would measure the fake's
// queues, not the pipeline: the fake generates in the benchmark's own
// process and would starve everything else of CPU.
const (
	startRate  = 2000
	paceEvery  = 100 * time.Millisecond
	maxBacklog = 5000
)

// botName is the bot every phase runs.
const botName = "bench"

// runner holds one Run's shared state.
type runner struct {
	opts     Options
	dir      string
	redisURL string
	prefix   string
	own      *RedisServer
	client   rueidis.Client
	report   *Report
}

// Run runs the benchmark's phases in turn — traffic, redis-benchmark,
// idle shards, cache memory — and returns the report. It fails when a
// phase cannot run; events lost or damaged are reported in the verdict,
// not as an error.
func Run(ctx context.Context, opts Options) (_ *Report, err error) {
	opts.defaults()
	r := &runner{opts: opts, report: &Report{StartedAt: time.Now()}}
	if opts.Binary == "" {
		if r.opts.Binary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find feathery binary: %w", err)
		}
	}
	if r.dir = opts.WorkDir; r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "feathery-bench-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer func() {
			if err == nil {
				_ = os.RemoveAll(r.dir)
			} else {
				err = fmt.Errorf("%w (logs kept in %s)", err, r.dir)
			}
		}()
	} else if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}

	if opts.RedisURL == "" {
		if err := os.MkdirAll(filepath.Join(r.dir, "redis"), 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if r.own, err = StartRedis(RedisOptions{Dir: filepath.Join(r.dir, "redis")}); err != nil {
			return nil, err
		}
		defer r.own.Close()
		r.redisURL, r.prefix = r.own.URL(), "fbench"
	} else {
		r.redisURL = opts.RedisURL
		r.prefix = "fbench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	if r.client, err = NewRedisClient(r.redisURL); err != nil {
		return nil, err
	}
	defer r.client.Close()
	defer r.cleanupKeys()

	rep := r.report
	rep.Machine = Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Feathery: r.opts.Binary}
	if info, err := RedisInfo(ctx, r.client, "server"); err == nil {
		rep.Machine.RedisVersion = info["redis_version"]
	}
	rep.Params = Params{
		Shards: opts.Shards, Guilds: opts.Guilds, Members: opts.Members, Rate: opts.Rate, Mix: opts.Mix,
		Compression: opts.Compression, Cache: opts.Cache, Duration: opts.Duration.String(),
		Redis: "own redis-server", Fake: "in-process", Consumers: opts.Consumers, Reader: "consumer group",
		MaxConcurrency: opts.MaxConcurrency, IdentifyWindow: opts.IdentifyWindow.String(),
		IdleShards: max(opts.IdleShards, 0), CacheGuilds: max(opts.CacheGuilds, 0), CacheMembers: opts.CacheMembers,
	}
	if opts.RedisURL != "" {
		rep.Params.Redis = "external"
	}
	if opts.FakeAddr != "" {
		rep.Params.Fake = opts.FakeAddr
		rep.Params.Guilds, rep.Params.Members = 0, 0 // the external fake's own world
	}
	if opts.PlainReader {
		rep.Params.Reader, rep.Params.Consumers = "xread", 1
	}

	if err := r.traffic(ctx); err != nil {
		return rep, fmt.Errorf("traffic phase: %w", err)
	}
	if opts.BenchRequests > 0 {
		if err := r.redisBenchmark(ctx); err != nil {
			return rep, fmt.Errorf("redis-benchmark phase: %w", err)
		}
	}
	if opts.IdleShards > 0 {
		if err := r.idleShards(ctx); err != nil {
			return rep, fmt.Errorf("idle-shard phase: %w", err)
		}
	}
	if opts.CacheGuilds > 0 {
		if err := r.cacheMemory(ctx); err != nil {
			return rep, fmt.Errorf("cache phase: %w", err)
		}
	}
	return rep, nil
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Progress != nil {
		fmt.Fprintf(r.opts.Progress, format+"\n", args...)
	}
}

// cleanupKeys removes every key of this run (an external Redis) or
// empties the run's own server.
func (r *runner) cleanupKeys() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r.own != nil {
		return // the server goes away with the run
	}
	_ = r.deleteKeys(ctx, r.prefix+"*")
}

func (r *runner) deleteKeys(ctx context.Context, match string) error {
	c := r.client
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(match).Count(1000).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("scan %s: %w", match, err)
		}
		for _, k := range e.Elements {
			if err := c.Do(ctx, c.B().Unlink().Key(k).Build()).Error(); err != nil {
				return fmt.Errorf("unlink %s: %w", k, err)
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			return nil
		}
	}
}

// phase is one feathery process with its config.
type phase struct {
	name   string
	prefix string
	admin  string
	f      *Feathery
}

// launch writes the config of a phase and starts feathery.
func (r *runner) launch(name string, fake Fake, bot Bot) (*phase, error) {
	return r.launchCommand(name, "run", fake, bot)
}

// launchCommand writes the config of a phase and starts `feathery command`
// with it.
func (r *runner) launchCommand(name, command string, fake Fake, bot Bot) (*phase, error) {
	admin, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(r.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	p := &phase{name: name, prefix: r.prefix + "-" + name, admin: admin}
	bot.Name, bot.Token = botName, r.opts.FakeToken
	cfg := Config{
		RedisURL:        r.redisURL,
		Prefix:          p.prefix,
		RESTURL:         fake.RESTURL(),
		AdminAddr:       admin,
		IdentifyWindow:  r.opts.IdentifyWindow,
		ShutdownTimeout: 20 * time.Second,
		Bots:            []Bot{bot},
		Publisher:       PublisherTuning{GatherDelay: r.opts.GatherDelay},
	}
	path := filepath.Join(dir, "feathery.yaml")
	if err := WriteConfig(path, cfg); err != nil {
		return nil, err
	}
	p.f, err = StartFeathery(FeatheryOptions{Binary: r.opts.Binary, Config: path, AdminAddr: admin, Command: command})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// stop ends a phase's feathery gracefully.
func (p *phase) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.f.Stop(ctx)
}

// startupBound fills the identify bound of n shards.
func (r *runner) startup(n, maxConc int, took time.Duration) Startup {
	w := int(math.Ceil(float64(n) / float64(maxConc)))
	win := r.opts.IdentifyWindow.Seconds()
	return Startup{Shards: n, MaxConcurrency: maxConc, Window: win, Seconds: took.Seconds(), BoundWindows: w, BoundSeconds: float64(w) * win}
}

// readyTimeout is a generous bound on start-up: twice the identify bound
// plus half a minute.
func (r *runner) readyTimeout(n, maxConc int) time.Duration {
	w := (n + maxConc - 1) / maxConc
	return 2*time.Duration(w)*r.opts.IdentifyWindow + 30*time.Second
}

func totalSent(s discordtest.Stats) int64 {
	var n int64
	for _, v := range s.DispatchesPerShard {
		n += v
	}
	return n
}

// traffic runs live traffic through feathery and verifies every event.
func (r *runner) traffic(ctx context.Context) (err error) {
	o := r.opts
	var fake Fake
	shards, maxConc := o.Shards, o.MaxConcurrency
	if o.FakeAddr != "" {
		rf, err := DialFake(o.FakeAddr, o.FakeToken)
		if err != nil {
			return err
		}
		gb, err := rf.GatewayBot()
		if err != nil {
			return fmt.Errorf("read fake's /gateway/bot: %w", err)
		}
		if shards <= 0 {
			shards = gb.Shards
		}
		maxConc = max(gb.MaxConcurrency, 1)
		fake = rf
	} else {
		if shards <= 0 {
			shards = 4
		}
		lf, err := StartFake(discordtest.Config{
			Token: o.FakeToken, Shards: shards, MaxConcurrency: maxConc, IdentifyWindow: o.IdentifyWindow,
			SessionStartTotal: 1 << 20, SessionStartRemaining: 1 << 20,
			Guilds: o.Guilds, MembersPerGuild: o.Members, Seed: o.Seed, Mix: o.Mix,
		})
		if err != nil {
			return err
		}
		defer lf.Close()
		fake = lf
	}
	r.report.Params.Shards = shards
	if err := fake.SetRate(0); err != nil {
		return fmt.Errorf("set fake rate: %w", err)
	}

	p, err := r.launch("traffic", fake, Bot{Shards: shards, Compression: o.Compression, Cache: o.Cache})
	if err != nil {
		return err
	}
	defer p.f.Kill()
	rctx, cancel := context.WithTimeout(ctx, r.readyTimeout(shards, maxConc))
	took, err := p.f.WaitReady(rctx, shards)
	cancel()
	if err != nil {
		return err
	}
	t := &Throughput{Startup: r.startup(shards, maxConc, took)}
	r.progress("traffic: %d shards ready in %.2fs", shards, took.Seconds())

	v := NewVerifier(fake.ExactData())
	stream := broker.NewKeys(p.prefix).Events(botName)
	readCtx, stopReading := context.WithCancel(ctx)
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		readErr = ReadGroup(readCtx, r.client, ReadOptions{
			Streams: []string{stream}, Consumers: o.Consumers, Plain: o.PlainReader,
		}, v)
	})
	defer func() {
		stopReading()
		wg.Wait()
		if err == nil && readErr != nil {
			err = readErr
		}
	}()

	// Start-up dispatches (READY, GUILD_CREATE) first, so the window
	// holds live traffic only.
	if err := r.drain(ctx, fake, v, p); err != nil {
		return fmt.Errorf("start-up events: %w", err)
	}

	pid := p.f.PID()
	u0, err := ReadProcUsage(pid)
	if err != nil {
		return err
	}
	var ru0 ProcUsage
	if r.own != nil {
		ru0, _ = ReadProcUsage(r.own.PID())
	}
	self0, _ := ReadProcUsage(os.Getpid())
	cs0, _ := CommandStats(ctx, r.client)
	rate := o.Rate
	paced := rate <= 0
	if paced {
		rate = startRate
	}
	t0 := time.Now()
	if err := fake.SetRate(rate); err != nil {
		return fmt.Errorf("set fake rate: %w", err)
	}
	tick := time.NewTicker(time.Second)
	pace := time.NewTicker(paceEvery)
	defer pace.Stop()
	end := time.NewTimer(o.Duration)
	lastRead, lastAt, lastCPU := v.Read(), t0, u0.CPU
loop:
	for {
		select {
		case <-ctx.Done():
			tick.Stop()
			return ctx.Err()
		case <-end.C:
			break loop
		case <-pace.C:
			if !paced {
				continue
			}
			st, err := fake.Stats()
			if err != nil {
				continue
			}
			// As fast as possible = the highest rate the pipeline carries
			// with a bounded backlog: raise the rate while the backlog is
			// small, lower it while it grows.
			if totalSent(st)-v.Read() < maxBacklog {
				rate *= 1.2
			} else {
				rate = max(rate*0.8, startRate/10)
			}
			_ = fake.SetRate(rate)
		case now := <-tick.C:
			st, _ := fake.Stats()
			u, _ := ReadProcUsage(pid)
			read := v.Read()
			dt := now.Sub(lastAt).Seconds()
			xlen, _ := r.client.Do(ctx, r.client.B().Xlen().Key(stream).Build()).AsInt64()
			r.progress("  %5.1fs  sent %9d  on stream %9d  read %9d  %8.0f ev/s  feathery cpu %4.0f%%  rss %s",
				now.Sub(t0).Seconds(), totalSent(st), xlen, read, float64(read-lastRead)/dt,
				100*(u.CPU-lastCPU).Seconds()/dt, mib(u.RSS))
			lastRead, lastAt, lastCPU = read, now, u.CPU
		}
	}
	tick.Stop()
	if err := fake.SetRate(0); err != nil {
		return fmt.Errorf("set fake rate: %w", err)
	}
	t1 := time.Now()
	u1, err := ReadProcUsage(pid)
	if err != nil {
		return err
	}
	var ru1 ProcUsage
	if r.own != nil {
		ru1, _ = ReadProcUsage(r.own.PID())
	}
	self1, _ := ReadProcUsage(os.Getpid())
	cs1, _ := CommandStats(ctx, r.client)
	t.RSS = u1.RSS
	if err := r.drain(ctx, fake, v, p); err != nil {
		r.progress("traffic: %v", err) // the verdict counts what is missing
	}
	st, err := fake.Stats()
	if err != nil {
		return fmt.Errorf("fake stats: %w", err)
	}
	t.Sent = totalSent(st)
	stopReading()
	wg.Wait()
	if err := p.stop(); err != nil {
		return err
	}
	ids := make([]int, shards)
	for i := range ids {
		ids[i] = i
	}
	verdict, err := v.Check(fake, ids)
	if err != nil {
		return err
	}
	t.Verdict = verdict
	w := verdict.Window(t0, t1)
	t.Seconds = t1.Sub(t0).Seconds()
	t.Events = w.Events
	t.EventsPerSecond = float64(w.Events) / t.Seconds
	t.Latency = w.Latency
	t.ReceiveLatency = w.Receive
	t.PayloadBytes = w.PayloadBytes
	if w.Events > 0 {
		t.CPUSecondsPerMillion = (u1.CPU - u0.CPU).Seconds() / float64(w.Events) * 1e6
		if r.own != nil {
			t.RedisCPUSecondsPerMillion = (ru1.CPU - ru0.CPU).Seconds() / float64(w.Events) * 1e6
		}
		t.BenchCPUSecondsPerMillion = (self1.CPU - self0.CPU).Seconds() / float64(w.Events) * 1e6
		if cs0 != nil && cs1 != nil {
			t.RedisCommands = splitCommands(cs0, cs1, w.Events)
		}
	}
	if len(st.Violations) > 0 {
		vi := st.Violations[0]
		t.Verdict.Problems = append(t.Verdict.Problems, fmt.Sprintf("fake saw %d protocol violations; first: shard %d %s: %s", len(st.Violations), vi.Shard, vi.Kind, vi.Detail))
	}
	r.report.Throughput = t
	if o.Floor {
		rate := o.Rate
		if rate <= 0 {
			rate = t.EventsPerSecond
		}
		if err := r.floor(ctx, fake, shards, maxConc, rate); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
	}
	return nil
}

// floor runs `feathery receive` (the gateway alone, every dispatch dropped)
// on the traffic phase's fake at rate for the traffic phase's duration and
// measures its CPU per dispatch sent.
func (r *runner) floor(ctx context.Context, fake Fake, shards, maxConc int, rate float64) error {
	o := r.opts
	p, err := r.launchCommand("floor", "receive", fake, Bot{Shards: shards, Compression: o.Compression})
	if err != nil {
		return err
	}
	defer p.f.Kill()
	rctx, cancel := context.WithTimeout(ctx, r.readyTimeout(shards, maxConc))
	_, err = p.f.WaitReady(rctx, shards)
	cancel()
	if err != nil {
		return err
	}
	// The new sessions' start-up dispatches (READY, GUILD_CREATE) first:
	// the fake sends nothing else at rate 0. (The fake also queues
	// dispatches for the traffic phase's sessions, still resumable: what
	// counts is what the floor process received.)
	if _, err := r.quiet(ctx, fake); err != nil {
		return err
	}
	got0, err := p.f.Received(ctx)
	if err != nil {
		return err
	}
	u0, err := p.f.Usage()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := fake.SetRate(rate); err != nil {
		return fmt.Errorf("set fake rate: %w", err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Duration):
	}
	if err := fake.SetRate(0); err != nil {
		return fmt.Errorf("set fake rate: %w", err)
	}
	t1 := time.Now()
	u1, err := p.f.Usage()
	if err != nil {
		return err
	}
	got1, err := p.f.Received(ctx)
	if err != nil {
		return err
	}
	fl := &Floor{Seconds: t1.Sub(t0).Seconds(), Events: got1 - got0, RSS: u1.RSS}
	if fl.Events > 0 {
		fl.CPUSecondsPerMillion = (u1.CPU - u0.CPU).Seconds() / float64(fl.Events) * 1e6
	}
	r.report.Floor = fl
	r.progress("floor: %d dispatches received and dropped in %.1fs, %.1f µs CPU each", fl.Events, fl.Seconds, fl.CPUSecondsPerMillion)
	return p.stop()
}

// quiet waits until the fake has sent nothing new for half a second and
// returns its dispatch count.
func (r *runner) quiet(ctx context.Context, fake Fake) (int64, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(r.opts.DrainTimeout)
	last, since := int64(-1), time.Now()
	for {
		st, err := fake.Stats()
		if err != nil {
			return 0, fmt.Errorf("fake stats: %w", err)
		}
		if n := totalSent(st); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= 500*time.Millisecond {
			return n, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the fake kept sending start-up dispatches for %s", r.opts.DrainTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
	}
}

// drain waits until the reader has read as many entries as the fake sent,
// giving up after DrainTimeout without progress.
func (r *runner) drain(ctx context.Context, fake Fake, v *Verifier, p *phase) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last, lastChange := v.Read(), time.Now()
	for {
		st, err := fake.Stats()
		if err != nil {
			return fmt.Errorf("fake stats: %w", err)
		}
		read := v.Read()
		if read >= totalSent(st) {
			return nil
		}
		if read != last {
			last, lastChange = read, time.Now()
		}
		if time.Since(lastChange) > r.opts.DrainTimeout {
			return fmt.Errorf("%d of %d events read; nothing more for %s", read, totalSent(st), r.opts.DrainTimeout)
		}
		if done, exitErr := p.f.Exited(); done {
			return fmt.Errorf("feathery exited (%v); log: %s", exitErr, p.f.StderrTail(1500))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// redisBenchmark runs redis-benchmark's pipelined XADD of entries shaped
// like feathery's, with d of the traffic's mean size.
func (r *runner) redisBenchmark(ctx context.Context) error {
	size := 400
	if t := r.report.Throughput; t != nil && t.PayloadBytes > 0 {
		size = t.PayloadBytes
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		return fmt.Errorf("redis-benchmark not found: %w", err)
	}
	stream := r.prefix + ":redis-benchmark"
	// Three runs, the median kept: on a shared machine one run can be off
	// by a factor of two.
	fields := []string{
		"v", "1", "t", "MESSAGE_CREATE", "d", strings.Repeat("x", size), "bot", botName, "shard", "0",
		"session", "0123456789abcdef0123456789abcdef", "seq", "1234567", "guild", "1234567890123456789", "at", "1700000000000",
	}
	// one runs redis-benchmark and, with an own redis-server, measures its
	// CPU per XADD over the run: the floor of Redis CPU per event.
	one := func(requests, pipeline int) (RedisBenchmarkResult, error) {
		var u0 ProcUsage
		if r.own != nil {
			u0, _ = ReadProcUsage(r.own.PID())
		}
		res, err := RunRedisBenchmark(ctx, RedisBenchmarkOptions{
			URL: r.redisURL, Stream: stream, Fields: fields, Requests: requests, Pipeline: pipeline,
		})
		if err == nil && r.own != nil {
			if u1, uerr := ReadProcUsage(r.own.PID()); uerr == nil {
				res.RedisCPUMicrosPerOp = (u1.CPU - u0.CPU).Seconds() * 1e6 / float64(requests)
			}
		}
		_ = r.client.Do(ctx, r.client.B().Unlink().Key(stream).Build()).Error()
		return res, err
	}
	var runs []RedisBenchmarkResult
	for range 3 {
		res, err := one(r.opts.BenchRequests, 16)
		if err != nil {
			return err
		}
		runs = append(runs, res)
	}
	slices.SortFunc(runs, func(a, b RedisBenchmarkResult) int { return cmp.Compare(a.OpsPerSecond, b.OpsPerSecond) })
	res := runs[len(runs)/2]
	for _, x := range runs {
		res.Runs = append(res.Runs, x.OpsPerSecond)
	}
	serial, err := one(max(r.opts.BenchRequests/4, 1000), 1)
	if err != nil {
		return err
	}
	res.Serial = &serial
	r.report.RedisBenchmark = &res
	if t := r.report.Throughput; t != nil && res.OpsPerSecond > 0 {
		r.report.Ratio = t.EventsPerSecond / res.OpsPerSecond
	}
	r.progress("redis-benchmark: %.0f XADD/s (median of %.0f)", res.OpsPerSecond, res.Runs)
	return nil
}

// idleSettle is how long idle shards run after the start-up's garbage is
// collected before their RSS is read.
const idleSettle = 10 * time.Second

// idleShards measures feathery's RSS with one and with IdleShards
// connected idle shards.
func (r *runner) idleShards(ctx context.Context) error {
	o := r.opts
	n := o.IdleShards
	fake, err := StartFake(discordtest.Config{
		Token: o.FakeToken, Shards: n, MaxConcurrency: o.MaxConcurrency, IdentifyWindow: o.IdentifyWindow,
		SessionStartTotal: 1 << 20, SessionStartRemaining: 1 << 20,
		Guilds: 1, MembersPerGuild: 2, Seed: o.Seed,
	})
	if err != nil {
		return err
	}
	defer fake.Close()
	type reading struct {
		ProcUsage
		mem GoMem
	}
	measure := func(name string, shards int) (reading, time.Duration, error) {
		p, err := r.launch(name, fake, Bot{Shards: shards, Compression: o.Compression, Cache: true})
		if err != nil {
			return reading{}, 0, err
		}
		defer p.f.Kill()
		rctx, cancel := context.WithTimeout(ctx, r.readyTimeout(shards, o.MaxConcurrency))
		took, err := p.f.WaitReady(rctx, shards)
		cancel()
		if err != nil {
			return reading{}, 0, err
		}
		// The steady state of idle shards: the start-up's garbage collected
		// (a GC asked through /debug/pprof/heap?gc=1 3 s after READY), then
		// idle running for idleSettle (heartbeats, status snapshots) before
		// the reading.
		select {
		case <-ctx.Done():
			return reading{}, 0, ctx.Err()
		case <-time.After(3 * time.Second):
		}
		if _, err := p.f.GoMem(ctx, true); err != nil {
			return reading{}, 0, fmt.Errorf("collect start-up garbage: %w", err)
		}
		select {
		case <-ctx.Done():
			return reading{}, 0, ctx.Err()
		case <-time.After(idleSettle):
		}
		var u reading
		if u.ProcUsage, err = p.f.Usage(); err != nil {
			return u, 0, err
		}
		if u.mem, err = p.f.GoMem(ctx, false); err != nil {
			return u, 0, err
		}
		return u, took, p.stop()
	}
	base, _, err := measure("idle-1", 1)
	if err != nil {
		return err
	}
	r.progress("idle shards: 1 shard, RSS %s", mib(base.RSS))
	full, took, err := measure("idle-n", n)
	if err != nil {
		return err
	}
	is := &IdleShard{Shards: n, BaselineRSS: base.RSS, RSS: full.RSS, Startup: r.startup(n, o.MaxConcurrency, took)}
	st := fake.Server.Stats()
	is.Startup.Identifies, is.Startup.Violations = st.Identifies, len(st.Violations)
	if len(st.Violations) > 0 {
		vi := st.Violations[0]
		is.Startup.FirstViolation = fmt.Sprintf("shard %d %s: %s", vi.Shard, vi.Kind, vi.Detail)
	}
	if n > 1 {
		is.BytesPerShard = float64(full.RSS-base.RSS) / float64(n-1)
		is.HeapBytesPerShard = float64(full.mem.HeapInuse-base.mem.HeapInuse) / float64(n-1)
		is.StackBytesPerShard = float64(full.mem.Stack-base.mem.Stack) / float64(n-1)
	}
	r.progress("idle shards: %d shards ready in %.2fs, RSS %s", n, took.Seconds(), mib(full.RSS))
	r.report.IdleShard = is
	return nil
}

// cacheEntities are the cache entities kept in the cache phase: a member,
// its user and its mutual guilds, and the guild it belongs to.
var cacheEntities = []string{"guilds", "members", "users"}

// cacheMemory measures Redis bytes per cached member over a generated
// world.
func (r *runner) cacheMemory(ctx context.Context) error {
	o := r.opts
	shards := max(1, min(o.CacheGuilds, 4))
	fake, err := StartFake(discordtest.Config{
		Token: o.FakeToken, Shards: shards, MaxConcurrency: shards, IdentifyWindow: o.IdentifyWindow,
		SessionStartTotal: 1 << 20, SessionStartRemaining: 1 << 20,
		Guilds: o.CacheGuilds, MembersPerGuild: o.CacheMembers, Seed: o.Seed,
	})
	if err != nil {
		return err
	}
	defer fake.Close()
	world := fake.Snapshot()
	c := &CacheMem{Guilds: len(world.Guilds), Users: len(world.Users), Entities: cacheEntities}
	for _, g := range world.Guilds {
		c.Members += len(g.Members)
	}
	world = discordtest.World{}
	if c.Members == 0 {
		return errors.New("the fake's world has no members")
	}
	if r.own != nil {
		if err := r.client.Do(ctx, r.client.B().Flushall().Build()).Error(); err != nil {
			return fmt.Errorf("flushall: %w", err)
		}
	}
	before, err := UsedMemory(ctx, r.client)
	if err != nil {
		return err
	}
	start := time.Now()
	p, err := r.launch("cache", fake, Bot{
		Shards: shards, Compression: o.Compression, Cache: true, CacheEntities: cacheEntities,
		CacheOnly: []string{"GUILD_CREATE"},
	})
	if err != nil {
		return err
	}
	defer p.f.Kill()
	rctx, cancel := context.WithTimeout(ctx, r.readyTimeout(shards, shards)+time.Minute)
	defer cancel()
	if _, err := p.f.WaitReady(rctx, shards); err != nil {
		return err
	}
	// Every dispatch is in the cache once every shard's checkpoint has
	// reached the last seq the fake sent it.
	keys := broker.NewKeys(p.prefix)
	for {
		done := true
		for shard := 0; shard < shards; shard++ {
			var last int64
			for _, ls := range fake.Server.Ledger(shard) {
				if n := len(ls.Entries); n > 0 {
					last = ls.Entries[n-1].Seq
				}
			}
			seq, err := r.client.Do(rctx, r.client.B().Hget().Key(keys.Session(botName, shard)).Field("seq").Build()).AsInt64()
			if err != nil && !rueidis.IsRedisNil(err) {
				return fmt.Errorf("read checkpoint: %w", err)
			}
			if seq < last {
				done = false
			}
		}
		if done {
			break
		}
		select {
		case <-rctx.Done():
			return fmt.Errorf("wait for the cache to be written: %w", rctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.Seconds = time.Since(start).Seconds()
	after, err := UsedMemory(ctx, r.client)
	if err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return err
	}
	// Take off feathery's keys outside the cache (streams, checkpoints).
	cacheNS := p.prefix + ":cache:"
	var cursor uint64
	for {
		e, err := r.client.Do(ctx, r.client.B().Scan().Cursor(cursor).Match(p.prefix+":*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			return fmt.Errorf("scan keys: %w", err)
		}
		for _, k := range e.Elements {
			if strings.HasPrefix(k, cacheNS) {
				continue
			}
			n, err := r.client.Do(ctx, r.client.B().MemoryUsage().Key(k).Samples(0).Build()).AsInt64()
			if err == nil {
				c.OtherBytes += n
			}
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	c.UsedMemoryDelta = after - before
	c.BytesPerMember = float64(c.UsedMemoryDelta-c.OtherBytes) / float64(c.Members)
	r.progress("cache: %d members cached in %.1fs, %.0f bytes per member", c.Members, c.Seconds, c.BytesPerMember)
	r.report.Cache = c
	return nil
}
