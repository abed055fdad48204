package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MemoryIdentifyLimiter is an IdentifyLimiter for one process: one IDENTIFY
// per bucket (shard % max_concurrency) per window, buckets in parallel, and
// never more than the bot's remaining session starts.
type MemoryIdentifyLimiter struct {
	mu     sync.Mutex
	next   map[bucketKey]time.Time
	starts map[string]*startBudget
}

type bucketKey struct {
	bot    string
	bucket int
}

type startBudget struct {
	remaining int
	resetAt   time.Time
	total     int
}

// NewMemoryIdentifyLimiter returns an empty MemoryIdentifyLimiter.
func NewMemoryIdentifyLimiter() *MemoryIdentifyLimiter {
	return &MemoryIdentifyLimiter{next: map[bucketKey]time.Time{}, starts: map[string]*startBudget{}}
}

// identifyMargin is added to the window between two IDENTIFYs of a bucket,
// so that delays between the slot and the send (scheduling, a loaded
// machine) never bring two sends closer than the window: half the window,
// at most 250ms (5% of Discord's 5 s).
func identifyMargin(w time.Duration) time.Duration { return min(w/2, 250*time.Millisecond) }

// Wait blocks until shard may identify under lim and takes the slot.
func (l *MemoryIdentifyLimiter) Wait(ctx context.Context, bot string, shard int, lim Limits) error {
	window := lim.Window
	if window <= 0 {
		window = DefaultIdentifyWindow
	}
	now := time.Now()
	l.mu.Lock()
	b := l.starts[bot]
	if b == nil {
		b = &startBudget{remaining: lim.Remaining, total: lim.Total, resetAt: now.Add(lim.ResetAfter)}
		if lim.Total == 0 && lim.Remaining == 0 {
			b.remaining, b.total = 1000, 1000 // limits unknown: Discord's default
		}
		l.starts[bot] = b
	}
	if !now.Before(b.resetAt) && b.remaining <= 0 {
		b.remaining = max(b.total, 1)
		b.resetAt = now.Add(24 * time.Hour)
	}
	if b.remaining <= 0 {
		reset := b.resetAt
		l.mu.Unlock()
		return fmt.Errorf("identify bot %q shard %d: %w (resets at %s)", bot, shard, ErrStartLimitExhausted, reset.UTC().Format(time.RFC3339))
	}
	k := bucketKey{bot, shard % max(lim.MaxConcurrency, 1)}
	at := l.next[k]
	if at.Before(now) {
		at = now
	}
	l.next[k] = at.Add(window + identifyMargin(window))
	b.remaining--
	l.mu.Unlock()
	if !sleepCtx(ctx, time.Until(at)) {
		return ctx.Err()
	}
	return nil
}
