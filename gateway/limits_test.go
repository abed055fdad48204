package gateway

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestSendLimiter_ReservesHeartbeats(t *testing.T) {
	var l sendLimiter
	l.setHeartbeat(time.Second) // 60 beats a minute + 2 → reserve capped at 60
	if l.reserve != 60 {
		t.Fatalf("got reserve %d, want 60", l.reserve)
	}
	l.setHeartbeat(41250 * time.Millisecond)
	if l.reserve != 3 {
		t.Fatalf("got reserve %d, want 3", l.reserve)
	}
	for i := range sendLimit - 3 {
		if d := l.try(false); d != 0 {
			t.Fatalf("send %d refused (%v), want it allowed", i, d)
		}
	}
	if d := l.try(false); d <= 0 || d > sendWindow {
		t.Fatalf("got wait %v for a send over the limit, want (0, 60s]", d)
	}
	for i := range 3 {
		if d := l.try(true); d != 0 {
			t.Fatalf("heartbeat %d refused (%v), want the reserve to hold it", i, d)
		}
	}
	if d := l.try(true); d <= 0 {
		t.Fatalf("got wait %v for heartbeat 121, want a wait", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.wait(ctx, true); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v waiting with a cancelled ctx, want context.Canceled", err)
	}
}

func TestBackoff_Bounds(t *testing.T) {
	for n := 1; n < 40; n++ {
		d := backoff(n)
		hi := min(backoffMin<<min(n-1, 10), backoffMax)
		if d < hi/2 || d > hi {
			t.Fatalf("backoff(%d) = %v, want in [%v, %v]", n, d, hi/2, hi)
		}
	}
}

func TestMemoryIdentifyLimiter(t *testing.T) {
	l := NewMemoryIdentifyLimiter()
	lim := Limits{MaxConcurrency: 2, Window: 100 * time.Millisecond, Total: 1000, Remaining: 5, ResetAfter: time.Hour}
	var mu sync.Mutex
	at := map[int]time.Time{}
	var wg sync.WaitGroup
	for shard := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Wait(context.Background(), "b", shard, lim); err != nil {
				t.Error(err)
			}
			mu.Lock()
			at[shard] = time.Now()
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Shards 0 and 2 share bucket 0, 1 and 3 bucket 1: each pair a window apart.
	for _, pair := range [][2]int{{0, 2}, {1, 3}} {
		gap := at[pair[0]].Sub(at[pair[1]]).Abs()
		if gap < lim.Window {
			t.Errorf("shards %v identified %v apart, want at least the %v window", pair, gap, lim.Window)
		}
	}
	if err := l.Wait(context.Background(), "b", 4, lim); err != nil {
		t.Fatal(err)
	}
	// Five starts were remaining: the sixth is refused with the reset time.
	err := l.Wait(context.Background(), "b", 5, lim)
	if !errors.Is(err, ErrStartLimitExhausted) {
		t.Fatalf("got %v, want ErrStartLimitExhausted", err)
	}
	// Another bot has its own budget.
	if err := l.Wait(context.Background(), "other", 0, lim); err != nil {
		t.Fatal(err)
	}
}

func TestMemberQueue(t *testing.T) {
	wakes := 0
	q := memberQueue{wake: func() { wakes++ }}
	later := time.Now().Add(time.Hour)
	q.push(1, time.Time{})
	q.push(2, later)
	q.push(1, time.Time{}) // already queued
	if wakes != 3 {
		t.Fatalf("got %d wakes for 3 pushes", wakes)
	}
	q.add(3, later) // put back by the sender: no wake
	if wakes != 3 {
		t.Fatalf("add woke the sender")
	}
	if g, _ := q.pop(); g != 1 {
		t.Fatalf("got guild %d, want 1", g)
	}
	g, wait := q.pop()
	if g != 0 || wait <= 0 || wait > time.Hour {
		t.Fatalf("got guild %d wait %v, want nothing due and a wait up to 1h", g, wait)
	}
	if g, wait := (&memberQueue{}).pop(); g != 0 || wait != 0 {
		t.Fatalf("empty queue: got %d %v", g, wait)
	}
}

func TestWithGatewayQuery(t *testing.T) {
	cases := map[string]string{
		"wss://gateway.discord.gg":                   "wss://gateway.discord.gg/?compress=zlib-stream&encoding=json&v=10",
		"wss://gateway.discord.gg/":                  "wss://gateway.discord.gg/?compress=zlib-stream&encoding=json&v=10",
		"ws://127.0.0.1:5/resume":                    "ws://127.0.0.1:5/resume?compress=zlib-stream&encoding=json&v=10",
		"wss://gateway.discord.gg/?v=9&encoding=etf": "wss://gateway.discord.gg/?compress=zlib-stream&encoding=json&v=10",
	}
	for in, want := range cases {
		if got := withGatewayQuery(in, CompressionZlibStream); got != want {
			t.Errorf("withGatewayQuery(%q) = %q, want %q", in, got, want)
		}
	}
	if got := withGatewayQuery("wss://g/", CompressionNone); got != "wss://g/?encoding=json&v=10" {
		t.Errorf("got %q for no compression", got)
	}
}

// A granted shard whose IDENTIFY is written late (1.6s after its slot, more
// than the 1.25s window plus margin, less than the 2.5s hold of an
// unreported grant): the next shard of the bucket is spaced from that
// actual send, not from the slot.
func TestMemoryIdentifyLimiter_SpacedFromLateSend(t *testing.T) {
	l := NewMemoryIdentifyLimiter()
	lim := Limits{MaxConcurrency: 2, Window: time.Second, Total: 1000, Remaining: 100, ResetAfter: time.Hour}
	gap := lim.Window + identifyMargin(lim.Window)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Wait(ctx, "b", 0, lim); err != nil {
		t.Fatal(err)
	}
	next := make(chan time.Time, 1)
	go func() {
		// Shard 2 shares bucket 0; its slot comes while shard 0 is late.
		if err := l.Wait(ctx, "b", 2, lim); err != nil {
			t.Error(err)
		}
		next <- time.Now()
	}()
	// Shard 1 (bucket 1) is not held up by bucket 0.
	if err := l.Wait(ctx, "b", 1, lim); err != nil {
		t.Fatal(err)
	}
	if err := l.Sent(ctx, "b", 1, lim); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1600 * time.Millisecond) // shard 0's write is late
	select {
	case at := <-next:
		t.Fatalf("shard 2 granted (%v ago) while shard 0's IDENTIFY was still unsent", time.Since(at))
	default:
	}
	sent := time.Now()
	if err := l.Sent(ctx, "b", 0, lim); err != nil {
		t.Fatal(err)
	}
	at := <-next
	if d := at.Sub(sent); d < gap {
		t.Fatalf("shard 2 granted %v after shard 0's actual send, want at least the %v window plus margin", d, gap)
	}
}

// A grant never reported by Sent (its sender gone) holds its bucket for two
// windows plus margins, then the bucket goes on: no waiter hangs.
func TestMemoryIdentifyLimiter_UnreportedGrantExpires(t *testing.T) {
	l := NewMemoryIdentifyLimiter()
	lim := Limits{MaxConcurrency: 1, Window: 100 * time.Millisecond, Total: 1000, Remaining: 100, ResetAfter: time.Hour}
	gap := lim.Window + identifyMargin(lim.Window)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	for s := range 3 {
		if err := l.Wait(ctx, "b", s, lim); err != nil {
			t.Fatalf("shard %d: %v", s, err)
		}
	}
	if d := time.Since(start); d < 2*2*gap {
		t.Fatalf("three unreported grants of one bucket took %v, want at least 2 × 2 × %v", d, gap)
	}
}
