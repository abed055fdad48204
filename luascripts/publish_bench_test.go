package luascripts_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/luascripts"
)

// BenchmarkPublishSections publishes one event on each of 64 shards per
// tick (a modest rate spread over many shards: every shard batch holds one
// event), fenced like a fleet's, either as 64 script calls sent at once
// (pipelined, as 64 flushers send them) or as one call of 64 sections. It
// reports redis-server's CPU per event (INFO cpu) and this process's, and
// allocations per tick.
func BenchmarkPublishSections(b *testing.B) {
	const shards = 64
	for _, mode := range []string{"calls=64", "calls=1"} {
		b.Run(mode, func(b *testing.B) {
			c := redistest.Start(b, redistest.Options{}).Client(b)
			ctx := context.Background()
			calls := make([]luascripts.PublishCall, shards)
			args := make([]luascripts.PublishArgs, shards)
			data := []byte(`{"id":"1234567890123456789","channel_id":"1234567890123456789","content":"hello","author":{"id":"1","username":"u"}}`)
			for s := range calls {
				lease := "p:{bot:b}:lease:" + strconv.Itoa(s)
				r, err := luascripts.LeaseAcquire(ctx, c, lease, "node", time.Hour)
				if err != nil {
					b.Fatal(err)
				}
				calls[s] = luascripts.PublishCall{
					Checkpoint: "p:{bot:b}:session:" + strconv.Itoa(s),
					Streams:    []luascripts.PublishStream{{Key: "p:{bot:b}:events", TrimKind: "MAXLEN", Threshold: "100000"}},
					Session:    "sess" + strconv.Itoa(s), ResumeURL: "wss://gateway-us-east1-b.discord.gg", ShardCount: shards,
					Intents: 3276799, Bot: "b", Shard: s, Lease: lease, Fence: r.Fence,
					Entries: []luascripts.PublishEntry{{Type: "MESSAGE_CREATE", Data: data, Guild: 123456789012345678}},
				}
			}
			var batch luascripts.PublishBatch
			var outs []luascripts.PublishOutcome
			errs := make(chan error, shards)
			tick := func(seq int64) {
				for s := range calls {
					e := &calls[s]
					e.Seq, e.Entries[0].Seq, e.Entries[0].At = seq, seq, 1700000000000+seq
					e.Expect = luascripts.Expectation{Session: e.Session, Seq: seq - 1, Written: true}
					args[s].Build(e)
				}
				if mode == "calls=1" {
					batch.Reset()
					for s := range args {
						batch.Add(&args[s])
					}
					var err error
					if outs, err = luascripts.PublishMulti(ctx, c, &batch, outs[:0]); err != nil {
						b.Fatal(err)
					}
					for _, o := range outs {
						if o.Err != nil || o.Result.Added != 1 {
							b.Fatalf("section: %+v", o)
						}
					}
					return
				}
				for s := range args {
					go func() {
						res, err := luascripts.Publish(ctx, c, &args[s])
						if err == nil && res.Added != 1 {
							err = fmt.Errorf("added %d", res.Added)
						}
						errs <- err
					}()
				}
				for range args {
					if err := <-errs; err != nil {
						b.Fatal(err)
					}
				}
			}
			tick(1)
			cpu0, rcpu0 := redistest.ProcessCPU(b), redistest.ServerCPU(b, c)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				tick(int64(i) + 2)
			}
			b.StopTimer()
			n := float64(b.N * shards)
			b.ReportMetric(float64(redistest.ProcessCPU(b)-cpu0)/n/1e3, "cpu-µs/event")
			b.ReportMetric(float64(redistest.ServerCPU(b, c)-rcpu0)/n/1e3, "redis-cpu-µs/event")
		})
	}
}
