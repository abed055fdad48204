package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/feathery/feathery/luascripts"
)

const (
	fleetBot    = "fl"
	fleetTTLStr = "2s"
	fleetTTLDur = 2 * time.Second
)

// leaseRig is one fake Discord, one redis-server (AOF) and feathery
// processes forming a fleet over them.
type leaseRig struct {
	t      *testing.T
	ctx    context.Context
	bin    string
	shards int
	fake   *discordtest.Server
	rs     *bench.RedisServer
	rc     rueidis.Client
	keys   broker.Keys
	dir    string
	nodes  map[string]*fleetNode
	phases []string
	// bot is the bot's name (fleetBot unless set before start); routes
	// place its events (nil = one stream).
	bot    string
	routes []bench.Route
	// identifyWindow is feathery's (0 = the fake's 150ms).
	identifyWindow time.Duration
}

// fleetNode is one feathery process of the fleet.
type fleetNode struct {
	id    string
	f     *bench.Feathery
	admin string
}

func newLeaseRig(t *testing.T, bin string, fc discordtest.Config) *leaseRig {
	t.Helper()
	rs, err := bench.StartRedis(bench.RedisOptions{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	fc.Token = testToken
	fc.MaxConcurrency = fc.Shards
	fc.IdentifyWindow = 150 * time.Millisecond
	fake, err := discordtest.Start(fc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	r := &leaseRig{t: t, ctx: ctx, bin: bin, shards: fc.Shards, fake: fake, rs: rs,
		rc: redisClient(t, rs.Addr), keys: broker.NewKeys(""), dir: t.TempDir(), nodes: map[string]*fleetNode{}, bot: fleetBot}
	t.Cleanup(func() {
		for _, n := range r.nodes {
			if n.f != nil {
				_ = n.f.Signal(syscall.SIGCONT)
				_ = n.f.Kill()
			}
		}
		if t.Failed() {
			t.Logf("phases: %s", strings.Join(r.phases, ", "))
			for id, n := range r.nodes {
				t.Logf("node %s's log ends with:\n%s", id, n.f.StderrTail(2500))
			}
			logRaces(t, r.dir)
		}
	})
	return r
}

func (r *leaseRig) phase(name string) {
	r.phases = append(r.phases, time.Now().Format("15:04:05.000")+" "+name)
}

// start launches node id; shardIDs != nil gives it a static assignment.
func (r *leaseRig) start(id string, shardIDs []int) *fleetNode {
	r.t.Helper()
	admin, err := bench.FreeAddr()
	if err != nil {
		r.t.Fatal(err)
	}
	dir := filepath.Join(r.dir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.t.Fatal(err)
	}
	y, err := bench.Config{
		RedisURL: r.rs.URL(), RESTURL: r.fake.URL() + "/api/v10", AdminAddr: admin, AdminToken: fleetAdminToken,
		LogLevel: "debug", IdentifyWindow: cmp.Or(r.identifyWindow, 150*time.Millisecond), ShutdownTimeout: 30 * time.Second,
		Publisher: bench.PublisherTuning{QueueSize: 256},
		Bots: []bench.Bot{{Name: r.bot, Token: testToken, Shards: r.shards, ShardIDs: shardIDs,
			Compression: "zstd-stream", Cache: true, Routes: r.routes}},
	}.YAML()
	if err != nil {
		r.t.Fatal(err)
	}
	y = fmt.Appendf(y, "node:\n  id: %s\nfleet:\n  lease_ttl: %s\n", id, fleetTTLStr)
	cfg := filepath.Join(dir, "feathery.yaml")
	if err := os.WriteFile(cfg, y, 0o600); err != nil {
		r.t.Fatal(err)
	}
	f, err := bench.StartFeathery(bench.FeatheryOptions{Binary: r.bin, Config: cfg, AdminAddr: admin})
	if err != nil {
		r.t.Fatal(err)
	}
	n := &fleetNode{id: id, f: f, admin: admin}
	r.nodes[id] = n
	return n
}

const fleetAdminToken = "fleet-admin-token-0123456789"

// owners reads the live lease of every shard: shard -> node ("" = none).
func (r *leaseRig) owners() []string {
	r.t.Helper()
	keys := make([]string, r.shards)
	for i := range keys {
		keys[i] = r.keys.Lease(r.bot, i)
	}
	now, ls, err := luascripts.LeaseState(r.ctx, r.rc, keys)
	if err != nil {
		r.t.Fatalf("read leases: %v", err)
	}
	out := make([]string, r.shards)
	for i, l := range ls {
		if l.Node != "" && l.Expires > now {
			out[i] = l.Node
		}
	}
	return out
}

// readyShards is the shards node runs and reports ready.
func (r *leaseRig) readyShards(n *fleetNode) []int {
	var out []int
	for _, s := range featheryStatus(r.t, r.ctx, n.f).Shards {
		if s.State == "ready" {
			out = append(out, s.Shard)
		}
	}
	sort.Ints(out)
	return out
}

// settled waits until the running nodes share every shard within one of
// each other, each running (ready) exactly the shards whose leases it
// holds, and returns the owners.
func (r *leaseRig) settled(what string, nodes ...*fleetNode) []string {
	r.t.Helper()
	var owners []string
	var why string
	deadline := time.Now().Add(90 * time.Second)
	for {
		owners = r.owners()
		why = ""
		counts := map[string]int{}
		for id, o := range owners {
			if !slices.ContainsFunc(nodes, func(n *fleetNode) bool { return n.id == o }) {
				why = fmt.Sprintf("shard %d is owned by %q, none of the nodes", id, o)
			}
			counts[o]++
		}
		lo, hi := r.shards, 0
		for _, n := range nodes {
			lo, hi = min(lo, counts[n.id]), max(hi, counts[n.id])
			var held []int
			for id, o := range owners {
				if o == n.id {
					held = append(held, id)
				}
			}
			if got := r.readyShards(n); why == "" && !slices.Equal(got, held) {
				why = fmt.Sprintf("node %s runs ready %v, holds %v", n.id, got, held)
			}
		}
		if why == "" && hi-lo > 1 {
			why = fmt.Sprintf("unbalanced: %v", counts)
		}
		if why == "" {
			return owners
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not settled after 90s: %s (owners %v)", what, why, owners)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// published is the number of entries on the bot's stream.
func (r *leaseRig) published() int64 { return xlen(r.t, r.rc, r.keys.Events(r.bot)) }

func (r *leaseRig) progress(what string, more int64) {
	r.t.Helper()
	base := r.published()
	testkit.Eventually(r.t, 60*time.Second, what, func() bool { return r.published() >= base+more })
}

// stop sends SIGTERM to node and waits for a clean exit.
func (r *leaseRig) stop(n *fleetNode) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 60*time.Second)
	defer cancel()
	if err := n.f.Stop(ctx); err != nil {
		r.t.Fatalf("stop node %s: %v", n.id, err)
	}
	delete(r.nodes, n.id)
}

// finish stops the traffic, waits until the fleet published it, stops the
// nodes and checks the stream against the ledger: nothing lost, nothing
// doubled, nothing out of order, no session lost.
func (r *leaseRig) finish(identifies int64, allowViolation func(discordtest.Violation) bool) {
	t := r.t
	t.Helper()
	r.phase("stop traffic")
	r.fake.SetRate(0)
	if err := r.fake.WaitIdle(r.ctx); err != nil {
		t.Fatal(err)
	}
	sent := int64(0)
	for id := range r.shards {
		for _, ls := range r.fake.Ledger(id) {
			sent += int64(len(ls.Entries))
		}
	}
	testkit.Eventually(t, 60*time.Second, "every dispatch published", func() bool { return r.published() >= sent })
	for _, n := range r.nodes {
		r.stop(n)
	}
	logs, _ := filepath.Glob(filepath.Join(r.dir, "*", "stderr.log"))
	for _, name := range logs {
		if b, _ := os.ReadFile(name); strings.Contains(string(b), "WARNING: DATA RACE") {
			t.Errorf("%s has a data race report", name)
		}
	}
	st := r.fake.Stats()
	for _, v := range st.Violations {
		if allowViolation == nil || !allowViolation(v) {
			t.Errorf("the fake saw a protocol violation: %+v", v)
		}
	}
	if st.Identifies != identifies {
		t.Errorf("%d identifies, want %d: every move must RESUME", st.Identifies, identifies)
	}
	if evs := r.controlEvents(broker.ControlCheckpoint); len(evs) > 0 {
		t.Errorf("checkpoint incidents %v: moves must find the checkpoint where the last owner left it", evs)
	}
	gaps := gapEvents(t, r.rc, r.keys.Control(), r.bot)
	if len(gaps) != 0 {
		t.Errorf("gap control events %v: no session may be lost", gaps)
	}
	got := readEntries(t, r.rc, []string{r.keys.Events(r.bot)})
	checkDelivery(t, r.fake, r.shards, r.bot, got, gaps, func(string) string { return r.keys.Events(r.bot) })
}

// controlEvents reads the control stream's events of kind.
func (r *leaseRig) controlEvents(kind broker.ControlKind) []map[string]string {
	var out []map[string]string
	for _, e := range xrangeAll(r.t, r.rc, r.keys.Control()) {
		if e.FieldValues["kind"] == string(kind) {
			out = append(out, e.FieldValues)
		}
	}
	return out
}

// downTimes measures, for every lease a node took from a former owner
// after since, the shard's down time: from the receive time of the last
// entry the old owner published to that of the first the new owner
// published.
func (r *leaseRig) downTimes(since time.Time) []time.Duration {
	r.t.Helper()
	entries := readEntries(r.t, r.rc, []string{r.keys.Events(r.bot)})
	byShard := map[int][]int64{} // receive times, ms, in stream order per shard
	for _, e := range entries {
		byShard[e.Shard] = append(byShard[e.Shard], e.At.UnixMilli())
	}
	var out []time.Duration
	for _, ev := range r.controlEvents(broker.ControlLeaseAcquired) {
		at, _ := strconv.ParseInt(ev["at"], 10, 64)
		if at < since.UnixMilli() {
			continue
		}
		shard, _ := strconv.Atoi(ev["shard"])
		ts := byShard[shard]
		i := sort.Search(len(ts), func(i int) bool { return ts[i] >= at })
		if i == 0 || i == len(ts) {
			continue
		}
		out = append(out, time.Duration(ts[i]-ts[i-1])*time.Millisecond)
	}
	return out
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// TestFleet_EndToEnd is the fleet with real processes: one feathery node
// runs 12 shards, two more join and the shards spread 4/4/4 by hand-over;
// a node killed with SIGKILL has its shards RESUMEd by the others after
// the lease TTL; a node stopped with SIGSTOP past the TTL writes not one
// entry once it runs again (fencing) and rejoins; a rolling deploy
// replaces the three nodes with traffic flowing; the fleet scales back to
// one node. The stream then equals the fake's ledger: nothing lost,
// doubled or out of order, every move a RESUME (12 identifies in all).
// Figures (hand-over down time, failover time, resumes per deploy) are
// logged with the prefix "figure:".
func TestFleet_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server and feathery processes")
	}
	bin := buildBinary(t)
	const shards = 12
	r := newLeaseRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: 2 * time.Second, Guilds: 48, MembersPerGuild: 6, Seed: 61, Rate: 240,
	})
	fake := r.fake

	// Scale 1 -> 3: balance within one.
	r.phase("start n1")
	n1 := r.start("n1", nil)
	r.settled("one node", n1)
	r.progress("traffic", 200)
	r.phase("start n2 n3")
	joined := time.Now()
	n2, n3 := r.start("n2", nil), r.start("n3", nil)
	r.settled("three nodes", n1, n2, n3)
	handovers := r.downTimes(joined)
	t.Logf("figure: scale 1->3: %d hand-overs, down time p50 %s p99 %s", len(handovers), percentile(handovers, .5), percentile(handovers, .99))
	if st := fake.Stats(); st.Identifies != shards {
		t.Fatalf("%d identifies after the scale-out, want %d (hand-overs RESUME)", st.Identifies, shards)
	}
	r.progress("traffic on three nodes", 200)

	// kill -9 n3: its shards are taken after the TTL and RESUMEd.
	r.phase("SIGKILL n3")
	before := fake.Stats()
	held := 0
	for _, o := range r.owners() {
		if o == "n3" {
			held++
		}
	}
	killed := time.Now()
	if err := n3.f.Kill(); err != nil {
		t.Fatal(err)
	}
	delete(r.nodes, "n3")
	r.settled("after SIGKILL", n1, n2)
	failover := time.Since(killed)
	t.Logf("figure: failover after kill -9: all %d shards ready again %s after the kill (lease TTL %s)", held, failover.Round(time.Millisecond), fleetTTLDur)
	if failover < fleetTTLDur/2 {
		t.Errorf("the killed node's shards moved %s after the kill, before its leases could expire", failover)
	}
	if st := fake.Stats(); st.Resumes < before.Resumes+int64(held) || st.Identifies != before.Identifies {
		t.Errorf("failover: %d resumes (%d before, %d shards moved), %d identifies (%d before): every moved shard must RESUME",
			st.Resumes, before.Resumes, held, st.Identifies, before.Identifies)
	}
	r.progress("traffic after the failover", 200)

	// A new n4 joins; then SIGSTOP n1 past the TTL.
	r.phase("start n4")
	n4 := r.start("n4", nil)
	r.settled("n4 joined", n1, n2, n4)
	r.phase("SIGSTOP n1")
	var n1Shards []int
	for id, o := range r.owners() {
		if o == "n1" {
			n1Shards = append(n1Shards, id)
		}
	}
	stopped := time.Now()
	if err := n1.f.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "n1's shards taken by n2 and n4", func() bool {
		for _, id := range n1Shards {
			if o := r.owners()[id]; o == "" || o == "n1" {
				return false
			}
		}
		return true
	})
	r.progress("traffic while n1 is stopped", 200)
	r.phase("SIGCONT n1")
	resumed := time.Now()
	if err := n1.f.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	r.settled("n1 rejoined", n1, n2, n4)
	r.progress("traffic after n1 rejoined", 200)
	// Not one entry received by n1 before its pause was written after it.
	for _, e := range readEntries(t, r.rc, []string{r.keys.Events(fleetBot)}) {
		if e.At.Before(stopped) && !idTime(t, e.ID).Before(resumed) {
			t.Errorf("entry %s (shard %d seq %d, received %s before the SIGSTOP) was written after the SIGCONT: the paused node wrote after losing its lease",
				e.ID, e.Shard, e.Seq, stopped.Sub(e.At))
		}
	}
	lost := map[string]bool{}
	for _, ev := range r.controlEvents(broker.ControlLeaseLost) {
		if ev["node"] == "n1" {
			lost[ev["shard"]] = true
		}
	}
	for _, id := range n1Shards {
		if !lost[strconv.Itoa(id)] {
			t.Errorf("no lease_lost event of n1 for shard %d: the paused node did not notice it lost the shard", id)
		}
	}

	// Rolling deploy: three new nodes next to the old, then SIGTERM the
	// old ones one by one.
	r.phase("deploy")
	deployStart := time.Now()
	before = fake.Stats()
	n5, n6, n7 := r.start("n5", nil), r.start("n6", nil), r.start("n7", nil)
	r.settled("new nodes joined", n1, n2, n4, n5, n6, n7)
	for _, old := range []*fleetNode{n1, n2, n4} {
		r.phase("SIGTERM " + old.id)
		r.stop(old)
	}
	r.settled("deployed", n5, n6, n7)
	deploy := r.downTimes(deployStart)
	st := fake.Stats()
	t.Logf("figure: rolling deploy of 3 nodes: %d resumes (12 shards), %d hand-overs, down time p50 %s p99 %s max %s",
		st.Resumes-before.Resumes, len(deploy), percentile(deploy, .5), percentile(deploy, .99), percentile(deploy, 1))
	if st.Identifies != before.Identifies {
		t.Errorf("the deploy identified %d times, want 0", st.Identifies-before.Identifies)
	}
	r.progress("traffic after the deploy", 200)

	// GET /api/fleet on any node shows every node and every owner.
	var view broker.FleetView
	getJSON(t, r.ctx, n6, "/api/fleet", &view)
	owners := r.owners()
	if len(view.Bots) != 1 || len(view.Bots[0].Nodes) != 3 || len(view.Bots[0].Shards) != shards {
		t.Fatalf("GET /api/fleet: %+v, want 3 nodes and %d shards", view, shards)
	}
	for _, o := range view.Bots[0].Shards {
		if o.Owner != owners[o.Shard] {
			t.Errorf("GET /api/fleet: shard %d owner %q, the lease says %q", o.Shard, o.Owner, owners[o.Shard])
		}
	}

	// Scale 3 -> 1: n6 drained through the API (it keeps running, with no
	// shard, healthy), n7 stopped with SIGTERM.
	r.phase("scale in")
	if code := postAdmin(t, r.ctx, n6, "/api/node/drain", ""); code != 401 {
		t.Errorf("POST /api/node/drain without the token: %d, want 401", code)
	}
	if code := postAdmin(t, r.ctx, n6, "/api/node/drain", fleetAdminToken); code != 202 {
		t.Fatalf("POST /api/node/drain: %d, want 202", code)
	}
	r.settled("n6 drained", n5, n7)
	if got := r.readyShards(n6); len(got) != 0 {
		t.Errorf("drained n6 runs %v", got)
	}
	if h, err := n6.f.Health(r.ctx); err != nil || !h.OK {
		t.Errorf("drained n6's health: %+v %v, want ok", h, err)
	}
	r.stop(n6)
	r.stop(n7)
	r.settled("one node left", n5)
	r.progress("traffic on one node", 200)
	all := r.downTimes(joined)
	t.Logf("figure: all %d moves: down time p50 %s p99 %s", len(all), percentile(all, .5), percentile(all, .99))

	r.finish(shards, func(v discordtest.Violation) bool {
		// The paused node's connections miss heartbeats while stopped.
		return v.Kind == "late_heartbeat" && slices.Contains(n1Shards, v.Shard)
	})
}

// getJSON GETs path from node's admin API into v.
func getJSON(t *testing.T, ctx context.Context, n *fleetNode, path string, v any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", path, err)
	}
}

// getText GETs path from node's admin API as text.
func getText(t *testing.T, ctx context.Context, n *fleetNode, path string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.admin+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return string(b)
}

// postAdmin POSTs to node's admin API with the bearer token ("" = none)
// and returns the status code.
func postAdmin(t *testing.T, ctx context.Context, n *fleetNode, path, token string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.admin+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// logRaces logs the race detector's reports found in the nodes' logs.
func logRaces(t *testing.T, dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*", "stderr.log"))
	for _, name := range logs {
		b, _ := os.ReadFile(name)
		if i := strings.Index(string(b), "WARNING: DATA RACE"); i >= 0 {
			t.Logf("%s:\n%s", name, b[i:min(len(b), i+6000)])
		}
	}
}

// idTime is the time part of a stream entry id.
func idTime(t *testing.T, id string) time.Time {
	return time.UnixMilli(int64(entryID(t, id)[0]))
}

// TestFleet_StaticStandby: two processes given the same shard_ids: one
// runs them, the other stands by (logging who owns them) and opens no
// connection, so nothing fights (no resume while both run); when the
// owner is killed the standby takes the shards after the TTL and RESUMEs
// them.
func TestFleet_StaticStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server and feathery processes")
	}
	bin := buildBinary(t)
	r := newLeaseRig(t, bin, discordtest.Config{
		Shards: 3, HeartbeatInterval: 2 * time.Second, Guilds: 12, MembersPerGuild: 6, Seed: 67, Rate: 80,
	})
	a := r.start("a", []int{0, 1})
	testkit.Eventually(t, 60*time.Second, "a runs both shards", func() bool { return len(r.readyShards(a)) == 2 })
	r.progress("traffic", 100)
	before := r.fake.Stats()
	b := r.start("b", []int{0, 1})
	testkit.Eventually(t, 60*time.Second, "b logs that it stands by", func() bool {
		return strings.Contains(b.f.StderrTail(1<<20), "standing by")
	})
	if !strings.Contains(b.f.StderrTail(1<<20), `"owner":"a"`) {
		t.Errorf("b's standby log does not name the owner a")
	}
	// Three TTLs with both running: no fight.
	calm := time.Now()
	testkit.Eventually(t, 60*time.Second, "three TTLs with a and b running", func() bool {
		if n := len(r.readyShards(b)); n != 0 {
			t.Fatalf("standby b runs %d shards", n)
		}
		return time.Since(calm) > 3*fleetTTLDur
	})
	r.progress("traffic with a standby", 100)
	if st := r.fake.Stats(); st.Resumes != before.Resumes || st.TotalConnections != before.TotalConnections {
		t.Errorf("with a standby: %d resumes and %d connections, want none (no fight)", st.Resumes-before.Resumes, st.TotalConnections-before.TotalConnections)
	}
	// Shard 2 is in no node's shard_ids: after a TTL without an owner
	// every node answers 503 and says so, and a control event names it.
	for _, n := range []*fleetNode{a, b} {
		testkit.Eventually(t, 30*time.Second, n.id+" reports shard 2 unowned", func() bool {
			h, err := n.f.Health(r.ctx)
			return err == nil && !h.OK && strings.Contains(h.Detail, "without an owner")
		})
	}
	if m := getText(t, r.ctx, b, "/metrics"); !strings.Contains(m, `feathery_fleet_unowned_shards{bot="fl"} 1`) {
		t.Errorf("metrics do not count the unowned shard:\n%s", m)
	}
	if evs := r.controlEvents(broker.ControlUnowned); len(evs) == 0 || evs[0]["shard"] != "2" {
		t.Errorf("unowned control events %v, want one for shard 2", evs)
	}
	r.phase("SIGKILL a")
	if err := a.f.Kill(); err != nil {
		t.Fatal(err)
	}
	delete(r.nodes, "a")
	testkit.Eventually(t, 60*time.Second, "b took the shards", func() bool { return len(r.readyShards(b)) == 2 })
	if st := r.fake.Stats(); st.Resumes != before.Resumes+2 {
		t.Errorf("%d resumes after the owner died, want 2", st.Resumes-before.Resumes)
	}
	r.progress("traffic on b", 100)
	r.finish(2, nil)
}
