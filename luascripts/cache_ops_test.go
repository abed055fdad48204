package luascripts

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
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
				o.Add(CacheOpUser("n:{u1}:users", CacheUserJoin, "1", "7", `{"username":"u"}`))
				o.Add(CacheOpUser("n:{u1}:users", CacheUserUpdate, "1", "", `{"id":"1","username":"v","avatar":null}`))
				o.Add(CacheOpUser("n:{u1}:users", CacheUserJoin, "1", "8", ``))
				o.Add(CacheOpUser("n:{u1}:users", CacheUserJoin, "1", "8", ``))
				o.Add(CacheOpUser("n:{u1}:users", CacheUserLeave, "1", "7", ``))
			})...)
			want := []string{"<none>", `{"id":"5","name":"a"}`, "", "<none>", `{"nick":null,"deaf":false}`, "<none>", `{"id":"5","name":"b"}`,
				"<none>", `{"username":"u"}`, `{"username":"v"}`, `{"username":"v"}`, `{"username":"v"}`}
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
			// The merge stores the member compact: roles [] and deaf false are
			// Discord's defaults.
			if got := hget(mem, "1"); got != `{"nick":"x"}` {
				t.Errorf("member after merge = %s", got)
			}
			if got := hget("n:{u1}:users", "1"); got != `8{"username":"v"}` {
				t.Errorf("user entry = %s, want guild 8 and the user without id and avatar", got)
			}
			if got := hget(ch, "5"); got != "<none>" {
				t.Errorf("channel after delete = %s", got)
			}
			r = do(func(o *CacheTx) { o.Add(CacheOpMember(mem, pres, CacheMemberRemove, "1", "")) })
			do(func(o *CacheTx) { o.Add(CacheOpUser("n:{u1}:users", CacheUserLeave, "1", "8", ``)) })
			if got := before(r[0]); got != `{"nick":"x"}` {
				t.Errorf("remove: before %s", got)
			}
			if hget(mem, "1") != "<none>" || hget(pres, "1") != "<none>" {
				t.Error("member remove left the member or its presence")
			}
			if n, err := client.Do(ctx, client.B().Exists().Key("n:{u1}:users").Build()).AsInt64(); err != nil || n != 0 {
				t.Errorf("user in no guild: its bucket is left (%d, %v)", n, err)
			}
		})
	}
}

// cacheClients is a client of a real Redis and one of miniredis, each
// with the cache scripts loaded.
func cacheClients(t *testing.T) map[string]rueidis.Client {
	t.Helper()
	m := miniredis.RunT(t)
	mc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	clients := map[string]rueidis.Client{
		"redis":     redistest.Start(t, redistest.Options{}).Client(t),
		"miniredis": mc,
	}
	for name, c := range clients {
		if err := LoadCacheScripts(context.Background(), c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	return clients
}

// runOps applies ops as one CacheTx (script or transaction) and returns
// one reply per operation.
func runOps(t *testing.T, client rueidis.Client, script bool, ops ...CacheOp) []rueidis.RedisMessage {
	t.Helper()
	o := CacheTx{Script: script}
	for _, op := range ops {
		o.Add(op)
	}
	res := client.DoMulti(context.Background(), o.Build(client.B())...)
	for _, r := range res[:len(res)-1] {
		if err := r.Error(); err != nil {
			t.Fatalf("queue command: %v", err)
		}
	}
	r, err := o.Parse(res[len(res)-1])
	if err != nil {
		t.Fatal(err)
	}
	if len(r) != len(ops) {
		t.Fatalf("%d replies for %d operations", len(r), len(ops))
	}
	return r
}

// dump reads every key of client as text, for comparing whole states.
func dump(t *testing.T, client rueidis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := client.Do(ctx, client.B().Keys().Pattern("*").Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		typ, err := client.Do(ctx, client.B().Type().Key(k).Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		var v string
		switch typ {
		case "string":
			v, err = client.Do(ctx, client.B().Get().Key(k).Build()).ToString()
		case "hash":
			var m map[string]string
			m, err = client.Do(ctx, client.B().Hgetall().Key(k).Build()).AsStrMap()
			v = fmt.Sprint(m) // fmt sorts map keys
		case "set":
			var s []string
			s, err = client.Do(ctx, client.B().Smembers().Key(k).Build()).AsStrSlice()
			sort.Strings(s)
			v = fmt.Sprint(s)
		default:
			t.Fatalf("key %s of type %s", k, typ)
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		out[k] = typ + " " + v
	}
	return out
}

func forModes(t *testing.T, f func(t *testing.T, client rueidis.Client, script bool)) {
	for name, client := range cacheClients(t) {
		for _, script := range []bool{true, false} {
			t.Run(name+"/"+map[bool]string{true: "script", false: "transaction"}[script], func(t *testing.T) {
				if err := client.Do(context.Background(), client.B().Flushall().Build()).Error(); err != nil {
					t.Fatal(err)
				}
				f(t, client, script)
			})
		}
	}
}

// TestCacheOpsWrongType: every operation whose key (any key of its KEYS
// slice it writes) holds the wrong Redis type replies that error, and the
// operations around it in the same call still apply. As a script, an
// operation refused at its first call changes nothing (one refused later,
// like member remove's presences, keeps what it did before); in a
// transaction its other commands run regardless, so the broker takes no
// before image from a failed operation.
func TestCacheOpsWrongType(t *testing.T) {
	const (
		hash, str, set = "n:{g}:channels", "n:{g}:str", "n:{g}:set"
	)
	bad := []struct {
		name    string
		op      CacheOp
		partial bool // a write before the refused call stays, even as a script
	}{
		{"entity set on a string", CacheOpEntitySet(str, "1", `{}`), false},
		{"entity del on a string", CacheOpEntityDel(str, "1"), false},
		{"member set on a string", CacheOpMember(str, hash, CacheMemberSet, "1", `{}`), false},
		{"member merge on a string", CacheOpMemberMerge(str, "1", `{"a":1}`, `"a"`), false},
		{"member remove on a string", CacheOpMember(str, hash, CacheMemberRemove, "1", ""), false},
		{"member remove, presences a string", CacheOpMember(hash, str, CacheMemberRemove, "1", ""), true},
		{"list set on a hash", CacheOpListSet(hash, `[]`), false},
		{"user join on a string", CacheOpUser(str, CacheUserJoin, "1", "7", `{}`), false},
		{"user join on a set", CacheOpUser(set, CacheUserJoin, "1", "7", `{}`), false},
		{"user leave on a string", CacheOpUser(str, CacheUserLeave, "1", "7", ""), false},
		{"user update on a string", CacheOpUser(str, CacheUserUpdate, "1", "", `{"a":1}`), false},
		{"user update on a set", CacheOpUser(set, CacheUserUpdate, "1", "", `{"a":1}`), false},
	}
	forModes(t, func(t *testing.T, client rueidis.Client, script bool) {
		ctx := context.Background()
		for _, c := range bad {
			for _, cmd := range []rueidis.Completed{
				client.B().Flushall().Build(),
				client.B().Set().Key(str).Value("junk").Build(),
				client.B().Hset().Key(hash).FieldValue().FieldValue("1", `{"id":"1"}`).Build(),
				client.B().Sadd().Key(set).Member("x").Build(),
			} {
				if err := client.Do(ctx, cmd).Error(); err != nil {
					t.Fatal(err)
				}
			}
			was := dump(t, client)
			r := runOps(t, client, script,
				CacheOpListSet("n:{g}:emojis", `["a"]`),
				c.op,
				CacheOpListSet("n:{g}:stickers", `["b"]`))
			if err := r[1].Error(); err == nil || rueidis.IsRedisNil(err) || !strings.Contains(err.Error(), "WRONGTYPE") {
				t.Errorf("%s: reply %v, want a WRONGTYPE error", c.name, err)
			}
			for _, i := range []int{0, 2} {
				if _, ok, err := ParseCacheOpBefore(&r[i]); ok || err != nil {
					t.Errorf("%s: neighbour %d replied %v %v", c.name, i, ok, err)
				}
			}
			got := dump(t, client)
			if got["n:{g}:emojis"] != `string ["a"]` || got["n:{g}:stickers"] != `string ["b"]` {
				t.Errorf("%s: neighbours not applied: %v", c.name, got)
			}
			delete(got, "n:{g}:emojis")
			delete(got, "n:{g}:stickers")
			if script && !c.partial && !reflect.DeepEqual(got, was) {
				t.Errorf("%s changed keys: %v, was %v", c.name, got, was)
			}
		}
	})
}

// TestCacheOpsUnknownCode: cache_ops.lua refuses an op code it does not
// know, naming it.
func TestCacheOpsUnknownCode(t *testing.T) {
	for name, client := range cacheClients(t) {
		var o CacheOps
		o.Add(CacheOp{code: "zz", k1: "n:{g}:x", a: [4]string{"1"}, na: 1})
		err := client.Do(context.Background(), o.Build(client.B())).Error()
		if err == nil || !strings.Contains(err.Error(), "unknown op zz") {
			t.Errorf("%s: %v, want unknown op zz", name, err)
		}
	}
}

// TestCacheOpsIdempotent: a sequence of every operation applied twice
// leaves the keys it leaves applied once, and its second pass replies the
// objects the first one left.
func TestCacheOpsIdempotent(t *testing.T) {
	const (
		ch, mem, pres, emo = "n:{g}:channels", "n:{g}:members", "n:{g}:presences", "n:{g}:emojis"
		u1, u2             = "n:{u1}:users", "n:{u2}:users"
	)
	guildOps := []CacheOp{
		CacheOpEntitySet(ch, "5", `{"id":"5","name":"a"}`),
		CacheOpEntitySet(ch, "6", `{"id":"6"}`),
		CacheOpEntityDel(ch, "6"),
		CacheOpEntitySet(pres, "1", `{"status":"idle"}`),
		CacheOpEntitySet(pres, "2", `{"status":"dnd"}`),
		CacheOpMember(mem, pres, CacheMemberSet, "1", `{"nick":null,"roles":[]}`),
		CacheOpMemberMerge(mem, "1", `{"nick":"x"}`, `"nick"`),
		CacheOpMember(mem, pres, CacheMemberMerge, "3", `{"nick":"y"}`),
		CacheOpMember(mem, pres, CacheMemberSet, "2", `{"nick":"z"}`),
		CacheOpMember(mem, pres, CacheMemberRemove, "2", ""),
		CacheOpListSet(emo, `[{"id":"9","name":"e"}]`),
	}
	userOps := [][]CacheOp{{
		CacheOpUser(u1, CacheUserJoin, "1", "7", `{"username":"u"}`),
		CacheOpUser(u1, CacheUserJoin, "1", "8", ""),
		CacheOpUser(u1, CacheUserUpdate, "1", "", `{"id":"1","username":"v"}`),
		CacheOpUser(u1, CacheUserLeave, "1", "8", ""),
	}, {
		CacheOpUser(u2, CacheUserJoin, "2", "7", `{}`),
		CacheOpUser(u2, CacheUserLeave, "2", "7", ""),
		CacheOpUser(u2, CacheUserUpdate, "2", "", `{"username":"w"}`),
	}}
	forModes(t, func(t *testing.T, client rueidis.Client, script bool) {
		apply := func() []string {
			var befores []string
			for _, ops := range append([][]CacheOp{guildOps}, userOps...) {
				for _, m := range runOps(t, client, script, ops...) {
					s, ok, err := ParseCacheOpBefore(&m)
					if err != nil {
						t.Fatal(err)
					}
					if !ok {
						s = "<none>"
					}
					befores = append(befores, s)
				}
			}
			return befores
		}
		apply()
		once := dump(t, client)
		second := apply()
		if twice := dump(t, client); !reflect.DeepEqual(twice, once) {
			t.Errorf("applied twice:\n%v\napplied once:\n%v", twice, once)
		}
		want := map[string]string{
			ch:   `hash map[5:{"id":"5","name":"a"}]`,
			pres: `hash map[1:{"status":"idle"}]`,
			mem:  `hash map[1:{"nick":"x","roles":[]} 3:{"nick":"y"}]`,
			emo:  `string [{"id":"9","name":"e"}]`,
			u1:   `hash map[1:7{"username":"v"}]`,
		}
		if !reflect.DeepEqual(once, want) {
			t.Errorf("state:\n%v\nwant:\n%v", once, want)
		}
		// The second pass sees what the first left: the channel it set, the
		// member it merged, ...; what the first removed is gone again.
		wantSecond := []string{
			`{"id":"5","name":"a"}`, "<none>", `{"id":"6"}`, `{"status":"idle"}`, "<none>",
			`{"nick":"x","roles":[]}`, `{"nick":null,"roles":[]}`, `{"nick":"y"}`, "<none>", `{"nick":"z"}`,
			`[{"id":"9","name":"e"}]`,
			`{"username":"v"}`, `{"username":"u"}`, `{"username":"u"}`, `{"username":"v"}`,
			"<none>", `{}`, "<none>",
		}
		if !reflect.DeepEqual(second, wantSecond) {
			t.Errorf("second pass befores:\n%q\nwant:\n%q", second, wantSecond)
		}
	})
}

// TestCacheOpsJSONRoundTrip: what the operations store and reply keeps
// JSON byte for byte — snowflakes beyond 2^53 stay strings, numbers keep
// their digits, empty arrays stay [] and empty objects {}, unicode and
// escapes intact — including through the merges, which rewrite objects.
func TestCacheOpsJSONRoundTrip(t *testing.T) {
	const (
		ch, mem, emo, user = "n:{g}:channels", "n:{g}:members", "n:{g}:emojis", "n:{u}:users"
		obj                = `{"id":"1234567890123456789","n":12345678901234567890,"roles":[],"o":{},"t":"ü🎉\u00e9\"}{","f":-1.5e+300}`
		list               = `[]`
	)
	forModes(t, func(t *testing.T, client rueidis.Client, script bool) {
		runOps(t, client, script,
			CacheOpEntitySet(ch, "1234567890123456789", obj),
			CacheOpMember(mem, "", CacheMemberSet, "1234567890123456789", obj),
			CacheOpListSet(emo, list))
		runOps(t, client, script, CacheOpUser(user, CacheUserJoin, "1234567890123456789", "77", obj))
		r := runOps(t, client, script,
			CacheOpEntityDel(ch, "1234567890123456789"),
			CacheOpMemberMerge(mem, "1234567890123456789", `{"nick":"ñ","x":[]}`, `"nick""x"`),
			CacheOpListSet(emo, `[{"id":"9007199254740993"}]`))
		r = append(r, runOps(t, client, script, CacheOpUser(user, CacheUserUpdate, "1234567890123456789", "", `{"g":[],"s":"9007199254740993"}`))...)
		for i, want := range []string{obj, obj, list, obj} {
			if got, ok, err := ParseCacheOpBefore(&r[i]); err != nil || !ok || got != want {
				t.Errorf("op %d: before %s %v %v, want %s", i, got, ok, err, want)
			}
		}
		got := dump(t, client)
		if got[emo] != `string [{"id":"9007199254740993"}]` || !strings.HasPrefix(got[user], "hash map[1234567890123456789:77{") || len(got) != 3 {
			t.Errorf("state: %v", got)
		}
		// A merge keeps every member's text as it was; only their order is
		// the merge's. A user is stored without its id.
		objMembers := []string{`"n":12345678901234567890`, `"roles":[]`, `"o":{}`, `"t":"ü🎉\u00e9\"}{"`, `"f":-1.5e+300`}
		for _, c := range []struct{ js, prefix, more string }{
			{got[mem], "hash map[1234567890123456789:", `"nick":"ñ" "x":[] "id":"1234567890123456789"`},
			{got[user], "hash map[1234567890123456789:77", `"g":[] "s":"9007199254740993"`},
		} {
			js := strings.TrimSuffix(strings.TrimPrefix(c.js, c.prefix), "]")
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(js), &m); err != nil {
				t.Errorf("merged %s: %v", js, err)
				continue
			}
			members := append(strings.Fields(c.more), objMembers...)
			if len(m) != len(members) {
				t.Errorf("merged %s has %d members, want %d", js, len(m), len(members))
			}
			for _, member := range members {
				if !strings.Contains(js, member) {
					t.Errorf("merged %s lacks %s", js, member)
				}
			}
		}
	})
}

// TestCacheMemberChunk: cache_member_chunk.lua stores every member and
// presence of a chunk byte for byte and replies nil; a second run leaves
// the same keys; a wrong-type key is an error.
func TestCacheMemberChunk(t *testing.T) {
	const mem, pres = "n:{g}:members", "n:{g}:presences"
	ms := make([]CacheField, 1000) // more than one HSET slice
	for i := range ms {
		ms[i] = CacheField{ID: fmt.Sprint(900719925474099300 + i), JSON: fmt.Sprintf(`{"nick":"ü%d","roles":[]}`, i)}
	}
	ps := []CacheField{{ID: "900719925474099300", JSON: `{"status":"online","activities":[]}`}}
	for name, client := range cacheClients(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for range 2 {
				r := client.Do(ctx, CacheMemberChunk(client.B(), mem, pres, ms, ps))
				if err := r.Error(); !rueidis.IsRedisNil(err) {
					t.Fatalf("reply %v, want nil", err)
				}
				got, err := client.Do(ctx, client.B().Hgetall().Key(mem).Build()).AsStrMap()
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(ms) {
					t.Fatalf("%d members cached, want %d", len(got), len(ms))
				}
				for _, f := range ms {
					if got[f.ID] != f.JSON {
						t.Fatalf("member %s = %s, want %s", f.ID, got[f.ID], f.JSON)
					}
				}
				p, err := client.Do(ctx, client.B().Hgetall().Key(pres).Build()).AsStrMap()
				if err != nil || !reflect.DeepEqual(p, map[string]string{ps[0].ID: ps[0].JSON}) {
					t.Fatalf("presences %v (%v)", p, err)
				}
			}
			// No presences, and members only.
			if err := client.Do(ctx, CacheMemberChunk(client.B(), mem, pres, ms[:1], nil)).Error(); !rueidis.IsRedisNil(err) {
				t.Fatalf("members only: %v", err)
			}
			if err := client.Do(ctx, client.B().Set().Key(pres).Value("junk").Build()).Error(); err != nil {
				t.Fatal(err)
			}
			if err := client.Do(ctx, CacheMemberChunk(client.B(), mem, pres, ms[:1], ps)).Error(); err == nil || rueidis.IsRedisNil(err) {
				t.Error("presences key of the wrong type: no error")
			}
		})
	}
}

// TestCacheOpsSource: the cache_ops script is the operations' files in
// order, then the dispatch loop, after the shared helpers.
func TestCacheOpsSource(t *testing.T) {
	src := CacheOpsScript.Source()
	at := 0
	for _, part := range []string{cacheJSON, cacheOpEntitySrc, cacheOpMemberSrc, cacheOpListSrc, cacheOpUserSrc, cacheOpsSrc} {
		i := strings.Index(src[at:], part)
		if i < 0 {
			t.Fatalf("part starting %.40q missing or out of order", part)
		}
		at += i + len(part)
	}
	if at != len(src) {
		t.Errorf("%d bytes after the dispatch loop", len(src)-at)
	}
}

// TestCacheOpsMemberMergeNamed: a merge with keys drops every cached
// member the keys name, also those the compact JSON left out as defaults,
// whether or not the cached member can be scanned fast (a backslash sends
// it the general way); without keys the merge drops the defaults itself.
func TestCacheOpsMemberMergeNamed(t *testing.T) {
	const mem = "n:{g}:members"
	forModes(t, func(t *testing.T, client rueidis.Client, script bool) {
		ctx := context.Background()
		for _, c := range []struct{ old, json, keys, want string }{
			{`{"nick":"a","deaf":true,"joined_at":"t"}`, `{}`, `"nick""deaf"`, `{"joined_at":"t"}`},
			{`{"nick":"a\"b","deaf":true,"joined_at":"t"}`, `{"mute":true}`, `"nick""deaf""mute"`, `{"mute":true,"joined_at":"t"}`},
			{`{"nick":"a\"b","joined_at":"t"}`, `{"nick":"c\\d"}`, `"nick"`, `{"nick":"c\\d","joined_at":"t"}`},
			{`{"nick":"a","joined_at":"t"}`, `{"nick":null,"roles":[],"avatar":"x"}`, ``, `{"avatar":"x","joined_at":"t"}`},
		} {
			if err := client.Do(ctx, client.B().Hset().Key(mem).FieldValue().FieldValue("1", c.old).Build()).Error(); err != nil {
				t.Fatal(err)
			}
			runOps(t, client, script, CacheOpMemberMerge(mem, "1", c.json, c.keys))
			got, err := client.Do(ctx, client.B().Hget().Key(mem).Field("1").Build()).ToString()
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("merge %s over %s (keys %s) = %s, want %s", c.json, c.old, c.keys, got, c.want)
			}
		}
	})
}
