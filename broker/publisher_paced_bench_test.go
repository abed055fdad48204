package broker

import (
	"context"
	"fmt"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
)

// BenchmarkPublishPaced publishes at a fixed rate, as shards receiving
// moderate traffic do (5,000 events/s in all, over 4 busy shards or 64
// quiet ones), and reports the CPU spent per event by this process
// (Publisher, client) and by redis-server, and the mean batch size, for
// several MaxDelay values (0: never wait) and GatherDelay values. Below
// full speed every batch costs wake-ups and round trips of its own, so
// fewer, larger batches cost less per event; quiet shards do not wait, so
// MaxDelay changes nothing for them, while GatherDelay puts the batches of
// many quiet shards in one call.
func BenchmarkPublishPaced(b *testing.B) {
	const rate = 5000.0
	type tune struct{ delay, gather time.Duration }
	tunes := []tune{{0, 0}, {500 * time.Microsecond, 0}, {time.Millisecond, 0}, {2 * time.Millisecond, 0},
		{0, 500 * time.Microsecond}, {0, time.Millisecond}, {0, 2 * time.Millisecond}}
	for _, shards := range []int{4, 64} {
		for _, tn := range tunes {
			delay := tn.delay
			b.Run(fmt.Sprintf("shards=%d/max_delay=%s/gather=%s", shards, delay, tn.gather), func(b *testing.B) {
				srv := redistest.Start(b, redistest.Options{})
				c := srv.Client(b)
				p, err := NewPublisher(c, PublisherConfig{MaxDelay: delay, GatherDelay: tn.gather, Bots: []BotConfig{{Name: "b", Default: StreamConfig{MaxLen: 100000}}}})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(context.Background())
				interval := time.Duration(float64(time.Second) * float64(shards) / rate)
				cpu0, rcpu0, wake0 := redistest.ProcessCPU(b), redistest.ServerCPU(b, c), pacedWakeups()
				b.ReportAllocs()
				b.ResetTimer()
				per := max(b.N/shards, 1)
				start := time.Now()
				publishShards(b, p, shards, func(int) int { return per }, func(i int) {
					if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
						time.Sleep(d)
					}
				})
				b.StopTimer()
				n := float64(per * shards)
				st := p.Stats()
				var batches uint64
				for _, ss := range st.Shards {
					batches += ss.Batches
				}
				b.ReportMetric(float64(redistest.ProcessCPU(b)-cpu0)/n/1e3, "cpu-µs/event")
				b.ReportMetric(float64(redistest.ServerCPU(b, c)-rcpu0)/n/1e3, "redis-cpu-µs/event")
				b.ReportMetric((pacedWakeups()-wake0)/n, "wakeups/event")
				if batches > 0 {
					b.ReportMetric(n/float64(batches), "events/batch")
				}
				if bs, _ := p.bot("b"); bs.w.calls.Load() > 0 {
					b.ReportMetric(n/float64(bs.w.calls.Load()), "events/call")
				}
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// pacedWakeups estimates how many times goroutines of this process were
// scheduled (runnable → running) so far: the runtime records one
// transition in 8 in /sched/latencies.
func pacedWakeups() float64 {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	var n uint64
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		for _, c := range s[0].Value.Float64Histogram().Counts {
			n += c
		}
	}
	return float64(n) * 8
}
