package luascripts

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// BenchmarkCacheOpsScript runs cache_ops.lua calls of 16 operations each
// (channel set and delete, member set and merge, presence set, emoji list
// set, user join, update and leave) on a real Redis and reports the time
// Redis spent running the script per operation (INFO commandstats, EVALSHA
// usec), the cost the script's source layout could change.
func BenchmarkCacheOpsScript(b *testing.B) {
	client := redistest.Start(b, redistest.Options{}).Client(b)
	ctx := context.Background()
	if err := LoadCacheScripts(ctx, client); err != nil {
		b.Fatal(err)
	}
	const (
		ch, mem, pres, emo = "n:{g}:channels", "n:{g}:members", "n:{g}:presences", "n:{g}:emojis"
		user               = "n:{g}:users"
	)
	member := `{"nick":"n","roles":["123456789012345678","223456789012345678"],"joined_at":"2024-01-01T00:00:00.000000+00:00","deaf":false,"mute":false,"flags":0,"avatar":null}`
	var o CacheOps
	build := func(i int) rueidis.Completed {
		o.Reset()
		id := strconv.Itoa(i % 1000)
		o.Add(CacheOpEntitySet(ch, id, `{"id":"`+id+`","type":0,"name":"general","position":3,"permission_overwrites":[]}`))
		o.Add(CacheOpEntitySet(ch, id, `{"id":"`+id+`","type":0,"name":"renamed","position":3,"permission_overwrites":[]}`))
		o.Add(CacheOpEntityDel(ch, id))
		o.Add(CacheOpMember(mem, pres, CacheMemberSet, id, member))
		o.Add(CacheOpMemberMerge(mem, id, `{"nick":"m","roles":[]}`, `"nick""roles"`))
		o.Add(CacheOpMember(mem, pres, CacheMemberMerge, id, `{"avatar":"a"}`))
		o.Add(CacheOpEntitySet(pres, id, `{"status":"online","activities":[],"client_status":{"desktop":"online"}}`))
		o.Add(CacheOpListSet(emo, `[{"id":"1","name":"e","roles":[],"animated":false}]`))
		o.Add(CacheOpUser(user, CacheUserJoin, id, "7", `{"username":"u"}`))
		o.Add(CacheOpUser(user, CacheUserJoin, id, "8", ""))
		o.Add(CacheOpUser(user, CacheUserUpdate, id, "", `{"username":"v"}`))
		o.Add(CacheOpUser(user, CacheUserLeave, id, "8", ""))
		o.Add(CacheOpEntitySet(ch, "x"+id, `{}`))
		o.Add(CacheOpEntityDel(ch, "x"+id))
		o.Add(CacheOpMember(mem, pres, CacheMemberRemove, id, ""))
		o.Add(CacheOpListSet(emo, `[]`))
		return o.Build(client.B())
	}
	usec := func() float64 {
		info, err := client.Do(ctx, client.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.SplitSeq(info, "\n") {
			if !strings.HasPrefix(line, "cmdstat_evalsha:") {
				continue
			}
			for kv := range strings.SplitSeq(strings.TrimSpace(strings.TrimPrefix(line, "cmdstat_evalsha:")), ",") {
				if v, ok := strings.CutPrefix(kv, "usec="); ok {
					x, _ := strconv.ParseFloat(v, 64)
					return x
				}
			}
		}
		return 0
	}
	if err := client.Do(ctx, client.B().ConfigResetstat().Build()).Error(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := ParseCacheOps(client.Do(ctx, build(i)), 16); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(usec()/float64(b.N*16), "redis-µs/op")
}
