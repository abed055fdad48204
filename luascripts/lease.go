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
	//go:embed lease_acquire.lua
	leaseAcquireSrc string
	//go:embed lease_renew.lua
	leaseRenewSrc string
	//go:embed lease_release.lua
	leaseReleaseSrc string
	//go:embed lease_state.lua
	leaseStateSrc string

	leaseAcquireScript = rueidis.NewLuaScript(leaseAcquireSrc)
	leaseRenewScript   = rueidis.NewLuaScript(leaseRenewSrc)
	leaseReleaseScript = rueidis.NewLuaScript(leaseReleaseSrc)
	leaseStateScript   = rueidis.NewLuaScript(leaseStateSrc)
)

// LeaseAcquireResult is the reply of LeaseAcquire.
type LeaseAcquireResult struct {
	// Taken says the caller now holds the lease with Fence.
	Taken bool
	// Fence is the new fencing number (Taken) or the holder's.
	Fence int64
	// Node is the holder: the caller when Taken.
	Node string
	// Left is how long the lease runs before it expires unless renewed.
	Left time.Duration
}

// LeaseAcquire takes the lease in key for node for ttl when it is free
// (released or expired), incrementing its fencing number.
func LeaseAcquire(ctx context.Context, c rueidis.Client, key, node string, ttl time.Duration) (LeaseAcquireResult, error) {
	rs, err := LeaseAcquireMany(ctx, c, []string{key}, node, ttl)
	if err != nil {
		return LeaseAcquireResult{}, err
	}
	return rs[0], nil
}

// LeaseAcquireMany takes, in one call, each lease in keys (one hash slot)
// that is free, for node for ttl.
func LeaseAcquireMany(ctx context.Context, c rueidis.Client, keys []string, node string, ttl time.Duration) ([]LeaseAcquireResult, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := leaseAcquireScript.Exec(ctx, c, keys, []string{node, msArg(ttl)}).ToArray()
	if err != nil {
		return nil, fmt.Errorf("run lease_acquire script: %w", err)
	}
	if len(vals) != 4*len(keys) {
		return nil, fmt.Errorf("run lease_acquire script: reply has %d values, want %d", len(vals), 4*len(keys))
	}
	out := make([]LeaseAcquireResult, len(keys))
	for i := range out {
		v := vals[4*i:]
		taken, err1 := v[0].AsInt64()
		fence, err2 := v[1].AsInt64()
		owner, err3 := v[2].ToString()
		left, err4 := v[3].AsInt64()
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			return nil, fmt.Errorf("run lease_acquire script: malformed reply for %s", keys[i])
		}
		out[i] = LeaseAcquireResult{Taken: taken == 1, Fence: fence, Node: owner, Left: time.Duration(left) * time.Millisecond}
	}
	return out, nil
}

// LeaseRenew extends, for node, each lease keys[i] whose fencing number is
// still fences[i]; the keys must share a hash slot. renewed[i] says whether
// keys[i] was renewed (false: another owner took it).
func LeaseRenew(ctx context.Context, c rueidis.Client, keys []string, fences []int64, node string, ttl time.Duration) (renewed []bool, err error) {
	if len(keys) != len(fences) {
		return nil, fmt.Errorf("run lease_renew script: %d keys and %d fences", len(keys), len(fences))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	args := make([]string, 0, 2+len(fences))
	args = append(args, node, msArg(ttl))
	for _, f := range fences {
		args = append(args, strconv.FormatInt(f, 10))
	}
	vals, err := leaseRenewScript.Exec(ctx, c, keys, args).AsIntSlice()
	if err != nil {
		return nil, fmt.Errorf("run lease_renew script: %w", err)
	}
	if len(vals) != len(keys) {
		return nil, fmt.Errorf("run lease_renew script: reply has %d values, want %d", len(vals), len(keys))
	}
	renewed = make([]bool, len(vals))
	for i, v := range vals {
		renewed[i] = v == 1
	}
	return renewed, nil
}

// LeaseRelease frees the lease in key when its fencing number is still
// fence, and reports whether it did.
func LeaseRelease(ctx context.Context, c rueidis.Client, key string, fence int64) (bool, error) {
	n, err := leaseReleaseScript.Exec(ctx, c, []string{key}, []string{strconv.FormatInt(fence, 10)}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("run lease_release script: %w", err)
	}
	return n == 1, nil
}

// LeaseInfo is one lease as stored.
type LeaseInfo struct {
	// Node is the owner; "" when released or never taken.
	Node  string
	Fence int64
	// Expires is the server time (unix ms) the lease ends unless renewed.
	Expires int64
}

// LeaseState reads the leases in keys (one hash slot) and the server time
// (unix ms).
func LeaseState(ctx context.Context, c rueidis.Client, keys []string) (now int64, leases []LeaseInfo, err error) {
	vals, err := leaseStateScript.Exec(ctx, c, keys, nil).AsStrSlice()
	if err != nil {
		return 0, nil, fmt.Errorf("run lease_state script: %w", err)
	}
	if len(vals) != 1+3*len(keys) {
		return 0, nil, fmt.Errorf("run lease_state script: reply has %d values, want %d", len(vals), 1+3*len(keys))
	}
	now, err = strconv.ParseInt(vals[0], 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("run lease_state script: server time %q is not an integer", vals[0])
	}
	leases = make([]LeaseInfo, len(keys))
	for i := range keys {
		v := vals[1+3*i:]
		fence, err1 := strconv.ParseInt(v[1], 10, 64)
		exp, err2 := strconv.ParseInt(v[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, nil, fmt.Errorf("read lease %s: fence %q and expires %q must be integers", keys[i], v[1], v[2])
		}
		leases[i] = LeaseInfo{Node: v[0], Fence: fence, Expires: exp}
	}
	return now, leases, nil
}

// msArg formats d in milliseconds, at least 1.
func msArg(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 1), 10) }
