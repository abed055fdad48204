package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// fleetRunner is the Fleet's ShardRunner over the gateway's Manager: a
// shard taken sets its fence in the publisher, then starts.
type fleetRunner struct{ d *daemon }

func (r fleetRunner) StartShard(bot string, shard int, fence int64) error {
	if err := r.d.pub.SetFence(bot, shard, fence); err != nil {
		return fmt.Errorf("set fence of %s shard %d: %w", bot, shard, err)
	}
	return r.d.mgr.StartShard(bot, shard)
}

func (r fleetRunner) StopShard(ctx context.Context, bot string, shard int) error {
	err := r.d.mgr.StopShard(ctx, bot, shard)
	if errors.Is(err, gateway.ErrUnknownShard) {
		return nil
	}
	return err
}

// FenceShard, Reshard, Resharding and AdoptCount make fleetRunner a
// broker.ReshardRunner: a fleet re-shards on the node that gathered the
// bot's old set.
func (r fleetRunner) FenceShard(bot string, shard int, fence int64) error {
	if err := r.d.pub.SetFence(bot, shard, fence); err != nil {
		return fmt.Errorf("set fence of %s shard %d: %w", bot, shard, err)
	}
	return nil
}

func (r fleetRunner) Reshard(ctx context.Context, bot string, count int) error {
	// This node holds the bot's re-shard lease: what an earlier
	// coordinator's abandoned re-shard left is cleared (its new set's
	// sessions reported as gaps) before this one stages.
	if err := r.d.dropStaged(ctx, bot); err != nil {
		return err
	}
	return r.d.mgr.Reshard(ctx, bot, count, nil)
}

func (r fleetRunner) Resharding(bot string) bool { return r.d.mgr.ReshardActive(bot) }

func (r fleetRunner) AdoptCount(bot string, count int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return r.d.mgr.ResetShardCount(ctx, bot, count)
}

func (r fleetRunner) ShardDown(bot string, shard int) bool {
	st, ok := r.d.mgr.ShardState(bot, shard)
	return ok && st == gateway.StateFailed
}

// fleetReshard asks the fleet for the re-shards the gateway decides on
// (close code 4011, autoscale).
func (d *daemon) fleetReshard(ctx context.Context, bot string, count int, why string) error {
	f := d.getFleet()
	if f == nil {
		return errors.New("the fleet has not started yet")
	}
	return f.RequestReshard(ctx, bot, count, why)
}

// autoscaleHere: in a fleet, the node holding shard 0's lease checks a
// bot's recommended shard count.
func (d *daemon) autoscaleHere(bot string) bool {
	f := d.getFleet()
	return f != nil && f.Owns(bot, 0) != 0
}

// commitReshard is asked before a re-shard's new set is promoted: in a
// fleet, the new shard count is committed first (broker.Fleet.CommitReshard).
func (d *daemon) commitReshard(ctx context.Context, bot string, count int) error {
	f := d.getFleet()
	if f == nil {
		return nil
	}
	return f.CommitReshard(ctx, bot, count)
}

func (r fleetRunner) ShardReady(bot string, shard int) bool {
	st, ok := r.d.mgr.ShardState(bot, shard)
	return ok && st == gateway.StateReady
}

// startFleet joins the fleet once the manager knows every bot's shard
// count; from then on the Fleet decides which shards run here.
func (d *daemon) startFleet() error {
	var bots []broker.FleetBot
	for _, b := range d.cfg.Bots {
		fb := broker.FleetBot{Name: b.Name, Shards: d.mgr.ShardCount(b.Name)}
		if b.ShardIDs == nil {
			fb.Configured = int(b.Shards)
		}
		if b.ShardIDs != nil {
			fb.Static = append([]int{}, b.ShardIDs...)
		}
		bots = append(bots, fb)
	}
	addr := ""
	if d.admin != nil {
		addr = d.admin.Addr()
	}
	f, err := broker.NewFleet(d.redis.Redis(), broker.FleetConfig{
		Keys:     broker.NewKeys(d.cfg.Redis.Prefix),
		Node:     nodeID(d.cfg),
		Addr:     addr,
		Version:  version(),
		Capacity: d.cfg.Node.Capacity,
		TTL:      d.cfg.Fleet.LeaseTTL.D(),
		Bots:     bots,
		Runner:   fleetRunner{d},
		OnEvent:  d.onFleetEvent,
		Logger:   d.log.With("component", "fleet"),
	})
	if err != nil {
		return fmt.Errorf("fleet: %w", err)
	}
	d.fleetMu.Lock()
	d.fleet = f
	d.fleetMu.Unlock()
	d.log.Info("joined the fleet", "node", f.Node(), "lease_ttl", d.cfg.Fleet.LeaseTTL.D().String(), "capacity", d.cfg.Node.Capacity)
	f.Start()
	return nil
}

// getFleet is the Fleet, nil when fleet mode is off or not started yet.
func (d *daemon) getFleet() *broker.Fleet {
	d.fleetMu.Lock()
	defer d.fleetMu.Unlock()
	return d.fleet
}

// onFleetEvent writes ownership changes to the control stream.
func (d *daemon) onFleetEvent(ev broker.ControlEvent) {
	d.pub.Control(ev)
}

// onFenced tells the Fleet a publish was refused: another node holds the
// lease.
func (d *daemon) onFenced(bot string, shard int, fence int64) {
	if f := d.getFleet(); f != nil {
		f.Fenced(bot, shard, fence)
	}
}

// admit is the gateway's check before a shard connects: is the lease
// still this node's?
func (d *daemon) admit(ctx context.Context, bot string, shard int) error {
	f := d.getFleet()
	if f == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := f.CheckLease(cctx, bot, shard)
	if errors.Is(err, broker.ErrFenced) {
		return fmt.Errorf("%w: %w", gateway.ErrShardRevoked, err)
	}
	return err
}

// Fleet implements fleetBackend: GET /api/fleet.
func (d *daemon) Fleet(context.Context) (broker.FleetView, bool) {
	f := d.getFleet()
	if f == nil {
		return broker.FleetView{}, false
	}
	return f.View(), true
}

// Drain implements fleetBackend: POST /api/node/drain hands this node's
// shards over in the background.
func (d *daemon) Drain(context.Context) error {
	f := d.getFleet()
	if f == nil {
		return errNoFleet
	}
	if draining, _ := f.Draining(); draining {
		return nil
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		if err := f.Drain(ctx); err != nil {
			d.log.Warn("drain", "err", err)
		}
	}()
	return nil
}

// errNoFleet is Drain's error when fleet mode is off.
var errNoFleet = errors.New("fleet mode is off: nothing to drain to")

// fleetHealth adds the fleet's view to h: a shard without an owner for
// longer than the TTL makes every node unhealthy; a node with no shard is
// healthy.
func (d *daemon) fleetHealth(h *healthReport) {
	f := d.getFleet()
	if f == nil {
		return
	}
	v := f.View()
	h.Unowned = v.Unowned
	h.Node = v.Node
	if h.ShardsTotal == 0 && h.Redis == "ok" && len(h.Checkpoints) == 0 {
		h.OK = true
		h.Detail = "no shards assigned to this node"
		if v.Draining {
			h.Detail = "drained"
		}
	}
	if v.Unowned > 0 {
		h.OK = false
		h.Detail = strings.TrimPrefix(h.Detail+"; ", "; ") + fmt.Sprintf("%d shard(s) without an owner for longer than %s", v.Unowned, d.cfg.Fleet.LeaseTTL.D())
	}
}
