package luascripts

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// TestCacheOps runs every single-object operation in one cache_ops.lua
// call, and in one transaction (CacheTx: plain commands and cache_ops
// calls), on a real Redis and on miniredis: each replies the object cached
// before it, applies in order, and one refused by Redis (a key of the wrong
// type) replies an error while the operations around it still apply.
func TestCacheOps(t *testing.T) {
	for _, script := range []bool{true, false} {
		t.Run(map[bool]string{true: "script", false: "transaction"}[script], func(t *testing.T) { testCacheOps(t, script) })
	}
}

func testCacheOps(t *testing.T, script bool) {
	m := miniredis.RunT(t)
	mc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	for name, client := range map[string]rueidis.Client{
		"redis":     redistest.Start(t, redistest.Options{}).Client(t),
		"miniredis": mc,
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if err := LoadCacheScripts(ctx, client); err != nil {
				t.Fatal(err)
			}
			const (
				ch, mem, pres, emo, bad = "n:{g}:channels", "n:{g}:members", "n:{g}:presences", "n:{g}:emojis", "n:{g}:roles"
			)
			do := func(build func(o *CacheTx)) []rueidis.RedisMessage {
				t.Helper()
				o := CacheTx{Script: script}
				build(&o)
				cmds := o.Build(client.B())
				res := client.DoMulti(ctx, cmds...)
				r, err := o.Parse(res[len(res)-1])
				if err != nil {
					t.Fatal(err)
				}
				if len(r) != o.Len() {
					t.Fatalf("%d replies for %d operations", len(r), o.Len())
				}
				return r
			}
			before := func(m rueidis.RedisMessage) string {
				t.Helper()
				s, ok, err := ParseCacheOpBefore(&m)
				if err != nil {
					t.Fatalf("reply: %v", err)
				}
				if !ok {
					return "<none>"
				}
				return s
			}
			if err := client.Do(ctx, client.B().Set().Key(bad).Value("junk").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			if err := client.Do(ctx, client.B().Hset().Key(pres).FieldValue().FieldValue("1", `{"status":"idle"}`).Build()).Error(); err != nil {
				t.Fatal(err)
			}
			r := do(func(o *CacheTx) {
				o.Add(CacheOpEntitySet(ch, "5", `{"id":"5","name":"a"}`))
				o.Add(CacheOpEntitySet(ch, "5", `{"id":"5","name":"b"}`))
				o.Add(CacheOpEntitySet(bad, "9", `{}`))
				o.Add(CacheOpMember(mem, pres, CacheMemberSet, "1", `{"nick":null,"deaf":false}`))
				o.Add(CacheOpMember(mem, pres, CacheMemberMerge, "1", `{"nick":"x","roles":[]}`))
				o.Add(CacheOpListSet(emo, `[]`))
				o.Add(CacheOpEntityDel(ch, "5"))
			})
			// One user's keys: a call of their own on Redis Cluster.
			r = append(r, do(func(o *CacheTx) {
				o.Add(CacheOpUser("n:{u1}:user", "n:{u1}:guilds", CacheUserJoin, "7", `{"id":"1","username":"u"}`))
				o.Add(CacheOpUser("n:{u1}:user", "n:{u1}:guilds", CacheUserUpdate, "", `{"username":"v"}`))
				o.Add(CacheOpUser("n:{u1}:user", "n:{u1}:guilds", CacheUserJoin, "8", ``))
				o.Add(CacheOpUser("n:{u1}:user", "n:{u1}:guilds", CacheUserLeave, "7", ``))
			})...)
			want := []string{"<none>", `{"id":"5","name":"a"}`, "", "<none>", `{"nick":null,"deaf":false}`, "<none>", `{"id":"5","name":"b"}`,
				"<none>", `{"id":"1","username":"u"}`, `{"username":"v","id":"1"}`, `{"username":"v","id":"1"}`}
			for i, w := range want {
				if i == 2 {
					if err := r[i].Error(); err == nil {
						t.Errorf("op %d on a string key: no error", i)
					}
					continue
				}
				if got := before(r[i]); got != w {
					t.Errorf("op %d: before %s, want %s", i, got, w)
				}
			}
			hget := func(k, f string) string {
				v, err := client.Do(ctx, client.B().Hget().Key(k).Field(f).Build()).ToString()
				if rueidis.IsRedisNil(err) {
					return "<none>"
				}
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			if got := hget(mem, "1"); got != `{"nick":"x","roles":[],"deaf":false}` {
				t.Errorf("member after merge = %s", got)
			}
			if got := hget(ch, "5"); got != "<none>" {
				t.Errorf("channel after delete = %s", got)
			}
			r = do(func(o *CacheTx) { o.Add(CacheOpMember(mem, pres, CacheMemberRemove, "1", "")) })
			do(func(o *CacheTx) { o.Add(CacheOpUser("n:{u1}:user", "n:{u1}:guilds", CacheUserLeave, "8", ``)) })
			if got := before(r[0]); got != `{"nick":"x","roles":[],"deaf":false}` {
				t.Errorf("remove: before %s", got)
			}
			if hget(mem, "1") != "<none>" || hget(pres, "1") != "<none>" {
				t.Error("member remove left the member or its presence")
			}
			if n, err := client.Do(ctx, client.B().Exists().Key("n:{u1}:user", "n:{u1}:guilds").Build()).AsInt64(); err != nil || n != 0 {
				t.Errorf("user in no guild: %d keys left (%v)", n, err)
			}
		})
	}
}
