package broker

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/keyspace"
	"github.com/feathery/feathery/broker/redistest"
)

// TestCacheUserBuckets: users whose ids end in the same three digits share
// one hash and keep separate lives in it — memberships counted per user,
// a user gone from its last guild deleted alone, the hash gone with its
// last user — on a single Redis and on Redis Cluster.
func TestCacheUserBuckets(t *testing.T) {
	for name, client := range map[string]rueidis.Client{
		"redis":   redistest.Start(t, redistest.Options{}).Client(t),
		"cluster": redistest.StartCluster(t, 3).Client(t),
	} {
		t.Run(name, func(t *testing.T) { testCacheUserBuckets(t, client) })
	}
}

func testCacheUserBuckets(t *testing.T, client rueidis.Client) {
	ctx := context.Background()
	c := newTestCache(t, client, CacheConfig{Namespace: "ub"})
	k := NewCacheKeys("ub")
	a, b := 7, 1007 // 800000000000000008 and 800000000000001008: bucket 008
	ua, ub := wid(wUserBase, a), wid(wUserBase, b)
	if k.CacheUsers(ua) != k.CacheUsers(ub) || k.CacheUsers(ua) != "ub:{u008}:users" {
		t.Fatalf("buckets %s %s", k.CacheUsers(ua), k.CacheUsers(ub))
	}
	g1, g2 := wid(wGuildBase, 1), wid(wGuildBase, 2)
	apply(t, c,
		ev("a", "GUILD_CREATE", wGuildCreate(1, 0, []int{a, b}, false)),
		ev("a", "GUILD_CREATE", wGuildCreate(2, 0, []int{a}, false)))
	// A chunk of g2 adds b; chunked again, nothing changes.
	chunk := mustJSON(obj{"guild_id": g2, "members": []any{wMember(b, 0, nil, "")}})
	apply(t, c, ev("a", "GUILD_MEMBERS_CHUNK", chunk))
	apply(t, c, ev("a", "GUILD_MEMBERS_CHUNK", chunk))
	for _, uid := range []string{ua, ub} {
		if got := userGuilds(t, client, k, uid); !slices.Equal(got, []string{g1, g2}) {
			t.Errorf("mutual guilds of %s = %v, want [g1 g2]", uid, got)
		}
	}
	// The entry: guild ids ascending, then the user without id and
	// defaults; the member without user and defaults.
	if e, _ := hget(t, client, k.CacheUsers(ub), ub); e != g1+","+g2+`{"bot":false,"global_name":"Ünïcødé 🎉 1007.0","username":"user1007"}` {
		t.Errorf("entry of %s = %s", ub, e)
	}
	if m, _ := hget(t, client, k.CacheMembers(g2), ub); m != `{"joined_at":"2024-03-01T12:00:00.000000+00:00"}` {
		t.Errorf("member %s of g2 = %s", ub, m)
	}

	// b leaves g2, then g1 is deleted: b is in no guild and goes, a stays
	// with g2 in the same hash.
	apply(t, c, ev("a", "GUILD_MEMBER_REMOVE", mustJSON(obj{"guild_id": g2, "user": wUser(b, 0)})))
	if got := userGuilds(t, client, k, ub); !slices.Equal(got, []string{g1}) {
		t.Errorf("after leaving g2, mutual guilds of b = %v", got)
	}
	apply(t, c, ev("a", "GUILD_DELETE", `{"id":"`+g1+`"}`))
	if _, _, ok := cachedUser(t, client, k, ub); ok {
		t.Error("b, in no cached guild, still has an entry")
	}
	if got := userGuilds(t, client, k, ua); !slices.Equal(got, []string{g2}) {
		t.Errorf("a's mutual guilds after g1 went = %v, want [g2]", got)
	}
	if u, ok := getUser(t, client, k, ua); !ok || !strings.Contains(u, `"id":"`+ua+`"`) {
		t.Errorf("a after g1 went: %s %v", u, ok)
	}
	// USER_UPDATE of a: merged, stored compact, memberships kept.
	upd := wUser(a, 3)
	upd["avatar"] = "0123456789abcdef0123456789abcdef"
	apply(t, c, ev("a", "USER_UPDATE", mustJSON(upd)))
	if e, _ := hget(t, client, k.CacheUsers(ua), ua); !strings.HasPrefix(e, g2+`{`) || !strings.Contains(e, `"avatar":"0123456789abcdef0123456789abcdef"`) || strings.Contains(e, `"id"`) {
		t.Errorf("entry of a after USER_UPDATE = %s", e)
	}
	// a leaves g2: the bucket's last user, the hash goes.
	apply(t, c, ev("a", "GUILD_MEMBER_REMOVE", mustJSON(obj{"guild_id": g2, "user": wUser(a, 3)})))
	if n, err := client.Do(ctx, client.B().Exists().Key(k.CacheUsers(ua)).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("bucket after its last user left: exists %d (%v)", n, err)
	}
	if got := dumpCache(t, client, "ub"); len(got) == 0 {
		t.Error("g2 itself should still be cached")
	} else {
		for key := range got {
			if strings.Contains(key, "{u") {
				t.Errorf("user key %s left", key)
			}
		}
	}
}

// TestCacheCompactWithoutUsers: with users not cached, a member keeps its
// user inline and is still stored without its defaults; the before image
// puts them back.
func TestCacheCompactWithoutUsers(t *testing.T) {
	client := realRedis(t).client
	c := newTestCache(t, client, CacheConfig{Namespace: "nu", Bots: map[string]CacheBotConfig{"a": {Entities: []string{"guilds", "members"}}}})
	k := NewCacheKeys("nu")
	g := wid(wGuildBase, 0)
	apply(t, c, ev("a", "GUILD_MEMBER_ADD", mustJSON(wMember(3, 0, nil, g))))
	m, _ := hget(t, client, k.CacheMembers(g), wid(wUserBase, 3))
	if strings.Contains(m, `"nick"`) || strings.Contains(m, `"guild_id"`) || !strings.Contains(m, `"user":{`) || !strings.Contains(m, `"id":"`+wid(wUserBase, 3)+`"`) {
		t.Errorf("member = %s", m)
	}
	b := apply(t, c, ev("a", "GUILD_MEMBER_UPDATE", mustJSON(wMember(3, 1, nil, g))))
	want, err := keyspace.ExpandMember([]byte(without(mustJSON(wMember(3, 0, nil, "")), "user")), []byte(mustJSON(wUser(3, 0))))
	if err != nil {
		t.Fatal(err)
	}
	wantJSON(t, "before image", string(b[0]), string(want))
	if _, _, ok := cachedUser(t, client, k, wid(wUserBase, 3)); ok {
		t.Error("a user entry without the users entity")
	}
}
