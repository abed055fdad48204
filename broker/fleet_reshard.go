package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/feathery/feathery/luascripts"
)

// Re-sharding a fleet.
//
// Every node runs leases for the shard count of the bot's plan in Redis
// (Keys.FleetPlan: count and epoch, written from the configuration at the
// fleet's first start), read every round. A re-shard is asked for by
// writing the wanted count in the plan (RequestReshard, from any node).
// One node coordinates it: the first to take the bot's re-shard lease
// (Keys.ReshardLease, a lease like a shard's). While another node holds it,
// every node hands its shards of the bot over (flushed, checkpointed,
// closed with a resumable code, released) and takes none; the coordinator
// takes them all and RESUMEs them, and takes the leases of the new set's
// ids beyond the old count too (fenced, not started). With the whole old
// set on it, it runs the gateway's local re-shard (ReshardRunner.Reshard):
// the new set identifies beside the old one and the hand-over decides,
// guild by guild, which copy of each event is published. At the cut-over,
// before the new set writes the shards' own checkpoints, CommitReshard
// commits the new count in one script: the plan becomes (new count,
// epoch+1), the new set's staged checkpoints become the shards'
// checkpoints, the leases and checkpoints of ids beyond the new count are
// released and deleted, and the re-shard lease is released. The other
// nodes then run the new count and balance takes shards from the
// coordinator by ordinary hand-overs.
//
// Leases are taken with the plan's epoch (LeaseAcquireInPlan): a node that
// has not yet seen a new count cannot take shard i of the new count as
// shard i of the old one. Every shard of both sets carries the fence of its
// id's lease, held by the coordinator, so a coordinator that lost a lease
// (paused past the TTL) cannot publish with it. A coordinator that dies
// before the commit leaves the old set's checkpoints untouched: its leases
// expire, the other nodes RESUME the old set, and one of them takes the
// re-shard lease and starts over; after the commit they RESUME the new set.

// ReshardRunner is implemented by a ShardRunner that can re-shard a bot
// whose shards all run on this node; without it a Fleet refuses re-shards.
type ReshardRunner interface {
	// FenceShard makes shard of bot's batches carry fence without
	// starting it (a lease taken for a re-shard's new set).
	FenceShard(bot string, shard int, fence int64) error
	// Reshard starts re-sharding bot, whose every shard runs here, to
	// count shards; its cut-over calls Fleet.CommitReshard.
	Reshard(ctx context.Context, bot string, count int) error
	// Resharding reports whether a re-shard of bot runs here.
	Resharding(bot string) bool
	// AdoptCount makes count bot's shard count here; none of its shards
	// runs.
	AdoptCount(bot string, count int) error
	// ShardDown reports whether shard stopped for good (close code 4011
	// ends a shard of a set that is too small): the re-shard goes on
	// without it, its guilds switching to the new set at their markers.
	ShardDown(bot string, shard int) bool
}

// coordRun is a re-shard this node coordinates.
type coordRun struct {
	from, to int
	epoch    int64 // plan epoch it started from
	fence    int64 // re-shard lease fence
	reason   string
	since    time.Time
	// launch: every old shard runs here; the tick starts the local
	// re-shard once it released opMu (launching), started: it did.
	launch, launching, started bool
	// failed is why the re-shard cannot go on, "" while it can;
	// commitFailed: the commit was refused after the local cut-over.
	failed       string
	commitFailed bool
}

// FleetReshardView is a re-shard asked for or in progress.
type FleetReshardView struct {
	To     int    `json:"to"`
	Reason string `json:"reason,omitempty"`
	// Coordinator is the node that gathers the old set and re-shards,
	// "" while none does yet.
	Coordinator string `json:"coordinator,omitempty"`
}

// ErrReshardRefused wraps the reasons a fleet refuses a re-shard request.
var ErrReshardRefused = errors.New("re-shard refused")

// RequestReshard asks the fleet to re-shard bot to count shards; any node
// may ask. It returns once the request is stored: the re-shard itself runs
// in the background (GET /api/fleet shows it). A request replaces an
// earlier one not yet started.
func (f *Fleet) RequestReshard(ctx context.Context, bot string, count int, reason string) error {
	b := f.bot(bot)
	switch {
	case b == nil:
		return fmt.Errorf("request re-shard of %s: %w: the bot does not run in this fleet", bot, ErrReshardRefused)
	case count < 1:
		return fmt.Errorf("request re-shard of %s: %w: shard count %d, want at least 1", bot, ErrReshardRefused, count)
	case b.static != nil:
		return fmt.Errorf("request re-shard of %s: %w: it runs static shard_ids; give each process its new list and restart instead", bot, ErrReshardRefused)
	}
	if _, ok := f.cfg.Runner.(ReshardRunner); !ok {
		return fmt.Errorf("request re-shard of %s: %w: this node cannot re-shard", bot, ErrReshardRefused)
	}
	f.mu.Lock()
	cur := b.plan
	f.mu.Unlock()
	if cur.Coordinator.Node != "" && cur.Coordinator.Expires > cur.Now && cur.Want != 0 && cur.Want != count {
		return fmt.Errorf("request re-shard of %s to %d: %w: node %q is re-sharding it to %d", bot, count, ErrReshardRefused, cur.Coordinator.Node, cur.Want)
	}
	err := f.c.Do(ctx, f.c.B().Hset().Key(f.cfg.Keys.FleetPlan(bot)).FieldValue().
		FieldValue("want", strconv.Itoa(count)).FieldValue("reason", reason).Build()).Error()
	if err != nil {
		return fmt.Errorf("request re-shard of %s: %w", bot, err)
	}
	f.log.Info("re-shard requested", "bot", bot, "to", count, "reason", reason)
	f.announce(ctx, bot)
	f.poke()
	return nil
}

// announce wakes the bot's other nodes.
func (f *Fleet) announce(ctx context.Context, bot string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opTimeout())
	defer cancel()
	if err := f.c.Do(rctx, f.c.B().Publish().Channel(f.cfg.Keys.FleetChannel(bot)).Message("plan").Build()).Error(); err != nil {
		f.log.Debug("announce plan change", "err", err)
	}
}

func reshardView(b *fleetBot) *FleetReshardView {
	p := b.plan
	if p.Want == 0 || p.Want == p.Count {
		return nil
	}
	v := &FleetReshardView{To: p.Want, Reason: p.Reason}
	if p.Coordinator.Node != "" && p.Coordinator.Expires > p.Now {
		v.Coordinator = p.Coordinator.Node
	}
	return v
}

// readPlan reads b's plan and puts a new count in force here. opMu held.
func (f *Fleet) readPlan(rctx, ctx context.Context, b *fleetBot) (luascripts.FleetPlan, error) {
	k := f.cfg.Keys
	p, err := luascripts.ReadFleetPlan(rctx, f.c, k.FleetPlan(b.Name), k.ReshardLease(b.Name), b.Shards)
	if err != nil {
		return p, fmt.Errorf("read plan of bot %s: %w", b.Name, err)
	}
	f.mu.Lock()
	b.plan = p
	coord := b.coord
	f.mu.Unlock()
	if b.planned && p.Count == b.Shards && p.Epoch == b.epoch {
		return p, nil
	}
	if coord != nil {
		// Only this node's commit moves the plan while it coordinates
		// (and that updates b): another node committed after this one
		// lost the re-shard lease.
		f.dropCoordination(ctx, b, "the plan moved on without this node")
	}
	if b.static != nil {
		if p.Count != b.Shards {
			return p, fmt.Errorf("bot %s: the fleet runs %d shards, this node's shard_ids were given for %d: give it a list for %d and restart it", b.Name, p.Count, b.Shards, p.Count)
		}
		b.epoch, b.planned = p.Epoch, true
		return p, nil
	}
	if owned := f.ownedSnapshot(b); len(owned) > 0 {
		// Leases of a count the fleet left: another node holds them by
		// now (the coordinator took every one before committing).
		for id, fence := range owned {
			f.lose(ctx, b, id, fence, "the fleet re-sharded to "+strconv.Itoa(p.Count)+" shards")
		}
	}
	if p.Count != b.Shards {
		rr, ok := f.cfg.Runner.(ReshardRunner)
		if !ok {
			return p, fmt.Errorf("bot %s: the fleet runs %d shards, this node %d and cannot change", b.Name, p.Count, b.Shards)
		}
		if err := rr.AdoptCount(b.Name, p.Count); err != nil {
			return p, fmt.Errorf("bot %s: run the fleet's %d shards: %w", b.Name, p.Count, err)
		}
		if b.planned {
			f.log.Info("the fleet re-sharded: running the new shard count", "bot", b.Name, "from", b.Shards, "to", p.Count, "epoch", p.Epoch)
		}
	}
	first := !b.planned
	f.mu.Lock()
	b.Shards, b.epoch, b.planned = p.Count, p.Epoch, true
	f.mu.Unlock()
	if first && b.Configured != 0 && b.Configured != p.Count {
		// Not a request: during a rolling deploy old and new nodes would
		// ask for their counts in turn. A reload or the API re-shards.
		f.log.Warn("the configuration gives another shard count than the fleet runs; running the fleet's: reload the config or POST /api/bots/{bot}/reshard to re-shard the fleet",
			"bot", b.Name, "fleet", p.Count, "configured", b.Configured)
	}
	return p, nil
}

// tickReshard runs b's part of a re-shard: handled says whether balance
// must wait this round. opMu held.
func (f *Fleet) tickReshard(ctx context.Context, b *fleetBot, p luascripts.FleetPlan) (bool, error) {
	me := f.cfg.Node
	co := p.Coordinator
	held := co.Node != "" && co.Expires > p.Now
	f.mu.Lock()
	cr := b.coord
	f.mu.Unlock()
	switch {
	case cr != nil:
		if !held || co.Node != me || co.Fence != cr.fence {
			f.dropCoordination(ctx, b, "the re-shard lease is no longer this node's")
			return false, nil
		}
		return true, f.coordinate(ctx, b, cr, p)
	case held && co.Node != me:
		// Another node gathers the old set: hand every shard over, for a
		// round's time at most (the leases not yet handed over are renewed
		// next round).
		until := time.Now().Add(f.interval())
		for id := range f.ownedSnapshot(b) {
			if time.Now().After(until) {
				f.poke()
				break
			}
			f.handOver(ctx, b, id)
		}
		return true, nil
	case held:
		// A re-shard lease of this node id from an earlier process.
		f.releaseCoordinator(ctx, b, co.Fence)
		return true, nil
	case p.Want == 0:
		return false, nil
	case p.Want == p.Count:
		f.clearRequest(ctx, b, p.Want)
		return false, nil
	}
	if _, ok := f.cfg.Runner.(ReshardRunner); !ok {
		return false, nil
	}
	rctx, cancel := context.WithTimeout(ctx, f.opTimeout())
	defer cancel()
	r, err := luascripts.LeaseAcquire(rctx, f.c, f.cfg.Keys.ReshardLease(b.Name), me, f.cfg.TTL)
	if err != nil {
		return false, fmt.Errorf("take the re-shard lease of bot %s: %w", b.Name, err)
	}
	if !r.Taken {
		return true, nil
	}
	cr = &coordRun{from: p.Count, to: p.Want, epoch: p.Epoch, fence: r.Fence, reason: p.Reason, since: time.Now()}
	f.mu.Lock()
	b.coord = cr
	f.mu.Unlock()
	f.log.Info("coordinating a re-shard: gathering the old set here", "bot", b.Name, "from", cr.from, "to", cr.to, "reason", cr.reason)
	f.event(ControlEvent{Kind: ControlReshard, Bot: b.Name, Shard: -1, Node: me,
		Detail: fmt.Sprintf("fleet: gathering: %d -> %d shards on node %s (%s)", cr.from, cr.to, me, cr.reason)})
	f.announce(ctx, b.Name)
	return true, f.coordinate(ctx, b, cr, p)
}

// coordinate takes every lease of both sets and starts the old set's
// shards here; once they all run, the tick starts the local re-shard.
// opMu held.
func (f *Fleet) coordinate(ctx context.Context, b *fleetBot, cr *coordRun, p luascripts.FleetPlan) error {
	rctx, cancel := context.WithTimeout(ctx, f.opTimeout())
	defer cancel()
	if err := f.renewCoordinator(rctx, b, cr); err != nil {
		return err
	}
	rr := f.cfg.Runner.(ReshardRunner)
	f.mu.Lock()
	started, failed := cr.started, cr.failed
	f.mu.Unlock()
	switch {
	case failed != "":
		f.abandon(ctx, b, cr, failed)
		return nil
	case started:
		if !rr.Resharding(b.Name) {
			f.mu.Lock()
			still := b.coord == cr
			f.mu.Unlock()
			if still {
				f.abandon(ctx, b, cr, "the local re-shard ended without a cut-over")
			}
		}
		return nil
	}
	l := max(cr.from, cr.to)
	keys := make([]string, l)
	for i := range keys {
		keys[i] = f.cfg.Keys.Lease(b.Name, i)
	}
	now, leases, err := luascripts.LeaseState(rctx, f.c, keys)
	if err != nil {
		return fmt.Errorf("read leases of bot %s: %w", b.Name, err)
	}
	owned := f.ownedSnapshot(b)
	var free []int
	for i, ls := range leases {
		if owned[i] == 0 && leaseFree(ls, now) {
			free = append(free, i)
		}
	}
	if err := f.acquire(ctx, b, free...); err != nil {
		return err
	}
	owned = f.ownedSnapshot(b)
	for i := range l {
		if owned[i] == 0 || i < cr.from && !f.cfg.Runner.ShardReady(b.Name, i) && !rr.ShardDown(b.Name, i) {
			return nil
		}
	}
	if rr.Resharding(b.Name) {
		// The last re-shard's hand-over is finishing here.
		return nil
	}
	f.mu.Lock()
	cr.launch = true
	f.mu.Unlock()
	return nil
}

// launchReshards starts the local re-shards whose old set is gathered,
// each on its own goroutine (the loop goes on renewing the leases while
// the gateway asks Discord and launches the new set; its cut-over calls
// CommitReshard, which takes opMu).
func (f *Fleet) launchReshards(ctx context.Context) {
	for _, b := range f.bots {
		f.mu.Lock()
		cr := b.coord
		launch := cr != nil && cr.launch && !cr.launching && cr.failed == ""
		if launch {
			cr.launching = true
		}
		f.mu.Unlock()
		if !launch {
			continue
		}
		f.log.Info("the old set runs here: re-sharding", "bot", b.Name, "from", cr.from, "to", cr.to, "gathering", time.Since(cr.since).Round(time.Millisecond).String())
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.opMu.Lock()
			f.mu.Lock()
			gone := b.coord != cr
			f.mu.Unlock()
			f.opMu.Unlock()
			if gone {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := f.cfg.Runner.(ReshardRunner).Reshard(rctx, b.Name, cr.to)
			cancel()
			f.mu.Lock()
			if err != nil {
				cr.failed = "start the re-shard: " + err.Error()
			} else {
				cr.started = true
			}
			f.mu.Unlock()
			f.poke()
		}()
	}
}

// CommitReshard commits the re-shard of bot to count this node coordinates
// (fleet_reshard_commit.lua): called by the gateway's cut-over, once the
// old set stopped and before the new set writes the shards' own
// checkpoints. After an error the re-shard must not be promoted: the
// fleet still runs the old count and this node drops the bot's shards.
func (f *Fleet) CommitReshard(ctx context.Context, bot string, count int) error {
	f.opMu.Lock()
	defer f.opMu.Unlock()
	b := f.bot(bot)
	if b == nil {
		return fmt.Errorf("commit re-shard of %s: unknown bot", bot)
	}
	f.mu.Lock()
	cr := b.coord
	f.mu.Unlock()
	if cr == nil || !cr.started || cr.to != count {
		return fmt.Errorf("commit re-shard of %s to %d: this node coordinates no such re-shard", bot, count)
	}
	l := max(cr.from, cr.to)
	k := f.cfg.Keys
	c := luascripts.FleetReshardCommit{Plan: k.FleetPlan(bot), Reshard: k.ReshardLease(bot), Node: f.cfg.Node,
		ReshardFence: cr.fence, Epoch: cr.epoch, From: cr.from, To: cr.to}
	owned := f.ownedSnapshot(b)
	for i := range l {
		c.Leases = append(c.Leases, k.Lease(bot, i))
		c.Checkpoints = append(c.Checkpoints, k.Session(bot, i))
		c.Fences = append(c.Fences, owned[i])
	}
	for i := range cr.to {
		c.StagedCheckpoints = append(c.StagedCheckpoints, k.StagedSession(bot, i, cr.to))
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opTimeout())
	defer cancel()
	epoch, ok, why, err := luascripts.CommitFleetReshard(rctx, f.c, c)
	if err == nil && !ok {
		err = errors.New(why)
	}
	if err != nil {
		f.mu.Lock()
		cr.failed, cr.commitFailed = "commit refused: "+err.Error(), true
		f.mu.Unlock()
		f.poke()
		return fmt.Errorf("commit re-shard of %s to %d: %w", bot, count, err)
	}
	f.mu.Lock()
	for i := cr.to; i < l; i++ {
		delete(b.owned, i)
	}
	b.Shards, b.epoch = cr.to, epoch
	b.coord = nil
	b.plan.Count, b.plan.Epoch, b.plan.Want, b.plan.Coordinator = cr.to, epoch, 0, luascripts.LeaseInfo{}
	f.mu.Unlock()
	f.log.Info("re-shard committed: the fleet runs the new count; balance spreads it", "bot", bot, "from", cr.from, "to", cr.to, "epoch", epoch,
		"took", time.Since(cr.since).Round(time.Millisecond).String())
	f.event(ControlEvent{Kind: ControlReshard, Bot: bot, Shard: -1, Node: f.cfg.Node, Seq: epoch,
		Detail: fmt.Sprintf("fleet: committed: %d -> %d shards, epoch %d", cr.from, cr.to, epoch)})
	f.announce(ctx, bot)
	return nil
}

// abandon gives a re-shard up: the request is cleared, the leases of ids
// beyond the old count and the re-shard lease are released; the old set
// keeps running here until balance spreads it again. A commit refused
// (this node lost a lease while the new set ran) also stops every shard
// of the bot here: their sessions are the new set's and the fleet runs
// the old count.
func (f *Fleet) abandon(ctx context.Context, b *fleetBot, cr *coordRun, why string) {
	f.log.Error("fleet re-shard abandoned; the old shard count stays", "bot", b.Name, "from", cr.from, "to", cr.to, "why", why)
	rr := f.cfg.Runner.(ReshardRunner)
	f.mu.Lock()
	commitFailed := cr.commitFailed
	f.mu.Unlock()
	if rr.Resharding(b.Name) || commitFailed {
		// The local re-shard is past its start: the bot's shards here are
		// no longer (only) the old set.
		f.stopAllLocked(ctx, b)
		if err := rr.AdoptCount(b.Name, cr.from); err != nil {
			f.log.Error("run the old shard count again", "bot", b.Name, "err", err)
		}
	}
	for id, fence := range f.ownedSnapshot(b) {
		if id >= cr.from {
			f.setOwned(b, id, 0)
			f.release(ctx, b, id, fence)
		}
	}
	if commitFailed {
		why += "; the new set published since the cut-over: the old set resumes from before it, so those events may be doubled"
	}
	f.clearRequest(ctx, b, cr.to)
	f.releaseCoordinator(ctx, b, cr.fence)
	f.mu.Lock()
	b.coord = nil
	f.mu.Unlock()
	f.event(ControlEvent{Kind: ControlReshard, Bot: b.Name, Shard: -1, Node: f.cfg.Node, Err: why,
		Detail: fmt.Sprintf("fleet: abandoned: %d -> %d shards: %s", cr.from, cr.to, why)})
}

// dropCoordination forgets a re-shard this node no longer coordinates.
func (f *Fleet) dropCoordination(ctx context.Context, b *fleetBot, why string) {
	f.mu.Lock()
	cr := b.coord
	f.mu.Unlock()
	if cr == nil {
		return
	}
	f.abandon(ctx, b, cr, why)
}

func (f *Fleet) renewCoordinator(rctx context.Context, b *fleetBot, cr *coordRun) error {
	ok, err := luascripts.LeaseRenew(rctx, f.c, []string{f.cfg.Keys.ReshardLease(b.Name)}, []int64{cr.fence}, f.cfg.Node, f.cfg.TTL)
	if err != nil {
		return fmt.Errorf("renew the re-shard lease of bot %s: %w", b.Name, err)
	}
	if !ok[0] {
		return fmt.Errorf("renew the re-shard lease of bot %s: another node holds it", b.Name)
	}
	return nil
}

func (f *Fleet) releaseCoordinator(ctx context.Context, b *fleetBot, fence int64) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opTimeout())
	defer cancel()
	if _, err := luascripts.LeaseRelease(rctx, f.c, f.cfg.Keys.ReshardLease(b.Name), fence); err != nil {
		f.log.Warn("release the re-shard lease; it expires after the TTL", "bot", b.Name, "err", err)
	}
	f.announce(ctx, b.Name)
}

// clearRequest removes the plan's request when it still asks for want.
func (f *Fleet) clearRequest(ctx context.Context, b *fleetBot, want int) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.opTimeout())
	defer cancel()
	key := f.cfg.Keys.FleetPlan(b.Name)
	err := f.c.Do(rctx, f.c.B().Eval().Script(
		"if redis.call('HGET', KEYS[1], 'want') == ARGV[1] then return redis.call('HDEL', KEYS[1], 'want', 'reason') end return 0").
		Numkeys(1).Key(key).Arg(strconv.Itoa(want)).Build()).Error()
	if err != nil {
		f.log.Warn("clear the re-shard request", "bot", b.Name, "err", err)
	}
}

// fenceOnly fences a shard a re-shard's new set needs.
func (f *Fleet) fenceOnly(bot string, shard int, fence int64) error {
	rr, ok := f.cfg.Runner.(ReshardRunner)
	if !ok {
		return errors.New("the runner cannot re-shard")
	}
	return rr.FenceShard(bot, shard, fence)
}
