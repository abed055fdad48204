package broker

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// commandUsec sums usec over INFO commandstats (the time Redis spent
// executing commands, scripts' inner calls counted inside their EVALSHA).
func commandUsec(tb testing.TB, client rueidis.Client) (usec float64, calls map[string]int64) {
	tb.Helper()
	info, err := client.Do(context.Background(), client.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		tb.Fatal(err)
	}
	calls = map[string]int64{}
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				n, _ := strconv.ParseInt(v, 10, 64)
				calls[strings.TrimPrefix(name, "cmdstat_")] = n
			case "usec":
				x, _ := strconv.ParseFloat(v, 64)
				if !scriptInner[strings.TrimPrefix(name, "cmdstat_")] {
					usec += x
				}
			}
		}
	}
	return usec, calls
}

// scriptInner are commands only scripts call in these benchmarks: their
// time is inside EVALSHA's already.
var scriptInner = map[string]bool{
	"xadd": true, "hget": true, "hset": true, "hdel": true, "hmget": true, "get": true, "set": true,
	"sadd": true, "srem": true, "scard": true, "del": true, "hkeys": true, "hgetall": true, "hlen": true,
}

// liveMix draws n live-traffic dispatches in the fake Discord's default
// proportions over guilds first.. first+guilds-1, 20 members each: MESSAGE_CREATE, TYPING_START and
// INTERACTION_CREATE (no cache effect) and the cache-changing member,
// presence, voice, channel, role, thread, emoji and guild updates.
func liveMix(r *rand.Rand, n, first, guilds int) []*Event {
	type gen struct {
		w float64
		t string
	}
	mix := []gen{
		{40, "MESSAGE_CREATE"}, {10, "TYPING_START"}, {10, "PRESENCE_UPDATE"}, {3, "GUILD_MEMBER_ADD"},
		{5, "GUILD_MEMBER_UPDATE"}, {2, "GUILD_MEMBER_REMOVE"}, {1, "CHANNEL_CREATE"}, {2, "CHANNEL_UPDATE"},
		{1, "CHANNEL_DELETE"}, {1, "GUILD_ROLE_CREATE"}, {2, "GUILD_ROLE_UPDATE"}, {1, "GUILD_ROLE_DELETE"},
		{5, "VOICE_STATE_UPDATE"}, {3, "INTERACTION_CREATE"}, {1, "GUILD_UPDATE"}, {1, "GUILD_EMOJIS_UPDATE"},
		{1, "THREAD_CREATE"}, {0.5, "THREAD_UPDATE"}, {0.5, "THREAD_DELETE"},
	}
	var total float64
	for _, m := range mix {
		total += m.w
	}
	out := make([]*Event, 0, n)
	for len(out) < n {
		x := r.Float64() * total
		t := mix[len(mix)-1].t
		for _, m := range mix {
			if x < m.w {
				t = m.t
				break
			}
			x -= m.w
		}
		gi := first + r.IntN(guilds)
		g := wid(wGuildBase, gi)
		u := gi*20 + r.IntN(20)
		v := r.IntN(1000)
		var d string
		switch t {
		case "MESSAGE_CREATE":
			d = strings.Replace(string(benchMessage), `"guild_id":"41771983423143937"`, `"guild_id":"`+g+`"`, 1)
		case "TYPING_START", "INTERACTION_CREATE":
			d = mustJSON(obj{"guild_id": g, "channel_id": wid(wChannelBase, 1), "user_id": wid(wUserBase, u), "timestamp": 1764050000})
		case "PRESENCE_UPDATE":
			d = mustJSON(wPresence(g, u, []string{"online", "idle", "dnd", "offline"}[r.IntN(4)], true))
		case "GUILD_MEMBER_ADD":
			d = mustJSON(wMember(u, v, nil, g))
		case "GUILD_MEMBER_UPDATE":
			d = mustJSON(obj{"guild_id": g, "user": wUser(u, v), "roles": []string{wid(wRoleBase, v%4)}, "nick": fmt.Sprintf("n%d", v),
				"joined_at": "2024-03-01T12:00:00.000000+00:00", "avatar": nil})
		case "GUILD_MEMBER_REMOVE":
			d = mustJSON(obj{"guild_id": g, "user": wUser(u, v)})
		case "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE":
			d = mustJSON(wChannel(g, 1+r.IntN(4), v, true))
		case "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE":
			d = mustJSON(obj{"guild_id": g, "role": wRole(r.IntN(4), v)})
		case "GUILD_ROLE_DELETE":
			d = mustJSON(obj{"guild_id": g, "role_id": wid(wRoleBase, r.IntN(4))})
		case "VOICE_STATE_UPDATE":
			vs := wVoice(g, u, 1+r.IntN(2), true)
			if r.IntN(3) == 0 {
				vs["channel_id"] = nil
			}
			vs["member"] = wMember(u, v, nil, "")
			d = mustJSON(vs)
		case "GUILD_UPDATE":
			d = mustJSON(obj{"id": g, "name": fmt.Sprintf("renamed %d", v), "features": []string{}, "description": nil})
		case "GUILD_EMOJIS_UPDATE":
			d = mustJSON(obj{"guild_id": g, "emojis": wEmojis(g, r.IntN(3), v)})
		case "THREAD_CREATE", "THREAD_UPDATE":
			d = mustJSON(wThread(g, 1+r.IntN(3), 1+r.IntN(4), v))
		case "THREAD_DELETE":
			d = mustJSON(obj{"id": wid(wThreadBase, 1+r.IntN(3)), "guild_id": g, "parent_id": wid(wChannelBase, 1), "type": 11})
		}
		gid, _ := strconv.ParseUint(g, 10, 64)
		out = append(out, &Event{Bot: "b", Type: t, Data: []byte(d), GuildID: gid})
	}
	return out
}

// BenchmarkRedisPerEvent publishes the live-traffic mix (liveMix, 25
// guilds per shard) from 4 shards through a Publisher on a real
// redis-server, with the cache on and off, and reports what Redis spent
// per event: redis-µs/event (INFO cpu delta, everything the server did) and
// cmd-µs/event (INFO commandstats, command execution only).
func BenchmarkRedisPerEvent(b *testing.B) {
	for _, cache := range []bool{false, true} {
		b.Run(fmt.Sprintf("cache=%v", cache), func(b *testing.B) {
			srv := redistest.Start(b, redistest.Options{})
			c := srv.Client(b)
			cfg := PublisherConfig{Bots: []BotConfig{{Name: "b", Default: StreamConfig{MaxLen: 100000}}}}
			if cache {
				cfg.Cache = newTestCache(b, c, CacheConfig{})
			}
			p, err := NewPublisher(c, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(context.Background())
			ctx := context.Background()
			const shards = 4
			evs := make([][]*Event, shards)
			for s := range shards {
				evs[s] = liveMix(rand.New(rand.NewPCG(uint64(s), 3)), 8192, s*25, 25)
			}
			seqs := make([]int64, shards)
			run := func(count int) {
				var wg sync.WaitGroup
				for s := range shards {
					wg.Go(func() {
						for i := range count {
							ev := *evs[s][i%len(evs[s])]
							seqs[s]++
							ev.Shard, ev.ShardCount, ev.Session, ev.Seq, ev.Received = s, shards, "s", seqs[s], time.Now()
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
			run(2000) // warm up: groups, scripts, the cached world
			if err := c.Do(ctx, c.B().ConfigResetstat().Build()).Error(); err != nil {
				b.Fatal(err)
			}
			cpu0 := float64(redistest.ServerCPU(b, c).Microseconds())
			b.ReportAllocs()
			b.ResetTimer()
			run(max(b.N/shards, 1))
			b.StopTimer()
			n := float64(shards * max(b.N/shards, 1))
			cpu := float64(redistest.ServerCPU(b, c).Microseconds()) - cpu0
			usec, calls := commandUsec(b, c)
			if testing.Verbose() {
				info, _ := c.Do(ctx, c.B().Info().Section("commandstats").Build()).ToString()
				b.Logf("%d events\n%s", int(n), info)
			}
			b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(cpu/n, "redis-µs/event")
			b.ReportMetric(usec/n, "cmd-µs/event")
			b.ReportMetric(float64(calls["evalsha"]+calls["eval"])/n, "scripts/event")
		})
	}
}

// BenchmarkRedisPerEventCacheOnly applies the live-traffic mix (liveMix)
// through Cache.Apply alone in batches of 128 and reports Redis CPU per
// event (INFO cpu delta): the cache's share of BenchmarkRedisPerEvent.
func BenchmarkRedisPerEventCacheOnly(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	c := srv.Client(b)
	cache := newTestCache(b, c, CacheConfig{})
	evs := liveMix(rand.New(rand.NewPCG(1, 3)), 8192, 0, 25)
	ctx := context.Background()
	before := make([][]byte, 128)
	batch := func(i int) {
		at := (i * 128) % len(evs)
		if err := cache.Apply(ctx, evs[at:at+128], before); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 64 {
		batch(i)
	}
	cpu0 := float64(redistest.ServerCPU(b, c).Microseconds())
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		batch(i)
	}
	b.StopTimer()
	n := float64(b.N * 128)
	b.ReportMetric((float64(redistest.ServerCPU(b, c).Microseconds())-cpu0)/n, "redis-µs/event")
	b.ReportMetric(n/b.Elapsed().Seconds(), "events/s")
}
