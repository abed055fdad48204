package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/gobwas/ws"
)

// testToken is distinctive so a test can prove it never reaches the logs.
const testToken = "tok-3e1f9c-NEVER-IN-LOGS"

// logCapture collects every log line of the managers of this package's
// tests; TestMain checks that the token appears in none.
var logCapture = &testkit.SyncBuffer{}

func testLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(logCapture, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// rec is one event as the Sink received it.
type rec struct {
	Session string
	Seq     int64
	T       string
	D       string
	Guild   uint64
}

// recordingSink keeps every accepted event per shard. fail, when set,
// refuses an event (the shard must resume from the last accepted seq).
type recordingSink struct {
	mu     sync.Mutex
	events map[int][]rec
	fail   func(ev *gateway.Event) error
	block  func(ev *gateway.Event)
}

func newRecordingSink() *recordingSink { return &recordingSink{events: map[int][]rec{}} }

func (s *recordingSink) Publish(ctx context.Context, ev *gateway.Event) error {
	s.mu.Lock()
	fail, block := s.fail, s.block
	s.mu.Unlock()
	if block != nil {
		block(ev)
	}
	if fail != nil {
		if err := fail(ev); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events[ev.Shard] = append(s.events[ev.Shard], rec{ev.Session, ev.Seq, ev.Type, string(ev.Data), ev.GuildID})
	return nil
}

func (s *recordingSink) get(shard int) []rec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]rec(nil), s.events[shard]...)
}

// controls records control events.
type controls struct {
	mu  sync.Mutex
	evs []gateway.ControlEvent
}

func (c *controls) add(ev gateway.ControlEvent) {
	c.mu.Lock()
	c.evs = append(c.evs, ev)
	c.mu.Unlock()
}

func (c *controls) count(shard int, kind gateway.ControlKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ev := range c.evs {
		if ev.Shard == shard && ev.Kind == kind {
			n++
		}
	}
	return n
}

func (c *controls) find(shard int, kind gateway.ControlKind) (gateway.ControlEvent, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.evs {
		if ev.Shard == shard && ev.Kind == kind {
			return ev, true
		}
	}
	return gateway.ControlEvent{}, false
}

func startFake(t *testing.T, cfg discordtest.Config) *discordtest.Server {
	t.Helper()
	cfg.Token = testToken
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = time.Second
	}
	if cfg.IdentifyWindow == 0 {
		cfg.IdentifyWindow = 200 * time.Millisecond
	}
	if cfg.ReconnectDelay == 0 {
		cfg.ReconnectDelay = 300 * time.Millisecond
	}
	fake, err := discordtest.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake
}

type harness struct {
	fake *discordtest.Server
	m    *gateway.Manager
	sink *recordingSink
	ctl  *controls
}

func startManager(t *testing.T, fake *discordtest.Server, bot gateway.BotConfig, sink *recordingSink, mod func(*gateway.ManagerConfig)) *harness {
	t.Helper()
	h := &harness{fake: fake, sink: sink, ctl: &controls{}}
	bot.Token = testToken
	if bot.Name == "" {
		bot.Name = "main"
	}
	if bot.Intents == 0 {
		bot.Intents = 1 | 2 | 512 | 32768 | 128 | 256
	}
	cfg := gateway.ManagerConfig{
		Bots:           []gateway.BotConfig{bot},
		Sink:           sink,
		RESTURL:        fake.URL() + "/api/v10",
		IdentifyWindow: 200 * time.Millisecond,
		Logger:         testLogger().With("test", t.Name()),
		OnControl:      h.ctl.add,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := gateway.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return h
}

func (h *harness) status(shard int) gateway.ShardStatus {
	for _, st := range h.m.Status() {
		if st.Shard == shard {
			return st
		}
	}
	return gateway.ShardStatus{}
}

func (h *harness) waitReady(t *testing.T, shards ...int) {
	t.Helper()
	for _, sh := range shards {
		testkit.Eventually(t, 15*time.Second, fmt.Sprintf("shard %d ready", sh), func() bool {
			return h.status(sh).State == gateway.StateReady
		})
	}
}

// ledgerRecs flattens the fake's ledger of shard in the Sink's form.
func (h *harness) ledgerRecs(shard int) []rec {
	var out []rec
	for _, ls := range h.fake.Ledger(shard) {
		for _, e := range ls.Entries {
			out = append(out, rec{ls.Session, e.Seq, e.T, string(e.D), 0})
		}
	}
	return out
}

// checkLedger waits until the Sink received exactly what the fake sent to
// shard, session by session: nothing lost, nothing out of order, nothing
// twice within a session.
func (h *harness) checkLedger(t *testing.T, shard int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := h.fake.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var diff string
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.sink.get(shard)
		want := h.ledgerRecs(shard)
		// A session whose READY never reached the shard (the connection
		// dropped right after IDENTIFY) cannot be resumed by anyone: leave it
		// out, but only as many as the IDENTIFYs that got no READY.
		seen := map[string]bool{}
		for _, r := range got {
			seen[r.Session] = true
		}
		unseen := map[string]bool{}
		for _, r := range want {
			if !seen[r.Session] {
				unseen[r.Session] = true
			}
		}
		if len(unseen) > 0 && len(unseen) <= int(h.status(shard).Identifies)-len(seen) {
			t.Logf("shard %d: sessions %v never got their READY read; shard logs:\n%s", shard, unseen, shardLogs(t.Name(), shard))
			kept := want[:0:0]
			for _, r := range want {
				if !unseen[r.Session] {
					kept = append(kept, r)
				}
			}
			want = kept
		}
		diff = compareLedger(want, got)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("shard %d: sink differs from the fake's ledger: %s\nshard logs:\n%s", shard, diff, shardLogs(t.Name(), shard))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// shardLogs returns the captured log lines of test for shard.
func shardLogs(test string, shard int) string {
	var out []string
	for _, line := range strings.Split(logCapture.String(), "\n") {
		var l struct {
			Test  string `json:"test"`
			Shard *int   `json:"shard"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(test, l.Test) && l.Shard != nil && *l.Shard == shard {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

func compareLedger(want, got []rec) string {
	bySession := func(rs []rec) (map[string][]rec, []string) {
		m := map[string][]rec{}
		var order []string
		for _, r := range rs {
			if _, ok := m[r.Session]; !ok {
				order = append(order, r.Session)
			}
			m[r.Session] = append(m[r.Session], r)
		}
		return m, order
	}
	w, order := bySession(want)
	g, gorder := bySession(got)
	if len(w) != len(g) {
		return fmt.Sprintf("sink saw sessions %v, fake sent %v", gorder, order)
	}
	for _, sess := range order {
		ws, gs := w[sess], g[sess]
		for i := range max(len(ws), len(gs)) {
			switch {
			case i >= len(gs):
				return fmt.Sprintf("session %s: sink lacks seq %d %s (has %d of %d)", sess, ws[i].Seq, ws[i].T, len(gs), len(ws))
			case i >= len(ws):
				return fmt.Sprintf("session %s: sink has extra seq %d %s", sess, gs[i].Seq, gs[i].T)
			case ws[i].Seq != gs[i].Seq || ws[i].T != gs[i].T || ws[i].D != gs[i].D:
				return fmt.Sprintf("session %s entry %d: sink has seq %d %s, fake sent seq %d %s", sess, i, gs[i].Seq, gs[i].T, ws[i].Seq, ws[i].T)
			}
		}
	}
	return ""
}

// forbiddenViolations are breaches a correct client never causes.
var forbiddenViolations = map[string]bool{
	"identify_rate": true, "send_rate": true, "late_heartbeat": true, "payload_before_identify": true,
	"session_ended_by_client": true, "already_authenticated": true, "resume_bad_seq": true,
	"bad_token": true, "decode_error": true, "unknown_opcode": true, "session_start_limit": true,
}

func checkViolations(t *testing.T, fake *discordtest.Server) {
	t.Helper()
	for _, v := range fake.Stats().Violations {
		if forbiddenViolations[v.Kind] {
			t.Errorf("fake recorded violation %s on shard %d: %s", v.Kind, v.Shard, v.Detail)
		}
	}
}

func TestManager_IdentifyBuckets(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 16, MaxConcurrency: 4, Guilds: 32})
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), nil)
	shards := make([]int, 16)
	for i := range shards {
		shards[i] = i
	}
	h.waitReady(t, shards...)
	st := fake.Stats()
	if st.Identifies != 16 {
		t.Errorf("got %d identifies, want 16", st.Identifies)
	}
	for _, v := range st.Violations {
		t.Errorf("fake recorded violation %s on shard %d: %s", v.Kind, v.Shard, v.Detail)
	}
	for _, s := range h.m.Status() {
		if s.ShardCount != 16 || s.Identifies != 1 || s.Session == "" {
			t.Errorf("shard %d: got count %d identifies %d session %q, want 16, 1, a session", s.Shard, s.ShardCount, s.Identifies, s.Session)
		}
	}
}

// lateLimiter holds back the IDENTIFY of some shards after their slot is
// granted, as a goroutine stalled on a loaded machine would: the write comes
// late after the grant.
type lateLimiter struct {
	gateway.IdentifyLimiter
	late   time.Duration
	isLate func(shard int) bool
}

func (l lateLimiter) Wait(ctx context.Context, bot string, shard int, lim gateway.Limits) error {
	if err := l.IdentifyLimiter.Wait(ctx, bot, shard, lim); err != nil {
		return err
	}
	if !l.isLate(shard) {
		return nil
	}
	t := time.NewTimer(l.late)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// TestManager_IdentifyLateSendKeepsWindow: 24 shards start in 6 buckets of
// a 1s window; half the shards of each bucket (0-5 and 12-17) write their
// IDENTIFY 600ms after its slot (more than the 250ms margin plus the fake's
// 100ms tolerance). The next IDENTIFY of each bucket is spaced from that
// late write, so the fake sees no identify_rate violation and every shard
// identifies once.
func TestManager_IdentifyLateSendKeepsWindow(t *testing.T) {
	t.Parallel()
	const shards, conc = 24, 6
	window := time.Second
	fake := startFake(t, discordtest.Config{Shards: shards, MaxConcurrency: conc, Guilds: 2 * shards, IdentifyWindow: window})
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.IdentifyWindow = window
		c.Limiter = lateLimiter{
			IdentifyLimiter: gateway.NewMemoryIdentifyLimiter(),
			late:            600 * time.Millisecond,
			isLate:          func(shard int) bool { return shard/conc%2 == 0 },
		}
	})
	testkit.EventuallyWhy(t, 120*time.Second, func() string {
		if v := fake.Stats().Violations; len(v) > 0 {
			return "" // reported below
		}
		ready := 0
		for _, st := range h.m.Status() {
			if st.State == gateway.StateReady {
				ready++
			}
		}
		if ready < shards {
			return fmt.Sprintf("%d of %d shards ready", ready, shards)
		}
		return ""
	})
	st := fake.Stats()
	for _, v := range st.Violations {
		t.Errorf("fake recorded violation %s on shard %d: %s", v.Kind, v.Shard, v.Detail)
	}
	if st.Identifies != shards {
		t.Errorf("got %d identifies, want %d", st.Identifies, shards)
	}
}

// scenario is one thing the gateway does to one shard, and what must follow.
type scenario struct {
	name   string
	act    func(fake *discordtest.Server, shard int) error
	expect string // "resume", "identify" or "fatal"
	cause  string // for fatal: text the error must name
}

func scenarios() []scenario {
	sc := []scenario{
		{name: "reconnect", act: func(f *discordtest.Server, s int) error { return f.Reconnect(s) }, expect: "resume"},
		{name: "invalid_session_resumable", act: func(f *discordtest.Server, s int) error { return f.Invalidate(s, true) }, expect: "resume"},
		{name: "invalid_session_not_resumable", act: func(f *discordtest.Server, s int) error { return f.Invalidate(s, false) }, expect: "identify"},
		{name: "zombie", act: func(f *discordtest.Server, s int) error { return f.Zombie(s) }, expect: "resume"},
	}
	for _, code := range []int{4000, 4001, 4002, 4005, 4008, 1006} {
		sc = append(sc, scenario{name: fmt.Sprintf("close_%d", code), act: closeWith(code), expect: "resume"})
	}
	for _, code := range []int{4003, 4007, 4009} {
		sc = append(sc, scenario{name: fmt.Sprintf("close_%d", code), act: closeWith(code), expect: "identify"})
	}
	// 4011 (sharding required) re-shards instead: TestManager_ShardingRequired.
	causes := map[int]string{4004: "authentication failed", 4010: "invalid shard",
		4012: "invalid API version", 4013: "invalid intents", 4014: "disallowed intents"}
	for _, code := range []int{4004, 4010, 4012, 4013, 4014} {
		sc = append(sc, scenario{name: fmt.Sprintf("close_%d", code), act: closeWith(code), expect: "fatal",
			cause: fmt.Sprintf("%d (%s)", code, causes[code])})
	}
	return sc
}

func closeWith(code int) func(*discordtest.Server, int) error {
	return func(f *discordtest.Server, s int) error { return f.CloseShard(s, code) }
}

// TestManager_Recovery drives every recovery path, one per shard, for each
// compression, then a restart of the whole fake, and checks each shard's
// Sink stream against the fake's ledger.
func TestManager_Recovery(t *testing.T) {
	t.Parallel()
	for _, comp := range []gateway.Compression{gateway.CompressionNone, gateway.CompressionZlibStream, gateway.CompressionZstdStream} {
		t.Run(comp.String(), func(t *testing.T) {
			t.Parallel()
			sc := scenarios()
			n := len(sc)
			// A 2 s heartbeat leaves room for a loaded machine (the fake flags a
			// heartbeat later than 1.5 intervals).
			// The identify window is wider than in the bucket test for the same
			// reason: sixty shards at once on two cores delay single sends.
			// Four guilds a shard on average leaves none without a guild.
			fake := startFake(t, discordtest.Config{Shards: n, MaxConcurrency: 8, Guilds: 4 * n, Rate: float64(15 * n), Seed: 7,
				HeartbeatInterval: 2 * time.Second, IdentifyWindow: 500 * time.Millisecond})
			h := startManager(t, fake, gateway.BotConfig{Compression: comp}, newRecordingSink(), func(c *gateway.ManagerConfig) {
				c.IdentifyWindow = 500 * time.Millisecond
			})
			all := make([]int, n)
			for i := range all {
				all[i] = i
			}
			h.waitReady(t, all...)
			// Some live traffic on every shard first.
			for _, sh := range all {
				testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return h.status(sh).Events > 5 })
			}
			for i, s := range sc {
				if err := s.act(fake, i); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
			}
			for i, s := range sc {
				switch s.expect {
				case "resume":
					testkit.Eventually(t, 20*time.Second, s.name+" resumed", func() bool {
						st := h.status(i)
						return st.Resumes >= 1 && st.State == gateway.StateReady
					})
				case "identify":
					testkit.Eventually(t, 20*time.Second, s.name+" identified again", func() bool {
						st := h.status(i)
						return st.Identifies >= 2 && st.State == gateway.StateReady
					})
					if ev, ok := h.ctl.find(i, gateway.ControlGap); !ok || ev.Session == "" || ev.Seq == 0 {
						t.Errorf("%s: got session_lost %+v (found %v), want one naming the old session and seq", s.name, ev, ok)
					}
				case "fatal":
					testkit.Eventually(t, 10*time.Second, s.name+" failed", func() bool { return h.status(i).State == gateway.StateFailed })
					st := h.status(i)
					if !strings.Contains(st.LastError, s.cause) {
						t.Errorf("%s: got error %q, want it to name %q", s.name, st.LastError, s.cause)
					}
					if h.ctl.count(i, "fatal") != 1 {
						t.Errorf("%s: got %d fatal control events, want 1", s.name, h.ctl.count(i, "fatal"))
					}
				}
			}
			// Traffic keeps flowing after recovery.
			for i, s := range sc {
				if s.expect == "fatal" {
					continue
				}
				before := h.status(i).Events
				testkit.Eventually(t, 10*time.Second, s.name+" traffic after recovery", func() bool { return h.status(i).Events > before+3 })
			}
			// The whole fake restarts mid-stream: every live shard resumes.
			resumes := map[int]uint64{}
			for i := range sc {
				resumes[i] = h.status(i).Resumes
			}
			if err := fake.Restart(); err != nil {
				t.Fatal(err)
			}
			for i, s := range sc {
				if s.expect == "fatal" {
					continue
				}
				testkit.Eventually(t, 20*time.Second, s.name+" resumed after restart", func() bool {
					st := h.status(i)
					return st.Resumes > resumes[i] && st.State == gateway.StateReady
				})
			}
			fake.SetRate(0)
			checkViolations(t, fake)
			for i := range sc {
				h.checkLedger(t, i)
			}
			if st := fake.Stats(); st.ResumesOffResumeURL != 0 {
				t.Errorf("got %d resumes off resume_gateway_url, want 0", st.ResumesOffResumeURL)
			}
		})
	}
}

// TestManager_SplitFrames: every gateway message split over small websocket
// frames (continuation frames, or separate messages for zlib-stream).
func TestManager_SplitFrames(t *testing.T) {
	t.Parallel()
	for _, comp := range []gateway.Compression{gateway.CompressionNone, gateway.CompressionZlibStream, gateway.CompressionZstdStream} {
		t.Run(comp.String(), func(t *testing.T) {
			t.Parallel()
			fake := startFake(t, discordtest.Config{Shards: 2, Guilds: 6, Rate: 60, MaxFrameSize: 37, Seed: 3})
			h := startManager(t, fake, gateway.BotConfig{Compression: comp}, newRecordingSink(), nil)
			h.waitReady(t, 0, 1)
			testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return h.status(0).Events > 20 && h.status(1).Events > 20 })
			if err := fake.Reconnect(0); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 10*time.Second, "resume", func() bool { return h.status(0).Resumes == 1 && h.status(0).State == gateway.StateReady })
			fake.SetRate(0)
			h.checkLedger(t, 0)
			h.checkLedger(t, 1)
			checkViolations(t, fake)
		})
	}
}

// TestManager_SinkErrorResumes: a refused event makes the shard resume from
// the last accepted seq; the Sink still ends with exactly the ledger.
func TestManager_SinkErrorResumes(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 4, Rate: 80, Seed: 5})
	sink := newRecordingSink()
	var mu sync.Mutex
	refused := 0
	sink.fail = func(ev *gateway.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.Seq > 20 && refused < 3 {
			refused++
			return errors.New("redis is down")
		}
		return nil
	}
	h := startManager(t, fake, gateway.BotConfig{Compression: gateway.CompressionZlibStream}, sink, nil)
	testkit.Eventually(t, 20*time.Second, "three refusals and a resume", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused == 3 && h.status(0).Resumes >= 3 && h.status(0).State == gateway.StateReady
	})
	before := h.status(0).Events
	testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return h.status(0).Events > before+10 })
	fake.SetRate(0)
	h.checkLedger(t, 0)
	if st := h.status(0); st.Identifies != 1 {
		t.Errorf("got %d identifies, want 1 (resumes only)", st.Identifies)
	}
	checkViolations(t, fake)
}

// TestManager_BackpressureIsNotZombie: a Sink that blocks for several
// heartbeat intervals must not make the shard call its connection a zombie.
func TestManager_BackpressureIsNotZombie(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 4, Rate: 40, HeartbeatInterval: 500 * time.Millisecond})
	sink := newRecordingSink()
	release := make(chan struct{})
	var once sync.Once
	blocked := make(chan struct{})
	sink.block = func(ev *gateway.Event) {
		if ev.Seq == 30 {
			once.Do(func() { close(blocked) })
			<-release
		}
	}
	h := startManager(t, fake, gateway.BotConfig{}, sink, nil)
	<-blocked
	// Hold the read loop for four heartbeat intervals, polling the status.
	start := time.Now()
	testkit.Eventually(t, 10*time.Second, "four heartbeat intervals", func() bool { return time.Since(start) > 2*time.Second })
	close(release)
	before := h.status(0).Events
	testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return h.status(0).Events > before+10 })
	if st := h.status(0); st.Reconnects != 0 || st.Resumes != 0 {
		t.Errorf("got %d reconnects and %d resumes, want none: blocking in the sink is not a zombie", st.Reconnects, st.Resumes)
	}
	fake.SetRate(0)
	h.checkLedger(t, 0)
}

// TestManager_CloseResumesInNextProcess: Close flushes and closes with a
// resumable code; a new manager with the checkpoint resumes the session.
func TestManager_CloseResumesInNextProcess(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 4, Rate: 50})
	store := gateway.NewMemorySessionStore()
	sink := &flushingSink{recordingSink: newRecordingSink(), store: store}
	ctl1 := &controls{}
	m1, err := gateway.NewManager(gateway.ManagerConfig{
		Bots: []gateway.BotConfig{{Name: "main", Token: testToken, Intents: 513}},
		Sink: sink, Sessions: store, RESTURL: fake.URL() + "/api/v10",
		IdentifyWindow: 200 * time.Millisecond, Logger: testLogger(), OnControl: ctl1.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return len(m1.Status()) == 1 && m1.Status()[0].Events > 10 })
	if err := m1.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if sink.flushes() != 1 {
		t.Errorf("got %d flushes, want 1", sink.flushes())
	}
	if st := m1.Status()[0]; st.State != gateway.StateStopped {
		t.Errorf("got state %s after Close, want stopped", st.State)
	}
	saved, err := store.Load(t.Context(), "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	h := startManager(t, fake, gateway.BotConfig{Intents: 513}, sink.recordingSink, func(c *gateway.ManagerConfig) {
		c.Sink = sink
		c.Sessions = store
	})
	testkit.Eventually(t, 10*time.Second, "resume in the next process", func() bool {
		st := h.status(0)
		return st.Resumes == 1 && st.State == gateway.StateReady
	})
	if st := h.status(0); st.Identifies != 0 || st.Session != saved.ID {
		t.Errorf("got %d identifies, session %q; want 0 and the saved %q", st.Identifies, st.Session, saved.ID)
	}
	fake.SetRate(0)
	h.checkLedger(t, 0)
	checkViolations(t, fake)
}

// TestManager_ResumeURLFallback: a saved session whose resume URL is dead is
// resumed through the main gateway URL after repeated failures.
func TestManager_ResumeURLFallback(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 4, Rate: 50})
	store := gateway.NewMemorySessionStore()
	sink := &flushingSink{recordingSink: newRecordingSink(), store: store}
	h1 := startManager(t, fake, gateway.BotConfig{Intents: 513}, sink.recordingSink, func(c *gateway.ManagerConfig) {
		c.Sink = sink
		c.Sessions = store
	})
	testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return h1.status(0).Events > 10 })
	if err := h1.m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	saved, err := store.Load(t.Context(), "main", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The resume URL is on the gateway's host (so it is allowed) but every
	// dial of it fails.
	saved.ResumeURL = fake.GatewayURL() + "dead/"
	store.Checkpoint("main", 0, saved)
	h := startManager(t, fake, gateway.BotConfig{Intents: 513}, sink.recordingSink, func(c *gateway.ManagerConfig) {
		c.Sink = sink
		c.Sessions = store
		c.Dial = func(ctx context.Context, u string) (net.Conn, *bufio.Reader, error) {
			if strings.Contains(u, "/dead/") {
				return nil, nil, errors.New("dead resume URL")
			}
			nc, br, _, err := ws.Dialer{}.Dial(ctx, u)
			return nc, br, err
		}
	})
	testkit.Eventually(t, 15*time.Second, "resume through the main URL", func() bool {
		st := h.status(0)
		return st.Resumes == 1 && st.State == gateway.StateReady
	})
	if st := h.status(0); st.Identifies != 0 || st.Session != saved.ID || st.Reconnects < 2 {
		t.Errorf("got %d identifies, %d reconnects, session %q; want 0, at least 2, %q", st.Identifies, st.Reconnects, st.Session, saved.ID)
	}
	fake.SetRate(0)
	h.checkLedger(t, 0)
}

// flushingSink checkpoints every accepted event into a session store, as the
// broker does once events are durable, and counts Flush calls.
type flushingSink struct {
	*recordingSink
	store *gateway.MemorySessionStore
	mu    sync.Mutex
	n     int
}

func (s *flushingSink) Publish(ctx context.Context, ev *gateway.Event) error {
	if err := s.recordingSink.Publish(ctx, ev); err != nil {
		return err
	}
	s.store.Checkpoint(ev.Bot, ev.Shard, gateway.Session{ID: ev.Session, Seq: ev.Seq, ResumeURL: ev.ResumeURL, ShardCount: ev.ShardCount, Intents: ev.Intents})
	return nil
}

func (s *flushingSink) Flush(ctx context.Context, bot string, shard int) error {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return nil
}

func (s *flushingSink) flushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestManager_ResumeURLNotDiscord: a saved resume URL (anyone who can write
// to Redis can set it) that is not wss to a Discord gateway host, nor the
// host of the gateway URL /gateway/bot returned, receives nothing: the shard
// warns and resumes on the main gateway URL.
func TestManager_ResumeURLNotDiscord(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 2, Rate: 20})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var got atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			got.Add(1)
			c.Close()
		}
	}()
	for _, bad := range []string{"ws://" + ln.Addr().String() + "/x", "wss://" + ln.Addr().String() + "/", "wss://gateway.discord.gg.evil.example/"} {
		store := gateway.NewMemorySessionStore()
		sink := &flushingSink{recordingSink: newRecordingSink(), store: store}
		h1 := startManager(t, fake, gateway.BotConfig{Intents: 513}, sink.recordingSink, func(c *gateway.ManagerConfig) {
			c.Sink = sink
			c.Sessions = store
		})
		testkit.Eventually(t, 10*time.Second, "traffic", func() bool { return h1.status(0).Events > 3 })
		if err := h1.m.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		saved, err := store.Load(t.Context(), "main", 0)
		if err != nil {
			t.Fatal(err)
		}
		saved.ResumeURL = bad
		store.Checkpoint("main", 0, saved)
		h := startManager(t, fake, gateway.BotConfig{Intents: 513}, sink.recordingSink, func(c *gateway.ManagerConfig) {
			c.Sink = sink
			c.Sessions = store
		})
		testkit.Eventually(t, 15*time.Second, "resume through the main URL", func() bool {
			st := h.status(0)
			return st.Resumes == 1 && st.State == gateway.StateReady
		})
		if st := h.status(0); st.Identifies != 0 || st.Session != saved.ID {
			t.Errorf("%s: got %d identifies, session %q; want a resume of %q", bad, st.Identifies, st.Session, saved.ID)
		}
		if err := h.m.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := got.Load(); n != 0 {
		t.Fatalf("the listener named by the saved resume URL received %d connections, want none", n)
	}
}

// TestManager_SavedSessionMismatch: a checkpoint made with other intents is
// deleted, a gap control event names it, and the shard identifies.
func TestManager_SavedSessionMismatch(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 2})
	store := gateway.NewMemorySessionStore()
	store.Checkpoint("main", 0, gateway.Session{ID: "old", Seq: 9, ShardCount: 1, Intents: 1})
	h := startManager(t, fake, gateway.BotConfig{Intents: 513}, newRecordingSink(), func(c *gateway.ManagerConfig) { c.Sessions = store })
	h.waitReady(t, 0)
	if st := h.status(0); st.Identifies != 1 || st.Resumes != 0 {
		t.Errorf("got %d identifies %d resumes, want 1 and 0", st.Identifies, st.Resumes)
	}
	if s, err := store.Load(t.Context(), "main", 0); err == nil {
		t.Errorf("saved session %q still there, want it deleted", s.ID)
	}
	if ev, ok := h.ctl.find(0, gateway.ControlGap); !ok || ev.Session != "old" || ev.Seq != 9 || ev.Err == "" {
		t.Errorf("gap control event %+v (found %v), want one naming session old at seq 9 with the reason", ev, ok)
	}
}

// badStore is a SessionStore whose saved session cannot be used.
type badStore struct{ gateway.SessionStore }

func (badStore) Load(context.Context, string, int) (gateway.Session, error) {
	return gateway.Session{ID: "garbled", Seq: 12}, errors.New("load session k: field seq: \"x\" is not a non-negative integer")
}

// TestManager_SavedSessionUnusable: a saved session that cannot be loaded
// (garbage) is dropped with a gap control event naming it, and the shard
// identifies.
func TestManager_SavedSessionUnusable(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 2})
	h := startManager(t, fake, gateway.BotConfig{Intents: 513}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.Sessions = badStore{gateway.NewMemorySessionStore()}
	})
	h.waitReady(t, 0)
	if st := h.status(0); st.Identifies != 1 {
		t.Errorf("got %d identifies, want 1", st.Identifies)
	}
	if ev, ok := h.ctl.find(0, gateway.ControlGap); !ok || ev.Session != "garbled" || ev.Seq != 12 || !strings.Contains(ev.Err, "not a non-negative integer") {
		t.Errorf("gap control event %+v (found %v), want one naming the unusable session and why", ev, ok)
	}
}

// TestManager_RequestMembers: GUILD_CREATE triggers op 8 and the chunks
// arrive as dispatches.
func TestManager_RequestMembers(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 3, MembersPerGuild: 5})
	sink := newRecordingSink()
	h := startManager(t, fake, gateway.BotConfig{RequestMembers: true}, sink, nil)
	h.waitReady(t, 0)
	chunks := func() map[uint64]bool {
		g := map[uint64]bool{}
		for _, r := range sink.get(0) {
			if r.T == "GUILD_MEMBERS_CHUNK" {
				g[r.Guild] = true
			}
		}
		return g
	}
	testkit.Eventually(t, 10*time.Second, "a member chunk for every guild", func() bool { return len(chunks()) == 3 })
	// A second request within the fake's interval is RATE_LIMITED and retried later.
	var guild uint64
	for g := range chunks() {
		guild = g
	}
	if err := h.m.RequestGuildMembers("main", guild); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "RATE_LIMITED", func() bool {
		for _, r := range sink.get(0) {
			if r.T == "RATE_LIMITED" {
				return true
			}
		}
		return false
	})
	checkViolations(t, fake)
}

// TestManager_StatusJSON: the status is JSON-able with named states.
func TestManager_StatusJSON(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 2, Guilds: 2})
	h := startManager(t, fake, gateway.BotConfig{ShardIDs: []int{1}}, newRecordingSink(), nil)
	h.waitReady(t, 1)
	testkit.Eventually(t, 5*time.Second, "a heartbeat round trip", func() bool { return h.status(1).Latency > 0 })
	b, err := json.Marshal(h.m.Status())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"state":"ready"`) || !strings.Contains(string(b), `"shard":1`) || strings.Contains(string(b), testToken) {
		t.Fatalf("got status %s", b)
	}
	if len(h.m.Status()) != 1 {
		t.Fatalf("got %d shards, want only shard 1", len(h.m.Status()))
	}
}

func TestManager_BadToken(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{})
	m, err := gateway.NewManager(gateway.ManagerConfig{
		Bots: []gateway.BotConfig{{Name: "x", Token: "wrong-" + testToken}},
		Sink: newRecordingSink(), RESTURL: fake.URL() + "/api/v10", Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = m.Start(t.Context())
	if !errors.Is(err, gateway.ErrFatal) || strings.Contains(err.Error(), testToken) {
		t.Fatalf("got %v, want a fatal error without the token", err)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(fakeProcessEnv) != "" {
		os.Exit(runFakeProcess())
	}
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if strings.Contains(logCapture.String(), testToken) {
			fmt.Println("FAIL: the bot token appears in the captured logs")
			code = 1
		}
		// Every goroutine the managers started is gone once they are closed.
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before+2 {
			buf := make([]byte, 1<<20)
			fmt.Printf("FAIL: %d goroutines left (%d before)\n%s\n", n, before, buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// TestManager_TokenNotLogged runs identify, resume, a sink error and a fatal
// close with debug logs captured, and checks the token appears nowhere: not
// in logs, errors, control events or the status.
func TestManager_TokenNotLogged(t *testing.T) {
	t.Parallel()
	var buf testkit.SyncBuffer
	fake := startFake(t, discordtest.Config{Shards: 2, Guilds: 4, Rate: 40})
	sink := newRecordingSink()
	var once sync.Once
	sink.fail = func(ev *gateway.Event) error {
		var err error
		once.Do(func() { err = errors.New("refused once") })
		return err
	}
	h := startManager(t, fake, gateway.BotConfig{}, sink, func(c *gateway.ManagerConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	h.waitReady(t, 0, 1)
	if err := fake.Reconnect(0); err != nil {
		t.Fatal(err)
	}
	if err := fake.CloseShard(1, 4004); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "resume and failure", func() bool {
		return h.status(0).Resumes >= 1 && h.status(1).State == gateway.StateFailed
	})
	status, _ := json.Marshal(h.m.Status())
	h.ctl.mu.Lock()
	ctl, _ := json.Marshal(h.ctl.evs)
	h.ctl.mu.Unlock()
	logs := buf.String()
	if !strings.Contains(logs, "identified") || !strings.Contains(logs, "resumed") {
		t.Fatalf("logs lack identify/resume lines; the check would prove nothing:\n%s", logs)
	}
	for what, text := range map[string]string{"logs": logs, "status": string(status), "control events": string(ctl)} {
		if strings.Contains(text, testToken) {
			t.Errorf("the token appears in the %s", what)
		}
	}
}

// TestManager_SeveralBots: two bots in one process, each with its shards,
// its own identify scheduling and its own name on every event.
func TestManager_SeveralBots(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 2, Guilds: 4, Rate: 40})
	var mu sync.Mutex
	bots := map[int]map[string]bool{}
	sink := gateway.SinkFunc(func(_ context.Context, ev *gateway.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if bots[ev.Shard] == nil {
			bots[ev.Shard] = map[string]bool{}
		}
		bots[ev.Shard][ev.Bot] = true
		return nil
	})
	m, err := gateway.NewManager(gateway.ManagerConfig{
		Bots: []gateway.BotConfig{
			{Name: "a", Token: testToken, Intents: 513, ShardIDs: []int{0}},
			{Name: "b", Token: testToken, Intents: 513, ShardIDs: []int{1}, Compression: gateway.CompressionZstdStream},
		},
		Sink: sink, RESTURL: fake.URL() + "/api/v10", IdentifyWindow: 200 * time.Millisecond, Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	testkit.Eventually(t, 10*time.Second, "both bots ready with traffic", func() bool {
		st := m.Status()
		return len(st) == 2 && st[0].State == gateway.StateReady && st[1].State == gateway.StateReady &&
			st[0].Events > 5 && st[1].Events > 5
	})
	st := m.Status()
	if st[0].Bot != "a" || st[0].Shard != 0 || st[1].Bot != "b" || st[1].Shard != 1 {
		t.Fatalf("got status %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bots[0]) != 1 || !bots[0]["a"] || len(bots[1]) != 1 || !bots[1]["b"] {
		t.Fatalf("got bots per shard %v, want shard 0 only a, shard 1 only b", bots)
	}
}

// TestManager_StartLimitExhausted: with one session start left, one shard
// identifies and the other waits, with a clear log and no IDENTIFY sent.
func TestManager_StartLimitExhausted(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 2, Guilds: 2, SessionStartRemaining: 1})
	var buf testkit.SyncBuffer
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	})
	testkit.Eventually(t, 10*time.Second, "one shard ready, the other waiting", func() bool {
		a, b := h.status(0), h.status(1)
		ready, waiting := a, b
		if b.State == gateway.StateReady {
			ready, waiting = b, a
		}
		return ready.State == gateway.StateReady && strings.Contains(waiting.LastError, "session start limit exhausted")
	})
	if st := fake.Stats(); st.Identifies != 1 {
		t.Errorf("got %d identifies, want 1", st.Identifies)
	}
	if !strings.Contains(buf.String(), "session start limit exhausted") {
		t.Errorf("logs lack a clear line about the exhausted limit:\n%s", buf.String())
	}
	checkViolations(t, fake)
}

// TestManager_BufferedHello: bytes that arrived with the handshake (HELLO,
// in a reader the dialer returns) are read, not lost.
func TestManager_BufferedHello(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 2})
	var mu sync.Mutex
	buffered := 0
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.Dial = func(ctx context.Context, url string) (net.Conn, *bufio.Reader, error) {
			nc, br, _, err := ws.Dialer{}.Dial(ctx, url)
			if err != nil {
				return nil, nil, err
			}
			if br == nil {
				// Pull HELLO into a reader as the dialer does when the
				// server writes right after the handshake.
				br = bufio.NewReader(nc)
				if _, err := br.Peek(1); err != nil {
					nc.Close()
					return nil, nil, err
				}
			}
			mu.Lock()
			buffered += br.Buffered()
			mu.Unlock()
			return nc, br, nil
		}
	})
	h.waitReady(t, 0)
	mu.Lock()
	defer mu.Unlock()
	if buffered == 0 {
		t.Fatal("the dial hook buffered nothing: the test proves nothing")
	}
}

// TestManager_Reconnect: an operator's reconnect ends the connection with a
// resumable code and the shard RESUMEs its session; nothing is lost.
func TestManager_Reconnect(t *testing.T) {
	t.Parallel()
	// A 2 s heartbeat, as in the recovery test: the package's parallel tests
	// load the machine, and the fake counts a beat 1.5 intervals late.
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 2, Guilds: 4, Rate: 60, Seed: 9,
		HeartbeatInterval: 2 * time.Second})
	sink := newRecordingSink()
	h := startManager(t, fake, gateway.BotConfig{Compression: gateway.CompressionZstdStream}, sink, nil)
	h.waitReady(t, 0, 1)
	session := h.status(1).Session
	if err := h.m.Reconnect("main", 1); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	testkit.Eventually(t, 20*time.Second, "shard 1 resumed", func() bool {
		st := h.status(1)
		return st.Resumes >= 1 && st.State == gateway.StateReady
	})
	if got := h.status(1).Session; got != session {
		t.Errorf("session after reconnect %q, want the same %q", got, session)
	}
	if st := h.status(0); st.Resumes != 0 {
		t.Errorf("shard 0 resumed %d times; only shard 1 was asked", st.Resumes)
	}
	for _, c := range []struct {
		bot   string
		shard int
	}{{"main", 7}, {"other", 0}} {
		if err := h.m.Reconnect(c.bot, c.shard); !errors.Is(err, gateway.ErrUnknownShard) {
			t.Errorf("reconnect %s/%d: %v, want ErrUnknownShard", c.bot, c.shard, err)
		}
	}
	before := h.status(1).Events
	testkit.Eventually(t, 10*time.Second, "traffic after the reconnect", func() bool { return h.status(1).Events > before+5 })
	fake.SetRate(0)
	h.checkLedger(t, 0)
	h.checkLedger(t, 1)
	if st := h.status(1); st.Identifies != 1 {
		t.Errorf("shard 1: %d identifies, want 1 (the reconnect resumes)", st.Identifies)
	}
	checkViolations(t, fake)
}

// TestManager_ReconnectBetweenConnections: a reconnect asked while the
// shard has no connection is taken by the next one (at its HELLO).
func TestManager_ReconnectBetweenConnections(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 2, HeartbeatInterval: 2 * time.Second})
	dialing := make(chan struct{})
	release := make(chan struct{})
	var dials atomic.Int32
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.Dial = func(ctx context.Context, u string) (net.Conn, *bufio.Reader, error) {
			if dials.Add(1) == 1 {
				close(dialing)
				select {
				case <-release:
				case <-ctx.Done():
					return nil, nil, ctx.Err()
				}
			}
			nc, br, _, err := ws.Dialer{}.Dial(ctx, u)
			return nc, br, err
		}
	})
	<-dialing
	if err := h.m.Reconnect("main", 0); err != nil {
		t.Fatal(err)
	}
	close(release)
	testkit.Eventually(t, 30*time.Second, "shard 0 ready after the asked reconnect", func() bool {
		st := h.status(0)
		return st.State == gateway.StateReady && st.Reconnects >= 1
	})
	if d := dials.Load(); d < 2 {
		t.Fatalf("got %d dials, want the first connection ended and a second one", d)
	}
	if st := h.status(0); st.Reconnects != 1 || st.Identifies != 1 {
		t.Errorf("got %d reconnects and %d identifies, want 1 and 1 (the request ends the first connection at its HELLO, before IDENTIFY)", st.Reconnects, st.Identifies)
	}
}
