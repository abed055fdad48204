package luascripts

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

//go:embed identify.lua
var identifySrc string

var identifyScript = rueidis.NewLuaScript(identifySrc)

//go:embed identify_sent.lua
var identifySentSrc string

var identifySentScript = rueidis.NewLuaScript(identifySentSrc)

// IdentifyOutcome is what one identify attempt got.
type IdentifyOutcome int

// Outcomes of Identify.
const (
	IdentifyWait      IdentifyOutcome = 0  // the bucket is busy; try after Wait
	IdentifyTaken     IdentifyOutcome = 1  // the slot is ours
	IdentifyExhausted IdentifyOutcome = -1 // no session start left; resets after Wait
)

// IdentifyResult is the reply of Identify.
type IdentifyResult struct {
	Outcome IdentifyOutcome
	// Remaining is the count of starts left after a taken slot.
	Remaining int64
	// Wait is how long until the bucket frees (IdentifyWait) or the daily
	// limit resets (IdentifyExhausted).
	Wait time.Duration
}

// IdentifyHold is how long a taken slot keeps its bucket, in windows, until
// IdentifySent reports the IDENTIFY written: a sender that never reports
// (gone) frees the bucket after that.
const IdentifyHold = 2

// Identify tries to take an IDENTIFY slot in bucketKey for holder,
// counting it against remainingKey (initialised to remaining with TTL
// resetAfter when missing). The slot holds the bucket for IdentifyHold
// windows, or until IdentifySent re-arms it for one window from the send.
// Both keys must share a hash tag.
func Identify(ctx context.Context, c rueidis.Client, bucketKey, remainingKey, holder string, window time.Duration, remaining int, resetAfter time.Duration) (IdentifyResult, error) {
	w := max(window.Milliseconds(), 1)
	args := []string{
		strconv.FormatInt(w, 10),
		strconv.Itoa(remaining),
		strconv.FormatInt(max(resetAfter.Milliseconds(), 1), 10),
		holder,
		strconv.FormatInt(IdentifyHold*w, 10),
	}
	vals, err := identifyScript.Exec(ctx, c, []string{bucketKey, remainingKey}, args).AsIntSlice()
	if err != nil {
		return IdentifyResult{}, fmt.Errorf("run identify script: %w", err)
	}
	if len(vals) != 2 {
		return IdentifyResult{}, fmt.Errorf("run identify script: reply has %d values, want 2", len(vals))
	}
	r := IdentifyResult{Outcome: IdentifyOutcome(vals[0])}
	switch r.Outcome {
	case IdentifyTaken:
		r.Remaining = vals[1]
	case IdentifyWait, IdentifyExhausted:
		r.Wait = time.Duration(vals[1]) * time.Millisecond
	default:
		return IdentifyResult{}, fmt.Errorf("run identify script: unknown outcome %d", vals[0])
	}
	return r, nil
}

// IdentifySent reports that holder's IDENTIFY, granted by Identify on
// bucketKey, has just been written: the bucket stays busy for window from
// now (the actual send), which ends holder's hold early.
func IdentifySent(ctx context.Context, c rueidis.Client, bucketKey, holder string, window time.Duration) error {
	args := []string{strconv.FormatInt(max(window.Milliseconds(), 1), 10), holder}
	n, err := identifySentScript.Exec(ctx, c, []string{bucketKey}, args).AsInt64()
	if err != nil {
		return fmt.Errorf("run identify_sent script: %w", err)
	}
	if n != 1 {
		return fmt.Errorf("run identify_sent script: reply %d, want 1", n)
	}
	return nil
}
