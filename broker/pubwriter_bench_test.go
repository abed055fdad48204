package broker

import (
	"context"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
)

// BenchmarkPublishTick gives each of 64 shards one event per tick, as a
// bot with many shards at a modest rate sees it, and waits until all are
// durable: the batching path end to end (queue, flusher, the bot's writer,
// one script call of many sections). It reports the script calls and the
// shard batches (sections) per event, the goroutine wake-ups per event
// (the whole process, this loop's included), and the CPU per event of this
// process and of redis-server.
func BenchmarkPublishTick(b *testing.B) {
	const shards = 64
	srv := redistest.Start(b, redistest.Options{})
	c := srv.Client(b)
	p, err := NewPublisher(c, PublisherConfig{Bots: []BotConfig{{Name: "b", Default: StreamConfig{MaxLen: 100000}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	ctx := context.Background()
	ev := Event{Bot: "b", ShardCount: shards, Session: "s", Type: "MESSAGE_CREATE", GuildID: 41771983423143937, Data: benchMessage}
	tick := func(seq int64) {
		for s := range shards {
			ev.Shard, ev.Seq, ev.Received = s, seq, time.Now()
			if err := p.Publish(ctx, &ev); err != nil {
				b.Fatal(err)
			}
		}
		for s := range shards {
			if err := p.Flush(ctx, "b", s); err != nil {
				b.Fatal(err)
			}
		}
	}
	tick(1)
	bs, _ := p.bot("b")
	calls0, sec0 := bs.w.calls.Load(), bs.w.sections.Load()
	wake0, cpu0, rcpu0 := pacedWakeups(), redistest.ProcessCPU(b), redistest.ServerCPU(b, c)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tick(int64(i) + 2)
	}
	b.StopTimer()
	n := float64(b.N * shards)
	b.ReportMetric(float64(bs.w.calls.Load()-calls0)/n, "calls/event")
	b.ReportMetric(float64(bs.w.sections.Load()-sec0)/n, "sections/event")
	b.ReportMetric((pacedWakeups()-wake0)/n, "wakeups/event")
	b.ReportMetric(float64(redistest.ProcessCPU(b)-cpu0)/n/1e3, "cpu-µs/event")
	b.ReportMetric(float64(redistest.ServerCPU(b, c)-rcpu0)/n/1e3, "redis-cpu-µs/event")
}
