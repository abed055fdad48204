package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/luascripts"
)

// benchMessage is a MESSAGE_CREATE payload of about 700 bytes.
var benchMessage = []byte(`{"type":0,"tts":false,"timestamp":"2026-11-25T06:00:00.000000+00:00","pinned":false,` +
	`"nonce":"1311111111111111111","mentions":[],"mention_roles":[],"mention_everyone":false,` +
	`"member":{"roles":["41771983423143937"],"premium_since":null,"pending":false,"nick":null,"mute":false,` +
	`"joined_at":"2024-01-01T00:00:00.000000+00:00","flags":0,"deaf":false,"communication_disabled_until":null,"avatar":null},` +
	`"id":"1311111111111111112","flags":0,"embeds":[],"edited_timestamp":null,"content":"!ping ` + strings.Repeat("x", 120) + `",` +
	`"components":[],"channel_id":"41771983423143938","author":{"username":"someone","public_flags":0,"id":"41771983423143939",` +
	`"global_name":"Someone","discriminator":"0","avatar":"a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4"},"attachments":[],"guild_id":"41771983423143937"}`)

// BenchmarkBuildBatch measures the per-event work of a batch without Redis:
// filter decisions (message peek with the bot/webhook/prefix filters on)
// and the publish script's argument building, for batches of 512.
func BenchmarkBuildBatch(b *testing.B) {
	for _, filters := range []bool{false, true} {
		b.Run(fmt.Sprintf("filters=%v", filters), func(b *testing.B) {
			srv := redistest.Start(b, redistest.Options{})
			cfg := PublisherConfig{Bots: []BotConfig{{Name: "b", Routes: []Route{{Events: []string{"MESSAGE_*"}, StreamConfig: StreamConfig{Stream: "m", MaxLen: 100000}}}}}}
			if filters {
				cfg.Bots[0].Filters = FilterConfig{DropBotMessages: true, DropWebhookMessages: true, PrefixFilter: true, Prefixes: []string{"!"}}
			}
			p, err := NewPublisher(srv.Client(b), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			bs, _ := p.bot("b")
			sq := newShardQueue(bs, 0) // no flusher: the benchmark drives it
			sq.sc = new(scratch)
			const n = 512
			run := make([]*item, n)
			for i := range run {
				it := &item{info: bs.typeInfo("MESSAGE_CREATE")}
				it.ev = Event{Bot: "b", Session: "s", Seq: int64(i + 1), Type: "MESSAGE_CREATE", GuildID: 41771983423143937,
					Data: benchMessage, Received: time.Now()}
				run[i] = it
			}
			now := time.Now()
			b.SetBytes(int64(n * len(benchMessage)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				sq.decide(run)
				sq.sc.cacheIdx = sq.sc.cacheIdx[:0]
				for range run {
					sq.sc.cacheIdx = append(sq.sc.cacheIdx, -1)
				}
				sq.build(run, now, luascripts.Expectation{})
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkPublish measures Publish → Redis end to end against a real
// redis-server on this machine: 4 shards publishing ~700-byte
// MESSAGE_CREATE events concurrently, each shard flushed at the end.
func BenchmarkPublish(b *testing.B) {
	for _, shards := range []int{1, 4} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			srv := redistest.Start(b, redistest.Options{})
			c := srv.Client(b)
			p, err := NewPublisher(c, PublisherConfig{Bots: []BotConfig{{Name: "b", Default: StreamConfig{MaxLen: 100000}}}})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			b.SetBytes(int64(len(benchMessage)))
			b.ReportAllocs()
			b.ResetTimer()
			per := b.N / shards
			publishShards(b, p, shards, func(s int) int {
				if s == 0 {
					return per + b.N - per*shards
				}
				return per
			}, nil)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// publishShards publishes count(s) benchMessage MESSAGE_CREATE events
// (seq 1, 2, …) on each shard s of bot "b", one goroutine a shard, and then
// flushes the shard. With pace non-nil, event i waits for pace(i) first.
func publishShards(b *testing.B, p *Publisher, shards int, count func(shard int) int, pace func(i int)) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for s := range shards {
		wg.Go(func() {
			ev := Event{Bot: "b", Shard: s, ShardCount: shards, Session: "s", Type: "MESSAGE_CREATE",
				GuildID: 41771983423143937, Data: benchMessage}
			for i := range count(s) {
				if pace != nil {
					pace(i)
				}
				ev.Seq = int64(i + 1)
				ev.Received = time.Now()
				if err := p.Publish(ctx, &ev); err != nil {
					b.Error(err)
					return
				}
			}
			if err := p.Flush(ctx, "b", s); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
}

// BenchmarkPeekMessage measures reading content, author.bot and webhook_id.
func BenchmarkPeekMessage(b *testing.B) {
	b.SetBytes(int64(len(benchMessage)))
	b.ReportAllocs()
	for range b.N {
		m := peekMessage(benchMessage)
		if !m.hasContent {
			b.Fatal("no content")
		}
	}
}
