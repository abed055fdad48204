package broker_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// reshardWorld is a bot's shards as the nodes of a fleet run them, with
// the shard count in force, and every moment the fleet broke its rules:
// two nodes on one shard, a shard started for a count the world does not
// run, a re-shard started without the whole old set on its node.
type reshardWorld struct {
	mu         sync.Mutex
	count      int
	running    map[int]string
	violations []string
	// hang: the next re-shard started never reaches its cut-over (its
	// node dies first).
	hang bool
	// beforeCommit, when set, runs before the next commit.
	beforeCommit func()
	commitErrs   []error
	reshards     []string // nodes that started a local re-shard
	wg           sync.WaitGroup
}

type reshardRunner struct {
	w     *reshardWorld
	node  string
	f     *broker.Fleet
	mu    sync.Mutex
	count int // the count this node runs
	local bool
}

func (r *reshardRunner) violate(format string, args ...any) {
	r.w.violations = append(r.w.violations, r.node+": "+fmt.Sprintf(format, args...))
}

func (r *reshardRunner) StartShard(bot string, shard int, fence int64) error {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	r.mu.Lock()
	count := r.count
	r.mu.Unlock()
	if count != r.w.count || shard >= count {
		r.violate("started shard %d of %d shards while the world runs %d", shard, count, r.w.count)
	}
	if other, ok := r.w.running[shard]; ok && other != r.node {
		r.violate("started shard %d while %s runs it", shard, other)
	}
	r.w.running[shard] = r.node
	return nil
}

func (r *reshardRunner) StopShard(ctx context.Context, bot string, shard int) error {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	if r.w.running[shard] == r.node {
		delete(r.w.running, shard)
	}
	return nil
}

func (r *reshardRunner) ShardReady(bot string, shard int) bool { return true }

func (r *reshardRunner) ShardDown(bot string, shard int) bool { return false }

func (r *reshardRunner) FenceShard(bot string, shard int, fence int64) error { return nil }

func (r *reshardRunner) Reshard(ctx context.Context, bot string, count int) error {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.count {
		if w.running[id] != r.node {
			r.violate("re-sharding without old shard %d (run by %q)", id, w.running[id])
		}
	}
	w.reshards = append(w.reshards, r.node)
	r.mu.Lock()
	r.local = true
	r.mu.Unlock()
	if w.hang {
		w.hang = false
		return nil
	}
	// The local hand-over: the new set identifies, then cuts over.
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		time.Sleep(200 * time.Millisecond)
		w.mu.Lock()
		before := w.beforeCommit
		w.beforeCommit = nil
		w.mu.Unlock()
		if before != nil {
			before()
		}
		err := r.f.CommitReshard(context.Background(), bot, count)
		w.mu.Lock()
		defer w.mu.Unlock()
		r.mu.Lock()
		defer r.mu.Unlock()
		r.local = false
		if err != nil {
			w.commitErrs = append(w.commitErrs, err)
			return
		}
		w.count, r.count = count, count
		w.running = map[int]string{}
		for id := range count {
			w.running[id] = r.node
		}
	}()
	return nil
}

func (r *reshardRunner) Resharding(bot string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.local
}

func (r *reshardRunner) AdoptCount(bot string, count int) error {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	for id, n := range r.w.running {
		if n == r.node {
			r.violate("adopted count %d while running shard %d", count, id)
		}
	}
	r.mu.Lock()
	r.count, r.local = count, false
	r.mu.Unlock()
	return nil
}

func (w *reshardWorld) state() (int, map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for _, n := range w.running {
		out[n]++
	}
	return w.count, out
}

func (w *reshardWorld) check(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Error(v)
	}
	for _, err := range w.commitErrs {
		t.Errorf("commit: %v", err)
	}
}

func startReshardNode(t *testing.T, c rueidis.Client, w *reshardWorld, node string, shards int, ev *fleetEvents) (*broker.Fleet, *reshardRunner) {
	t.Helper()
	return startReshardNodeBot(t, c, w, node, broker.FleetBot{Name: "b", Shards: shards}, ev)
}

func startReshardNodeBot(t *testing.T, c rueidis.Client, w *reshardWorld, node string, bot broker.FleetBot, ev *fleetEvents) (*broker.Fleet, *reshardRunner) {
	t.Helper()
	r := &reshardRunner{w: w, node: node, count: bot.Shards}
	cfg := broker.FleetConfig{
		Keys: broker.NewKeys("t"), Node: node, TTL: fleetTTL, Bots: []broker.FleetBot{bot},
		Runner: r, Version: "test", OnEvent: ev.add,
	}
	f, err := broker.NewFleet(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.f = f
	f.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = f.Close(ctx)
		w.wg.Wait()
	})
	return f, r
}

func readPlan(t *testing.T, c rueidis.Client) luascripts.FleetPlan {
	t.Helper()
	k := broker.NewKeys("t")
	p, err := luascripts.ReadFleetPlan(t.Context(), c, k.FleetPlan("b"), k.ReshardLease("b"), 1)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFleet_Reshard: three nodes run 4 shards; a re-shard to 6 asked on
// one node gathers the 4 on the node that took the re-shard lease, which
// re-shards with all of them; the commit moves the plan to 6 shards at
// epoch 1 and balance spreads them 2/2/2. Then 6 -> 3 the same way. No
// shard ever runs on two nodes or for a count the world does not run.
func TestFleet_Reshard(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := &reshardWorld{count: 4, running: map[int]string{}}
	ev := &fleetEvents{}
	nodes := []string{"a", "b", "c"}
	var fleets []*broker.Fleet
	for _, n := range nodes {
		f, _ := startReshardNode(t, c, w, n, 4, ev)
		fleets = append(fleets, f)
	}
	settled := func(count int) func() string {
		return func() string {
			got, counts := w.state()
			if got != count {
				return fmt.Sprintf("the world runs %d shards, want %d", got, count)
			}
			return balanced(counts, nodes, count)
		}
	}
	testkit.EventuallyWhy(t, 30*time.Second, settled(4))
	if err := fleets[1].RequestReshard(t.Context(), "b", 6, "test"); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWhy(t, 30*time.Second, settled(6))
	if p := readPlan(t, c); p.Count != 6 || p.Epoch != 1 || p.Want != 0 || p.Coordinator.Node != "" {
		t.Errorf("plan after the re-shard: %+v, want 6 shards at epoch 1, no request, no coordinator", p)
	}
	for _, f := range fleets {
		testkit.EventuallyWhy(t, 10*time.Second, func() string {
			v := f.View()
			if b := v.Bots[0]; b.Count != 6 || b.Epoch != 1 || len(b.Shards) != 6 || b.Reshard != nil {
				return fmt.Sprintf("node %s's view: %d shards at epoch %d, %d leases, re-shard %+v", v.Node, b.Count, b.Epoch, len(b.Shards), b.Reshard)
			}
			return ""
		})
	}
	if err := fleets[2].RequestReshard(t.Context(), "b", 3, "test"); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWhy(t, 30*time.Second, settled(3))
	if p := readPlan(t, c); p.Count != 3 || p.Epoch != 2 {
		t.Errorf("plan after the second re-shard: %+v, want 3 shards at epoch 2", p)
	}
	// The leases of shards 3..5 were released by the commit.
	k := broker.NewKeys("t")
	now, ls, err := luascripts.LeaseState(t.Context(), c, []string{k.Lease("b", 3), k.Lease("b", 4), k.Lease("b", 5)})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		if l.Node != "" && l.Expires > now {
			t.Errorf("lease of shard %d, beyond the new count, is still held by %s", 3+i, l.Node)
		}
	}
	w.mu.Lock()
	t.Logf("re-shards coordinated by %v", w.reshards)
	if len(w.reshards) != 2 {
		t.Errorf("%d local re-shards, want 2", len(w.reshards))
	}
	w.mu.Unlock()
	if n := ev.count(broker.ControlReshard); n < 4 {
		t.Errorf("%d re-shard control events, want gathering and committed for each", n)
	}
	w.check(t)
}

// TestFleet_ReshardCoordinatorDies: the node coordinating a re-shard dies
// after it started its local re-shard and before the commit. The fleet
// keeps the old count (the plan is untouched; the others take the old set
// once its leases expire), then another node takes the re-shard lease and
// finishes the re-shard.
func TestFleet_ReshardCoordinatorDies(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := &reshardWorld{count: 4, running: map[int]string{}, hang: true}
	ev := &fleetEvents{}
	nodes := []string{"a", "b", "c"}
	fleets := map[string]*broker.Fleet{}
	for _, n := range nodes {
		fleets[n], _ = startReshardNode(t, c, w, n, 4, ev)
	}
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		_, counts := w.state()
		return balanced(counts, nodes, 4)
	})
	if err := fleets["a"].RequestReshard(t.Context(), "b", 6, "test"); err != nil {
		t.Fatal(err)
	}
	var coord string
	testkit.Eventually(t, 30*time.Second, "a local re-shard started", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.reshards) > 0 {
			coord = w.reshards[0]
		}
		return coord != ""
	})
	// The coordinator dies: its loop stops without releasing anything
	// and its shards stop with it.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	if err := fleets[coord].Close(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	w.mu.Lock()
	for id, n := range w.running {
		if n == coord {
			delete(w.running, id)
		}
	}
	w.mu.Unlock()
	if p := readPlan(t, c); p.Count != 4 || p.Epoch != 0 {
		t.Fatalf("plan after the coordinator died: %+v, want the old 4 shards at epoch 0", p)
	}
	var rest []string
	for _, n := range nodes {
		if n != coord {
			rest = append(rest, n)
		}
	}
	testkit.EventuallyWhy(t, 60*time.Second, func() string {
		got, counts := w.state()
		if got != 6 {
			return fmt.Sprintf("the world runs %d shards, want 6", got)
		}
		return balanced(counts, rest, 6)
	})
	w.mu.Lock()
	if len(w.reshards) != 2 || w.reshards[1] == coord {
		t.Errorf("local re-shards by %v: want the dead %s's, then another node's", w.reshards, coord)
	}
	w.mu.Unlock()
	w.check(t)
}

// TestFleet_ReshardScripts: a lease is taken only by a node running the
// plan's epoch, and a commit is refused unless the coordinator still holds
// the re-shard lease and every lease; a refused commit writes nothing.
func TestFleet_ReshardScripts(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	ctx := t.Context()
	k := broker.NewKeys("t")
	p, err := luascripts.ReadFleetPlan(ctx, c, k.FleetPlan("b"), k.ReshardLease("b"), 2)
	if err != nil || p.Count != 2 || p.Epoch != 0 || p.Want != 0 {
		t.Fatalf("first plan: %+v, %v; want 2 shards at epoch 0", p, err)
	}
	if _, moved, err := luascripts.LeaseAcquireInPlan(ctx, c, []string{k.Lease("b", 0)}, k.FleetPlan("b"), 1, "x", time.Minute); err != nil || !moved {
		t.Fatalf("acquire with epoch 1 while the plan is at 0: moved %v, %v; want refused", moved, err)
	}
	var fences []int64
	for i := range 3 {
		rs, moved, err := luascripts.LeaseAcquireInPlan(ctx, c, []string{k.Lease("b", i)}, k.FleetPlan("b"), 0, "x", time.Minute)
		if err != nil || moved || !rs[0].Taken {
			t.Fatalf("acquire shard %d: %+v %v %v", i, rs, moved, err)
		}
		fences = append(fences, rs[0].Fence)
	}
	co, err := luascripts.LeaseAcquire(ctx, c, k.ReshardLease("b"), "x", time.Minute)
	if err != nil || !co.Taken {
		t.Fatal(co, err)
	}
	if err := c.Do(ctx, c.B().Hset().Key(k.StagedSession("b", 1, 3)).FieldValue().FieldValue("session", "new1").FieldValue("seq", "7").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	commit := luascripts.FleetReshardCommit{Plan: k.FleetPlan("b"), Reshard: k.ReshardLease("b"), Node: "x",
		ReshardFence: co.Fence, Epoch: 0, From: 2, To: 3}
	for i := range 3 {
		commit.Leases = append(commit.Leases, k.Lease("b", i))
		commit.Checkpoints = append(commit.Checkpoints, k.Session("b", i))
		commit.StagedCheckpoints = append(commit.StagedCheckpoints, k.StagedSession("b", i, 3))
	}
	commit.Fences = []int64{fences[0], fences[1] + 1, fences[2]}
	if _, ok, why, err := luascripts.CommitFleetReshard(ctx, c, commit); err != nil || ok || why == "" {
		t.Fatalf("commit with a lease no longer held: ok %v why %q %v; want refused with a reason", ok, why, err)
	}
	if p := readPlan(t, c); p.Count != 2 || p.Epoch != 0 {
		t.Fatalf("a refused commit changed the plan: %+v", p)
	}
	commit.Fences = fences
	epoch, ok, why, err := luascripts.CommitFleetReshard(ctx, c, commit)
	if err != nil || !ok || epoch != 1 {
		t.Fatalf("commit: epoch %d ok %v why %q %v", epoch, ok, why, err)
	}
	if p := readPlan(t, c); p.Count != 3 || p.Epoch != 1 || p.Coordinator.Node != "" {
		t.Errorf("plan after the commit: %+v, want 3 shards at epoch 1 and no coordinator", p)
	}
	if v, err := c.Do(ctx, c.B().Hget().Key(k.Session("b", 1)).Field("session").Build()).ToString(); err != nil || v != "new1" {
		t.Errorf("shard 1's checkpoint after the commit: session %q %v, want the staged new1", v, err)
	}
	if _, moved, _ := luascripts.LeaseAcquireInPlan(ctx, c, []string{k.Lease("b", 2)}, k.FleetPlan("b"), 0, "y", time.Minute); !moved {
		t.Error("a node still at epoch 0 took a lease after the commit")
	}
}

// TestFleet_PlanOverConfig: a node joining a fleet of 4 shards with a
// configuration of 6 runs the fleet's 4 (a start is no re-shard request:
// in a rolling deploy old and new nodes would undo each other's).
func TestFleet_PlanOverConfig(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	w := &reshardWorld{count: 4, running: map[int]string{}}
	ev := &fleetEvents{}
	startReshardNodeBot(t, c, w, "a", broker.FleetBot{Name: "b", Shards: 4, Configured: 4}, ev)
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		_, counts := w.state()
		return balanced(counts, []string{"a"}, 4)
	})
	fb, rb := startReshardNodeBot(t, c, w, "b", broker.FleetBot{Name: "b", Shards: 6, Configured: 6}, ev)
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		_, counts := w.state()
		return balanced(counts, []string{"a", "b"}, 4)
	})
	rb.mu.Lock()
	count := rb.count
	rb.mu.Unlock()
	if v := fb.View().Bots[0]; count != 4 || v.Count != 4 || v.Reshard != nil {
		t.Errorf("node b runs %d shards, its view %d (re-shard %+v); want the fleet's 4 and no request", count, v.Count, v.Reshard)
	}
	if p := readPlan(t, c); p.Count != 4 || p.Epoch != 0 || p.Want != 0 {
		t.Errorf("plan: %+v, want 4 shards at epoch 0 and no request", p)
	}
	w.check(t)
}

// TestFleet_ReshardCommitRefused: the coordinator lost a lease of the old
// set while its new set ran (another node took it: a pause past the TTL).
// The commit is refused and writes nothing; the coordinator stops the
// bot's shards and gives the re-shard up (the request is cleared, a
// control event says why); the fleet runs the old count again, spread
// over the nodes.
func TestFleet_ReshardCommitRefused(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t, redistest.Options{}).Client(t)
	k := broker.NewKeys("t")
	w := &reshardWorld{count: 4, running: map[int]string{}}
	w.beforeCommit = func() {
		// Another owner takes shard 2's lease (a new fence) for a moment.
		if err := c.Do(context.Background(), c.B().Eval().Script(
			"redis.call('HINCRBY', KEYS[1], 'fence', 1) "+
				"local t = redis.call('TIME') "+
				"redis.call('HSET', KEYS[1], 'node', 'thief', 'expires', string.format('%d', tonumber(t[1]) * 1000 + 500)) return 1").
			Numkeys(1).Key(k.Lease("b", 2)).Build()).Error(); err != nil {
			t.Error(err)
		}
	}
	ev := &fleetEvents{}
	nodes := []string{"a", "b"}
	fleets := map[string]*broker.Fleet{}
	for _, n := range nodes {
		fleets[n], _ = startReshardNode(t, c, w, n, 4, ev)
	}
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		_, counts := w.state()
		return balanced(counts, nodes, 4)
	})
	if err := fleets["a"].RequestReshard(t.Context(), "b", 6, "test"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the commit refused", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.commitErrs) > 0
	})
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		got, counts := w.state()
		if got != 4 {
			return fmt.Sprintf("the world runs %d shards, want the old 4", got)
		}
		if p := readPlan(t, c); p.Count != 4 || p.Epoch != 0 || p.Want != 0 || p.Coordinator.Node != "" {
			return fmt.Sprintf("plan %+v, want 4 shards at epoch 0, no request, no coordinator", p)
		}
		return balanced(counts, nodes, 4)
	})
	abandoned := false
	ev.mu.Lock()
	for _, e := range ev.evs {
		if e.Kind == broker.ControlReshard && strings.HasPrefix(e.Detail, "fleet: abandoned") && strings.Contains(e.Err, "doubled") {
			abandoned = true
		}
	}
	ev.mu.Unlock()
	if !abandoned {
		t.Error("no \"fleet: abandoned\" re-shard event saying the new set's events may be doubled")
	}
	w.mu.Lock()
	w.commitErrs = nil
	w.mu.Unlock()
	w.check(t)
}
