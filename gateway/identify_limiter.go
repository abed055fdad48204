package gateway

import (
	"context"
	"errors"
	"time"
)

// ErrStartLimitExhausted is returned by an IdentifyLimiter when the bot's
// daily session start limit (session_start_limit.remaining) is used up.
var ErrStartLimitExhausted = errors.New("session start limit exhausted")

// IdentifyLimiter spaces IDENTIFY payloads: at most one per bucket
// (shard_id % max_concurrency) per window, and never more than the daily
// remaining session starts. Implementations may be shared by several
// processes (the Redis one is).
type IdentifyLimiter interface {
	// Wait blocks until shard may send IDENTIFY under lim, then takes that
	// slot. It returns ErrStartLimitExhausted (wrapped, with the reset time)
	// when no start is left, or ctx's error.
	Wait(ctx context.Context, bot string, shard int, lim Limits) error
	// Sent reports that shard's IDENTIFY, granted by Wait, has just been
	// written (or its write failed): the bucket's next IDENTIFY is spaced
	// from this actual send, not only from the granted slot, so a send
	// delayed after its grant (a stalled goroutine, a loaded machine)
	// cannot bring two IDENTIFYs of a bucket within the window. Until Sent,
	// the bucket stays held (at most two windows plus margins after the
	// grant, for a sender that never reports).
	Sent(ctx context.Context, bot string, shard int, lim Limits) error
}

// Limits are the identify limits of one bot, from GET /gateway/bot.
type Limits struct {
	MaxConcurrency int
	Window         time.Duration // 5 s on Discord
	Total          int
	Remaining      int
	ResetAfter     time.Duration
}
