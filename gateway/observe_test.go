package gateway_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// slowLimiter holds every identify for a fixed time.
type slowLimiter struct{ d time.Duration }

func (l slowLimiter) Wait(ctx context.Context, _ string, _ int, _ gateway.Limits) error {
	t := time.NewTimer(l.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (slowLimiter) Sent(context.Context, string, int, gateway.Limits) error { return nil }

// TestShard_LatencyLeavesOutIdentifyWait: a heartbeat sent while the shard
// waits 3 s for its identify slot is ACKed at once but read only after the
// wait; the latency counts the round trip, not the wait.
func TestShard_LatencyLeavesOutIdentifyWait(t *testing.T) {
	t.Parallel()
	// The first heartbeat goes at a random point of the 2 s interval after
	// HELLO, so always inside the 3 s identify wait.
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 1, HeartbeatInterval: 2 * time.Second})
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.Limiter = slowLimiter{3 * time.Second}
	})
	testkit.Eventually(t, 60*time.Second, "a heartbeat round trip", func() bool { return h.status(0).Latency > 0 })
	if got := h.status(0).Latency; got >= time.Second {
		t.Fatalf("got latency %v after a 3 s identify wait, want the heartbeat round trip alone (well under 1s)", got)
	}
}

// TestManager_OnConnectionEnd: close codes and invalid sessions reach
// OnConnectionEnd.
func TestManager_OnConnectionEnd(t *testing.T) {
	t.Parallel()
	fake := startFake(t, discordtest.Config{Shards: 1, Guilds: 1})
	var mu sync.Mutex
	var ends []gateway.ConnectionEnd
	h := startManager(t, fake, gateway.BotConfig{}, newRecordingSink(), func(c *gateway.ManagerConfig) {
		c.OnConnectionEnd = func(e gateway.ConnectionEnd) {
			mu.Lock()
			ends = append(ends, e)
			mu.Unlock()
		}
	})
	h.waitReady(t, 0)
	if err := fake.CloseShard(0, 4000); err != nil {
		t.Fatal(err)
	}
	has := func(want gateway.ConnectionEnd) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range ends {
			if e == want {
				return true
			}
		}
		return false
	}
	testkit.Eventually(t, 30*time.Second, "close code 4000 reported", func() bool {
		return has(gateway.ConnectionEnd{Bot: "main", Shard: 0, CloseCode: 4000})
	})
	h.waitReady(t, 0)
	if err := fake.Invalidate(0, false); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "invalid session reported", func() bool {
		return has(gateway.ConnectionEnd{Bot: "main", Shard: 0, InvalidSession: true})
	})
}
