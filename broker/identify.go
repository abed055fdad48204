package broker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// IdentifyLimiter spaces IDENTIFYs through Redis, so every process of a
// bot shares its buckets (shard % max_concurrency, one IDENTIFY per window
// each) and its daily session starts. It implements gateway.IdentifyLimiter
// once cmd/ converts Limits.
type IdentifyLimiter struct {
	c    rueidis.Client
	keys Keys
	log  *slog.Logger
	// MaxPoll caps one sleep between attempts; default 1s.
	maxPoll time.Duration
}

// IdentifyConfig configures an IdentifyLimiter.
type IdentifyConfig struct {
	Keys Keys
	// MaxPoll caps one sleep between attempts; default 1s.
	MaxPoll time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// NewIdentifyLimiter returns a limiter using c.
func NewIdentifyLimiter(c rueidis.Client, cfg IdentifyConfig) *IdentifyLimiter {
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &IdentifyLimiter{c: c, keys: cfg.Keys, log: cfg.Logger, maxPoll: cfg.MaxPoll}
}

// identifyMargin is added to the window a bucket stays taken after an
// IDENTIFY: the slot is taken before the IDENTIFY reaches the socket, and a
// delay there under load (or clock drift between processes) would otherwise
// put two IDENTIFYs of a bucket less than a window apart at Discord. Half
// the window, at most 250ms (5% of Discord's 5 s), as the gateway's
// in-memory limiter does.
func identifyMargin(w time.Duration) time.Duration { return min(w/2, 250*time.Millisecond) }

// Default identify limits used when Limits leaves them zero.
const (
	defaultIdentifyWindow = 5 * time.Second
	defaultResetAfter     = 24 * time.Hour
)

// Wait blocks until shard may IDENTIFY, then takes the slot: the bucket
// stays held until Sent reports the IDENTIFY written (then for the window
// plus identifyMargin from that send), or for luascripts.IdentifyHold
// windows plus margins if Sent never comes. The daily
// counter is initialised from lim.Remaining (TTL lim.ResetAfter) when Redis
// has none. It returns an error wrapping ErrStartLimitExhausted (with the
// time left until the reset) when no start is left, or ctx's error.
func (l *IdentifyLimiter) Wait(ctx context.Context, bot string, shard int, lim Limits) error {
	for {
		r, err := l.try(ctx, bot, shard, lim)
		if err != nil {
			return err
		}
		switch r.Outcome {
		case luascripts.IdentifyTaken:
			return nil
		case luascripts.IdentifyExhausted:
			return fmt.Errorf("identify %s shard %d: %w (resets in %s)", bot, shard, ErrStartLimitExhausted, r.Wait.Round(time.Second))
		}
		d := min(max(r.Wait, time.Millisecond), l.maxPoll)
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("identify %s shard %d: %w", bot, shard, ctx.Err())
		}
	}
}

// Sent reports that shard's IDENTIFY, granted by Wait, has just been
// written: the bucket's next IDENTIFY, in any process, comes a window plus
// identifyMargin after this actual send, however late it came after the
// grant. Redis' clock times it (the call runs after the write), so the
// processes' clocks do not matter.
func (l *IdentifyLimiter) Sent(ctx context.Context, bot string, shard int, lim Limits) error {
	window := lim.Window
	if window <= 0 {
		window = defaultIdentifyWindow
	}
	bucket := shard % max(lim.MaxConcurrency, 1)
	if err := luascripts.IdentifySent(ctx, l.c, l.keys.IdentifyBucket(bot, bucket), strconv.Itoa(shard), window+identifyMargin(window)); err != nil {
		return fmt.Errorf("record identify sent %s shard %d: %w", bot, shard, err)
	}
	return nil
}

// try makes one attempt at the slot.
func (l *IdentifyLimiter) try(ctx context.Context, bot string, shard int, lim Limits) (luascripts.IdentifyResult, error) {
	conc := max(lim.MaxConcurrency, 1)
	window := lim.Window
	if window <= 0 {
		window = defaultIdentifyWindow
	}
	reset := lim.ResetAfter
	if reset <= 0 {
		reset = defaultResetAfter
	}
	bucket := shard % conc
	r, err := luascripts.Identify(ctx, l.c, l.keys.IdentifyBucket(bot, bucket), l.keys.IdentifyRemaining(bot),
		strconv.Itoa(shard), window+identifyMargin(window), lim.Remaining, reset)
	if err != nil {
		return r, fmt.Errorf("identify %s shard %d: %w", bot, shard, err)
	}
	return r, nil
}
