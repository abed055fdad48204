package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestRuntimeChanges_EndToEnd: real feathery processes change their config
// while running (SIGHUP, POST /api/reload) and re-shard live (the admin
// API, a reloaded shard count, close code 4011), judged against the fake
// Discord's ledger.
func TestRuntimeChanges_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server")
	}
	bin := buildBinary(t)
	t.Run("reload", func(t *testing.T) { testReload(t, bin) })
	t.Run("sighup_during_traffic", func(t *testing.T) { testSighupDuringTraffic(t, bin) })
	t.Run("reshard", func(t *testing.T) { testReshard(t, bin) })
	t.Run("sharding_required", func(t *testing.T) { testShardingRequired(t, bin) })
	t.Run("new_session", func(t *testing.T) { testNewSession(t, bin) })
	t.Run("reshard_crash", func(t *testing.T) { testReshardCrash(t, bin) })
}

const reloadAdminToken = "reload-admin-token-0123456789"

// configRig is a deliveryRig whose config the test rewrites.
type configRig struct {
	*deliveryRig
	cfg bench.Config
}

// newConfigRig starts a fake Discord, a redis-server with AOF and feathery
// with the bot deliveryBot (MESSAGE_* routed to "messages", cache on) and
// an admin token; mod adjusts the config first.
func newConfigRig(t *testing.T, bin string, fc discordtest.Config, mod func(*bench.Config)) *configRig {
	t.Helper()
	rs, err := bench.StartRedis(bench.RedisOptions{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	fc.Token = testToken
	if fc.MaxConcurrency == 0 {
		fc.MaxConcurrency = fc.Shards
	}
	fc.IdentifyWindow = 150 * time.Millisecond
	if mod != nil && fc.IdentifyTolerance == 0 {
		// Several bots: the fake has one token, so their shards share its
		// identify buckets, which Discord keeps per bot.
		fc.IdentifyTolerance = fc.IdentifyWindow
	}
	fake, err := discordtest.Start(fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	admin, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "feathery.yaml")
	cfg := bench.Config{
		RedisURL: rs.URL(), RESTURL: fake.URL() + "/api/v10", AdminAddr: admin, AdminToken: reloadAdminToken,
		LogLevel: "debug", IdentifyWindow: fc.IdentifyWindow, ShutdownTimeout: 20 * time.Second,
		Publisher: bench.PublisherTuning{QueueSize: deliveryQueueSize},
		// Bots added, removed and re-sharded at run time: one process
		// (a fleet refuses these, see fleetRefusesRuntimeBots).
		FleetOff: true,
		Bots: []bench.Bot{{
			Name: deliveryBot, Token: testToken, Shards: fc.Shards, Compression: "zstd-stream", Cache: true,
			Routes: []bench.Route{{Events: []string{"MESSAGE_*"}, Stream: "messages", Groups: []string{"g"}}},
		}},
	}
	if mod != nil {
		mod(&cfg)
	}
	if err := bench.WriteConfig(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	keys := broker.NewKeys("")
	r := &deliveryRig{
		t: t, ctx: ctx, shards: fc.Shards, fake: fake, rs: rs, dir: dir,
		opts: bench.FeatheryOptions{Binary: bin, Config: cfgPath, AdminAddr: admin},
		rc:   redisClient(t, rs.Addr), keys: keys,
		events: keys.Events(deliveryBot), messages: keys.Stream(deliveryBot, "messages"),
	}
	r.start()
	t.Cleanup(func() {
		r.f.Kill()
		if t.Failed() {
			t.Logf("phases: %s", strings.Join(r.phases, ", "))
			t.Logf("feathery's log (%s) ends with:\n%s", r.f.StderrPath(), r.f.StderrTail(3000))
		}
	})
	return &configRig{deliveryRig: r, cfg: cfg}
}

// rewrite changes the config file (not yet reloaded).
func (r *configRig) rewrite(mod func(*bench.Config)) {
	r.t.Helper()
	mod(&r.cfg)
	if err := bench.WriteConfig(r.opts.Config, r.cfg); err != nil {
		r.t.Fatal(err)
	}
}

// post calls the admin API with the token and returns the status and body.
func (r *configRig) post(path, body string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.ctx, "POST", "http://"+r.opts.AdminAddr+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+reloadAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reload posts /api/reload and fails the test unless it answers ok.
func (r *configRig) reload(what string) {
	r.t.Helper()
	r.phase("reload: " + what)
	if code, body := r.post("/api/reload", ""); code != http.StatusOK || !strings.Contains(body, `"ok": true`) {
		r.t.Fatalf("reload (%s): %d %s", what, code, body)
	}
}

// streamTypes counts the entries of each event type on a stream whose
// receive time ("at") is at or after since.
func (r *configRig) streamTypes(stream string, since time.Time) map[string]int {
	out := map[string]int{}
	for _, e := range xrangeAll(r.t, r.rc, stream) {
		at, _ := strconv.ParseInt(e.FieldValues["at"], 10, 64)
		if at >= since.UnixMilli() {
			out[e.FieldValues["t"]]++
		}
	}
	return out
}

// testReload: a filter added live is in force within a second, judged on
// the stream; a bot is added and one removed; a broken config is refused
// with the one-line error of the start-up check, and the running one
// stays.
func testReload(t *testing.T, bin string) {
	r := newConfigRig(t, bin, discordtest.Config{
		Shards: 2, HeartbeatInterval: time.Second, Guilds: 12, MembersPerGuild: 8, Seed: 41, Rate: 200,
	}, func(c *bench.Config) {
		c.Bots = append(c.Bots, bench.Bot{Name: "gone", Token: testToken, Shards: 1, Compression: "zlib-stream"})
	})
	r.waitReady("first start")
	r.progress("traffic published", 200)
	goneStream := r.keys.Events("gone")
	testkit.Eventually(t, 45*time.Second, "the bot to be removed publishes", func() bool { return xlen(t, r.rc, goneStream) > 20 })
	fake := r.fake
	start := fake.Stats()

	// A filter added live; a bot removed and one added.
	r.rewrite(func(c *bench.Config) {
		c.Bots[0].Ignore = []string{"TYPING_START"}
		c.Bots[1] = bench.Bot{Name: "added", Token: testToken, Shards: 1, Compression: "none"}
	})
	before := time.Now()
	r.reload("filter, bot removed, bot added")
	reloaded := time.Now()
	addedStream := r.keys.Events("added")
	testkit.Eventually(t, 45*time.Second, "the added bot publishes", func() bool { return xlen(t, r.rc, addedStream) > 20 })
	r.progress("traffic after the reload", 300)
	inForce := reloaded.Add(time.Second)
	if n := r.streamTypes(r.events, inForce)["TYPING_START"]; n != 0 {
		t.Errorf("%d TYPING_START received more than a second after the reload were published: the filter is not in force", n)
	}
	if n := r.streamTypes(r.events, time.Time{})["TYPING_START"]; n == 0 {
		t.Error("no TYPING_START at all on the stream: the traffic had none before the reload, so the filter went untested")
	}
	if st := fake.Stats(); st.Identifies != start.Identifies+1 {
		t.Errorf("%d identifies after the reload, want %d (only the added bot's shard): the other shards must stay connected", st.Identifies, start.Identifies+1)
	}
	// The removed bot's shard flushed and checkpointed what it had read
	// before closing with a resumable code (no violation at the fake): its
	// checkpoint is its last entry on the stream.
	cp, err := r.rc.Do(r.ctx, r.rc.B().Hgetall().Key(r.keys.Session("gone", 0)).Build()).AsStrMap()
	if err != nil {
		t.Fatal(err)
	}
	gone := xrangeAll(t, r.rc, goneStream)
	if last := gone[len(gone)-1].FieldValues; cp["session"] != last["session"] || cp["seq"] != last["seq"] {
		t.Errorf("removed bot's checkpoint %s/%s, want its last published entry %s/%s", cp["session"], cp["seq"], last["session"], last["seq"])
	}
	_ = before
	for _, v := range fake.Stats().Violations {
		t.Errorf("the fake saw a protocol violation: %+v", v)
	}

	// A broken config is refused with the start-up check's error; the
	// running config stays (the filter still drops TYPING_START).
	good, err := os.ReadFile(r.opts.Config)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(good), "stream: messages", "stream: \"\"", 1)
	if broken == string(good) {
		t.Fatal("could not break the config")
	}
	if err := os.WriteFile(r.opts.Config, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	want, werr := loadConfigFile(r.opts.Config, func(string) (string, bool) { return "", false })
	if want != nil || werr == nil {
		t.Fatal("the broken config passes the start-up check")
	}
	code, body := r.post("/api/reload", "")
	var reply struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &reply)
	if code != http.StatusBadRequest || reply.Error != oneLine(werr.Error()) {
		t.Errorf("broken reload: %d %q, want 400 with the start-up check's error %q", code, reply.Error, werr.Error())
	}
	refused := time.Now()
	r.progress("traffic after the refused reload", 200)
	if n := r.streamTypes(r.events, refused)["TYPING_START"]; n != 0 {
		t.Errorf("%d TYPING_START published after the refused reload: the running config did not stay", n)
	}
	if n := r.streamTypes(r.messages, refused)["MESSAGE_CREATE"]; n == 0 {
		t.Error("no MESSAGE_CREATE on the messages stream after the refused reload: the routes did not stay")
	}
	if strings.Contains(r.f.StderrTail(1<<20), reloadAdminToken) || strings.Contains(r.f.StderrTail(1<<20), testToken) {
		t.Error("a token reached feathery's log")
	}
}

// testSighupDuringTraffic: SIGHUPs during traffic, with the config
// unchanged and then with a changed compression (every shard stops
// gracefully and resumes), lose and double nothing: the streams equal the
// ledger. The process never stops.
func testSighupDuringTraffic(t *testing.T, bin string) {
	const shards = 4
	r := newConfigRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: time.Second, Guilds: 16, MembersPerGuild: 8, Seed: 43, Rate: 300,
	}, nil)
	r.waitReady("first start")
	r.progress("traffic published", 200)
	start := r.fake.Stats()
	for i := range 3 {
		r.phase("SIGHUP " + strconv.Itoa(i))
		if err := r.f.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		r.progress("traffic after SIGHUP", 150)
	}
	r.rewrite(func(c *bench.Config) { c.Bots[0].Compression = "zlib-stream" })
	r.phase("SIGHUP with a new compression")
	if err := r.f.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.recovered("shards resumed with the new compression", start.Resumes+shards, 0)
	r.progress("traffic after the last SIGHUP", 300)
	if done, err := r.f.Exited(); done {
		t.Fatalf("feathery exited after SIGHUP: %v", err)
	}
	if !strings.Contains(r.f.StderrTail(1<<20), "config reloaded") {
		t.Error("the log has no \"config reloaded\" line")
	}
	r.finish(start.Identifies, nil)
}
