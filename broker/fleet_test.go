package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/redis/rueidis"
)

// shardWorld records which node runs each shard, and every moment two
// nodes ran one shard at once.
type shardWorld struct {
	mu         sync.Mutex
	running    map[int]string
	starts     map[int]int
	violations []string
}

func newShardWorld() *shardWorld {
	return &shardWorld{running: map[int]string{}, starts: map[int]int{}}
}

// fakeRunner is one node's ShardRunner over a shardWorld.
type fakeRunner struct {
	w    *shardWorld
	node string
}

func (r *fakeRunner) StartShard(bot string, shard int, fence int64) error {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	if other, ok := r.w.running[shard]; ok && other != r.node {
		r.w.violations = append(r.w.violations, fmt.Sprintf("%s started shard %d while %s runs it", r.node, shard, other))
	}
	r.w.running[shard] = r.node
	r.w.starts[shard]++
	return nil
}

func (r *fakeRunner) StopShard(ctx context.Context, bot string, shard int) error {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	if r.w.running[shard] == r.node {
		delete(r.w.running, shard)
	}
	return nil
}

func (r *fakeRunner) ShardReady(bot string, shard int) bool { return true }

// kill forgets every shard node runs, as if its process died.
func (w *shardWorld) kill(node string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, n := range w.running {
		if n == node {
			delete(w.running, id)
		}
	}
}

// counts is the number of shards each node runs.
func (w *shardWorld) counts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, n := range w.running {
		out[n]++
	}
	return out
}

func (w *shardWorld) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Error(v)
	}
}

const fleetTTL = 1500 * time.Millisecond

type fleetEvents struct {
	mu  sync.Mutex
	evs []broker.ControlEvent
}

func (e *fleetEvents) add(ev broker.ControlEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *fleetEvents) count(kind broker.ControlKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func startFleetNode(t *testing.T, c rueidis.Client, w *shardWorld, node string, bot broker.FleetBot, ev *fleetEvents) *broker.Fleet {
	t.Helper()
	cfg := broker.FleetConfig{
		Keys: broker.NewKeys("t"), Node: node, TTL: fleetTTL, Bots: []broker.FleetBot{bot},
		Runner: &fakeRunner{w: w, node: node}, Version: "test",
	}
	if ev != nil {
		cfg.OnEvent = ev.add
	}
	f, err := broker.NewFleet(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = f.Close(ctx)
	})
	return f
}

func balanced(counts map[string]int, nodes []string, shards int) string {
	total, lo, hi := 0, shards, 0
	for _, n := range nodes {
		total += counts[n]
		lo, hi = min(lo, counts[n]), max(hi, counts[n])
	}
	if total != shards || hi-lo > 1 {
		return fmt.Sprintf("counts %v over %v: %d of %d shards run, max-min %d", counts, nodes, total, shards, hi-lo)
	}
	return ""
}

// TestFleet_BalanceFailoverDrain: three nodes share 12 shards within one
// of each other; a fourth joins and takes its share by hand-over; one
// killed (no release) has its shards taken after the TTL; one drained
// hands its shards over at once. Never do two nodes run one shard, and
// the leases agree with what runs.
func TestFleet_BalanceFailoverDrain(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := newShardWorld()
	bot := broker.FleetBot{Name: "b", Shards: 12}
	ev := &fleetEvents{}
	nodes := map[string]*broker.Fleet{}
	for _, n := range []string{"a", "b", "c"} {
		nodes[n] = startFleetNode(t, c, w, n, bot, ev)
	}
	testkit.EventuallyWhy(t, 30*time.Second, func() string { return balanced(w.counts(), []string{"a", "b", "c"}, 12) })
	checkLeases(t, c, w, 12)

	nodes["d"] = startFleetNode(t, c, w, "d", bot, ev)
	testkit.EventuallyWhy(t, 30*time.Second, func() string { return balanced(w.counts(), []string{"a", "b", "c", "d"}, 12) })
	checkLeases(t, c, w, 12)
	v := nodes["d"].View()
	if len(v.Bots) != 1 || len(v.Bots[0].Nodes) != 4 || len(v.Bots[0].Shards) != 12 {
		t.Fatalf("d's view: %+v", v)
	}

	// Kill c: its loop stops, its leases stay until they expire.
	killedAt := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nodes["c"].Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.kill("c")
	testkit.EventuallyWhy(t, 30*time.Second, func() string { return balanced(w.counts(), []string{"a", "b", "d"}, 12) })
	if took := time.Since(killedAt); took < fleetTTL/2 {
		t.Errorf("c's shards were taken %s after it died, before its leases could expire (TTL %s)", took, fleetTTL)
	}
	t.Logf("failover took %s (TTL %s)", time.Since(killedAt).Round(time.Millisecond), fleetTTL)

	// Drain d: its shards move to a and b without waiting for a TTL.
	if err := nodes["d"].Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w.counts()["d"]; n != 0 {
		t.Fatalf("d runs %d shards after Drain", n)
	}
	testkit.EventuallyWhy(t, 30*time.Second, func() string { return balanced(w.counts(), []string{"a", "b"}, 12) })
	checkLeases(t, c, w, 12)
	if d, done := nodes["d"].Draining(); !d || !done {
		t.Errorf("d: draining %v, drained %v", d, done)
	}
	for _, k := range []broker.ControlKind{broker.ControlLeaseAcquired, broker.ControlLeaseReleased} {
		if ev.count(k) == 0 {
			t.Errorf("no %s event", k)
		}
	}
	w.check(t)
}

// checkLeases compares the lease owners with what runs.
func checkLeases(t *testing.T, c rueidis.Client, w *shardWorld, shards int) {
	t.Helper()
	keys := broker.NewKeys("t")
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range shards {
		node, err := c.Do(context.Background(), c.B().Hget().Key(keys.Lease("b", id)).Field("node").Build()).ToString()
		if err != nil {
			t.Fatalf("read lease %d: %v", id, err)
		}
		if node != w.running[id] {
			t.Errorf("shard %d: lease held by %q, run by %q", id, node, w.running[id])
		}
	}
}

// TestFleet_Static: two nodes given the same shard ids: one runs them, the
// other stands by (no shard ever runs twice) and takes them when the
// owner drains, at once, or dies, after the TTL.
func TestFleet_Static(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := newShardWorld()
	bot := broker.FleetBot{Name: "b", Shards: 4, Static: []int{1, 2}}
	a := startFleetNode(t, c, w, "a", bot, nil)
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if n := w.counts()["a"]; n != 2 {
			return fmt.Sprintf("a runs %d shards, want 2", n)
		}
		return ""
	})
	b := startFleetNode(t, c, w, "b", bot, nil)
	// b stands by: a full TTL later it still runs nothing.
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		v := b.View()
		if len(v.Bots) == 0 || len(v.Bots[0].Nodes) != 2 {
			return "b does not see a yet"
		}
		return ""
	})
	seen := time.Now()
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if n := w.counts()["b"]; n != 0 {
			t.Fatalf("standby b runs %d shards", n)
		}
		if time.Since(seen) < 2*fleetTTL {
			return "waiting two TTLs"
		}
		return ""
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if n := w.counts()["b"]; n != 2 {
			return fmt.Sprintf("b runs %d shards after a drained, want 2", n)
		}
		return ""
	})
	// A third standby takes over from b when b dies.
	c3 := startFleetNode(t, c, w, "c", bot, nil)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w.kill("b")
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if n := w.counts()["c"]; n != 2 {
			return fmt.Sprintf("c runs %d shards after b died, want 2", n)
		}
		return ""
	})
	_ = c3
	// Shards 0 and 3 are nobody's: every node reports them unowned.
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if v := c3.View(); v.Unowned != 2 {
			return fmt.Sprintf("c reports %d unowned shards, want 2", v.Unowned)
		}
		return ""
	})
	w.check(t)
}

// TestFleet_Fenced: a node whose lease another node took (as after a pause
// longer than the TTL) stops that shard when told its publish was refused,
// and releases nothing it no longer owns.
func TestFleet_Fenced(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := newShardWorld()
	bot := broker.FleetBot{Name: "b", Shards: 2}
	ev := &fleetEvents{}
	a := startFleetNode(t, c, w, "a", bot, ev)
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if a.Owns("b", 0) == 0 || a.Owns("b", 1) == 0 {
			return "a does not own both shards"
		}
		return ""
	})
	old := a.Owns("b", 1)
	keys := broker.NewKeys("t")
	// Another node takes shard 1 behind a's back.
	ctx := context.Background()
	if err := c.Do(ctx, c.B().Hset().Key(keys.Lease("b", 1)).FieldValue().FieldValue("node", "x").FieldValue("fence", fmt.Sprint(old+1)).FieldValue("expires", "99999999999999").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckLease(ctx, "b", 1); err == nil || !strings.Contains(err.Error(), "fence") {
		t.Fatalf("CheckLease after the lease moved: %v", err)
	}
	if err := a.CheckLease(ctx, "b", 0); err != nil {
		t.Fatalf("CheckLease of a held lease: %v", err)
	}
	a.Fenced("b", 1, old)
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if a.Owns("b", 1) != 0 {
			return "a still owns shard 1"
		}
		return ""
	})
	if got := w.counts()["a"]; got != 1 {
		t.Errorf("a runs %d shards, want 1", got)
	}
	if n, _ := c.Do(ctx, c.B().Hget().Key(keys.Lease("b", 1)).Field("node").Build()).ToString(); n != "x" {
		t.Errorf("lease of shard 1 held by %q after a was fenced, want x (a must release nothing)", n)
	}
	if ev.count(broker.ControlLeaseLost) != 1 {
		t.Errorf("%d lease_lost events, want 1", ev.count(broker.ControlLeaseLost))
	}
}

// TestFleet_Capacity: targets follow node.capacity weights.
func TestFleet_Capacity(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := newShardWorld()
	bot := broker.FleetBot{Name: "b", Shards: 10}
	for n, capacity := range map[string]int{"a": 1, "b": 3, "c": 1} {
		f, err := broker.NewFleet(c, broker.FleetConfig{
			Keys: broker.NewKeys("t"), Node: n, TTL: fleetTTL, Capacity: capacity, Bots: []broker.FleetBot{bot},
			Runner: &fakeRunner{w: w, node: n},
		})
		if err != nil {
			t.Fatal(err)
		}
		f.Start()
		t.Cleanup(func() { _ = f.Close(context.Background()) })
	}
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		got := w.counts()
		want := map[string]int{"a": 2, "b": 6, "c": 2}
		var ks []string
		for k := range want {
			if got[k] != want[k] {
				ks = append(ks, k)
			}
		}
		sort.Strings(ks)
		if len(ks) > 0 {
			return fmt.Sprintf("counts %v, want %v", got, want)
		}
		return ""
	})
	w.check(t)
}

func TestNewFleet_Errors(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	r := &fakeRunner{w: newShardWorld()}
	for name, cfg := range map[string]broker.FleetConfig{
		"no node":     {Runner: r, Bots: []broker.FleetBot{{Name: "b", Shards: 1}}},
		"brace":       {Node: "a{b}", Runner: r, Bots: []broker.FleetBot{{Name: "b", Shards: 1}}},
		"no runner":   {Node: "a", Bots: []broker.FleetBot{{Name: "b", Shards: 1}}},
		"no bots":     {Node: "a", Runner: r},
		"no shards":   {Node: "a", Runner: r, Bots: []broker.FleetBot{{Name: "b"}}},
		"static >= n": {Node: "a", Runner: r, Bots: []broker.FleetBot{{Name: "b", Shards: 2, Static: []int{2}}}},
		"short ttl":   {Node: "a", Runner: r, TTL: time.Millisecond, Bots: []broker.FleetBot{{Name: "b", Shards: 1}}},
	} {
		if _, err := broker.NewFleet(c, cfg); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestPublisher_Fenced: batches carry the shard's fence; once another node
// took the lease, the next batch is refused (nothing written, checkpoint
// unchanged), OnFenced is told once, Publish and Flush say ErrFenced; a new
// fence (the lease taken back) publishes again.
func TestPublisher_Fenced(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	keys := broker.NewKeys("")
	var mu sync.Mutex
	var told []int64
	p := newPublisher(t, c, broker.PublisherConfig{OnFenced: func(bot string, shard int, fence int64) {
		mu.Lock()
		told = append(told, fence)
		mu.Unlock()
	}})
	ctx := context.Background()
	lease := keys.Lease("b", 0)
	take := func(node string, fence int64) {
		t.Helper()
		if err := c.Do(ctx, c.B().Hset().Key(lease).FieldValue().FieldValue("node", node).FieldValue("fence", fmt.Sprint(fence)).FieldValue("expires", "99999999999999").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	take("me", 5)
	if err := p.SetFence("b", 0, 5); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 3; seq++ {
		mustPublish(t, p, ev(seq, "A", `{}`))
	}
	flush(t, p, "b", 0)
	take("other", 6)
	mustPublish(t, p, ev(4, "A", `{}`))
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if err := p.Publish(ctx, ev(5, "A", `{}`)); err == nil {
			return "Publish still accepts"
		} else if !errors.Is(err, broker.ErrFenced) {
			t.Fatalf("Publish after the refusal: %v, want ErrFenced", err)
		}
		return ""
	})
	if err := p.Flush(ctx, "b", 0); !errors.Is(err, broker.ErrFenced) {
		t.Fatalf("Flush after the refusal: %v, want ErrFenced", err)
	}
	wantSeqs(t, "stream after the refusal", seqs(t, readStream(t, c, keys.Events("b"))), 1, 3)
	if ck := hgetall(t, c, keys.Session("b", 0)); ck["seq"] != "3" {
		t.Errorf("checkpoint seq %s after the refusal, want 3", ck["seq"])
	}
	mu.Lock()
	if len(told) != 1 || told[0] != 5 {
		t.Errorf("OnFenced told %v, want [5]", told)
	}
	mu.Unlock()
	// The lease comes back with fence 7.
	take("me", 7)
	if err := p.SetFence("b", 0, 7); err != nil {
		t.Fatal(err)
	}
	for seq := int64(4); seq <= 6; seq++ {
		mustPublish(t, p, ev(seq, "A", `{}`))
	}
	flush(t, p, "b", 0)
	wantSeqs(t, "stream with the new fence", seqs(t, readStream(t, c, keys.Events("b"))), 1, 6)
}

// TestFleet_Cluster: on a Redis Cluster of three masters, a bot's lease,
// membership and checkpoint keys and streams share one slot (the bot's
// hash tag), so two nodes balance, and a publish fenced by the lease runs
// (one atomic script) and refuses a fence that is not the lease's.
func TestFleet_Cluster(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t, 3)
	c := cl.Client(t)
	keys := broker.NewKeys("t")
	ctx := context.Background()
	slotOf := func(k string) int64 {
		n, err := c.Do(ctx, c.B().ClusterKeyslot().Key(k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, bot := range []string{"b", "other"} {
		want := slotOf(keys.Session(bot, 0))
		for _, k := range []string{keys.Lease(bot, 0), keys.Lease(bot, 7), keys.FleetMembers(bot), keys.FleetMemberDetails(bot), keys.Events(bot), keys.Session(bot, 7)} {
			if s := slotOf(k); s != want {
				t.Errorf("%s in slot %d, the bot's checkpoints in %d", k, s, want)
			}
		}
	}
	w := newShardWorld()
	bot := broker.FleetBot{Name: "b", Shards: 4}
	a := startFleetNode(t, c, w, "a", bot, nil)
	startFleetNode(t, c, w, "b", bot, nil)
	testkit.EventuallyWhy(t, 30*time.Second, func() string { return balanced(w.counts(), []string{"a", "b"}, 4) })
	w.check(t)

	var id int
	for id = range 4 {
		if a.Owns("b", id) != 0 {
			break
		}
	}
	p := newPublisher(t, c, broker.PublisherConfig{Prefix: "t"})
	if err := p.SetFence("b", id, a.Owns("b", id)); err != nil {
		t.Fatal(err)
	}
	e := ev(1, "A", `{}`)
	e.Shard = id
	mustPublish(t, p, e)
	flush(t, p, "b", id)
	if err := p.SetFence("b", id, a.Owns("b", id)+100); err != nil {
		t.Fatal(err)
	}
	e = ev(2, "A", `{}`)
	e.Shard = id
	mustPublish(t, p, e)
	if err := p.Flush(ctx, "b", id); !errors.Is(err, broker.ErrFenced) {
		t.Fatalf("flush with an old fence on the cluster: %v, want ErrFenced", err)
	}
	wantSeqs(t, "stream on the cluster", seqs(t, readStream(t, c, keys.Events("b"))), 1, 1)
}
