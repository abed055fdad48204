package broker

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// benchMember is a member object the size Discord sends (user included).
func benchMember(u int) string {
	uid := strconv.Itoa(wUserBase + u)
	return `{"user":{"id":"` + uid + `","username":"member` + strconv.Itoa(u) + `","avatar":"1f0e5b3a8c2d4e6f7a9b0c1d2e3f4a5b",` +
		`"discriminator":"0","public_flags":0,"flags":0,"banner":null,"accent_color":null,"global_name":"Member ` + strconv.Itoa(u) + `",` +
		`"avatar_decoration_data":null,"collectibles":null,"primary_guild":null},` +
		`"roles":["` + strconv.Itoa(wRoleBase+u%5) + `"],"nick":null,"avatar":null,"banner":null,"joined_at":"2023-05-17T09:21:44.512000+00:00",` +
		`"premium_since":null,"deaf":false,"mute":false,"flags":0,"pending":false,"communication_disabled_until":null}`
}

// benchWorld is GUILD_CREATE (large, no members) + GUILD_MEMBERS_CHUNK
// events for guilds × perGuild members, every member its own user.
func benchWorld(guilds, perGuild int) []*Event {
	var evs []*Event
	u := 0
	for gi := 0; gi < guilds; gi++ {
		g := wid(wGuildBase, gi)
		evs = append(evs, &Event{Bot: "a", Type: "GUILD_CREATE", Data: []byte(wGuildCreate(gi, 0, nil, true))})
		for done := 0; done < perGuild; {
			n := min(1000, perGuild-done)
			var sb strings.Builder
			sb.WriteString(`{"guild_id":"` + g + `","chunk_index":0,"chunk_count":1,"members":[`)
			for i := 0; i < n; i++ {
				if i > 0 {
					sb.WriteByte(',')
				}
				sb.WriteString(benchMember(u))
				u++
			}
			sb.WriteString(`]}`)
			evs = append(evs, &Event{Bot: "a", Type: "GUILD_MEMBERS_CHUNK", Data: []byte(sb.String())})
			done += n
		}
	}
	return evs
}

func usedMemory(tb testing.TB, client rueidis.Client) int64 {
	tb.Helper()
	info, err := client.Do(context.Background(), client.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	tb.Fatal("no used_memory in INFO memory")
	return 0
}

// BenchmarkCacheBytesPerMember loads 100 guilds × 1000 members (100,000
// members, each with its own user) through Apply on a real redis-server and
// reports Redis bytes per cached member (member + user + mutual guilds,
// INFO memory used_memory delta) and the load rate.
func BenchmarkCacheBytesPerMember(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	client := srv.Client(b)
	world := benchWorld(100, 1000)
	members := 100 * 1000
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := client.Do(ctx, client.B().Flushall().Build()).Error(); err != nil {
			b.Fatal(err)
		}
		c, err := NewCache(client, CacheConfig{})
		if err != nil {
			b.Fatal(err)
		}
		apply(b, c, ev("a", "GUILD_CREATE", wGuildCreate(999, 0, nil, true))) // load the scripts
		base := usedMemory(b, client)
		b.StartTimer()
		start := time.Now()
		for _, e := range world {
			if err := c.Apply(ctx, []*Event{e}, make([][]byte, 1)); err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(usedMemory(b, client)-base)/float64(members), "bytes/member")
		b.ReportMetric(float64(members)/el.Seconds(), "members/s")
		b.StartTimer()
	}
}

// BenchmarkCacheApply measures Apply on a live-traffic mix (member, channel,
// role, voice, presence, guild events over a small world), in batches of 64
// events as the publisher sends them; it reports events/s.
func BenchmarkCacheApply(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	client := srv.Client(b)
	c := newTestCache(b, client, CacheConfig{})
	r := rand.New(rand.NewPCG(1, 1))
	var list []wEvent
	for len(list) < 4096 {
		e := wRandomEvent(r)
		if e.T == "GUILD_DELETE" || e.T == "GUILD_CREATE" {
			continue // live traffic: no guild churn
		}
		list = append(list, e)
	}
	evs := toEvents("a", list)
	for gi := 0; gi < 3; gi++ {
		apply(b, c, ev("a", "GUILD_CREATE", wGuildCreate(gi, 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, false)))
	}
	ctx := context.Background()
	before := make([][]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		at := (i * 64) % len(evs)
		if err := c.Apply(ctx, evs[at:at+64], before); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*64)/time.Since(start).Seconds(), "events/s")
}
