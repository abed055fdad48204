package bench_test

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/discordtest"
)

// worldGuildCreates are the GUILD_CREATE events of the fake's default
// cache world (the bench's cache phase: 100 guilds × 1,000 members, seed 1),
// guild object and member list as the fake sends them, and the member and
// user counts.
func worldGuildCreates(tb testing.TB, guilds, members int) (evs []*broker.Event, nMembers, nUsers int) {
	tb.Helper()
	fake, err := discordtest.Start(discordtest.Config{Guilds: guilds, MembersPerGuild: members, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	w := fake.Snapshot()
	if err := fake.Close(); err != nil {
		tb.Fatal(err)
	}
	ids := make([]string, 0, len(w.Guilds))
	for id := range w.Guilds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		g := w.Guilds[id]
		info := strings.TrimSuffix(strings.TrimSpace(string(g.Guild)), "}")
		var b strings.Builder
		b.WriteString(info)
		b.WriteString(`,"joined_at":"2024-01-01T00:00:00.000000+00:00","large":` + strconv.FormatBool(len(g.Members) > 250))
		b.WriteString(`,"unavailable":false,"member_count":` + strconv.Itoa(len(g.Members)) + `,"members":[`)
		first := true
		for _, m := range g.Members {
			if !first {
				b.WriteByte(',')
			}
			first = false
			b.Write(m)
		}
		b.WriteString(`]}`)
		gid, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			tb.Fatal(err)
		}
		evs = append(evs, &broker.Event{Bot: "bench", Type: "GUILD_CREATE", GuildID: gid, Data: []byte(b.String())})
		nMembers += len(g.Members)
	}
	return evs, nMembers, len(w.Users)
}

// memoryByKind sums MEMORY USAGE of every key by the part of its name
// after the hash tag ("members", "user", "guilds", ...).
func memoryByKind(tb testing.TB, client rueidis.Client) map[string]int64 {
	tb.Helper()
	ctx := context.Background()
	out := map[string]int64{}
	var cursor uint64
	for {
		e, err := client.Do(ctx, client.B().Scan().Cursor(cursor).Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Fatal(err)
		}
		for _, k := range e.Elements {
			n, err := client.Do(ctx, client.B().MemoryUsage().Key(k).Samples(0).Build()).AsInt64()
			if err != nil {
				tb.Fatal(err)
			}
			kind := k
			if i := strings.LastIndex(k, "}"); i >= 0 {
				kind = strings.TrimPrefix(k[i+1:], ":")
			}
			if j := strings.IndexByte(kind, ':'); j >= 0 {
				kind = kind[:j]
			}
			out[kind] += n
			out["keys:"+kind]++
		}
		if cursor = e.Cursor; cursor == 0 {
			break
		}
	}
	return out
}

// BenchmarkCacheBytesPerMemberWorld loads the bench's default cache world
// (the fake's 100 guilds × 1,000 members, seed 1; entities guilds, members,
// users, as `feathery bench` caches them) into a real redis-server through
// broker.Cache, one GUILD_CREATE per Apply, and reports Redis bytes per
// cached member (INFO memory used_memory delta ÷ members, users included),
// MEMORY USAGE per member of the member and user keys, and the load rate.
func BenchmarkCacheBytesPerMemberWorld(b *testing.B) {
	evs, members, users := worldGuildCreates(b, 100, 1000)
	srv := redistest.Start(b, redistest.Options{})
	client := srv.Client(b)
	ctx := context.Background()
	cfg := broker.CacheConfig{Bots: map[string]broker.CacheBotConfig{"bench": {Entities: []string{"guilds", "members", "users"}}}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := client.Do(ctx, client.B().Flushall().Build()).Error(); err != nil {
			b.Fatal(err)
		}
		c, err := broker.NewCache(client, cfg)
		if err != nil {
			b.Fatal(err)
		}
		before, err := bench.UsedMemory(ctx, client)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for _, e := range evs {
			if err := c.Apply(ctx, []*broker.Event{e}, make([][]byte, 1)); err != nil {
				b.Fatal(err)
			}
		}
		el := time.Since(start)
		b.StopTimer()
		after, err := bench.UsedMemory(ctx, client)
		if err != nil {
			b.Fatal(err)
		}
		// The scripts' own memory is not the cache's.
		var scripts int64
		info, err := client.Do(ctx, client.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory_scripts:"); ok {
				scripts, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		kinds := memoryByKind(b, client)
		b.ReportMetric(float64(after-before-scripts)/float64(members), "bytes/member")
		b.ReportMetric(float64(members)/el.Seconds(), "members/s")
		if i == 0 {
			js, _ := json.Marshal(kinds)
			b.Logf("%d members, %d users; MEMORY USAGE by key kind: %s", members, users, js)
		}
		b.StartTimer()
	}
}
