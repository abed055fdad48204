package broker_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
)

// Two limiters (two processes) share one bot's buckets: with
// max_concurrency 2, shards of the same bucket identify one window apart,
// every shard gets exactly one slot, and the daily counter drops by one per
// IDENTIFY.
func TestIdentifyLimiter_SharedBuckets(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	keys := broker.NewKeys("")
	limA := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	limB := broker.NewIdentifyLimiter(srv.Client(t), broker.IdentifyConfig{Keys: keys})
	const window = 200 * time.Millisecond
	lim := broker.Limits{MaxConcurrency: 2, Window: window, Total: 1000, Remaining: 100, ResetAfter: time.Hour}

	type slot struct {
		shard int
		at    time.Time
	}
	var mu sync.Mutex
	var got []slot
	var wg sync.WaitGroup
	const shards = 6
	for s := range shards {
		l := limA
		if s%2 == 1 || s == 4 {
			l = limB
		}
		wg.Go(func() {
			if err := l.Wait(t.Context(), "bot", s, lim); err != nil {
				t.Errorf("shard %d: %v", s, err)
				return
			}
			mu.Lock()
			got = append(got, slot{s, time.Now()})
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(got) != shards {
		t.Fatalf("%d shards identified, want %d", len(got), shards)
	}
	// Per bucket, consecutive slots are at least a window apart (a lower
	// bound: a slow machine only makes the gaps longer).
	last := map[int]time.Time{}
	perBucket := map[int]int{}
	for _, s := range got {
		b := s.shard % 2
		perBucket[b]++
		if prev, ok := last[b]; ok && s.at.Sub(prev) < window*9/10 {
			t.Errorf("bucket %d: shard %d identified %s after the previous one, want >= %s", b, s.shard, s.at.Sub(prev), window)
		}
		last[b] = s.at
	}
	if perBucket[0] != 3 || perBucket[1] != 3 {
		t.Errorf("slots per bucket %v, want 3 and 3", perBucket)
	}
	c := srv.Client(t)
	if n, _ := c.Do(t.Context(), c.B().Get().Key(keys.IdentifyRemaining("bot")).Build()).AsInt64(); n != 100-shards {
		t.Errorf("remaining %d, want %d", n, 100-shards)
	}
	if ttl, _ := c.Do(t.Context(), c.B().Pttl().Key(keys.IdentifyRemaining("bot")).Build()).AsInt64(); ttl <= 0 || ttl > int64(time.Hour/time.Millisecond) {
		t.Errorf("remaining counter TTL %dms, want (0, 1h]", ttl)
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
