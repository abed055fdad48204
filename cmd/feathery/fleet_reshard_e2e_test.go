package main

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestFleet_Reshard is a re-shard inside a fleet, with real processes:
// three feathery nodes share a bot of 4 shards with traffic flowing; POST
// /api/bots/{bot}/reshard {"shards": 6} on one node gathers the old set on
// the node that coordinates, re-shards there (the new set beside the old,
// handed over guild by guild), commits the new count in Redis, and
// balance spreads the 6 new shards over the three nodes by hand-overs.
// Every dispatch the fake made is on the streams exactly once, judged by
// the event itself; a guild's events stay in order; the cache equals the
// fake's model; 4 + 6 identifies in all (every move a RESUME); no gap.
// Figures (overlap, identifies, events de-duplicated) are logged with the
// prefix "figure:".
func TestFleet_Reshard(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server and feathery processes")
	}
	bin := buildBinary(t)
	r := newLeaseRig(t, bin, discordtest.Config{
		Shards: 4, HeartbeatInterval: 2 * time.Second, Guilds: 32, MembersPerGuild: 8, Seed: 53, Rate: 240, Mix: reshardMix,
	})
	// The bot of the cache comparison (cacheDiff).
	r.bot = deliveryBot
	// A new set identifies 6 shards in a burst from one process: room for
	// a loaded machine's jitter between the limiter's slot and the
	// IDENTIFY within the fake's 150ms window.
	r.identifyWindow = 250 * time.Millisecond
	r.routes = []bench.Route{{Events: []string{"MESSAGE_*"}, Stream: "messages", Groups: []string{"g"}}}
	t.Cleanup(r.logReshardOnFailure)
	r.phase("start n1 n2 n3")
	n1, n2, n3 := r.start("n1", nil), r.start("n2", nil), r.start("n3", nil)
	r.settled("three nodes", n1, n2, n3)
	progress := func(what string, more int) {
		t.Helper()
		base := len(readEntries(t, r.rc, r.streams()))
		testkit.Eventually(t, 60*time.Second, what, func() bool { return len(readEntries(t, r.rc, r.streams())) >= base+more })
	}
	progress("traffic on three nodes", 300)

	r.phase("reshard 4 -> 6 (API on n2)")
	started := time.Now()
	if code, body := r.post(n2, "/api/bots/"+r.bot+"/reshard", `{"shards": 6}`); code != http.StatusAccepted {
		t.Fatalf("re-shard to 6: %d %s", code, body)
	}
	testkit.Eventually(t, 120*time.Second, "the fleet's plan runs 6 shards", func() bool {
		v, err := r.rc.Do(r.ctx, r.rc.B().Hget().Key(r.keys.FleetPlan(r.bot)).Field("count").Build()).ToString()
		return err == nil && v == "6"
	})
	committed := time.Since(started)
	r.shards = 6
	owners := r.settled("6 shards over three nodes", n1, n2, n3)
	spread := time.Since(started)
	t.Logf("figure: fleet re-shard 4 -> 6: committed %s after the request, spread over 3 nodes (%v) after %s",
		committed.Round(time.Millisecond), owners, spread.Round(time.Millisecond))
	progress("traffic after the re-shard", 300)

	r.judgeFleetReshard("4 -> 6", 4+6, 0, nil, n1, n2, n3)
}

// TestFleet_ShardingRequired: in a fleet of two nodes running 4 shards,
// Discord closes shard 1 with 4011 (sharding required) and recommends 6:
// the fleet re-shards to 6 instead of stopping the shard for good, and the
// 6 shards spread over both nodes. The lost session is reported as a gap
// (4011 ends it); everything else is on the streams exactly once.
func TestFleet_ShardingRequired(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server and feathery processes")
	}
	bin := buildBinary(t)
	r := newLeaseRig(t, bin, discordtest.Config{
		Shards: 4, HeartbeatInterval: 2 * time.Second, Guilds: 32, MembersPerGuild: 8, Seed: 59, Rate: 200, Mix: reshardMix,
	})
	r.bot = deliveryBot
	r.identifyWindow = 250 * time.Millisecond
	r.routes = []bench.Route{{Events: []string{"MESSAGE_*"}, Stream: "messages", Groups: []string{"g"}}}
	t.Cleanup(r.logReshardOnFailure)
	r.phase("start n1 n2")
	n1, n2 := r.start("n1", nil), r.start("n2", nil)
	r.settled("two nodes", n1, n2)
	base := len(readEntries(t, r.rc, r.streams()))
	testkit.Eventually(t, 60*time.Second, "traffic", func() bool { return len(readEntries(t, r.rc, r.streams())) >= base+300 })

	r.phase("4011 on shard 1")
	if err := r.fake.SetShards(6); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.CloseShard(1, 4011); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 120*time.Second, "the fleet's plan runs 6 shards", func() bool {
		v, err := r.rc.Do(r.ctx, r.rc.B().Hget().Key(r.keys.FleetPlan(r.bot)).Field("count").Build()).ToString()
		return err == nil && v == "6"
	})
	r.shards = 6
	r.settled("6 shards over two nodes", n1, n2)
	if evs := r.controlEvents(broker.ControlShardingRequired); len(evs) != 1 || evs[0]["shard"] != "1" {
		t.Errorf("sharding_required control events %v, want one of shard 1", evs)
	}
	if evs := r.controlEvents(broker.ControlFatal); len(evs) > 0 {
		t.Errorf("fatal control events %v: 4011 must re-shard", evs)
	}
	// 4011 ended shard 1's session (a gap); the node that gathers the old
	// set may identify shard 1 once more before the new set takes over.
	// Otherwise the guilds of the old shard 1, down, switch to the new set
	// at their markers: their GUILD_CREATE (and the READY of new shard 1)
	// are published.
	// Unless the node gathering the old set identified shard 1 again (a
	// second session of 4 shards), it was down when the new set came.
	deadOld := map[int]bool{1: true}
	old := 0
	for _, ls := range r.fake.Ledger(1) {
		if ls.Shards == 4 {
			old++
		}
	}
	if old > 1 {
		deadOld = nil
	}
	r.judgeFleetReshard("4 -> 6 after 4011", 4+6, 1, deadOld, n1, n2)
}

// judgeFleetReshard stops the traffic and checks the streams against the
// fake's ledgers by content (judgeReshard), the identifies (want, or up to
// extra more), the re-shard's control events and the gaps: none, or with
// extra, at most one session of shard 1 (the one 4011 ended). It logs the
// figures and stops the nodes.
func (r *leaseRig) judgeFleetReshard(what string, identifies int64, extra int64, deadOld map[int]bool, nodes ...*fleetNode) {
	t := r.t
	t.Helper()
	r.phase("stop traffic")
	r.fake.SetRate(0)
	if err := r.fake.WaitIdle(r.ctx); err != nil {
		t.Fatal(err)
	}
	judgeReshard(t, &configRig{deliveryRig: &deliveryRig{t: t, ctx: r.ctx, fake: r.fake, rc: r.rc, keys: r.keys,
		events: r.keys.Events(r.bot), messages: r.keys.Stream(r.bot, "messages")}}, []int{4, 6}, deadOld, nil)

	st := r.fake.Stats()
	if st.Identifies < identifies || st.Identifies > identifies+extra {
		t.Errorf("%d identifies, want %d (up to %d more): each set identifies once, every move RESUMEs", st.Identifies, identifies, extra)
	}
	re := regexp.MustCompile(`overlap ([0-9.a-zµ]+), guilds switched (\d+), old-set events skipped (\d+), new-set events skipped (\d+)`)
	done, commits := 0, 0
	for _, ev := range r.controlEvents(broker.ControlReshard) {
		if m := re.FindStringSubmatch(ev["detail"]); m != nil {
			done++
			old, _ := strconv.Atoi(m[3])
			nw, _ := strconv.Atoi(m[4])
			t.Logf("figure: fleet re-shard %s: overlap %s, identifies spent %d, %s guilds switched, events de-duplicated %d (old set %d, new set %d), resumes %d",
				what, m[1], st.Identifies, m[2], old+nw, old, nw, st.Resumes)
		}
		if strings.HasPrefix(ev["detail"], "fleet: committed: 4 -> 6") {
			commits++
		}
	}
	if done != 1 || commits != 1 {
		t.Errorf("%d re-shard done and %d fleet commit control events, want 1 each", done, commits)
	}
	gaps := gapEvents(t, r.rc, r.keys.Control(), r.bot)
	for k := range gaps {
		if extra == 0 || k.shard != 1 || len(gaps) > 1 {
			t.Errorf("gap control events %v: no session may be lost (but the one 4011 ends)", gaps)
			break
		}
	}
	if evs := r.controlEvents(broker.ControlCheckpoint); len(evs) > 0 {
		t.Errorf("checkpoint incidents %v", evs)
	}
	for i, v := range st.Violations {
		if i == 10 {
			break
		}
		t.Errorf("the fake saw a protocol violation: %+v", v)
	}
	r.logReshardOnFailure()
	for _, n := range nodes {
		r.stop(n)
	}
}

// logReshardOnFailure logs, when the test failed, the nodes' log lines
// about the fleet, the re-shard, sessions, warnings and errors.
func (r *leaseRig) logReshardOnFailure() {
	if !r.t.Failed() {
		return
	}
	for id, n := range r.nodes {
		for _, l := range strings.Split(n.f.StderrTail(64<<20), "\n") {
			if strings.Contains(l, "re-shard") || strings.Contains(l, `"WARN"`) || strings.Contains(l, `"ERROR"`) ||
				strings.Contains(l, `"component":"fleet"`) || strings.Contains(l, "session") {
				r.t.Logf("%s: %s", id, l)
			}
		}
	}
}

// streams are the bot's streams in a rig with routes.
func (r *leaseRig) streams() []string {
	out := []string{r.keys.Events(r.bot)}
	for _, rt := range r.routes {
		out = append(out, r.keys.Stream(r.bot, rt.Stream))
	}
	return out
}

// post sends an admin API POST to node n.
func (r *leaseRig) post(n *fleetNode, path, body string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequestWithContext(r.ctx, http.MethodPost, "http://"+n.admin+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+fleetAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}
