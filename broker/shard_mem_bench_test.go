package broker

import (
	"runtime"
	"testing"
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
