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

// Identify tries to take an IDENTIFY slot in bucketKey, counting it against
// remainingKey (initialised to remaining with TTL resetAfter when missing).
// Both keys must share a hash tag.
func Identify(ctx context.Context, c rueidis.Client, bucketKey, remainingKey string, window time.Duration, remaining int, resetAfter time.Duration) (IdentifyResult, error) {
	args := []string{
		strconv.FormatInt(max(window.Milliseconds(), 1), 10),
		strconv.Itoa(remaining),
		strconv.FormatInt(max(resetAfter.Milliseconds(), 1), 10),
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
