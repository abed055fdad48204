package broker

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
)

// BenchmarkIdleShardQueue reports the heap one idle shard's queue state
// holds (newShardQueue: the queue, its counters and the flusher's state,
// no goroutine), the part of a connected idle shard's memory the broker
// owns.
func BenchmarkIdleShardQueue(b *testing.B) {
	p := &Publisher{keys: NewKeys("")}
	cfg := PublisherConfig{}
	cfg.setDefaults()
	p.live.Store(&cfg)
	bot := newBotState(p, BotConfig{Name: "b"})
	const n = 1000
	b.ReportAllocs()
	var per float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		qs := make([]*shardQueue, n)
		for i := range qs {
			qs[i] = newShardQueue(bot, i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(qs)
	}
	b.ReportMetric(per, "heap-B/shard")
}

// BenchmarkIdleShards reports what an idle shard costs once it published
// its start-up events: 1,000 shards of a Publisher on a real redis-server
// each publish a few events and go idle; then the heap (after garbage
// collection), the goroutine stacks and the goroutines the Publisher holds
// for them, per shard (each iteration waits for the flushers to linger
// and exit: run it with -benchtime 1x).
func BenchmarkIdleShards(b *testing.B) {
	const shards, events = 1000, 3
	srv := redistest.Start(b, redistest.Options{})
	c := srv.Client(b)
	ctx := context.Background()
	b.ReportAllocs()
	var heap, stack, gs float64
	for range b.N {
		p, err := NewPublisher(c, PublisherConfig{Prefix: "i" + strconv.Itoa(rand.Int())})
		if err != nil {
			b.Fatal(err)
		}
		ev := Event{Bot: "b", ShardCount: shards, Session: "s", Type: "MESSAGE_CREATE", GuildID: 41771983423143937, Data: benchMessage}
		// Warm up: the script is loaded, the groups exist.
		if err := p.Publish(ctx, &ev); err != nil {
			b.Fatal(err)
		}
		if err := p.Flush(ctx, "b", 0); err != nil {
			b.Fatal(err)
		}
		idle := func() {
			deadline := time.Now().Add(60 * time.Second)
			for runningFlushers(p) > 0 {
				if time.Now().After(deadline) {
					b.Fatal("flushers still running after 60s")
				}
				time.Sleep(time.Millisecond)
			}
			// Twice: what the pools kept is dropped on the second.
			runtime.GC()
			runtime.GC()
		}
		idle()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		g0 := runtime.NumGoroutine()
		for s := 1; s <= shards; s++ {
			ev.Shard = s
			for seq := range events {
				ev.Seq = int64(seq + 1)
				if err := p.Publish(ctx, &ev); err != nil {
					b.Fatal(err)
				}
			}
		}
		for s := 1; s <= shards; s++ {
			if err := p.Flush(ctx, "b", s); err != nil {
				b.Fatal(err)
			}
		}
		idle()
		runtime.ReadMemStats(&m1)
		heap = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / shards
		stack = float64(int64(m1.StackInuse)-int64(m0.StackInuse)) / shards
		gs = float64(runtime.NumGoroutine()-g0) / shards
		if err := p.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(heap, "heap-B/shard")
	b.ReportMetric(stack, "stack-B/shard")
	b.ReportMetric(gs, "goroutines/shard")
	b.ReportMetric(0, "ns/op")
}
