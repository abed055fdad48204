package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestManager_OnDemand: with OnDemand, Start runs no shard; StartShard and
// StopShard run one at a time. A stopped shard was flushed and closed with
// a resumable code (the fake sees no 1000/1001), so starting it again
// RESUMEs the saved session: the ledger is whole, once, in order, with one
// IDENTIFY per shard.
func TestManager_OnDemand(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 3, MaxConcurrency: 3, Guilds: 6, Rate: 60, Seed: 41})
	store := gateway.NewMemorySessionStore()
	sink := &flushingSink{recordingSink: newRecordingSink(), store: store}
	h := startManager(t, fake, gateway.BotConfig{}, sink.recordingSink, func(c *gateway.ManagerConfig) {
		c.Sink, c.Sessions, c.OnDemand = sink, store, true
	})
	if n := len(h.m.Status()); n != 0 {
		t.Fatalf("OnDemand Start runs %d shards, want 0", n)
	}
	if n := h.m.ShardCount("main"); n != 3 {
		t.Fatalf("shard count %d, want 3 (from /gateway/bot)", n)
	}
	if err := h.m.StartShard("main", 3); !errors.Is(err, gateway.ErrUnknownShard) {
		t.Fatalf("StartShard of shard 3 of 3: %v, want ErrUnknownShard", err)
	}
	for _, id := range []int{2, 0} {
		if err := h.m.StartShard("main", id); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.m.StartShard("main", 2); err == nil {
		t.Fatal("second StartShard of a running shard: no error")
	}
	h.waitReady(t, 0, 2)
	if st := h.m.Status(); len(st) != 2 || st[0].Shard != 0 || st[1].Shard != 2 {
		t.Fatalf("status lists %+v, want shards 0 and 2 in order", st)
	}
	for round := range 3 {
		before := h.status(2).Events
		testkit.Eventually(t, 15*time.Second, "traffic on shard 2", func() bool { return h.status(2).Events > before+5 })
		flushes := sink.flushes()
		if err := h.m.StopShard(t.Context(), "main", 2); err != nil {
			t.Fatal(err)
		}
		if sink.flushes() != flushes+1 {
			t.Errorf("round %d: StopShard flushed %d times, want once", round, sink.flushes()-flushes)
		}
		if len(h.m.Status()) != 1 {
			t.Fatalf("round %d: status after StopShard lists %d shards, want 1", round, len(h.m.Status()))
		}
		if err := h.m.StopShard(t.Context(), "main", 2); !errors.Is(err, gateway.ErrUnknownShard) {
			t.Fatalf("StopShard of a stopped shard: %v, want ErrUnknownShard", err)
		}
		resumes := fake.Stats().Resumes
		if err := h.m.StartShard("main", 2); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 15*time.Second, fmt.Sprintf("round %d: shard 2 resumed", round), func() bool {
			return fake.Stats().Resumes > resumes && h.status(2).State == gateway.StateReady
		})
	}
	fake.SetRate(0)
	if err := fake.WaitIdle(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{0, 2} {
		testkit.Eventually(t, 15*time.Second, "the sink has the ledger", func() bool { return len(sink.get(id)) >= len(h.ledgerRecs(id)) })
		h.checkLedger(t, id)
	}
	if st := fake.Stats(); st.Identifies != 2 {
		t.Errorf("%d identifies, want 2 (one per shard; the restarts resume)", st.Identifies)
	}
	checkViolations(t, fake)
}

// TestManager_Revoked: a Sink error wrapping ErrShardRevoked stops that
// shard (state stopped, a "revoked" control event, no reconnect) while the
// other shard carries on; Admit refusing stops a shard before it connects.
func TestManager_Revoked(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 2, Guilds: 16, Rate: 60, Seed: 43})
	sink := newRecordingSink()
	var mu sync.Mutex
	revoked := map[int]bool{}
	sink.fail = func(ev *gateway.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if revoked[ev.Shard] {
			return fmt.Errorf("publish: %w", gateway.ErrShardRevoked)
		}
		return nil
	}
	admitted := map[int]int{}
	h := startManager(t, fake, gateway.BotConfig{}, sink, func(c *gateway.ManagerConfig) {
		c.OnDemand = true
		c.Admit = func(_ context.Context, _ string, shard int) error {
			mu.Lock()
			defer mu.Unlock()
			admitted[shard]++
			if revoked[shard] {
				return fmt.Errorf("lease moved: %w", gateway.ErrShardRevoked)
			}
			return nil
		}
	})
	for id := range 2 {
		if err := h.m.StartShard("main", id); err != nil {
			t.Fatal(err)
		}
	}
	h.waitReady(t, 0, 1)
	testkit.Eventually(t, 15*time.Second, "traffic on shard 1", func() bool { return h.status(1).Events > 3 })
	mu.Lock()
	revoked[1] = true
	mu.Unlock()
	testkit.Eventually(t, 15*time.Second, "shard 1 stopped", func() bool { return h.status(1).State == gateway.StateStopped })
	if n := h.ctl.count(1, "revoked"); n != 1 {
		t.Errorf("%d revoked control events for shard 1, want 1", n)
	}
	before := h.status(0).Events
	testkit.Eventually(t, 15*time.Second, "shard 0 carries on", func() bool { return h.status(0).Events > before+10 })
	if st := h.status(1); st.Reconnects != 0 {
		t.Errorf("revoked shard reconnected %d times, want 0", st.Reconnects)
	}
	// Started again while revoked: Admit stops it before it connects.
	conns := fake.Stats().TotalConnections
	if err := h.m.StartShard("main", 1); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "shard 1 refused by Admit", func() bool { return h.ctl.count(1, "revoked") == 2 })
	if got := fake.Stats().TotalConnections; got != conns {
		t.Errorf("a shard Admit refused opened %d connections", got-conns)
	}
	checkViolations(t, fake)
}

// TestManager_OnDemandShardingRequired: with OnDemand and ReshardVia (a
// fleet), close code 4011 stops the shard and asks ReshardVia for
// Discord's recommended count instead of re-sharding here or stopping for
// good; autoscale asks only where AutoscaleHere says so. ResetShardCount
// then makes the new count the bot's: StartShard runs its shards.
func TestManager_OnDemandShardingRequired(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 2, Guilds: 6, Rate: 20, Seed: 43})
	type ask struct {
		count int
		why   string
	}
	asks := make(chan ask, 8)
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.OnDemand = true
		c.ReshardVia = func(ctx context.Context, bot string, count int, why string) error {
			asks <- ask{count, why}
			return nil
		}
	})
	for id := range 2 {
		if err := h.m.StartShard("main", id); err != nil {
			t.Fatal(err)
		}
	}
	h.waitReady(t, 0, 1)
	if err := fake.SetShards(5); err != nil {
		t.Fatal(err)
	}
	if err := fake.CloseShard(1, 4011); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-asks:
		if a.count != 5 || !strings.Contains(a.why, "4011") {
			t.Errorf("ReshardVia asked for %d shards because %q, want 5 because of 4011", a.count, a.why)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("4011 did not ask ReshardVia for a re-shard")
	}
	testkit.Eventually(t, 15*time.Second, "shard 1 stopped", func() bool { return h.status(1).State == gateway.StateFailed })
	if h.status(0).State != gateway.StateReady || len(h.m.Resharding()) != 0 || h.m.ShardCount("main") != 2 {
		t.Errorf("after 4011: shard 0 %s, %d re-shards here, count %d; want shard 0 ready, no local re-shard, count 2",
			h.status(0).State, len(h.m.Resharding()), h.m.ShardCount("main"))
	}
	if err := h.m.ResetShardCount(t.Context(), "main", 5); err != nil {
		t.Fatal(err)
	}
	if n := len(h.m.Status()); n != 0 || h.m.ShardCount("main") != 5 {
		t.Fatalf("after ResetShardCount: %d shards run, count %d; want none and 5", n, h.m.ShardCount("main"))
	}
	if err := h.m.StartShard("main", 4); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "shard 4 of 5 ready", func() bool {
		st := h.m.Status()
		return len(st) == 1 && st[0].Shard == 4 && st[0].ShardCount == 5 && st[0].State == gateway.StateReady
	})
}

// TestManager_OnDemandAutoscale: with OnDemand and ReshardVia, autoscale
// checks a bot with shards auto only while AutoscaleHere says this process
// is the one, and asks ReshardVia for Discord's recommended count.
func TestManager_OnDemandAutoscale(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 2, Guilds: 4, Rate: 5, Seed: 47})
	var here atomic.Bool
	consulted := make(chan struct{}, 1)
	asks := make(chan int, 8)
	h := startManager(t, fake, gateway.BotConfig{AutoscaleEvery: time.Second}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.OnDemand = true
		c.ReshardVia = func(ctx context.Context, bot string, count int, why string) error {
			asks <- count
			return nil
		}
		c.AutoscaleHere = func(bot string) bool {
			select {
			case consulted <- struct{}{}:
			default:
			}
			return here.Load()
		}
	})
	if n := h.m.ShardCount("main"); n != 2 {
		t.Fatalf("shard count %d, want 2 (auto)", n)
	}
	if err := fake.SetShards(3); err != nil {
		t.Fatal(err)
	}
	select {
	case <-consulted:
	case <-time.After(30 * time.Second):
		t.Fatal("autoscale never asked AutoscaleHere")
	}
	select {
	case n := <-asks:
		t.Fatalf("autoscale asked for %d shards while AutoscaleHere said no", n)
	default:
	}
	here.Store(true)
	select {
	case n := <-asks:
		if n != 3 {
			t.Errorf("autoscale asked for %d shards, want Discord's 3", n)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("autoscale did not ask ReshardVia once AutoscaleHere said yes")
	}
	if len(h.m.Resharding()) != 0 || h.m.ShardCount("main") != 2 {
		t.Errorf("autoscale re-sharded here: %v, count %d", h.m.Resharding(), h.m.ShardCount("main"))
	}
}
