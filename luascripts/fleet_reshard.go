package luascripts

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

var (
	//go:embed fleet_plan.lua
	fleetPlanSrc string
	//go:embed fleet_reshard_commit.lua
	fleetReshardCommitSrc string

	fleetPlanScript          = rueidis.NewLuaScript(fleetPlanSrc)
	fleetReshardCommitScript = rueidis.NewLuaScript(fleetReshardCommitSrc)
)

// FleetPlan is a bot's fleet plan as stored (fleet_plan.lua).
type FleetPlan struct {
	// Now is the server time, unix ms.
	Now int64
	// Count is the shard count the fleet runs; Epoch grows with every
	// committed re-shard.
	Count int
	Epoch int64
	// Want is the shard count a re-shard was asked for (0 = none) and
	// Reason why.
	Want   int
	Reason string
	// Coordinator is the re-shard lease.
	Coordinator LeaseInfo
}

// ReadFleetPlan reads the plan of a bot (creating it with count at epoch 0
// when there is none) and its re-shard lease. Malformed stored values are
// an error naming the field.
func ReadFleetPlan(ctx context.Context, c rueidis.Client, planKey, reshardKey string, count int) (FleetPlan, error) {
	vals, err := fleetPlanScript.Exec(ctx, c, []string{planKey, reshardKey}, []string{strconv.Itoa(count)}).AsStrSlice()
	if err != nil {
		return FleetPlan{}, fmt.Errorf("run fleet_plan script: %w", err)
	}
	if len(vals) != 8 {
		return FleetPlan{}, fmt.Errorf("run fleet_plan script: reply has %d values, want 8", len(vals))
	}
	var p FleetPlan
	bad := func(field, v string) error {
		return fmt.Errorf("read fleet plan %s: field %s %q is not valid", planKey, field, v)
	}
	if p.Now, err = strconv.ParseInt(vals[0], 10, 64); err != nil {
		return FleetPlan{}, fmt.Errorf("run fleet_plan script: server time %q is not an integer", vals[0])
	}
	if p.Count, err = strconv.Atoi(vals[1]); err != nil || p.Count < 1 {
		return FleetPlan{}, bad("count", vals[1])
	}
	if p.Epoch, err = strconv.ParseInt(vals[2], 10, 64); err != nil || p.Epoch < 0 {
		return FleetPlan{}, bad("epoch", vals[2])
	}
	if vals[3] != "" {
		if p.Want, err = strconv.Atoi(vals[3]); err != nil || p.Want < 1 {
			return FleetPlan{}, bad("want", vals[3])
		}
	}
	p.Reason = vals[4]
	fence, err1 := strconv.ParseInt(vals[6], 10, 64)
	exp, err2 := strconv.ParseInt(vals[7], 10, 64)
	if err1 != nil || err2 != nil {
		return FleetPlan{}, fmt.Errorf("read re-shard lease %s: fence %q and expires %q must be integers", reshardKey, vals[6], vals[7])
	}
	p.Coordinator = LeaseInfo{Node: vals[5], Fence: fence, Expires: exp}
	return p, nil
}

// LeaseAcquireInPlan is LeaseAcquireMany for a node running epoch of the
// bot's plan (planKey, in the leases' hash slot): nothing is taken when
// the plan's epoch moved on, and Moved says so.
func LeaseAcquireInPlan(ctx context.Context, c rueidis.Client, keys []string, planKey string, epoch int64, node string, ttl time.Duration) (rs []LeaseAcquireResult, moved bool, err error) {
	if len(keys) == 0 {
		return nil, false, nil
	}
	all := append(append(make([]string, 0, len(keys)+1), keys...), planKey)
	vals, err := leaseAcquireScript.Exec(ctx, c, all, []string{node, msArg(ttl), strconv.FormatInt(epoch, 10)}).ToArray()
	if err != nil {
		return nil, false, fmt.Errorf("run lease_acquire script: %w", err)
	}
	if len(vals) != 4*len(keys) {
		return nil, false, fmt.Errorf("run lease_acquire script: reply has %d values, want %d", len(vals), 4*len(keys))
	}
	rs = make([]LeaseAcquireResult, len(keys))
	for i := range rs {
		v := vals[4*i:]
		taken, err1 := v[0].AsInt64()
		fence, err2 := v[1].AsInt64()
		owner, err3 := v[2].ToString()
		left, err4 := v[3].AsInt64()
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			return nil, false, fmt.Errorf("run lease_acquire script: malformed reply for %s", keys[i])
		}
		if fence < 0 {
			moved = true
		}
		rs[i] = LeaseAcquireResult{Taken: taken == 1, Fence: fence, Node: owner, Left: time.Duration(left) * time.Millisecond}
	}
	return rs, moved, nil
}

// FleetReshardCommit is what the coordinator of a re-shard commits.
type FleetReshardCommit struct {
	Plan, Reshard string
	// Leases, StagedCheckpoints and Checkpoints are the keys of shards
	// 0..L-1, new shards 0..M-1 and shards 0..L-1 (L = max(From, To)).
	Leases, StagedCheckpoints, Checkpoints []string
	Node                                   string
	ReshardFence                           int64
	Epoch                                  int64
	From, To                               int
	// Fences are the fences held for Leases.
	Fences []int64
}

// CommitFleetReshard commits a re-shard (fleet_reshard_commit.lua): it
// returns the new epoch, or ok false and why the plan refused it.
func CommitFleetReshard(ctx context.Context, c rueidis.Client, r FleetReshardCommit) (epoch int64, ok bool, why string, err error) {
	l := max(r.From, r.To)
	if len(r.Leases) != l || len(r.Checkpoints) != l || len(r.Fences) != l || len(r.StagedCheckpoints) != r.To {
		return 0, false, "", fmt.Errorf("commit re-shard: %d leases, %d checkpoints, %d fences and %d staged checkpoints for %d -> %d shards",
			len(r.Leases), len(r.Checkpoints), len(r.Fences), len(r.StagedCheckpoints), r.From, r.To)
	}
	keys := make([]string, 0, 2+2*l+r.To)
	keys = append(keys, r.Plan, r.Reshard)
	keys = append(keys, r.Leases...)
	keys = append(keys, r.StagedCheckpoints...)
	keys = append(keys, r.Checkpoints...)
	args := make([]string, 0, 5+l)
	args = append(args, r.Node, strconv.FormatInt(r.ReshardFence, 10), strconv.FormatInt(r.Epoch, 10),
		strconv.Itoa(r.From), strconv.Itoa(r.To))
	for _, f := range r.Fences {
		args = append(args, strconv.FormatInt(f, 10))
	}
	vals, err := fleetReshardCommitScript.Exec(ctx, c, keys, args).ToArray()
	if err != nil {
		return 0, false, "", fmt.Errorf("run fleet_reshard_commit script: %w", err)
	}
	if len(vals) != 2 {
		return 0, false, "", fmt.Errorf("run fleet_reshard_commit script: reply has %d values, want 2", len(vals))
	}
	done, err := vals[0].AsInt64()
	if err != nil {
		return 0, false, "", fmt.Errorf("run fleet_reshard_commit script: malformed reply")
	}
	if done != 1 {
		why, _ := vals[1].ToString()
		return 0, false, why, nil
	}
	epoch, err = vals[1].AsInt64()
	if err != nil {
		return 0, false, "", fmt.Errorf("run fleet_reshard_commit script: malformed epoch")
	}
	return epoch, true, "", nil
}
