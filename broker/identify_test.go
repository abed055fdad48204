package broker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
)

// Two limiters (two processes) share one bot's buckets. With
// max_concurrency 2 and six shards waiting, each window admits exactly one
// shard per bucket: the test ends each window itself (deleting the bucket
// keys) and counts who got through, so no timing is asserted.
func TestIdentifyLimiter_SharedBuckets(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	cfg := broker.IdentifyConfig{Keys: keys, MaxPoll: 10 * time.Millisecond}
	limA := broker.NewIdentifyLimiter(srv.Client(t), cfg)
	limB := broker.NewIdentifyLimiter(srv.Client(t), cfg)
	lim := broker.Limits{MaxConcurrency: 2, Window: time.Hour, Total: 1000, Remaining: 100, ResetAfter: time.Hour}

	const shards = 6
	var mu sync.Mutex
	var got []int // shards in the order they got a slot
	var wg sync.WaitGroup
	for s := range shards {
		l := limA
		if s%3 == 0 {
			l = limB
		}
		wg.Go(func() {
			if err := l.Wait(t.Context(), "bot", s, lim); err != nil {
				t.Errorf("shard %d: %v", s, err)
				return
			}
			mu.Lock()
			got = append(got, s)
			mu.Unlock()
		})
	}
	snapshot := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), got...)
	}
	for round := 1; round <= shards/2; round++ {
		testkit.EventuallyWhy(t, 10*time.Second, func() string {
			if n := len(snapshot()); n < 2*round {
				return fmt.Sprintf("round %d: %d shards identified", round, n)
			}
			return ""
		})
		// The windows are still running: nobody else may pass. Give the
		// waiters (polling every 10ms) a few polls to prove it; a slow
		// machine only makes this check weaker, never false.
		time.Sleep(50 * time.Millisecond)
		now := snapshot()
		if len(now) != 2*round {
			t.Fatalf("round %d: %d shards identified within one window, want %d: %v", round, len(now), 2*round, now)
		}
		newest := now[2*round-2:]
		if newest[0]%2 == newest[1]%2 {
			t.Fatalf("round %d: shards %v share bucket %d", round, newest, newest[0]%2)
		}
		// End both windows.
		if err := c.Do(t.Context(), c.B().Del().Key(keys.IdentifyBucket("bot", 0), keys.IdentifyBucket("bot", 1)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if n, _ := c.Do(t.Context(), c.B().Get().Key(keys.IdentifyRemaining("bot")).Build()).AsInt64(); n != 100-shards {
		t.Errorf("remaining %d, want %d", n, 100-shards)
	}
	if ttl, _ := c.Do(t.Context(), c.B().Pttl().Key(keys.IdentifyRemaining("bot")).Build()).AsInt64(); ttl <= 0 || ttl > int64(time.Hour/time.Millisecond) {
		t.Errorf("remaining counter TTL %dms, want (0, 1h]", ttl)
	}
}

// A window ends by itself: a second shard of the bucket gets through.
func TestIdentifyLimiter_WindowExpires(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	l := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: broker.NewKeys("")})
	lim := broker.Limits{MaxConcurrency: 1, Window: 50 * time.Millisecond, Remaining: 10, ResetAfter: time.Hour}
	for s := range 3 {
		if err := l.Wait(t.Context(), "bot", s, lim); err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
	}
}

// While a bucket's window runs, a shard of that bucket waits (here: until
// its ctx ends) and a shard of another bucket does not.
func TestIdentifyLimiter_BucketBusy(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	keys := broker.NewKeys("")
	limA := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	limB := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	lim := broker.Limits{MaxConcurrency: 2, Window: time.Hour, Remaining: 10, ResetAfter: time.Hour}
	if err := limA.Wait(t.Context(), "bot", 0, lim); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := limB.Wait(ctx, "bot", 2, lim); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shard 2 in busy bucket 0: %v, want deadline exceeded", err)
	}
	if err := limB.Wait(t.Context(), "bot", 1, lim); err != nil {
		t.Fatalf("shard 1 in free bucket 1: %v", err)
	}
	// Another bot has its own buckets.
	if err := limB.Wait(t.Context(), "other", 0, lim); err != nil {
		t.Fatalf("other bot: %v", err)
	}
}

func TestIdentifyLimiter_Exhausted(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	keys := broker.NewKeys("")
	limA := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	limB := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	lim := broker.Limits{MaxConcurrency: 16, Window: time.Millisecond, Remaining: 3, ResetAfter: time.Hour}
	for s := range 3 {
		l := limA
		if s == 1 {
			l = limB
		}
		if err := l.Wait(t.Context(), "bot", s, lim); err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
	}
	for _, l := range []*broker.IdentifyLimiter{limA, limB} {
		err := l.Wait(t.Context(), "bot", 3, lim)
		if !errors.Is(err, broker.ErrStartLimitExhausted) {
			t.Fatalf("fourth start: %v, want ErrStartLimitExhausted", err)
		}
	}
	// Limits.Remaining from a later /gateway/bot does not reset Redis' count
	// before the reset time.
	lim.Remaining = 1000
	if err := limA.Wait(t.Context(), "bot", 4, lim); !errors.Is(err, broker.ErrStartLimitExhausted) {
		t.Fatalf("after new limits: %v, want ErrStartLimitExhausted", err)
	}
}

// After an IDENTIFY a bucket stays taken for the window plus a margin
// (half the window, at most 250ms), as the gateway's in-memory limiter
// does: with a 100ms window, two IDENTIFYs of one bucket are at least 150ms
// apart. Only a lower bound is asserted, which a slow machine cannot break.
func TestIdentifyLimiter_MarginAfterWindow(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	l := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: broker.NewKeys(""), MaxPoll: 5 * time.Millisecond})
	lim := broker.Limits{MaxConcurrency: 1, Window: 100 * time.Millisecond, Remaining: 10, ResetAfter: time.Hour}
	start := time.Now()
	for s := range 3 {
		if err := l.Wait(t.Context(), "bot", s, lim); err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
	}
	if d := time.Since(start); d < 2*150*time.Millisecond {
		t.Fatalf("three IDENTIFYs of one bucket took %s, want at least 2 × (100ms window + 50ms margin)", d)
	}
}

// A granted shard whose IDENTIFY is written late (1.6s after its slot:
// more than the 1.25s window plus margin, less than the 2.5s hold of an
// unreported slot): the next shard of the bucket, in another process, is
// spaced from that actual send, not from the slot.
func TestIdentifyLimiter_SpacedFromLateSend(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	keys := broker.NewKeys("")
	cfg := broker.IdentifyConfig{Keys: keys, MaxPoll: 10 * time.Millisecond}
	limA := broker.NewIdentifyLimiter(srv.Client(t), cfg)
	limB := broker.NewIdentifyLimiter(srv.Client(t), cfg)
	lim := broker.Limits{MaxConcurrency: 2, Window: time.Second, Remaining: 100, ResetAfter: time.Hour}
	gap := lim.Window + 250*time.Millisecond
	if err := limA.Wait(t.Context(), "bot", 0, lim); err != nil {
		t.Fatal(err)
	}
	next := make(chan time.Time, 1)
	go func() {
		// Shard 2 shares bucket 0.
		if err := limB.Wait(t.Context(), "bot", 2, lim); err != nil {
			t.Error(err)
		}
		next <- time.Now()
	}()
	time.Sleep(1600 * time.Millisecond) // shard 0's write is late
	select {
	case at := <-next:
		t.Fatalf("shard 2 granted (%v ago) while shard 0's IDENTIFY was still unsent", time.Since(at))
	default:
	}
	sent := time.Now()
	if err := limA.Sent(t.Context(), "bot", 0, lim); err != nil {
		t.Fatal(err)
	}
	at := <-next
	// Redis times the key in whole milliseconds: allow 5ms of rounding.
	if d := at.Sub(sent); d < gap-5*time.Millisecond {
		t.Fatalf("shard 2 granted %v after shard 0's actual send, want at least the %v window plus margin", d, gap)
	}
}

// Garbage in a bucket key: a TTL longer than any hold is a clear error (not
// an endless wait); a key without TTL is taken over.
func TestIdentifyLimiter_GarbageBucket(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	l := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	lim := broker.Limits{MaxConcurrency: 1, Window: time.Second, Remaining: 100, ResetAfter: time.Hour}
	key := keys.IdentifyBucket("bot", 0)
	c.Do(t.Context(), c.B().Set().Key(key).Value("x").Px(1000*time.Hour).Build())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := l.Wait(ctx, "bot", 0, lim); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bucket key expiring in 1000h: %v, want an error naming it", err)
	}
	c.Do(t.Context(), c.B().Set().Key(key).Value("x").Build())
	if err := l.Wait(ctx, "bot", 0, lim); err != nil {
		t.Fatalf("bucket key without TTL: %v", err)
	}
	if err := l.Sent(ctx, "bot", 0, lim); err != nil {
		t.Fatal(err)
	}
}
