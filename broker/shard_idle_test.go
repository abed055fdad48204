package broker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/redis/rueidis"
)

// startPublisher returns a Publisher on c, closed when the test ends.
func startPublisher(t *testing.T, c rueidis.Client, cfg PublisherConfig) *Publisher {
	t.Helper()
	p, err := NewPublisher(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// flusherGoroutines counts the goroutines running a shard queue's flusher.
func flusherGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "broker.(*shardQueue).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// runningFlushers counts p's shard queues that have a flusher.
func runningFlushers(p *Publisher) int {
	n := 0
	for _, b := range *p.bots.Load() {
		for _, sq := range b.all() {
			if sq.running.Load() {
				n++
			}
		}
	}
	return n
}

// streamSeqs reads the seqs of stream key in order.
func streamSeqs(t *testing.T, c rueidis.Client, key string) []int64 {
	t.Helper()
	msgs, err := c.Do(t.Context(), c.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatalf("xrange %s: %v", key, err)
	}
	var out []int64
	for _, m := range msgs {
		n, err := strconv.ParseInt(m.FieldValues["seq"], 10, 64)
		if err != nil {
			t.Fatalf("entry %s of %s: seq %q: %v", m.ID, key, m.FieldValues["seq"], err)
		}
		out = append(out, n)
	}
	return out
}

// TestShardQueue_IdleHasNoFlusher: a shard's flusher runs only while the
// shard has work. After each shard published a few events and went idle,
// no flusher goroutine of it remains and it holds no batch scratch; events
// published afterwards start a flusher again and land in order, exactly
// once, also when they race with flushers that are exiting.
func TestShardQueue_IdleHasNoFlusher(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := startPublisher(t, c, PublisherConfig{Bots: []BotConfig{{Name: "b", Routes: []Route{{Events: []string{"TYPING_START"}, StreamConfig: StreamConfig{Stream: "t"}}}}}})
	// Flushers exit as soon as their queue is empty: the exits race with
	// the events below as often as can be.
	p.linger = 0
	ctx := t.Context()
	const shards = 16
	// Shard s publishes on its own stream (by type) so its order can be
	// checked: shard 0 on the routed stream, the others on the default
	// one, told apart by session.
	evOf := func(shard int, seq int64) *Event {
		typ := "MESSAGE_CREATE"
		if shard == 0 {
			typ = "TYPING_START"
		}
		return &Event{Bot: "b", Shard: shard, ShardCount: shards, Session: "s" + strconv.Itoa(shard), Seq: seq,
			Type: typ, Data: []byte(`{"shard":` + strconv.Itoa(shard) + `}`)}
	}
	base := flusherGoroutines()
	if base != 0 {
		t.Fatalf("%d flusher goroutines before any event", base)
	}
	next := make([]int64, shards) // last seq published, by shard
	publish := func(shard, n int) {
		for range n {
			next[shard]++
			if err := p.Publish(ctx, evOf(shard, next[shard])); err != nil {
				t.Errorf("publish shard %d seq %d: %v", shard, next[shard], err)
				return
			}
		}
	}
	flushAll := func() {
		fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		for s := range shards {
			if err := p.Flush(fctx, "b", s); err != nil {
				t.Fatalf("flush shard %d: %v", s, err)
			}
		}
	}
	waitIdle := func(when string) {
		t.Helper()
		waitFor(t, "flushers to exit "+when, func() bool { return runningFlushers(p) == 0 && flusherGoroutines() == 0 })
		b, _ := p.bot("b")
		for _, sq := range b.all() {
			if sq.sc != nil {
				t.Errorf("%s: idle shard %d still holds a batch scratch", when, sq.shard)
			}
		}
	}

	// Every shard publishes a few events (its start-up), then goes idle.
	for s := range shards {
		publish(s, 3)
	}
	flushAll()
	waitIdle("after the first events")

	// Idle shards get events again, one at a time, each round after the
	// flushers exited, so each event starts a flusher.
	for i := range 5 {
		for s := range shards {
			publish(s, 1)
		}
		flushAll()
		waitIdle("after single events, round " + strconv.Itoa(i))
	}

	// Bursts from one goroutine per shard, publishing while that shard's
	// flusher drains and exits: no event may be left without a flusher
	// (Flush would time out) and none published twice.
	var wg sync.WaitGroup
	for s := range shards {
		wg.Go(func() {
			for i := range 200 {
				publish(s, 1+i%3)
				if i%7 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	flushAll()
	waitIdle("after the bursts")

	for s := range shards {
		key := p.keys.Stream("b", DefaultStream)
		if s == 0 {
			key = p.keys.Stream("b", "t")
		}
		var got []int64
		if s == 0 {
			got = streamSeqs(t, c, key)
		} else {
			msgs, err := c.Do(ctx, c.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				if m.FieldValues["session"] != "s"+strconv.Itoa(s) {
					continue
				}
				n, _ := strconv.ParseInt(m.FieldValues["seq"], 10, 64)
				got = append(got, n)
			}
		}
		if int64(len(got)) != next[s] {
			t.Errorf("shard %d: %d entries, want %d", s, len(got), next[s])
		}
		for i, seq := range got {
			if seq != int64(i+1) {
				t.Errorf("shard %d: entry %d has seq %d, want %d (order or once broken)", s, i, seq, i+1)
				break
			}
		}
	}
}

// TestShardQueue_FlusherStaysWhileRetrying: a batch that fails is retried
// by a flusher that stays until Redis is back; then the shard goes idle and
// its flusher exits (after the default linger).
func TestShardQueue_FlusherStaysWhileRetrying(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := startPublisher(t, c, PublisherConfig{RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond})
	ctx := t.Context()
	ev := func(seq int64) *Event {
		return &Event{Bot: "b", Shard: 0, ShardCount: 1, Session: "s", Seq: seq, Type: "MESSAGE_CREATE", Data: []byte(`{}`)}
	}
	if err := p.Publish(ctx, ev(1)); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flusher to exit", func() bool { return runningFlushers(p) == 0 })

	// Make the publish script fail: the stream key has the wrong type.
	key := p.keys.Stream("b", DefaultStream)
	if err := c.Do(ctx, c.B().Rename().Key(key).Newkey(key+":saved").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Set().Key(key).Value("x").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, ev(2)); err != nil {
		t.Fatal(err)
	}
	b, _ := p.bot("b")
	sq := b.lookup(0)
	waitFor(t, "a failed attempt", func() bool { return sq.errCount.Load() >= 3 })
	if !sq.running.Load() || flusherGoroutines() != 1 {
		t.Fatalf("failing batch: running %v, %d flusher goroutines; want its flusher to stay", sq.running.Load(), flusherGoroutines())
	}
	if err := c.Do(ctx, c.B().Del().Key(key).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Rename().Key(key+":saved").Newkey(key).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.Flush(fctx, "b", 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flusher to exit after recovery", func() bool { return runningFlushers(p) == 0 && flusherGoroutines() == 0 })
	if got := streamSeqs(t, c, key); fmt.Sprint(got) != "[1 2]" {
		t.Fatalf("stream holds seqs %v, want [1 2]", got)
	}
}

// TestPublisher_CloseWhileFlushersStart: Publish racing Close starts no
// flusher Close does not wait for; every call returns nil or ErrClosed.
func TestPublisher_CloseWhileFlushersStart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p, err := NewPublisher(c, PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for s := range 8 {
		wg.Go(func() {
			for seq := int64(1); ; seq++ {
				err := p.Publish(ctx, &Event{Bot: "b", Shard: s, ShardCount: 8, Session: "s", Seq: seq, Type: "MESSAGE_CREATE", Data: []byte(`{}`)})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("publish shard %d: %v", s, err)
					return
				}
			}
		})
	}
	waitFor(t, "events to flow", func() bool {
		b := (*p.bots.Load())["b"]
		return b != nil && len(b.all()) == 8
	})
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := p.Close(cctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	wg.Wait()
	if n := flusherGoroutines(); n != 0 {
		t.Fatalf("%d flusher goroutines after Close", n)
	}
}
