package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/redis/rueidis"
)

func startFake(t *testing.T, shards int, rate float64) *discordtest.Server {
	t.Helper()
	fake, err := discordtest.Start(discordtest.Config{
		Token:             testToken,
		Shards:            shards,
		MaxConcurrency:    shards,
		IdentifyWindow:    200 * time.Millisecond,
		HeartbeatInterval: time.Second,
		Guilds:            6,
		Seed:              7,
		Rate:              rate,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake
}

// e2eConfig is a config for the fake, written as a user would.
func e2eConfig(t *testing.T, fake *discordtest.Server, redisSection string) *Config {
	t.Helper()
	doc := `
redis: ` + redisSection + `
admin: {addr: "127.0.0.1:0", token: "${ADMIN}"}
discord: {rest_url: "${REST}"}
identify_window: 200ms
shutdown_timeout: 10s
bots:
  - name: e2e
    token: ${TOKEN}
    intents: ALL
    compression: zstd-stream
    presence: {status: idle, activities: [{name: "the tests", type: 3}]}
    filters: {ignore: [TYPING_START]}
    routes:
      - {events: ["MESSAGE_*"], stream: msgs, groups: [g1]}
`
	cfg, err := parseConfig("e2e.yaml", []byte(doc), envOf(map[string]string{
		"TOKEN": testToken, "ADMIN": adminToken, "REST": fake.URL() + "/api/v10",
	}))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func redisClient(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func xlen(t *testing.T, c rueidis.Client, key string) int64 {
	t.Helper()
	n, err := c.Do(context.Background(), c.B().Xlen().Key(key).Build()).AsInt64()
	if err != nil {
		t.Fatalf("XLEN %s: %v", key, err)
	}
	return n
}

// TestDaemon_EndToEnd: fake Discord → runDaemon → embedded Redis, seen
// through the streams and the admin API; the token appears nowhere.
func TestDaemon_EndToEnd(t *testing.T) {
	fake := startFake(t, 2, 200)
	cfg := e2eConfig(t, fake, "{embedded: true}")
	logs := &testkit.SyncBuffer{}
	// No redaction here: nothing may log the token in the first place.
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d, err := runDaemon(t.Context(), cfg, daemonDeps{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close(context.Background())
		}
	})
	base := strings.TrimSuffix(d.AdminURL(), "/")
	if d.RedisAddr() == "" || base == "" {
		t.Fatalf("redis %q admin %q", d.RedisAddr(), base)
	}

	testkit.Eventually(t, 20*time.Second, "healthz 200", func() bool {
		code, _, _ := httpDo(t, "GET", base+"/healthz", "")
		return code == http.StatusOK
	})

	keys := broker.NewKeys("")
	rc := redisClient(t, d.RedisAddr())
	events, msgs := keys.Events("e2e"), keys.Stream("e2e", "msgs")
	testkit.Eventually(t, 20*time.Second, "entries on both streams and ignored TYPING_START", func() bool {
		st := d.Status(t.Context())
		return xlen(t, rc, events) > 0 && xlen(t, rc, msgs) > 0 && st.Filters[broker.FilterIgnore] > 0
	})
	// Routes and filters: messages on msgs, no TYPING_START anywhere.
	for _, key := range []string{events, msgs} {
		entries, err := rc.Do(t.Context(), rc.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			typ := e.FieldValues["t"]
			if typ == "TYPING_START" {
				t.Errorf("%s: TYPING_START was not ignored", key)
			}
			if (key == msgs) != strings.HasPrefix(typ, "MESSAGE_") {
				t.Errorf("%s holds %s", key, typ)
			}
			if e.FieldValues["bot"] != "e2e" || e.FieldValues["session"] == "" {
				t.Errorf("entry %s: %v", e.ID, e.FieldValues)
			}
		}
	}
	// The cache is on by default: guilds are cached and UPDATE entries
	// carry their before image.
	testkit.Eventually(t, 20*time.Second, "the 6 guilds in the cache", func() bool {
		guildKeys, err := rc.Do(t.Context(), rc.B().Keys().Pattern(broker.DefaultCacheNamespace+":*:guild").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		return len(guildKeys) == 6
	})
	testkit.Eventually(t, 20*time.Second, "an entry with a before image", func() bool {
		entries, err := rc.Do(t.Context(), rc.B().Xrevrange().Key(events).End("+").Start("-").Count(200).Build()).AsXRange()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := e.FieldValues["before"]; ok {
				return true
			}
		}
		return false
	})
	groups, err := rc.Do(t.Context(), rc.B().XinfoGroups().Key(msgs).Build()).ToArray()
	if err != nil || len(groups) != 1 {
		t.Errorf("groups on %s: %d, %v; want g1", msgs, len(groups), err)
	}
	testkit.Eventually(t, 10*time.Second, "control stream entries", func() bool { return xlen(t, rc, keys.Control()) > 0 })

	// /api/status (its Redis ping has a second: a loaded machine may
	// need a few tries)
	var body string
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		var code int
		code, _, body = httpDo(t, "GET", base+"/api/status", "")
		var st statusReport
		if code != 200 || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("status: %d %q", code, body)
		}
		if len(st.Shards) != 2 || st.Shards[0].State != "ready" || st.Shards[1].State != "ready" || st.Published == 0 || !st.Redis.OK || st.Redis.Mode != "embedded" {
			return body
		}
		return ""
	})
	// /metrics
	code, _, metrics := httpDo(t, "GET", base+"/metrics", "")
	for _, want := range []string{
		`feathery_shards{bot="e2e",state="ready"} 2`,
		"# TYPE feathery_publisher_published_total counter",
		`feathery_filter_dropped_total{bot="e2e",filter="`,
		"feathery_redis_up 1",
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// State-changing endpoints need the bearer token.
	if code, _, _ := httpDo(t, "POST", base+"/api/bots/e2e/shards/0/reconnect", ""); code != http.StatusUnauthorized {
		t.Errorf("reconnect without token: %d, want 401", code)
	}
	if code, _, _ := httpDo(t, "POST", base+"/api/bots/e2e/shards/5/reconnect", adminToken); code != http.StatusNotFound {
		t.Errorf("reconnect of an unknown shard: %d, want 404", code)
	}
	for name, s := range map[string]string{"status": body, "metrics": metrics} {
		if strings.Contains(s, testToken) || strings.Contains(s, adminToken) {
			t.Errorf("%s shows a token", name)
		}
	}

	cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := d.Close(cctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	if err := d.Close(cctx); err != nil {
		t.Errorf("second close: %v", err)
	}
	if strings.Contains(logs.String(), testToken) {
		t.Error("the logs contain the bot token")
	}
	if strings.Contains(logs.String(), adminToken) {
		t.Error("the logs contain the admin token")
	}
	if st := fake.Stats(); len(st.Violations) > 0 {
		t.Errorf("fake saw protocol violations: %+v", st.Violations)
	}
}

// TestDaemon_RestartResumes: after a graceful Close, a new daemon on the same
// Redis resumes every shard instead of identifying again.
func TestDaemon_RestartResumes(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	fake := startFake(t, 2, 100)
	cfg := e2eConfig(t, fake, `{url: "`+srv.URL()+`"}`)
	run := func() {
		d, err := runDaemon(t.Context(), cfg, daemonDeps{})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := d.Close(cctx); err != nil {
				t.Errorf("close: %v", err)
			}
		}()
		testkit.Eventually(t, 20*time.Second, "shards ready and publishing", func() bool {
			h := d.Health(t.Context())
			st := d.Status(t.Context())
			return h.OK && st.Published > 20
		})
	}
	run()
	first := fake.Stats()
	if first.Identifies != 2 {
		t.Fatalf("first run: %d identifies, want 2", first.Identifies)
	}
	run()
	second := fake.Stats()
	if second.Identifies != first.Identifies {
		t.Errorf("restart identified again: %d identifies, want %d", second.Identifies, first.Identifies)
	}
	if second.Resumes < first.Resumes+2 {
		t.Errorf("restart: %d resumes, want at least %d", second.Resumes, first.Resumes+2)
	}
	if len(second.Violations) > 0 {
		t.Errorf("violations: %+v", second.Violations)
	}
}

var redisAddrRE = regexp.MustCompile(`embedded Redis:\s+(127\.0\.0\.1:\d+)`)
var redisCLIRE = regexp.MustCompile(`(?m)^\s*(redis-cli -p \d+ XREAD COUNT 5 STREAMS '[^']+' 0)$`)

// TestDemo: the demo runs fake → feathery → embedded Redis; the printed
// redis-cli command, pasted into a shell, shows events.
func TestDemo(t *testing.T) {
	m, out, errOut := testMain(nil)
	stop, done := runAsync(t, m, "demo", "--shards", "2", "--guilds", "6", "--rate", "100", "--admin-addr", "127.0.0.1:0", "--duration", "2m")
	var addr string
	testkit.Eventually(t, 20*time.Second, "the embedded Redis address on stdout", func() bool {
		select {
		case <-done:
			t.Fatalf("demo ended early: %v\n%s\n%s", stop(), out, errOut)
		default:
		}
		if m := redisAddrRE.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	rc := redisClient(t, addr)
	key := broker.NewKeys("").Events("demo")
	testkit.Eventually(t, 20*time.Second, "events on "+key, func() bool { return xlen(t, rc, key) >= 5 })
	testkit.Eventually(t, 10*time.Second, "a status line", func() bool { return strings.Contains(out.String(), "shards 2/2 ready") })

	cmdLine := redisCLIRE.FindStringSubmatch(out.String())
	if cmdLine == nil {
		t.Fatalf("no redis-cli command in:\n%s", out)
	}
	if _, err := exec.LookPath("redis-cli"); err == nil {
		got, err := exec.CommandContext(t.Context(), "sh", "-c", cmdLine[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(got), "GUILD_CREATE") {
			t.Errorf("%s: %v\n%s", cmdLine[1], err, got)
		}
	}
	// The printed "feathery tail" line works too.
	tailLine := regexp.MustCompile(`feathery (tail --redis \S+ --bot demo)`).FindStringSubmatch(out.String())
	if tailLine == nil {
		t.Fatalf("no tail command in:\n%s", out)
	}
	tm, tout, terr := testMain(nil)
	if err := tm.Run(t.Context(), append(strings.Fields(tailLine[1]), "--from", "0", "--count", "3")); err != nil {
		t.Fatalf("%s: %v\n%s", tailLine[1], err, terr)
	}
	if n := strings.Count(tout.String(), " bot=demo "); n != 3 {
		t.Errorf("%s printed %d entries:\n%s", tailLine[1], n, tout)
	}
	if err := stop(); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut)
	}
	if !strings.Contains(out.String(), "demo stopped") {
		t.Errorf("stdout lacks %q:\n%s", "demo stopped", out)
	}
}

// TestDemo_Duration: --duration ends the demo by itself.
func TestDemo_Duration(t *testing.T) {
	m, out, errOut := testMain(nil)
	stop, done := runAsync(t, m, "demo", "--shards", "1", "--rate", "20", "--admin-addr", "off", "--duration", "1500ms", "--quiet")
	select {
	case <-done:
		if err := stop(); err != nil {
			t.Fatalf("demo: %v\n%s", err, errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo --duration 1500ms still running after 30s")
	}
	if !strings.Contains(out.String(), "demo stopped") || strings.Contains(out.String(), "ready [") {
		t.Errorf("stdout:\n%s", out)
	}
}

// TestRun_FullRun: "feathery run -c" against the fake, with the token from
// the environment and debug logs; entries arrive, the shutdown is clean and
// the log capture never contains the token.
func TestRun_FullRun(t *testing.T) {
	fake := startFake(t, 2, 100)
	path := writeFile(t, "feathery.yaml", `
log: {level: debug, format: json}
admin: {addr: "127.0.0.1:0"}
discord: {rest_url: "${REST}"}
identify_window: 200ms
bots:
  - name: full
    token: ${DISCORD_TOKEN}
    shards: 2
    shard_ids: "0-1"
`)
	m, out, logs := testMain(map[string]string{"DISCORD_TOKEN": testToken, "REST": fake.URL() + "/api/v10"})
	stop, done := runAsync(t, m, "run", "-c", path)
	var addr string
	testkit.Eventually(t, 20*time.Second, "the embedded Redis address", func() bool {
		select {
		case <-done:
			t.Fatalf("run ended: %v\n%s", stop(), logs)
		default:
		}
		if m := regexp.MustCompile(`embedded Redis: (127\.0\.0\.1:\d+)`).FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
			return true
		}
		return false
	})
	rc := redisClient(t, addr)
	key := broker.NewKeys("").Events("full")
	testkit.Eventually(t, 20*time.Second, "entries on "+key, func() bool { return xlen(t, rc, key) > 10 })
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	text := logs.String()
	if strings.Contains(text, testToken) {
		t.Error("the log contains the token")
	}
	for _, want := range []string{`"msg":"starting feathery"`, `"msg":"shutting down"`, `"msg":"stopped"`, `"level":"DEBUG"`} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	for i, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line %d is not JSON: %q", i, line)
		}
	}
}

// TestDaemon_StartErrors: start-up failures are one clear error, without
// the token, and leave nothing running.
func TestDaemon_StartErrors(t *testing.T) {
	fake := startFake(t, 1, 0)

	t.Run("admin address taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		cfg := e2eConfig(t, fake, "{embedded: true}")
		cfg.Admin.Addr = ln.Addr().String()
		d, err := runDaemon(t.Context(), cfg, daemonDeps{})
		if err == nil {
			d.Close(context.Background())
			t.Fatal("no error")
		}
		if !strings.Contains(err.Error(), "listen admin API") || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("got %v", err)
		}
	})

	t.Run("wrong token", func(t *testing.T) {
		cfg := e2eConfig(t, fake, "{embedded: true}")
		wrong := "WRONG" + testToken
		cfg.Bots[0].Token = wrong
		d, err := runDaemon(t.Context(), cfg, daemonDeps{})
		if err == nil {
			// The gateway may report a refused token through the shard
			// instead of Start; then the shard must fail.
			defer d.Close(context.Background())
			testkit.Eventually(t, 10*time.Second, "the shard to fail", func() bool {
				for _, s := range d.Status(t.Context()).Shards {
					if s.State == "failed" {
						return !strings.Contains(s.Error, wrong)
					}
				}
				return false
			})
			return
		}
		if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), testToken) {
			t.Errorf("error shows the token: %v", err)
		}
		if strings.ContainsAny(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
	})

	t.Run("redis unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close() // nothing listens there now
		cfg := e2eConfig(t, fake, `{url: "redis://:secret-password@`+addr+`", dial_timeout: 2s}`)
		d, err := runDaemon(t.Context(), cfg, daemonDeps{})
		if err == nil {
			d.Close(context.Background())
			t.Fatal("no error")
		}
		if !strings.Contains(err.Error(), "connect to redis") || strings.Contains(err.Error(), "secret-password") {
			t.Errorf("got %v", err)
		}
	})
}

// TestDaemon_Cluster: the wiring works on a Redis Cluster of three masters:
// events, the cache and the checkpoints (a restart resumes).
func TestDaemon_Cluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	fake := startFake(t, 2, 100)
	cfg := e2eConfig(t, fake, `{cluster: ["`+strings.Join(cl.Addrs(), `", "`)+`"]}`)
	c := cl.Client(t)
	keys := broker.NewKeys("")
	for round := 0; round < 2; round++ {
		d, err := runDaemon(t.Context(), cfg, daemonDeps{})
		if err != nil {
			t.Fatal(err)
		}
		before := xlen(t, c, keys.Events("e2e"))
		testkit.Eventually(t, 20*time.Second, "new entries on the cluster", func() bool {
			return d.Health(t.Context()).OK && xlen(t, c, keys.Events("e2e")) > before+10
		})
		if st := d.Status(t.Context()); st.Redis.Mode != "cluster" || st.Cache == nil || st.Cache.Events == 0 {
			t.Errorf("status: redis %+v cache %+v", st.Redis, st.Cache)
		}
		cctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err = d.Close(cctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if st := fake.Stats(); st.Identifies != 2 || st.Resumes < 2 || len(st.Violations) > 0 {
		t.Errorf("fake: %d identifies (want 2), %d resumes (want ≥2), violations %+v", st.Identifies, st.Resumes, st.Violations)
	}
}

// TestDaemon_HealthFollowsRedis: /healthz turns 503 while Redis is down and
// 200 again once it is back.
func TestDaemon_HealthFollowsRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	fake := startFake(t, 1, 20)
	cfg := e2eConfig(t, fake, `{url: "`+srv.URL()+`"}`)
	d, err := runDaemon(t.Context(), cfg, daemonDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := d.Close(cctx); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	base := strings.TrimSuffix(d.AdminURL(), "/")
	health := func() (int, healthReport) {
		code, _, body := httpDo(t, "GET", base+"/healthz", "")
		var h healthReport
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("healthz body %q: %v", body, err)
		}
		return code, h
	}
	testkit.Eventually(t, 20*time.Second, "healthy", func() bool { c, _ := health(); return c == 200 })
	srv.Stop()
	testkit.Eventually(t, 20*time.Second, "503 with Redis down", func() bool {
		c, h := health()
		return c == http.StatusServiceUnavailable && !h.OK && h.Redis != "ok" && h.Detail == "redis unreachable"
	})
	srv.Restart()
	testkit.Eventually(t, 30*time.Second, "healthy again", func() bool { c, _ := health(); return c == 200 })
}

// TestDaemon_ReconnectEndpoint: POST .../reconnect with the bearer token
// makes the shard reconnect and resume.
func TestDaemon_ReconnectEndpoint(t *testing.T) {
	fake := startFake(t, 1, 20)
	cfg := e2eConfig(t, fake, "{embedded: true}")
	d, err := runDaemon(t.Context(), cfg, daemonDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	base := strings.TrimSuffix(d.AdminURL(), "/")
	testkit.Eventually(t, 20*time.Second, "healthy", func() bool { return d.Health(t.Context()).OK })
	resumes := fake.Stats().Resumes
	code, _, body := httpDo(t, "POST", base+"/api/bots/e2e/shards/0/reconnect", adminToken)
	if code != http.StatusAccepted {
		t.Fatalf("reconnect: %d %s", code, body)
	}
	testkit.Eventually(t, 20*time.Second, "the shard to resume", func() bool {
		return fake.Stats().Resumes > resumes && d.Health(t.Context()).OK
	})
}
