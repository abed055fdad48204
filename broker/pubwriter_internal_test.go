package broker

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPubWriter_OneCallForManyShards: while a publish call of a bot is in
// flight, the batches of its other shards wait and then go together, in
// a few script calls with one section per shard; every event lands once and
// every shard's checkpoint is its own.
func TestPubWriter_OneCallForManyShards(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := startPublisher(t, c, PublisherConfig{})
	ctx := t.Context()
	const shards = 32
	evOf := func(shard int, seq int64) *Event {
		return &Event{Bot: "b", Shard: shard, ShardCount: shards, Session: "s" + strconv.Itoa(shard), Seq: seq,
			Type: "MESSAGE_CREATE", Data: []byte(`{"id":"` + strconv.Itoa(shard) + `"}`)}
	}
	// A first event creates the consumer groups and loads the script.
	if err := p.Publish(ctx, evOf(0, 1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	b, _ := p.bot("b")
	w := b.w
	calls0 := w.calls.Load()

	// Hold Redis: shard 0's next call hangs in flight.
	if err := syscall.Kill(srv.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(srv.PID(), syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	if err := p.Publish(ctx, evOf(0, 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "shard 0's call in flight", func() bool { return w.calls.Load() == calls0+1 })
	for s := 1; s < shards; s++ {
		if err := p.Publish(ctx, evOf(s, 1)); err != nil {
			t.Fatal(err)
		}
	}
	// Batches waiting longer than roundWait start rounds beside it, up
	// to pubLanes; the rest wait.
	waitFor(t, "every shard's batch in a round or waiting", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.pending)+w.taken == shards
	})
	resume()
	for s := range shards {
		if err := p.Flush(ctx, "b", s); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.calls.Load() - calls0; got > 2*pubLanes {
		t.Errorf("%d script calls for %d shard batches, want at most %d (%d in flight, then the rest together)", got, shards, 2*pubLanes, pubLanes)
	}
	if got := w.sections.Load(); got != shards+1 {
		t.Errorf("%d sections, want %d", got, shards+1)
	}
	keys := p.Keys()
	if n, _ := c.Do(ctx, c.B().Xlen().Key(keys.Events("b")).Build()).AsInt64(); n != shards+1 {
		t.Errorf("%d stream entries, want %d", n, shards+1)
	}
	for s := range shards {
		want := "1"
		if s == 0 {
			want = "2"
		}
		ck, _ := c.Do(ctx, c.B().Hgetall().Key(keys.Session("b", s)).Build()).AsStrMap()
		if ck["session"] != "s"+strconv.Itoa(s) || ck["seq"] != want {
			t.Errorf("shard %d checkpoint %v, want session s%d seq %s", s, ck, s, want)
		}
	}
}

// TestItemQueue: FIFO across growth and wrap-around, bounded by its limit
// (a full queue hands out a channel closed when an item is taken), and an
// empty queue gives a large ring back.
func TestItemQueue(t *testing.T) {
	q := newItemQueue(1000)
	if q.slots() != 0 {
		t.Fatalf("a new queue holds %d slots, want 0", q.slots())
	}
	items := make([]*item, 2000)
	for i := range items {
		items[i] = &item{gen: uint64(i)}
	}
	next, taken := 0, 0
	// Push 3, take 2, until full: the ring wraps while it grows.
	for {
		full := false
		for range 3 {
			if next == len(items) {
				break
			}
			ok, space := q.push(items[next])
			if !ok {
				full = true
				if space == nil {
					t.Fatal("a refused push gave no channel to wait on")
				}
				break
			}
			next++
		}
		if full || next == len(items) {
			break
		}
		for range 2 {
			if it := q.pop(); it != items[taken] {
				t.Fatalf("pop %d: got item %v, want %d", taken, it.gen, taken)
			}
			taken++
		}
	}
	if q.len() != next-taken {
		t.Fatalf("len %d, want %d", q.len(), next-taken)
	}
	for {
		if next == len(items) {
			items = append(items, &item{gen: uint64(next)})
		}
		if ok, _ := q.push(items[next]); !ok {
			break
		}
		next++
	}
	if q.len() != 1000 || q.slots() != 1000 {
		t.Fatalf("full queue: len %d slots %d, want 1000 and 1000", q.len(), q.slots())
	}
	extra := &item{gen: 9999}
	ok, space := q.push(extra)
	if ok {
		t.Fatal("push past the limit accepted")
	}
	select {
	case <-space:
		t.Fatal("space signalled before anything was taken")
	default:
	}
	if it := q.pop(); it != items[taken] {
		t.Fatalf("pop after full: %v", it.gen)
	}
	taken++
	select {
	case <-space:
	default:
		t.Fatal("taking from a full queue did not signal space")
	}
	if ok, _ := q.push(extra); !ok {
		t.Fatal("push after space was made refused")
	}
	for taken < next {
		if it := q.pop(); it != items[taken] {
			t.Fatalf("pop %d: got %v", taken, it.gen)
		}
		taken++
	}
	if it := q.pop(); it != extra {
		t.Fatalf("last pop: %v, want the extra item", it)
	}
	if q.pop() != nil || q.len() != 0 {
		t.Fatal("empty queue popped an item")
	}
	if q.slots() != 0 {
		t.Errorf("an emptied queue keeps %d slots, want them given back (> %d)", q.slots(), queueKeep)
	}
}

// TestPubWriter_GatherDelay: with GatherDelay, a call that would go alone
// first waits for the batches of the bot's other shards: one event on each
// of 16 shards, handed in together, goes in one call.
func TestPubWriter_GatherDelay(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	p := startPublisher(t, c, PublisherConfig{GatherDelay: time.Second})
	ctx := t.Context()
	const shards = 16
	publish := func(seq int64) {
		for s := range shards {
			if err := p.Publish(ctx, &Event{Bot: "b", Shard: s, ShardCount: shards, Session: "s", Seq: seq,
				Type: "MESSAGE_CREATE", Data: []byte(`{}`)}); err != nil {
				t.Fatal(err)
			}
		}
		for s := range shards {
			if err := p.Flush(ctx, "b", s); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1) // groups, script load
	b, _ := p.bot("b")
	calls0 := b.w.calls.Load()
	publish(2)
	if got := b.w.calls.Load() - calls0; got != 1 {
		t.Errorf("%d calls for one event on each of %d shards handed in together, want 1", got, shards)
	}
	if n, _ := c.Do(ctx, c.B().Xlen().Key(p.Keys().Events("b")).Build()).AsInt64(); n != 2*shards {
		t.Errorf("%d entries, want %d", n, 2*shards)
	}
}
