package discordtest

import (
	"bufio"
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
	"github.com/gobwas/ws"
)

// BenchmarkGenerate measures making live events (model update, encoding,
// ledger) for a disconnected session, without the socket.
func BenchmarkGenerate(b *testing.B) {
	for _, shards := range []int{1, 64} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			s := startFake(b, Config{Guilds: 50 * shards, MembersPerGuild: 100, Seed: 1, LedgerLimit: 10000,
				ResumeWindow: time.Hour, IdentifyWindow: time.Nanosecond, SessionStartRemaining: 10000, SessionStartTotal: 10000})
			for i := 0; i < shards; i++ {
				c, _, _ := connectIdentify(b, s, "", i, shards, allIntents)
				c.close()
			}
			testkit.Eventually(b, waitTimeout, "disconnect", func() bool { return s.Stats().Connections == 0 })
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if made := s.generate(b.N); made != b.N {
				b.Fatalf("made %d events, want %d", made, b.N)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkDeliver measures events generated and written to a connected
// client that reads and discards websocket frames.
func BenchmarkDeliver(b *testing.B) {
	for _, comp := range []string{"none", "zlib-stream", "zstd-stream"} {
		b.Run(comp, func(b *testing.B) {
			s := startFake(b, Config{Guilds: 50, MembersPerGuild: 100, Seed: 1, LedgerLimit: 10000})
			q := ""
			if comp != "none" {
				q = "&compress=" + comp
			}
			c, _, _ := connectIdentify(b, s, q, 0, 1, allIntents)
			var read atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				br := bufio.NewReaderSize(c.rw, 256<<10)
				for {
					h, err := ws.ReadHeader(br)
					if err != nil {
						return
					}
					if _, err := br.Discard(int(h.Length)); err != nil {
						return
					}
					if h.Fin && h.OpCode != ws.OpClose {
						read.Add(1)
					}
				}
			}()
			_ = c.conn.SetReadDeadline(time.Time{})
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for made := 0; made < b.N; {
				for s.pending.Load() > maxPending {
					time.Sleep(50 * time.Microsecond)
				}
				made += s.generate(min(b.N-made, 4096))
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.WaitIdle(ctx); err != nil {
				b.Fatal(err)
			}
			for read.Load() < int64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.StopTimer()
			_ = c.conn.Close()
			<-done
		})
	}
}
