package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// ShardRunner runs the shards a Fleet decides this node owns (cmd/ adapts
// the gateway's Manager).
type ShardRunner interface {
	// StartShard starts shard of bot; its batches carry fence.
	StartShard(bot string, shard int, fence int64) error
	// StopShard stops shard of bot gracefully: what it accepted is
	// published and checkpointed, its connection closed with a resumable
	// code. It returns once the shard has stopped (or ctx ends).
	StopShard(ctx context.Context, bot string, shard int) error
	// ShardReady reports whether the shard is connected and receiving
	// (READY or RESUMED seen): only such a shard is handed over, so a
	// session is never left half identified.
	ShardReady(bot string, shard int) bool
}

// FleetBot is one bot a Fleet shares out.
type FleetBot struct {
	Name string
	// Shards is the bot's shard count: the plan's count at the fleet's
	// first start (see Fleet.RequestReshard); a fleet already running
	// another count keeps its own.
	Shards int
	// Configured is the shard count of the node's configuration, 0 for
	// auto: a fleet found running another count keeps it and says so
	// (a reload or Fleet.RequestReshard re-shards it).
	Configured int
	// Static, when not nil, are the only shards this node runs (shard_ids):
	// it takes their leases when free and stands by while another node
	// holds them. Nil = the bot's shards are balanced over its nodes.
	Static []int
}

// FleetConfig configures a Fleet.
type FleetConfig struct {
	Keys Keys
	// Node is this node's id, unique in the fleet. Required.
	Node string
	// Addr (admin API address) and Version are shown to other nodes.
	Addr, Version string
	// Capacity weighs this node's share of shards; default 1.
	Capacity int
	// TTL is the lease and membership time to live; default 10s. Leases
	// are renewed and membership refreshed every TTL/3.
	TTL time.Duration
	// Bots are the bots this node runs. Required.
	Bots []FleetBot
	// Runner starts and stops shards. Required.
	Runner ShardRunner
	// OnEvent receives ownership changes (lease acquired, released, lost)
	// and shards without an owner; from the Fleet's goroutine, it must not
	// block. The Kind is one of the Control* fleet kinds.
	OnEvent func(ControlEvent)
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultLeaseTTL is the default FleetConfig.TTL.
const DefaultLeaseTTL = 10 * time.Second

// Fleet makes this process one node of a fleet sharing bots' shards
// through Redis: it keeps the node's membership, takes, renews and
// releases shard leases with fencing numbers, balances the shards over the
// live nodes and hands shards over one at a time. Start runs it; Drain
// hands every shard over; Close stops it.
type Fleet struct {
	c    rueidis.Client
	cfg  FleetConfig
	log  *slog.Logger
	bots []*fleetBot

	// opMu serialises ticks and drain steps (shard starts and stops).
	opMu sync.Mutex

	mu        sync.Mutex
	draining  bool
	drained   bool
	drainDone chan struct{} // closed when Drain finished
	fenced    []fencedShard
	lastError string
	lastTick  time.Time

	wake      chan struct{}
	startOnce sync.Once
	closeOnce sync.Once
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   time.Time
}

type fencedShard struct {
	bot   string
	shard int
	fence int64
}

// fleetBot is one bot's state; guarded by Fleet.mu except owned, which
// the op goroutine (holding opMu) writes and Fleet.mu guards for readers.
type fleetBot struct {
	FleetBot
	static  map[int]bool
	owned   map[int]int64 // shard -> fence held
	view    FleetBotView
	standby map[int]string // shard -> owner we last logged standing by for
	// unowned: shard -> since when (local time) it has had no owner.
	unowned  map[int]time.Time
	reported map[int]bool // unowned event sent
	// epoch is the plan epoch this node runs (Shards its count); planned
	// once the plan was read.
	epoch   int64
	planned bool
	plan    luascripts.FleetPlan // last read
	// coord is the re-shard this node coordinates (Fleet.mu).
	coord *coordRun
}

// FleetView is what a node knows of its fleet (GET /api/fleet).
type FleetView struct {
	// Node is this node's id.
	Node     string `json:"node"`
	Draining bool   `json:"draining"`
	// LeaseTTL is the lease time to live, ms.
	LeaseTTL int64          `json:"lease_ttl_ms"`
	Bots     []FleetBotView `json:"bots"`
	// Unowned counts the shards of every bot without an owner for longer
	// than the TTL.
	Unowned int `json:"unowned"`
	// Error is the last error talking to Redis, "" when the last round
	// went through.
	Error string `json:"error,omitempty"`
	// UpdatedAt is when this view was read from Redis.
	UpdatedAt time.Time `json:"updated_at"`
}

// FleetBotView is one bot's nodes and shard owners.
type FleetBotView struct {
	Bot string `json:"bot"`
	// Count and Epoch are the fleet's plan: the shard count every node
	// runs and how many re-shards it has committed.
	Count int   `json:"shard_count"`
	Epoch int64 `json:"epoch"`
	// Reshard is the re-shard asked for or in progress, nil when none.
	Reshard *FleetReshardView `json:"reshard,omitempty"`
	Nodes   []FleetNodeView   `json:"nodes"`
	Shards  []FleetShardOwner `json:"shards"`
}

// FleetNodeView is one live node of a bot.
type FleetNodeView struct {
	ID       string `json:"id"`
	Addr     string `json:"addr,omitempty"`
	Version  string `json:"version,omitempty"`
	Capacity int    `json:"capacity"`
	Draining bool   `json:"draining"`
	Static   bool   `json:"static"`
	// Shards are the shards whose lease the node holds.
	Shards []int `json:"shards"`
	// Target is how many shards balance gives it.
	Target int `json:"target"`
	// LastHeartbeat is the server time of its last heartbeat.
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// FleetShardOwner is one shard's lease.
type FleetShardOwner struct {
	Shard int `json:"shard"`
	// Owner is the node holding the lease, "" when none does.
	Owner string `json:"owner"`
	Fence int64  `json:"fence"`
	// ExpiresInMS is how long the lease runs without renewal.
	ExpiresInMS int64 `json:"expires_in_ms"`
	// UnownedForMS is how long the shard has had no owner (0 = owned).
	UnownedForMS int64 `json:"unowned_for_ms,omitempty"`
}

// nodeDetails is what a node stores with its heartbeat.
type nodeDetails struct {
	ID       string `json:"id"`
	Addr     string `json:"addr,omitempty"`
	Version  string `json:"version,omitempty"`
	Capacity int    `json:"capacity"`
	Draining bool   `json:"draining"`
	Static   bool   `json:"static"`
	// StaticShards are the shards a static node may run.
	StaticShards []int     `json:"static_shards,omitempty"`
	Started      time.Time `json:"started"`
}

// NewFleet validates cfg and returns a Fleet using c; Start runs it.
func NewFleet(c rueidis.Client, cfg FleetConfig) (*Fleet, error) {
	if c == nil {
		return nil, errors.New("new fleet: nil redis client")
	}
	if cfg.Node == "" {
		return nil, errors.New("new fleet: node id is required")
	}
	if err := CheckName(cfg.Node); err != nil {
		return nil, fmt.Errorf("new fleet: node id: %w", err)
	}
	if cfg.Runner == nil {
		return nil, errors.New("new fleet: a shard runner is required")
	}
	if len(cfg.Bots) == 0 {
		return nil, errors.New("new fleet: no bots")
	}
	if cfg.Capacity <= 0 {
		cfg.Capacity = 1
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaseTTL
	}
	if cfg.TTL < 300*time.Millisecond {
		return nil, fmt.Errorf("new fleet: lease TTL %s is below 300ms", cfg.TTL)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{c: c, cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
	for _, b := range cfg.Bots {
		if b.Shards <= 0 {
			return nil, fmt.Errorf("new fleet: bot %q: shard count %d", b.Name, b.Shards)
		}
		fb := &fleetBot{FleetBot: b, owned: map[int]int64{}, standby: map[int]string{},
			unowned: map[int]time.Time{}, reported: map[int]bool{}}
		if b.Static != nil {
			fb.static = map[int]bool{}
			for _, id := range b.Static {
				if id < 0 || id >= b.Shards {
					return nil, fmt.Errorf("new fleet: bot %q: static shard %d not in 0..%d", b.Name, id, b.Shards-1)
				}
				fb.static[id] = true
			}
		}
		f.bots = append(f.bots, fb)
	}
	return f, nil
}

// Node is this node's id.
func (f *Fleet) Node() string { return f.cfg.Node }

// Start joins the fleet and runs the node's loop until Close: membership
// heartbeats, lease renewal, balance and hand-over every TTL/3, and at once
// when another node releases a lease.
func (f *Fleet) Start() {
	f.startOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		f.cancel = cancel
		f.started = time.Now()
		f.wg.Add(2)
		go func() {
			defer f.wg.Done()
			f.run(ctx)
		}()
		go func() {
			defer f.wg.Done()
			f.listen(ctx)
		}()
	})
}

// Close stops the loop and waits for it. It releases nothing: Drain hands
// the shards over first; leases left behind expire after the TTL.
func (f *Fleet) Close(ctx context.Context) error {
	f.closeOnce.Do(func() {
		if f.cancel != nil {
			f.cancel()
		}
	})
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close fleet: %w", ctx.Err())
	}
}

// Fenced tells the Fleet that a publish of shard with fence was refused:
// another node holds the lease. The shard is stopped (not released).
func (f *Fleet) Fenced(bot string, shard int, fence int64) {
	f.mu.Lock()
	f.fenced = append(f.fenced, fencedShard{bot, shard, fence})
	f.mu.Unlock()
	f.poke()
}

// Owns reports the fence this node holds for shard of bot (0 = none).
func (f *Fleet) Owns(bot string, shard int) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.bots {
		if b.Name == bot {
			return b.owned[shard]
		}
	}
	return 0
}

// CheckLease reports whether this node's lease on shard of bot still has
// the fence it took: nil when it does, an error wrapping ErrFenced when
// another node holds the shard (the gateway asks before each connection).
// A lease lost with Redis's data counts as still held.
func (f *Fleet) CheckLease(ctx context.Context, bot string, shard int) error {
	fence := f.Owns(bot, shard)
	if fence == 0 {
		return fmt.Errorf("check lease of %s shard %d: %w: this node holds no lease", bot, shard, ErrFenced)
	}
	key := f.cfg.Keys.Lease(bot, shard)
	_, ls, err := luascripts.LeaseState(ctx, f.c, []string{key})
	if err != nil {
		return fmt.Errorf("check lease of %s shard %d: %w", bot, shard, err)
	}
	// Fence 0: the lease is gone with Redis's data, nobody else's (the
	// next renewal writes it back).
	if ls[0].Fence != fence && ls[0].Fence != 0 {
		return fmt.Errorf("check lease of %s shard %d: %w: fence %d is node %q's, ours was %d", bot, shard, ErrFenced, ls[0].Fence, ls[0].Node, fence)
	}
	return nil
}

// View returns the node's latest view of its fleet.
func (f *Fleet) View() FleetView {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := FleetView{Node: f.cfg.Node, Draining: f.draining, LeaseTTL: f.cfg.TTL.Milliseconds(),
		Error: f.lastError, UpdatedAt: f.lastTick}
	for _, b := range f.bots {
		bv := b.view
		bv.Nodes = slices.Clone(bv.Nodes)
		bv.Shards = slices.Clone(bv.Shards)
		v.Bots = append(v.Bots, bv)
		v.Unowned += len(b.reported)
	}
	return v
}

// poke wakes the loop.
func (f *Fleet) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *Fleet) interval() time.Duration { return f.cfg.TTL / 3 }

// run is the node's loop.
func (f *Fleet) run(ctx context.Context) {
	t := time.NewTicker(f.interval())
	defer t.Stop()
	for {
		f.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-f.wake:
		}
	}
}

// listen wakes the loop when a node announces a released lease, so a
// hand-over waits for no tick. It resubscribes after errors until ctx ends.
func (f *Fleet) listen(ctx context.Context) {
	chans := make([]string, len(f.bots))
	for i, b := range f.bots {
		chans[i] = f.cfg.Keys.FleetChannel(b.Name)
	}
	for try := 1; ctx.Err() == nil; try++ {
		err := f.c.Receive(ctx, f.c.B().Subscribe().Channel(chans...).Build(), func(rueidis.PubSubMessage) {
			try = 0
			f.poke()
		})
		if ctx.Err() != nil {
			return
		}
		f.log.Debug("fleet channel subscription ended; subscribing again", "err", err)
		d := min(time.Duration(try)*100*time.Millisecond, f.interval())
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// opTimeout bounds one Redis round of the loop.
func (f *Fleet) opTimeout() time.Duration { return max(f.cfg.TTL/3, time.Second) }

// tick is one round: for each bot, heartbeat, renew, then balance.
func (f *Fleet) tick(ctx context.Context) {
	f.tickLocked(ctx)
	f.launchReshards(ctx)
}

// tickLocked is the round's part under opMu.
func (f *Fleet) tickLocked(ctx context.Context) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	if _, drained := f.Draining(); drained {
		// Left the fleet: no heartbeat would bring it back.
		return
	}
	f.stopFenced(ctx)
	var errs []error
	for _, b := range f.bots {
		if ctx.Err() != nil {
			return
		}
		if err := f.tickBot(ctx, b); err != nil {
			errs = append(errs, err)
		}
	}
	err := errors.Join(errs...)
	f.mu.Lock()
	prev := f.lastError
	if err != nil {
		f.lastError = err.Error()
	} else {
		f.lastError = ""
		f.lastTick = time.Now()
	}
	f.mu.Unlock()
	switch {
	case err != nil && prev == "":
		f.log.Warn("fleet round failed; shards keep running, fencing guards their writes", "err", err)
	case err == nil && prev != "":
		f.log.Info("fleet round recovered")
	}
}

// stopFenced stops the shards whose publishes were refused.
func (f *Fleet) stopFenced(ctx context.Context) {
	f.mu.Lock()
	list := f.fenced
	f.fenced = nil
	f.mu.Unlock()
	for _, fs := range list {
		b := f.bot(fs.bot)
		if b == nil || f.Owns(fs.bot, fs.shard) != fs.fence {
			continue
		}
		f.lose(ctx, b, fs.shard, fs.fence, "publish refused: another node holds the lease")
	}
}

func (f *Fleet) bot(name string) *fleetBot {
	for _, b := range f.bots {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// lose stops a shard whose lease another node holds; it releases nothing.
func (f *Fleet) lose(ctx context.Context, b *fleetBot, shard int, fence int64, why string) {
	f.log.Warn("lost a shard's lease to another node; stopping it", "bot", b.Name, "shard", shard, "fence", fence, "why", why)
	f.setOwned(b, shard, 0)
	sctx, cancel := context.WithTimeout(ctx, f.cfg.TTL)
	defer cancel()
	if err := f.cfg.Runner.StopShard(sctx, b.Name, shard); err != nil {
		f.log.Warn("stop shard after losing its lease", "bot", b.Name, "shard", shard, "err", err)
	}
	f.event(ControlEvent{Kind: ControlLeaseLost, Bot: b.Name, Shard: shard, Node: f.cfg.Node, Seq: fence, Err: why})
}

func (f *Fleet) setOwned(b *fleetBot, shard int, fence int64) {
	f.mu.Lock()
	if fence == 0 {
		delete(b.owned, shard)
	} else {
		b.owned[shard] = fence
	}
	f.mu.Unlock()
}

func (f *Fleet) ownedSnapshot(b *fleetBot) map[int]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[int]int64, len(b.owned))
	for k, v := range b.owned {
		out[k] = v
	}
	return out
}

func (f *Fleet) event(ev ControlEvent) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	if f.cfg.OnEvent != nil {
		f.cfg.OnEvent(ev)
	}
}

func (f *Fleet) isDraining() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.draining
}

// heartbeat refreshes this node's membership of b and returns the server
// time and the live members.
func (f *Fleet) heartbeat(ctx context.Context, b *fleetBot) (int64, []member, error) {
	d, _ := json.Marshal(nodeDetails{ID: f.cfg.Node, Addr: f.cfg.Addr, Version: f.cfg.Version,
		Capacity: f.cfg.Capacity, Draining: f.isDraining(), Static: b.static != nil, StaticShards: b.Static,
		Started: f.started})
	k := f.cfg.Keys
	now, ms, err := luascripts.FleetHeartbeat(ctx, f.c, k.FleetMembers(b.Name), k.FleetMemberDetails(b.Name), f.cfg.Node, f.cfg.TTL, string(d))
	if err != nil {
		return 0, nil, fmt.Errorf("heartbeat of bot %s: %w", b.Name, err)
	}
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		var nd nodeDetails
		if err := json.Unmarshal([]byte(m.Details), &nd); err != nil || nd.Capacity <= 0 {
			// Another version, or someone else's writes: a plain member.
			f.log.Debug("fleet member with unreadable details", "bot", b.Name, "node", m.ID, "err", err)
			nd = nodeDetails{Capacity: 1}
		}
		nd.ID = m.ID
		out = append(out, member{nodeDetails: nd, beat: m.Expires - f.cfg.TTL.Milliseconds()})
	}
	return now, out, nil
}

type member struct {
	nodeDetails
	beat int64 // server ms of its last heartbeat
}

// tickBot is one round for one bot.
func (f *Fleet) tickBot(ctx context.Context, b *fleetBot) error {
	rctx, cancel := context.WithTimeout(ctx, f.opTimeout())
	defer cancel()
	_, members, err := f.heartbeat(rctx, b)
	if err != nil {
		return err
	}
	if err := f.renew(rctx, ctx, b); err != nil {
		return err
	}
	fp, err := f.readPlan(rctx, ctx, b)
	if err != nil {
		return err
	}
	now, leases, err := f.leases(rctx, b)
	if err != nil {
		return err
	}
	plan := planBot(f.cfg.Node, b, now, members, leases)
	f.publishView(b, now, members, leases, plan)
	if f.isDraining() {
		f.dropCoordination(ctx, b, "the node is draining")
		return nil
	}
	if b.static != nil {
		return f.tickStatic(ctx, b, now, leases)
	}
	if handled, err := f.tickReshard(ctx, b, fp); handled || err != nil {
		return err
	}
	if err := f.acquire(ctx, b, plan.acquire...); err != nil {
		return err
	}
	if rr, ok := f.cfg.Runner.(ReshardRunner); ok && rr.Resharding(b.Name) {
		// A re-shard's sets still overlap here: its new shards move once
		// the hand-over is done.
		return nil
	}
	if plan.handOver {
		// The highest ready shard: never one still identifying.
		owned := f.ownedSnapshot(b)
		pick := -1
		for id := range owned {
			if id > pick && f.cfg.Runner.ShardReady(b.Name, id) {
				pick = id
			}
		}
		if pick >= 0 {
			f.handOver(ctx, b, pick)
		}
	}
	return nil
}

// renew renews b's leases held; lost ones are stopped.
func (f *Fleet) renew(rctx, ctx context.Context, b *fleetBot) error {
	owned := f.ownedSnapshot(b)
	if len(owned) == 0 {
		return nil
	}
	ids := make([]int, 0, len(owned))
	for id := range owned {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	keys := make([]string, len(ids))
	fences := make([]int64, len(ids))
	for i, id := range ids {
		keys[i], fences[i] = f.cfg.Keys.Lease(b.Name, id), owned[id]
	}
	ok, err := luascripts.LeaseRenew(rctx, f.c, keys, fences, f.cfg.Node, f.cfg.TTL)
	if err != nil {
		return fmt.Errorf("renew leases of bot %s: %w", b.Name, err)
	}
	for i, id := range ids {
		if !ok[i] {
			f.lose(ctx, b, id, fences[i], "lease renewal found a newer fencing number")
		}
	}
	return nil
}

// leases reads every lease of b.
func (f *Fleet) leases(ctx context.Context, b *fleetBot) (int64, []luascripts.LeaseInfo, error) {
	keys := make([]string, b.Shards)
	for i := range keys {
		keys[i] = f.cfg.Keys.Lease(b.Name, i)
	}
	now, ls, err := luascripts.LeaseState(ctx, f.c, keys)
	if err != nil {
		return 0, nil, fmt.Errorf("read leases of bot %s: %w", b.Name, err)
	}
	return now, ls, nil
}

// acquire tries to take the shards' leases (in one call) and starts the
// shards taken; another node may have been faster for some.
func (f *Fleet) acquire(ctx context.Context, b *fleetBot, shards ...int) error {
	if len(shards) == 0 {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, f.opTimeout())
	defer cancel()
	keys := make([]string, len(shards))
	for i, id := range shards {
		keys[i] = f.cfg.Keys.Lease(b.Name, id)
	}
	rs, moved, err := luascripts.LeaseAcquireInPlan(rctx, f.c, keys, f.cfg.Keys.FleetPlan(b.Name), b.epoch, f.cfg.Node, f.cfg.TTL)
	if err != nil {
		return fmt.Errorf("acquire leases of bot %s: %w", b.Name, err)
	}
	if moved {
		// A re-shard was committed since the plan was read: the next
		// round runs the new count.
		f.poke()
		return nil
	}
	for i, r := range rs {
		if !r.Taken {
			continue
		}
		shard := shards[i]
		f.setOwned(b, shard, r.Fence)
		if shard >= b.Shards {
			// A lease a re-shard's new set needs: fenced, not started.
			if err := f.fenceOnly(b.Name, shard, r.Fence); err != nil {
				f.log.Error("fence a new shard of a re-shard; releasing its lease", "bot", b.Name, "shard", shard, "err", err)
				f.setOwned(b, shard, 0)
				f.release(ctx, b, shard, r.Fence)
			}
			continue
		}
		if err := f.cfg.Runner.StartShard(b.Name, shard, r.Fence); err != nil {
			f.log.Error("start shard after taking its lease; releasing it", "bot", b.Name, "shard", shard, "err", err)
			f.setOwned(b, shard, 0)
			f.release(ctx, b, shard, r.Fence)
			continue
		}
		f.log.Info("took shard", "bot", b.Name, "shard", shard, "fence", r.Fence)
		f.event(ControlEvent{Kind: ControlLeaseAcquired, Bot: b.Name, Shard: shard, Node: f.cfg.Node, Seq: r.Fence})
	}
	return nil
}

// release frees a lease and tells the other nodes.
func (f *Fleet) release(ctx context.Context, b *fleetBot, shard int, fence int64) bool {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opTimeout())
	defer cancel()
	ok, err := luascripts.LeaseRelease(rctx, f.c, f.cfg.Keys.Lease(b.Name, shard), fence)
	if err != nil {
		f.log.Warn("release lease; it expires after the TTL", "bot", b.Name, "shard", shard, "err", err)
		return false
	}
	if ok {
		ch := f.cfg.Keys.FleetChannel(b.Name)
		if err := f.c.Do(rctx, f.c.B().Publish().Channel(ch).Message(strconv.Itoa(shard)).Build()).Error(); err != nil {
			f.log.Debug("announce released lease", "err", err)
		}
	}
	return ok
}

// handOver stops a shard gracefully and releases its lease for another
// node.
func (f *Fleet) handOver(ctx context.Context, b *fleetBot, shard int) {
	fence := f.Owns(b.Name, shard)
	if fence == 0 {
		return
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*f.cfg.TTL)
	err := f.cfg.Runner.StopShard(sctx, b.Name, shard)
	cancel()
	if err != nil {
		f.log.Warn("stop shard for hand-over", "bot", b.Name, "shard", shard, "err", err)
	}
	f.setOwned(b, shard, 0)
	if f.release(ctx, b, shard, fence) {
		f.log.Info("handed shard over", "bot", b.Name, "shard", shard, "fence", fence, "stop_took", time.Since(start).Round(time.Millisecond).String())
		f.event(ControlEvent{Kind: ControlLeaseReleased, Bot: b.Name, Shard: shard, Node: f.cfg.Node, Seq: fence})
	}
}

// tickStatic takes the free static shards and stands by for the others.
func (f *Fleet) tickStatic(ctx context.Context, b *fleetBot, now int64, leases []luascripts.LeaseInfo) error {
	owned := f.ownedSnapshot(b)
	var free []int
	for _, id := range b.Static {
		if owned[id] != 0 {
			continue
		}
		l := leases[id]
		if leaseFree(l, now) {
			free = append(free, id)
			continue
		}
		if b.standby[id] != l.Node {
			b.standby[id] = l.Node
			f.log.Warn("standing by: another node runs this shard; taking it when its lease ends",
				"bot", b.Name, "shard", id, "owner", l.Node, "fence", l.Fence, "lease_left", time.Duration(l.Expires-now)*time.Millisecond)
		}
	}
	return f.acquire(ctx, b, free...)
}

func leaseFree(l luascripts.LeaseInfo, now int64) bool { return l.Node == "" || l.Expires <= now }

// botPlan is what balance asks of this node for one bot.
type botPlan struct {
	targets  map[string]int
	counts   map[string]int
	acquire  []int // free shards to take now
	handOver bool  // hand one shard over
}

// planBot decides, from one consistent snapshot, which free shards this
// node takes and which one (at most) it hands over. Every node computes
// the same targets from the same members, so they agree without talking.
func planBot(me string, b *fleetBot, now int64, members []member, leases []luascripts.LeaseInfo) botPlan {
	p := botPlan{counts: map[string]int{}}
	var live []member
	for _, m := range members {
		if !m.Draining && !m.Static {
			live = append(live, m)
		}
	}
	var free []int
	for id, l := range leases {
		if leaseFree(l, now) {
			free = append(free, id)
		} else {
			p.counts[l.Node]++
		}
	}
	p.targets = balanceTargets(live, len(leases))
	if b.static != nil {
		return p
	}
	target, isLive := p.targets[me]
	if !isLive {
		return p
	}
	mine := p.counts[me]
	switch {
	case mine < target && len(free) > 0:
		p.acquire = free[:min(target-mine, len(free))]
	case len(free) > 0:
		// Every live node is at its target, yet shards are free (their
		// owner is gone but still counted, or runs another config): the
		// least loaded node takes one, ties to the lowest id.
		below := false
		for _, m := range live {
			if p.counts[m.ID] < p.targets[m.ID] {
				below = true
			}
		}
		if !below && leastLoaded(live, p.counts) == me {
			p.acquire = free[:1]
		}
	}
	if mine > target && len(free) == 0 {
		receiver := false
		for _, m := range live {
			if p.counts[m.ID] < p.targets[m.ID] {
				receiver = true
			}
		}
		if receiver && mostLoaded(live, p.counts, p.targets) == me {
			p.handOver = true
		}
	}
	return p
}

// leastLoaded is the live node with the fewest shards (lowest id on ties).
func leastLoaded(live []member, counts map[string]int) string {
	best := ""
	for _, m := range live {
		if best == "" || counts[m.ID] < counts[best] || counts[m.ID] == counts[best] && m.ID < best {
			best = m.ID
		}
	}
	return best
}

// mostLoaded is the live node furthest above its target (lowest id on
// ties).
func mostLoaded(live []member, counts, targets map[string]int) string {
	best, bestSurplus := "", 0
	for _, m := range live {
		s := counts[m.ID] - targets[m.ID]
		if s > 0 && (best == "" || s > bestSurplus || s == bestSurplus && m.ID < best) {
			best, bestSurplus = m.ID, s
		}
	}
	return best
}

// balanceTargets shares n shards over the live nodes by capacity: each
// gets floor(n*w/W), the remainder going one by one to the largest
// fractional parts (lowest id on ties). With equal capacities every node
// gets n/k or n/k+1.
func balanceTargets(live []member, n int) map[string]int {
	out := map[string]int{}
	if len(live) == 0 {
		return out
	}
	total := 0
	for _, m := range live {
		total += m.Capacity
	}
	type rem struct {
		id  string
		rem int
	}
	var rems []rem
	given := 0
	for _, m := range live {
		q := n * m.Capacity / total
		out[m.ID] = q
		given += q
		rems = append(rems, rem{m.ID, n * m.Capacity % total})
	}
	sort.Slice(rems, func(i, j int) bool {
		if rems[i].rem != rems[j].rem {
			return rems[i].rem > rems[j].rem
		}
		return rems[i].id < rems[j].id
	})
	for i := 0; given < n; i++ {
		out[rems[i%len(rems)].id]++
		given++
	}
	return out
}

// publishView records the bot's view and reports shards without an owner
// for longer than the TTL (and their return).
func (f *Fleet) publishView(b *fleetBot, now int64, members []member, leases []luascripts.LeaseInfo, p botPlan) {
	v := FleetBotView{Bot: b.Name, Count: b.Shards, Epoch: b.epoch, Reshard: reshardView(b)}
	owned := map[string][]int{}
	local := time.Now()
	var events []ControlEvent
	f.mu.Lock()
	for id, l := range leases {
		o := FleetShardOwner{Shard: id, Fence: l.Fence}
		if leaseFree(l, now) {
			since, ok := b.unowned[id]
			if !ok {
				since = local
				b.unowned[id] = since
			}
			o.UnownedForMS = max(local.Sub(since).Milliseconds(), 1)
			if local.Sub(since) > f.cfg.TTL && !b.reported[id] {
				b.reported[id] = true
				events = append(events, ControlEvent{Kind: ControlUnowned, Bot: b.Name, Shard: id, Seq: l.Fence,
					Err: fmt.Sprintf("no owner for %s", local.Sub(since).Round(time.Millisecond))})
			}
		} else {
			o.Owner = l.Node
			o.ExpiresInMS = l.Expires - now
			owned[l.Node] = append(owned[l.Node], id)
			delete(b.unowned, id)
			if b.reported[id] {
				delete(b.reported, id)
				events = append(events, ControlEvent{Kind: ControlOwnedAgain, Bot: b.Name, Shard: id, Node: l.Node, Seq: l.Fence})
			}
		}
		v.Shards = append(v.Shards, o)
	}
	for _, m := range members {
		v.Nodes = append(v.Nodes, FleetNodeView{ID: m.ID, Addr: m.Addr, Version: m.Version, Capacity: m.Capacity,
			Draining: m.Draining, Static: m.Static, Shards: append([]int{}, owned[m.ID]...), Target: p.targets[m.ID],
			LastHeartbeat: time.UnixMilli(m.beat)})
	}
	b.view = v
	f.mu.Unlock()
	for _, ev := range events {
		if ev.Kind == ControlUnowned {
			f.log.Error("shard has no owner", "bot", ev.Bot, "shard", ev.Shard, "for", ev.Err)
		}
		f.event(ev)
	}
}

// Drain hands every shard of this node over, one at a time: it marks the
// node draining (balance gives it nothing and it takes nothing), then for
// each shard stops it gracefully, releases its lease and waits (at most a
// TTL) until another node took it. With no other live node, or when ctx
// is about to end, the rest stop together. Finally the node leaves the
// membership. The loop keeps renewing the leases not yet handed over.
func (f *Fleet) Drain(ctx context.Context) error {
	f.mu.Lock()
	done := f.drainDone
	if done == nil {
		f.draining = true
		f.drainDone = make(chan struct{})
	}
	f.mu.Unlock()
	if done != nil {
		// Another Drain runs: wait for it.
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("drain: %w", ctx.Err())
		}
	}
	defer close(f.drainDone)
	f.log.Info("draining: handing every shard over")
	for _, b := range f.bots {
		for {
			shard, fence, others, err := f.drainNext(ctx, b)
			if err != nil {
				f.log.Warn("drain: read the fleet", "bot", b.Name, "err", err)
			}
			if fence == 0 {
				break
			}
			deadline, has := ctx.Deadline()
			if !others || (has && time.Until(deadline) < f.cfg.TTL/2) || err != nil {
				f.stopAll(ctx, b)
				break
			}
			f.opMu.Lock()
			if f.Owns(b.Name, shard) == fence {
				f.handOver(ctx, b, shard)
			}
			f.opMu.Unlock()
			f.waitTaken(ctx, b, shard, fence)
		}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opTimeout())
	defer cancel()
	var errs []error
	for _, b := range f.bots {
		k := f.cfg.Keys
		if _, err := luascripts.FleetLeave(rctx, f.c, k.FleetMembers(b.Name), k.FleetMemberDetails(b.Name), f.cfg.Node); err != nil {
			errs = append(errs, fmt.Errorf("leave fleet of bot %s: %w", b.Name, err))
		}
	}
	f.mu.Lock()
	f.drained = true
	f.mu.Unlock()
	f.log.Info("drained")
	return errors.Join(errs...)
}

// drainNext picks the next shard to hand over (ready ones first) and says
// whether another live, non-draining node of the bot may take it (a
// balanced node, or a static one listing the shard).
func (f *Fleet) drainNext(ctx context.Context, b *fleetBot) (shard int, fence int64, others bool, err error) {
	owned := f.ownedSnapshot(b)
	if len(owned) == 0 {
		return 0, 0, false, nil
	}
	shard = -1
	for id := range owned {
		ready := f.cfg.Runner.ShardReady(b.Name, id)
		if shard < 0 || ready && !f.cfg.Runner.ShardReady(b.Name, shard) || ready == f.cfg.Runner.ShardReady(b.Name, shard) && id < shard {
			shard = id
		}
	}
	rctx, cancel := context.WithTimeout(ctx, f.opTimeout())
	defer cancel()
	_, members, err := f.heartbeat(rctx, b)
	if err != nil {
		return shard, owned[shard], false, err
	}
	for _, m := range members {
		if m.ID != f.cfg.Node && !m.Draining && (!m.Static || slices.Contains(m.StaticShards, shard)) {
			others = true
		}
	}
	return shard, owned[shard], others, nil
}

// waitTaken waits until another node holds shard's lease (a fence above
// fence), at most a TTL.
func (f *Fleet) waitTaken(ctx context.Context, b *fleetBot, shard int, fence int64) {
	wctx, cancel := context.WithTimeout(ctx, f.cfg.TTL)
	defer cancel()
	key := f.cfg.Keys.Lease(b.Name, shard)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		_, ls, err := luascripts.LeaseState(wctx, f.c, []string{key})
		if err == nil && ls[0].Fence > fence && ls[0].Node != "" {
			return
		}
		select {
		case <-wctx.Done():
			f.log.Warn("drain: no node took the shard yet; going on", "bot", b.Name, "shard", shard)
			return
		case <-t.C:
		}
	}
}

// stopAll stops b's remaining shards together and releases their leases.
func (f *Fleet) stopAll(ctx context.Context, b *fleetBot) {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	f.stopAllLocked(ctx, b)
}

// stopAllLocked is stopAll with opMu held.
func (f *Fleet) stopAllLocked(ctx context.Context, b *fleetBot) {
	owned := f.ownedSnapshot(b)
	var wg sync.WaitGroup
	for id := range owned {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.cfg.Runner.StopShard(ctx, b.Name, id); err != nil {
				f.log.Warn("stop shard", "bot", b.Name, "shard", id, "err", err)
			}
		}()
	}
	wg.Wait()
	for id, fence := range owned {
		f.setOwned(b, id, 0)
		if f.release(ctx, b, id, fence) {
			f.event(ControlEvent{Kind: ControlLeaseReleased, Bot: b.Name, Shard: id, Node: f.cfg.Node, Seq: fence})
		}
	}
}

// Draining reports whether Drain was called; Drained whether it finished.
func (f *Fleet) Draining() (draining, drained bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.draining, f.drained
}
