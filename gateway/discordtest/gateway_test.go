package discordtest

import (
	"testing"

	"github.com/feathery/feathery/gateway/testkit"
)

func TestIdentifyReadyGuildCreateAndTraffic(t *testing.T) {
	for _, comp := range []string{"", "zlib-stream", "zstd-stream"} {
		t.Run("compress="+comp, func(t *testing.T) {
			s := startFake(t, Config{Guilds: 12, Seed: 7, Shards: 2})
			q := ""
			if comp != "" {
				q = "&compress=" + comp
			}
			c, rd, got := connectIdentify(t, s, q, 1, 2, allIntents)
			if rd.User.ID != s.BotUserID() || !rd.User.Bot || rd.ResumeGatewayURL != s.ResumeURL() || rd.Shard[0] != 1 || rd.Shard[1] != 2 {
				t.Fatalf("bad READY %+v", rd)
			}
			w := s.Snapshot()
			want := 0
			for id := range w.Guilds {
				if shardOf(id, 2) == 1 {
					want++
				}
			}
			if len(rd.Guilds) != want || want == 0 {
				t.Fatalf("READY lists %d guilds, the world has %d on shard 1", len(rd.Guilds), want)
			}
			rec := record(c)
			s.SetRate(2000)
			testkit.Eventually(t, waitTimeout, "500 live dispatches", func() bool { return rec.count() >= 500 })
			s.SetRate(0)
			testkit.Eventually(t, waitTimeout, "idle", func() bool {
				l := s.Ledger(1)
				return len(l) == 1 && rec.count()+len(got) == len(l[0].Entries)
			})
			matchLedger(t, append(got, rec.snapshot()...), s.Ledger(1)[0].Entries)
		})
	}
}
