package gateway

import (
	"context"
	"sync"
	"time"
)

// Discord's send limit: 120 payloads per connection per 60 s.
const (
	sendLimit  = 120
	sendWindow = 60 * time.Second
)

// sendLimiter enforces the gateway send limit of one connection. Heartbeats
// may use the whole limit; every other payload leaves reserve slots free so
// heartbeats are never starved.
type sendLimiter struct {
	mu      sync.Mutex
	sent    [sendLimit]time.Duration // ring of send times, since limiterEpoch
	head, n int
	reserve int
}

// limiterEpoch is what send times count from (monotonic: time.Since).
// Durations take a third of time.Time's room: the ring is most of what a
// connection keeps.
var limiterEpoch = time.Now()

// setHeartbeat sizes the reserve for heartbeats every interval (plus room for
// beats the server asks for).
func (l *sendLimiter) setHeartbeat(interval time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := 2
	if interval > 0 {
		r = int(sendWindow/interval) + 2
	}
	l.reserve = min(r, sendLimit/2)
}

// expire drops sends older than the window. l.mu must be held.
func (l *sendLimiter) expire(now time.Duration) {
	for l.n > 0 && now-l.sent[l.head] >= sendWindow {
		l.head = (l.head + 1) % sendLimit
		l.n--
	}
}

// try takes a slot if one is free and returns zero; else it returns how long
// to wait before trying again.
func (l *sendLimiter) try(heartbeat bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Since(limiterEpoch)
	l.expire(now)
	limit := sendLimit
	if !heartbeat {
		limit -= l.reserve
	}
	if l.n < limit {
		l.sent[(l.head+l.n)%sendLimit] = now
		l.n++
		return 0
	}
	// The slot frees when the (n-limit+1)-th oldest send leaves the window.
	idx := (l.head + l.n - limit) % sendLimit
	return max(l.sent[idx]+sendWindow-now, time.Millisecond)
}

// wait blocks until a slot is free and takes it.
func (l *sendLimiter) wait(ctx context.Context, heartbeat bool) error {
	for {
		d := l.try(heartbeat)
		if d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
