package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// fleetRig is a fleet of feathery nodes (each a whole daemon: gateway,
// publisher, admin API) sharing one real redis-server, on the fake Discord.
type fleetRig struct {
	t     *testing.T
	fake  *discordtest.Server
	redis *redistest.Server
	rc    rueidis.Client
	nodes []*daemon
	logs  []*testkit.SyncBuffer
}

type fleetOptions struct {
	shards, nodes int
	rate          float64
	guilds        int
	publicCache   bool
	heartbeat     time.Duration
}

// startFleet starts the fake, Redis and opts.nodes daemons, each running
// an equal slice of the shards (static shard_ids), with stream "events"
// read by group g1.
func startFleet(t *testing.T, o fleetOptions) *fleetRig {
	t.Helper()
	if o.heartbeat == 0 {
		o.heartbeat = 5 * time.Second
	}
	if o.guilds == 0 {
		o.guilds = 6
	}
	fake, err := discordtest.Start(discordtest.Config{
		Token: testToken, Shards: o.shards, MaxConcurrency: o.shards,
		IdentifyWindow: 200 * time.Millisecond, HeartbeatInterval: o.heartbeat,
		Guilds: o.guilds, MembersPerGuild: 12, Seed: 5, Rate: o.rate,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	srv := redistest.Start(t, redistest.Options{})
	r := &fleetRig{t: t, fake: fake, redis: srv, rc: srv.Client(t)}
	per := (o.shards + o.nodes - 1) / o.nodes
	for i := range o.nodes {
		lo, hi := i*per, min((i+1)*per, o.shards)-1
		doc := fmt.Sprintf(`
redis: {url: "redis://%s"}
admin: {addr: "127.0.0.1:0", token: "${ADMIN}", public_cache: %v}
node: {id: node-%c}
discord: {rest_url: "${REST}"}
identify_window: 200ms
shutdown_timeout: 10s
bots:
  - name: main
    token: ${TOKEN}
    intents: ALL
    shards: %d
    shard_ids: "%d-%d"
    default_stream: {groups: [g1]}
`, srv.Addr, o.publicCache, 'a'+i, o.shards, lo, hi)
		cfg, err := parseConfig("fleet.yaml", []byte(doc), envOf(map[string]string{
			"TOKEN": testToken, "ADMIN": adminToken, "REST": fake.URL() + "/api/v10",
		}))
		if err != nil {
			t.Fatal(err)
		}
		buf := &testkit.SyncBuffer{}
		d, err := runDaemon(t.Context(), cfg, daemonDeps{Logger: slog.New(slog.NewTextHandler(buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d.Close(ctx)
		})
		r.nodes = append(r.nodes, d)
		r.logs = append(r.logs, buf)
	}
	return r
}

// console reads GET /api/console of node i.
func (r *fleetRig) console(i int) consoleReport {
	r.t.Helper()
	code, _, body := httpDo(r.t, "GET", "http://"+r.nodes[i].admin.Addr()+"/api/console", "")
	var rep consoleReport
	if code != 200 {
		r.t.Fatalf("GET /api/console: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		r.t.Fatalf("decode /api/console: %v", err)
	}
	return rep
}

// readyCount is the number of ready shards the console of node i shows.
func (r *fleetRig) readyCount(i int) int {
	n := 0
	for _, s := range r.console(i).Shards {
		if s.State == "ready" {
			n++
		}
	}
	return n
}

// TestConsole_FleetView: either node's console shows both nodes' shards,
// the stream and its group, Redis health and the start-up progress; a
// shard of the other node is reconnected through the console (forwarded
// through Redis); the progress lines reach the log.
func TestConsole_FleetView(t *testing.T) {
	r := startFleet(t, fleetOptions{shards: 6, nodes: 2, rate: 30})
	testkit.Eventually(t, 60*time.Second, "both nodes' 6 shards ready on node a's console", func() bool { return r.readyCount(0) == 6 })
	rep := r.console(1)
	if len(rep.Nodes) != 2 || rep.Nodes[0].Node != "node-a" || rep.Nodes[1].Node != "node-b" || !rep.Nodes[1].Self {
		t.Fatalf("nodes %+v, want node-a and node-b (this)", rep.Nodes)
	}
	if len(rep.Bots) != 1 || rep.Bots[0].ShardCount != 6 || rep.Bots[0].Unowned != 0 || rep.Bots[0].Ready != 6 {
		t.Errorf("bots %+v", rep.Bots)
	}
	if !rep.Redis.OK || rep.Redis.Version == "" || rep.Redis.Role != "master" {
		t.Errorf("redis health %+v", rep.Redis)
	}
	var events *streamInfo
	for i := range rep.Streams {
		if rep.Streams[i].Key == "feathery:{bot:main}:events" {
			events = &rep.Streams[i]
		}
	}
	testkit.Eventually(t, 30*time.Second, "events on the stream and its group g1 in the console", func() bool {
		for _, s := range r.console(0).Streams {
			if s.Key == "feathery:{bot:main}:events" && s.Length > 0 && len(s.Groups) == 1 && s.Groups[0].Name == "g1" && s.Groups[0].Lag != nil {
				return true
			}
		}
		return false
	})
	if events == nil {
		t.Fatalf("streams %+v lack the events stream", rep.Streams)
	}
	testkit.Eventually(t, 30*time.Second, "a fleet events/s history", func() bool {
		h := r.console(0).History
		return len(h) == historySeconds && h[len(h)-2]+h[len(h)-3] > 0
	})

	// Shard 5 runs on node b; node a forwards the action.
	before := r.nodes[1].mgr.Status()
	var rc0 uint64
	for _, s := range before {
		if s.Shard == 5 {
			rc0 = s.Reconnects
		}
	}
	base := "http://" + r.nodes[0].admin.Addr()
	if code, _, body := httpDo(t, "POST", base+"/api/console/shards/main/5/reconnect", ""); code != http.StatusUnauthorized {
		t.Fatalf("reconnect without token: %d %s, want 401", code, body)
	}
	code, _, body := httpDo(t, "POST", base+"/api/console/shards/main/5/reconnect", adminToken)
	if code != http.StatusAccepted || !strings.Contains(body, `"forwarded": true`) || !strings.Contains(body, `"node": "node-b"`) {
		t.Fatalf("reconnect: %d %s, want 202 forwarded to node-b", code, body)
	}
	testkit.Eventually(t, 30*time.Second, "shard 5 reconnected on node b", func() bool {
		for _, s := range r.nodes[1].mgr.Status() {
			if s.Shard == 5 && s.Reconnects > rc0 {
				return true
			}
		}
		return false
	})
	testkit.Eventually(t, 30*time.Second, "the forwarded action's outcome on the console", func() bool {
		for _, c := range r.console(0).Commands {
			if c.Node == "node-b" && c.Op == "reconnect" && c.Shard == 5 && c.Code == http.StatusAccepted && c.From == "node-a" {
				return true
			}
		}
		return false
	})
	if code, _, body := httpDo(t, "POST", base+"/api/console/shards/main/99/reconnect", adminToken); code != http.StatusNotFound {
		t.Errorf("reconnect of a shard no node runs: %d %s, want 404", code, body)
	}
	// Drain is the fleet's endpoint; this build says it lacks it.
	if code, _, body := httpDo(t, "POST", base+"/api/console/nodes/node-a/drain", adminToken); code != http.StatusNotImplemented && code/100 != 2 {
		t.Errorf("drain: %d %s, want 501 (no drain in this build) or success", code, body)
	}
	// Start-up progress: the final line, per bot, on each node.
	for i, l := range r.logs {
		testkit.Eventually(t, 30*time.Second, "the all-ready line", func() bool { return strings.Contains(l.String(), "all 3 shards ready in ") })
		if strings.Contains(l.String(), testToken) || strings.Contains(l.String(), adminToken) {
			t.Errorf("node %d's log shows a token", i)
		}
	}
	if strings.Contains(body, adminToken) {
		t.Error("an answer shows the token")
	}
}

// TestConsole_NodeGoneIsUnowned: when a node stops, its shards show as
// unowned (no live node runs them) on the other node's console and in the
// metrics, and the console lists the problem.
func TestConsole_NodeGoneIsUnowned(t *testing.T) {
	r := startFleet(t, fleetOptions{shards: 4, nodes: 2})
	testkit.Eventually(t, 60*time.Second, "4 shards ready", func() bool { return r.readyCount(0) == 4 })
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := r.nodes[1].Close(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "2 unowned shards", func() bool {
		rep := r.console(0)
		return len(rep.Nodes) == 1 && len(rep.Bots) == 1 && rep.Bots[0].Unowned == 2 &&
			slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, "2 of 4 shards are run by no live node") })
	})
	fams := scrape(t, r.nodes[0])
	if v := gaugeValue(t, fams, "feathery_fleet_unowned_shards", map[string]string{"bot": "main"}); v != 2 {
		t.Errorf("feathery_fleet_unowned_shards = %v, want 2", v)
	}
	if v := gaugeValue(t, fams, "feathery_fleet_nodes", nil); v != 1 {
		t.Errorf("feathery_fleet_nodes = %v, want 1", v)
	}
}

// scrape reads and parses node d's /metrics with the Prometheus text
// parser.
func scrape(t *testing.T, d *daemon) map[string]*dtoFamily {
	t.Helper()
	return scrapeURL(t, "http://"+d.admin.Addr()+"/metrics")
}

func scrapeURL(t *testing.T, url string) map[string]*dtoFamily {
	t.Helper()
	code, h, body := httpDo(t, "GET", url, "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", code, h.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	if strings.Contains(body, testToken) || strings.Contains(body, adminToken) {
		t.Fatal("/metrics shows a token")
	}
	return fams
}

func labelsMatch(m *dtoMetric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func gaugeValue(t *testing.T, fams map[string]*dtoFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	for _, m := range f.GetMetric() {
		if labelsMatch(m, labels) {
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

// wantFamilies are the families /metrics must have (issue's list: runtime,
// process, gateway counters, histograms, stream and fleet gauges).
var wantFamilies = []string{
	"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes",
	"feathery_shard_identifies_total", "feathery_shard_resumes_total", "feathery_gateway_invalid_sessions_total",
	"feathery_shard_reconnects_total", "feathery_gateway_close_codes_total", "feathery_gaps_total",
	"feathery_publish_batch_seconds", "feathery_redis_roundtrip_seconds", "feathery_event_age_at_publish_seconds",
	"feathery_publish_batch_events",
	"feathery_stream_length", "feathery_stream_group_lag", "feathery_stream_group_pending",
	"feathery_shards", "feathery_fleet_nodes", "feathery_fleet_unowned_shards",
	"feathery_shard_latency_max_seconds", "feathery_publisher_published_total", "feathery_filter_dropped_total",
	"feathery_redis_up", "feathery_build_info",
}

// TestMetrics_Families1000Shards: /metrics of a feathery process running
// 1,000 shards parses with the Prometheus text parser, has every family,
// and its series count is bounded (no per-shard labels). feathery runs as
// its own process, built without -race: the promise is about the series,
// and 1,000 race-instrumented shards do not start on a loaded 2-core
// machine in reasonable time.
func TestMetrics_Families1000Shards(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 shards: not in -short")
	}
	bin := buildPlainBinary(t)
	const shards = 1000
	fake, err := discordtest.Start(discordtest.Config{
		Token: testToken, Shards: shards, MaxConcurrency: shards,
		IdentifyWindow: 200 * time.Millisecond, HeartbeatInterval: 40 * time.Second,
		Guilds: 20, MembersPerGuild: 5, Seed: 5, Rate: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	rs := redistest.Start(t, redistest.Options{})
	admin, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "feathery.yaml")
	if err := bench.WriteConfig(cfgPath, bench.Config{
		RedisURL: "redis://" + rs.Addr, RESTURL: fake.URL() + "/api/v10", AdminAddr: admin, AdminToken: adminToken,
		LogLevel: "info", LogFormat: "text", IdentifyWindow: 200 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
		Bots: []bench.Bot{{
			Name: "main", Token: testToken, Shards: shards,
			Routes: []bench.Route{{Events: []string{"*"}, Stream: "all", Groups: []string{"g1"}}},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	f, err := bench.StartFeathery(bench.FeatheryOptions{Binary: bin, Config: cfgPath, AdminAddr: admin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = f.Stop(ctx)
		if t.Failed() {
			t.Logf("feathery's log ends with:\n%s", f.StderrTail(3000))
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	took, err := f.WaitReady(ctx, shards)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1000 shards ready in %v", took)
	// A close code and an invalid session, so those families have samples.
	if err := fake.CloseShard(3, 4000); err != nil {
		t.Fatal(err)
	}
	if err := fake.Invalidate(4, true); err != nil {
		t.Fatal(err)
	}
	metricsURL := "http://" + admin + "/metrics"
	testkit.Eventually(t, 2*time.Minute, "every family with samples", func() bool {
		fams := scrapeURL(t, metricsURL)
		for _, name := range wantFamilies {
			if f, ok := fams[name]; !ok || len(f.GetMetric()) == 0 {
				return false
			}
		}
		return fams["feathery_publish_batch_events"].GetMetric()[0].GetHistogram().GetSampleCount() > 0
	})
	fams := scrapeURL(t, metricsURL)
	series := 0
	var names []string
	for name, f := range fams {
		names = append(names, name)
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "shard" {
					t.Errorf("%s has a shard label", name)
				}
			}
			switch {
			case m.GetHistogram() != nil:
				series += len(m.GetHistogram().GetBucket()) + 3 // buckets, +Inf, sum, count
			case m.GetSummary() != nil:
				series += len(m.GetSummary().GetQuantile()) + 2
			default:
				series++
			}
		}
	}
	sort.Strings(names)
	t.Logf("/metrics with 1000 shards: %d families, %d series", len(fams), series)
	if series > 400 {
		t.Errorf("%d series with 1000 shards, want at most 400 (families: %s)", series, strings.Join(names, " "))
	}
	if v := gaugeValue(t, fams, "feathery_shards", map[string]string{"bot": "main", "state": "ready"}); v < 990 {
		t.Errorf("feathery_shards{state=ready} = %v", v)
	}
	if v := gaugeValue(t, fams, "feathery_gateway_close_codes_total", map[string]string{"bot": "main", "code": "4000"}); v < 1 {
		t.Errorf("close code 4000 counted %v times", v)
	}
	if v := gaugeValue(t, fams, "feathery_gateway_invalid_sessions_total", map[string]string{"bot": "main", "resumable": "true"}); v < 1 {
		t.Errorf("resumable invalid sessions counted %v times", v)
	}
	if v := gaugeValue(t, fams, "feathery_stream_group_pending", map[string]string{"bot": "main", "stream": "all", "group": "g1"}); v != 0 {
		t.Errorf("pending of g1 = %v, want 0 (nobody reads)", v)
	}
	if v := gaugeValue(t, fams, "feathery_stream_length", map[string]string{"bot": "main", "stream": "all"}); v <= 0 {
		t.Errorf("stream length %v", v)
	}
	if v := gaugeValue(t, fams, "feathery_fleet_unowned_shards", map[string]string{"bot": "main"}); v != 0 {
		t.Errorf("unowned shards %v, want 0", v)
	}
	// Every metric the alert rules and the Grafana dashboard use exists.
	for _, file := range []string{"../../docs/alerts.yml", "../../docs/grafana-dashboard.json"} {
		for _, name := range metricNamesIn(t, file) {
			if _, ok := fams[name]; !ok {
				t.Errorf("%s uses %s, which /metrics lacks", file, name)
			}
		}
	}
	// The start-up log ends with the final line (the progress lines come
	// every 5 s while shards start: TestProgress_Lines).
	testkit.Eventually(t, 30*time.Second, "the all-ready line in the log", func() bool {
		return strings.Contains(f.StderrTail(1<<20), "all 1000 shards ready in ")
	})
}

// buildPlainBinary builds feathery without the race detector.
func buildPlainBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "feathery")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var metricNameRE = regexp.MustCompile(`\b(feathery_[a-z_]+?)(_bucket|_sum|_count)?\b`)

// metricNamesIn lists the feathery_* families a docs file uses.
func metricNamesIn(t *testing.T, path string) []string {
	t.Helper()
	b, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range metricNameRE.FindAllStringSubmatch(string(b), -1) {
		name := m[1]
		if m[2] != "" && !histogramFamilies[name] {
			name += m[2]
		}
		seen[name] = true
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	if len(out) == 0 {
		t.Fatalf("%s names no feathery metric", path)
	}
	return out
}

var histogramFamilies = map[string]bool{
	"feathery_publish_batch_seconds": true, "feathery_redis_roundtrip_seconds": true,
	"feathery_event_age_at_publish_seconds": true, "feathery_publish_batch_events": true,
}

// TestProgress_Lines: the progress log has the words and the final
// line comes once.
func TestProgress_Lines(t *testing.T) {
	buf := &testkit.SyncBuffer{}
	p := newProgress(slog.New(slog.NewTextHandler(buf, nil)), 5*time.Second)
	start := time.Unix(1000, 0)
	shards := func(ready, identifying, total int) []gateway.ShardStatus {
		var out []gateway.ShardStatus
		for i := range total {
			st := gateway.StateConnecting
			switch {
			case i < ready:
				st = gateway.StateReady
			case i < ready+identifying:
				st = gateway.StateIdentifying
			}
			out = append(out, gateway.ShardStatus{Bot: "big", Shard: i, State: st})
		}
		return out
	}
	p.update(start, start, shards(0, 16, 1000))
	p.update(start.Add(100*time.Second), start, shards(312, 41, 1000))
	p.update(start.Add(331*time.Second), start, shards(1000, 0, 1000))
	p.update(start.Add(340*time.Second), start, shards(1000, 0, 1000))
	got := buf.String()
	for _, want := range []string{
		`msg="0/1000 shards ready, 16 identifying, ETA unknown" bot=big`,
		// 312 ready in 100 s: 688 more take 220.5 s.
		`msg="312/1000 shards ready, 41 identifying, ETA 3m41s" bot=big`,
		`msg="all 1000 shards ready in 5m31s" bot=big`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %s:\n%s", want, got)
		}
	}
	if strings.Count(got, "all 1000 shards ready") != 1 {
		t.Errorf("the final line comes more than once:\n%s", got)
	}
	if s := p.snapshot()["big"]; s.ReadyIn != "5m31s" || s.ETASeconds != 0 {
		t.Errorf("snapshot %+v", s)
	}
}

// TestCacheAPI: the cache API answers the fake's model for a guild, its
// channels, roles and members (paged), a user and a user's mutual guilds;
// it needs the token unless admin.public_cache is set; bad ids are refused.
func TestCacheAPI(t *testing.T) {
	r := startFleet(t, fleetOptions{shards: 2, nodes: 1, guilds: 5})
	testkit.Eventually(t, 60*time.Second, "2 shards ready", func() bool { return r.readyCount(0) == 2 })
	w := r.fake.Snapshot()
	base := "http://" + r.nodes[0].admin.Addr() + "/api/cache"
	get := func(path string) (int, string) {
		code, _, body := httpDo(t, "GET", base+path, adminToken)
		return code, body
	}
	// A guild with members, and a user in more than one guild.
	var gid string
	for id := range w.Guilds {
		if gid == "" || id < gid {
			gid = id
		}
	}
	testkit.Eventually(t, 30*time.Second, "guild "+gid+" cached", func() bool { c, _ := get("/guilds/" + gid); return c == 200 })
	code, body := get("/guilds/" + gid)
	if code != 200 || !jsonEqualModel(t, []byte(body), w.Guilds[gid].Guild, guildOnlyInCache...) {
		t.Errorf("guild %s: %d\n got %s\nwant %s", gid, code, body, w.Guilds[gid].Guild)
	}
	checkList := func(what, path string, want map[string]json.RawMessage) {
		t.Helper()
		code, body := get(path)
		var got []json.RawMessage
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("%s: %d %s", what, code, body)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %d, want %d", what, len(got), len(want))
		}
		for _, g := range got {
			var id struct{ ID string }
			_ = json.Unmarshal(g, &id)
			if !jsonEqualModel(t, g, want[id.ID]) {
				t.Errorf("%s %s:\n got %s\nwant %s", what, id.ID, g, want[id.ID])
			}
		}
	}
	mg := w.Guilds[gid]
	checkList("channels", "/guilds/"+gid+"/channels", mg.Channels)
	checkList("roles", "/guilds/"+gid+"/roles", mg.Roles)

	// Members, paged 5 at a time, equal the model's members with users.
	var all []json.RawMessage
	after := ""
	for range 100 {
		code, body := get("/guilds/" + gid + "/members?limit=5&after=" + after)
		var page []json.RawMessage
		if code != 200 || json.Unmarshal([]byte(body), &page) != nil {
			t.Fatalf("members page: %d %s", code, body)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		var last struct{ User struct{ ID string } }
		_ = json.Unmarshal(page[len(page)-1], &last)
		after = last.User.ID
	}
	if len(all) != len(mg.Members) {
		t.Fatalf("paged members: got %d, want %d", len(all), len(mg.Members))
	}
	for _, m := range all {
		var id struct{ User struct{ ID string } }
		_ = json.Unmarshal(m, &id)
		if !jsonEqualModel(t, m, asCachedMember(t, mg.Members[id.User.ID])) {
			t.Errorf("member %s:\n got %s\nwant %s", id.User.ID, m, mg.Members[id.User.ID])
		}
	}

	// A user in several guilds: the user and its mutual guilds.
	guildsOf := map[string][]string{}
	for g, mg := range w.Guilds {
		for u := range mg.Members {
			guildsOf[u] = append(guildsOf[u], g)
		}
	}
	var uid string
	for u, gs := range guildsOf {
		if len(gs) > len(guildsOf[uid]) || (len(gs) == len(guildsOf[uid]) && u < uid) {
			uid = u
		}
	}
	if len(guildsOf[uid]) < 2 {
		t.Fatalf("the model has no user in two guilds")
	}
	code, body = get("/users/" + uid)
	if code != 200 || !jsonEqualModel(t, []byte(body), asCachedUser(t, w.Users[uid])) {
		t.Errorf("user %s: %d\n got %s\nwant %s", uid, code, body, w.Users[uid])
	}
	code, body = get("/users/" + uid + "/mutual-guilds")
	var mutual []struct{ ID string }
	if code != 200 || json.Unmarshal([]byte(body), &mutual) != nil {
		t.Fatalf("mutual guilds: %d %s", code, body)
	}
	var gotIDs []string
	for _, g := range mutual {
		gotIDs = append(gotIDs, g.ID)
	}
	want := guildsOf[uid]
	sortSnowflakes(want)
	if !slices.Equal(gotIDs, want) {
		t.Errorf("mutual guilds of %s: got %v, want %v", uid, gotIDs, want)
	}

	// Refusals.
	for path, wantCode := range map[string]int{
		"/guilds/12x":                         400,
		"/guilds/1":                           404,
		"/guilds/1/members":                   404,
		"/guilds/" + gid + "/members?limit=0": 400,
		"/users/" + uid + "?bot=nobody":       404,
	} {
		if code, body := get(path); code != wantCode {
			t.Errorf("GET %s: %d %s, want %d", path, code, body, wantCode)
		}
	}
	if code, _, _ := httpDo(t, "GET", base+"/users/"+uid, ""); code != http.StatusUnauthorized {
		t.Errorf("without token: %d, want 401 (admin.public_cache is off)", code)
	}

	// A user entry something else wrote over: 502 naming what is wrong.
	rc := r.redis.Client(t)
	k := broker.NewCacheKeys("")
	if err := rc.Do(t.Context(), rc.B().Hset().Key(k.CacheUsers(uid)).FieldValue().FieldValue(uid, "x{").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/users/" + uid, "/users/" + uid + "/mutual-guilds", "/guilds/" + guildsOf[uid][0] + "/members?limit=1000"} {
		if code, body := get(path); code != http.StatusBadGateway || !strings.Contains(body, "bad guild id") {
			t.Errorf("GET %s over a malformed user entry: %d %s, want 502 naming the guild id", path, code, body)
		}
	}
}

// TestCacheAPI_Public: admin.public_cache opens the cache API, and only it.
func TestCacheAPI_Public(t *testing.T) {
	r := startFleet(t, fleetOptions{shards: 1, nodes: 1, guilds: 2, publicCache: true})
	base := "http://" + r.nodes[0].admin.Addr()
	var uid string
	for u := range r.fake.Snapshot().Users {
		uid = u
		break
	}
	testkit.Eventually(t, 60*time.Second, "user cached, read without a token", func() bool {
		code, _, _ := httpDo(t, "GET", base+"/api/cache/users/"+uid, "")
		return code == 200
	})
	if code, _, _ := httpDo(t, "POST", base+"/api/console/shards/main/0/reconnect", ""); code != http.StatusUnauthorized {
		t.Errorf("an action without token: %d, want 401", code)
	}
}

// jsonEqualModel compares JSON documents, dropping the named top-level
// members of the first.
func jsonEqualModel(t *testing.T, got, want []byte, drop ...string) bool {
	t.Helper()
	if len(want) == 0 {
		return false
	}
	g, w := normalized(t, got, drop...), normalized(t, want, drop...)
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

// TestOpenAPI_Routes: openapi.json documents exactly the routes the admin
// API serves under /api/ (and /healthz, /metrics): every documented
// operation reaches a handler, and every console and cache route is
// documented.
func TestOpenAPI_Routes(t *testing.T) {
	r := startFleet(t, fleetOptions{shards: 1, nodes: 1, guilds: 1})
	base := "http://" + r.nodes[0].admin.Addr()
	code, _, body := httpDo(t, "GET", base+"/api/openapi.json", "")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %d %.200s", code, body)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	for _, rt := range r.nodes[0].admin.apiRoutes(r.nodes[0]) {
		if !documented[rt.method+" "+rt.pattern] {
			t.Errorf("route %s %s is not in openapi.json", rt.method, rt.pattern)
		}
	}
	// Each documented operation reaches a handler: the mux's own 404 and
	// 405 answers are plain text, the API's are JSON.
	fill := strings.NewReplacer("{bot}", "main", "{id}", "0", "{node}", "node-x")
	for op := range documented {
		method, path, _ := strings.Cut(op, " ")
		code, h, body := httpDo(t, method, base+fill.Replace(path), "")
		if (code == 404 || code == 405) && !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
			t.Errorf("%s: the mux has no such route (%d %q)", op, code, body)
		}
	}
}

// TestSampler_LagGrowsWhileConsumerStopped: with a consumer reading group
// g1 the lag stays near 0; stopped, the lag grows and the console says the
// group is falling behind.
func TestSampler_LagGrowsWhileConsumerStopped(t *testing.T) {
	r := startFleet(t, fleetOptions{shards: 2, nodes: 1, rate: 40})
	stop := r.startConsumer("feathery:{bot:main}:events", "g1")
	lagOf := func() (int64, bool) {
		for _, s := range r.console(0).Streams {
			if s.Stream == "events" && len(s.Groups) == 1 && s.Groups[0].Lag != nil {
				return *s.Groups[0].Lag, true
			}
		}
		return 0, false
	}
	testkit.Eventually(t, 60*time.Second, "g1 caught up while its consumer reads", func() bool {
		lag, ok := lagOf()
		return ok && lag < 20
	})
	stop()
	first, _ := lagOf()
	testkit.Eventually(t, 60*time.Second, "g1's lag growing with its consumer stopped, named a problem", func() bool {
		lag, _ := lagOf()
		rep := r.console(0)
		return lag > first+40 && slices.ContainsFunc(rep.Problems, func(p string) bool { return strings.Contains(p, "group g1 of stream") })
	})
}

// startConsumer reads group of stream (XREADGROUP + XACK) until stop.
func (r *fleetRig) startConsumer(stream, group string) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	c := r.rc
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			res, err := c.Do(ctx, c.B().Xreadgroup().Group(group, "test").Count(100).Block(200).Streams().Key(stream).Id(">").Build()).AsXRead()
			if err != nil {
				continue
			}
			for _, es := range res {
				for _, e := range es {
					c.Do(ctx, c.B().Xack().Key(stream).Group(group).Id(e.ID).Build())
				}
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	r.t.Cleanup(stop)
	return stop
}

type (
	dtoFamily = dto.MetricFamily
	dtoMetric = dto.Metric
)

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
