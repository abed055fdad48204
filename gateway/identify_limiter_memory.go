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
	mu      sync.Mutex
	buckets map[bucketKey]*identifyBucket
	starts  map[string]*startBudget
}

type bucketKey struct {
	bot    string
	bucket int
}

// identifyBucket is one rate-limit bucket of a bot.
type identifyBucket struct {
	// next is the next slot handed out: waiters reserve their turn in
	// order, a window plus margin apart.
	next time.Time
	// sent is when the last IDENTIFY was reported written (Sent).
	sent time.Time
	// holder is the shard granted a slot and not yet reported by Sent (-1:
	// none); past heldUntil its grant is taken as lost.
	holder    int
	heldUntil time.Time
	// wake is closed (and replaced) by Sent, for a waiter held by holder.
	wake chan struct{}
}

type startBudget struct {
	remaining int
	resetAt   time.Time
	total     int
}

// NewMemoryIdentifyLimiter returns an empty MemoryIdentifyLimiter.
func NewMemoryIdentifyLimiter() *MemoryIdentifyLimiter {
	return &MemoryIdentifyLimiter{buckets: map[bucketKey]*identifyBucket{}, starts: map[string]*startBudget{}}
}

// identifyMargin is added to the window between two IDENTIFYs of a bucket,
// so that delays between the slot and the send (scheduling, a loaded
// machine) never bring two sends closer than the window: half the window,
// at most 250ms (5% of Discord's 5 s).
func identifyMargin(w time.Duration) time.Duration { return min(w/2, 250*time.Millisecond) }

// identifyGap is the spacing of two IDENTIFYs of a bucket: the window and
// the margin.
func identifyGap(lim Limits) time.Duration {
	window := lim.Window
	if window <= 0 {
		window = DefaultIdentifyWindow
	}
	return window + identifyMargin(window)
}

func (l *MemoryIdentifyLimiter) bucket(bot string, shard int, lim Limits) *identifyBucket {
	k := bucketKey{bot, shard % max(lim.MaxConcurrency, 1)}
	b := l.buckets[k]
	if b == nil {
		b = &identifyBucket{holder: -1, wake: make(chan struct{})}
		l.buckets[k] = b
	}
	return b
}

// Wait blocks until shard may identify under lim and takes the slot. The
// slot comes a window plus margin after the previous one of the bucket and
// after the previous IDENTIFY's reported send (Sent); while the previous
// grant is unreported it waits for the report, until two windows plus
// margins past that grant (then the grant is taken as lost).
func (l *MemoryIdentifyLimiter) Wait(ctx context.Context, bot string, shard int, lim Limits) error {
	gap := identifyGap(lim)
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
	bk := l.bucket(bot, shard, lim)
	at := bk.next
	if at.Before(now) {
		at = now
	}
	bk.next = at.Add(gap)
	b.remaining--
	l.mu.Unlock()
	if !sleepCtx(ctx, time.Until(at)) {
		return ctx.Err()
	}
	// The slot has come; the previous IDENTIFY may have been written late.
	for {
		l.mu.Lock()
		now := time.Now()
		notBefore := bk.sent.Add(gap)
		if bk.holder >= 0 && now.Before(bk.heldUntil) && bk.heldUntil.After(notBefore) {
			notBefore = bk.heldUntil
		}
		if !now.Before(notBefore) {
			bk.holder, bk.heldUntil = shard, now.Add(2*gap)
			l.mu.Unlock()
			return nil
		}
		wake := bk.wake
		l.mu.Unlock()
		t := time.NewTimer(notBefore.Sub(now))
		select {
		case <-t.C:
		case <-wake:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// Sent records that shard's IDENTIFY has just been written: the bucket's
// next IDENTIFY waits a window plus margin from now.
func (l *MemoryIdentifyLimiter) Sent(_ context.Context, bot string, shard int, lim Limits) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	bk := l.bucket(bot, shard, lim)
	if now := time.Now(); now.After(bk.sent) {
		bk.sent = now
	}
	if bk.holder == shard {
		bk.holder, bk.heldUntil = -1, time.Time{}
	}
	close(bk.wake)
	bk.wake = make(chan struct{})
	return nil
}
