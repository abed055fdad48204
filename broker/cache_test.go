package broker

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/keyspace"
	"github.com/feathery/feathery/broker/redistest"
)

// cacheBackend is a Redis a cache test runs against.
type cacheBackend struct {
	name   string
	client rueidis.Client
}

func realRedis(t *testing.T) cacheBackend {
	t.Helper()
	return cacheBackend{"redis", redistest.Start(t, redistest.Options{}).Client(t)}
}

func miniRedis(t *testing.T) cacheBackend {
	t.Helper()
	m := miniredis.RunT(t)
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatalf("connect to miniredis: %v", err)
	}
	t.Cleanup(c.Close)
	return cacheBackend{"miniredis", c}
}

func newTestCache(t testing.TB, client rueidis.Client, cfg CacheConfig) *Cache {
	t.Helper()
	c, err := NewCache(client, cfg)
	if err != nil {
		t.Fatalf("NewCache: %v", err)
	}
	return c
}

func toEvents(bot string, list []wEvent) []*Event {
	out := make([]*Event, len(list))
	for i, e := range list {
		out[i] = &Event{Bot: bot, Shard: 0, ShardCount: 1, Session: "s", Seq: int64(i + 1), Type: e.T,
			Data: []byte(e.D), Received: time.Now()}
	}
	return out
}

// apply applies evs as one batch and returns the before images.
func apply(t testing.TB, c *Cache, evs ...*Event) [][]byte {
	t.Helper()
	before := make([][]byte, len(evs))
	if err := c.Apply(context.Background(), evs, before); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return before
}

func ev(bot, typ, data string) *Event {
	return &Event{Bot: bot, Type: typ, Data: []byte(data), Seq: 1}
}

// dumpCache reads every key under ns on every node: key (namespace cut
// off) -> canonical value.
func dumpCache(t testing.TB, client rueidis.Client, ns string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for addr, node := range client.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(ns+":*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatalf("scan %s: %v", addr, err)
			}
			for _, k := range e.Elements {
				typ, err := node.Do(ctx, node.B().Type().Key(k).Build()).ToString()
				if err != nil {
					t.Fatalf("type %s: %v", k, err)
				}
				var v string
				switch typ {
				case "string":
					v, err = node.Do(ctx, node.B().Get().Key(k).Build()).ToString()
				case "hash":
					var m map[string]string
					m, err = node.Do(ctx, node.B().Hgetall().Key(k).Build()).AsStrMap()
					keys := make([]string, 0, len(m))
					for f := range m {
						keys = append(keys, f)
					}
					slices.Sort(keys)
					var sb strings.Builder
					for _, f := range keys {
						sb.WriteString(f + "=" + m[f] + "\n")
					}
					v = "hash:" + sb.String()
				case "set":
					var s []string
					s, err = node.Do(ctx, node.B().Smembers().Key(k).Build()).AsStrSlice()
					slices.Sort(s)
					v = "set:" + strings.Join(s, ",")
				default:
					t.Fatalf("key %s has unexpected type %s", k, typ)
				}
				if err != nil {
					t.Fatalf("read %s: %v", k, err)
				}
				out[strings.TrimPrefix(k, ns)] = v
			}
			cursor = e.Cursor
			if cursor == 0 {
				break
			}
		}
	}
	return out
}

func get(t testing.TB, client rueidis.Client, key string) (string, bool) {
	t.Helper()
	v, err := client.Do(context.Background(), client.B().Get().Key(key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v, true
}

func hget(t testing.TB, client rueidis.Client, key, f string) (string, bool) {
	t.Helper()
	v, err := client.Do(context.Background(), client.B().Hget().Key(key).Field(f).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return "", false
	}
	if err != nil {
		t.Fatalf("HGET %s %s: %v", key, f, err)
	}
	return v, true
}

func smembers(t testing.TB, client rueidis.Client, key string) []string {
	t.Helper()
	s, err := client.Do(context.Background(), client.B().Smembers().Key(key).Build()).AsStrSlice()
	if err != nil {
		t.Fatalf("SMEMBERS %s: %v", key, err)
	}
	slices.Sort(s)
	return s
}

// jsonEqual reports whether a and b hold the same JSON value (numbers
// compared as written).
func jsonEqual(t testing.TB, a, b string) bool {
	t.Helper()
	var x, y any
	da := json.NewDecoder(strings.NewReader(a))
	da.UseNumber()
	db := json.NewDecoder(strings.NewReader(b))
	db.UseNumber()
	if err := da.Decode(&x); err != nil {
		t.Fatalf("decode %q: %v", a, err)
	}
	if err := db.Decode(&y); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func wantJSON(t testing.TB, what, got, want string) {
	t.Helper()
	if !jsonEqual(t, got, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

// cachedUser reads user uid's entry: its mutual guilds (sorted) and its
// object as readers get it back (keyspace.ExpandUser); ok is false when the
// user has no entry, user "" when the entry has no object.
func cachedUser(t testing.TB, client rueidis.Client, k CacheKeys, uid string) (guilds []string, user string, ok bool) {
	t.Helper()
	v, ok := hget(t, client, k.CacheUsers(uid), uid)
	if !ok {
		return nil, "", false
	}
	guilds, u, err := keyspace.ParseUserEntry(v)
	if err != nil {
		t.Fatalf("user %s entry %q: %v", uid, v, err)
	}
	slices.Sort(guilds)
	if u == "" {
		return guilds, "", true
	}
	full, err := keyspace.ExpandUser(uid, []byte(u))
	if err != nil {
		t.Fatalf("user %s entry %q: %v", uid, v, err)
	}
	return guilds, string(full), true
}

// getUser is cachedUser's object (ok false when there is none).
func getUser(t testing.TB, client rueidis.Client, k CacheKeys, uid string) (string, bool) {
	t.Helper()
	_, u, _ := cachedUser(t, client, k, uid)
	return u, u != ""
}

// userGuilds is cachedUser's mutual guilds.
func userGuilds(t testing.TB, client rueidis.Client, k CacheKeys, uid string) []string {
	t.Helper()
	g, _, _ := cachedUser(t, client, k, uid)
	return g
}

// asCached is the member (with or without its user) or user object js
// the way the cache hands it back: with the members it stores them
// without put back (keyspace.ExpandMember, ExpandUser).
func asCached(t testing.TB, js string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatalf("asCached %s: %v", js, err)
	}
	if _, member := m["joined_at"]; !member {
		var id string
		_ = json.Unmarshal(m["id"], &id)
		u, err := keyspace.ExpandUser(id, []byte(js))
		if err != nil {
			t.Fatalf("asCached %s: %v", js, err)
		}
		return string(u)
	}
	var user []byte
	if u, ok := m["user"]; ok {
		user = []byte(asCached(t, string(u)))
		js = without(js, "user")
	}
	out, err := keyspace.ExpandMember([]byte(js), user)
	if err != nil {
		t.Fatalf("asCached %s: %v", js, err)
	}
	return string(out)
}

// without returns the JSON object s without the named members.
func without(s string, names ...string) string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		panic(err)
	}
	for _, n := range names {
		delete(m, n)
	}
	return mustJSON(m)
}

func TestCacheJSONRoundTrip(t *testing.T) {
	for _, mk := range []func(*testing.T) cacheBackend{realRedis, miniRedis} {
		be := mk(t)
		t.Run(be.name, func(t *testing.T) { testCacheRoundTrip(t, be.client) })
	}
}

func testCacheRoundTrip(t *testing.T, client rueidis.Client) {
	c := newTestCache(t, client, CacheConfig{Namespace: "rt"})
	k := NewCacheKeys("rt")
	g := "900000000000000001"
	uid := "800000000000000001"
	gc := `{"id":"900000000000000001","name":"Gùild 🎉 \"quoted\" \u00e9","features":[],"icon":null,` +
		`"owner_id":"800000000000000001","roles":[{"id":"600000000000000001","name":"r","permissions":"1071698660929","tags":{}}],` +
		`"emojis":[],"stickers":[],"channels":[{"id":"700000000000000001","type":0,"name":"général","permission_overwrites":[]}],` +
		`"threads":[],"members":[{"user":{"id":"800000000000000001","username":"zoë","global_name":"Zoë ✨"},"roles":[],` +
		`"nick":null,"joined_at":"2024-01-01T00:00:00+00:00","deaf":false,"mute":false,"flags":0}],` +
		`"voice_states":[],"presences":[],"large":false,"member_count":1,"joined_at":"2024-01-01T00:00:00+00:00"}`
	apply(t, c, ev("a", "GUILD_CREATE", gc))

	guild, _ := get(t, client, k.CacheGuild(g))
	for _, want := range []string{`"id":"900000000000000001"`, `"features":[]`, `"owner_id":"800000000000000001"`, `Gùild 🎉 \"quoted\" \u00e9`} {
		if !strings.Contains(guild, want) {
			t.Errorf("guild %s lacks %s", guild, want)
		}
	}
	wantJSON(t, "guild", guild, without(gc, "roles", "emojis", "stickers", "channels", "threads", "members", "voice_states", "presences"))
	if e, _ := get(t, client, k.CacheEmojis(g)); e != "[]" {
		t.Errorf("emojis = %q, want []", e)
	}
	role, _ := hget(t, client, k.CacheRoles(g), "600000000000000001")
	if !strings.Contains(role, `"permissions":"1071698660929"`) || !strings.Contains(role, `"tags":{}`) {
		t.Errorf("role = %s", role)
	}
	ch, _ := hget(t, client, k.CacheChannels(g), "700000000000000001")
	wantJSON(t, "channel", ch, `{"id":"700000000000000001","type":0,"name":"général","permission_overwrites":[],"guild_id":"900000000000000001"}`)
	// Members and users are stored compact: without the members at
	// Discord's defaults (a user without its id too).
	m, _ := hget(t, client, k.CacheMembers(g), uid)
	if m != `{"joined_at":"2024-01-01T00:00:00+00:00"}` {
		t.Errorf("member = %s, want only joined_at", m)
	}
	if e, _ := hget(t, client, k.CacheUsers(uid), uid); e != g+`{"username":"zoë","global_name":"Zoë ✨"}` {
		t.Errorf("user entry = %s", e)
	}
	u, _ := getUser(t, client, k, uid)
	wantJSON(t, "user", u, asCached(t, `{"id":"800000000000000001","username":"zoë","global_name":"Zoë ✨"}`))

	// GUILD_MEMBER_UPDATE merges in Lua: everything must survive byte for byte.
	upd := `{"guild_id":"900000000000000001","user":{"id":"800000000000000001","username":"zoë","global_name":"Zoë ✨"},` +
		`"roles":[],"nick":"Zoë \"z\" 日本","avatar":null,"communication_disabled_until":null,"premium_since":"2024-02-02T00:00:00+00:00"}`
	before := apply(t, c, ev("a", "GUILD_MEMBER_UPDATE", upd))
	wantJSON(t, "member before image", string(before[0]), asCached(t,
		`{"user":{"id":"800000000000000001","username":"zoë","global_name":"Zoë ✨"},"roles":[],"nick":null,`+
			`"joined_at":"2024-01-01T00:00:00+00:00","deaf":false,"mute":false,"flags":0}`))
	m, _ = hget(t, client, k.CacheMembers(g), uid)
	wantJSON(t, "merged member", m, `{"nick":"Zoë \"z\" 日本","joined_at":"2024-01-01T00:00:00+00:00","premium_since":"2024-02-02T00:00:00+00:00"}`)
	if !strings.Contains(m, `"nick":"Zoë \"z\" 日本"`) {
		t.Errorf("merged member %s changed the nick's text", m)
	}
	// A member going back to a default loses the cached value.
	apply(t, c, ev("a", "GUILD_MEMBER_UPDATE", `{"guild_id":"900000000000000001","user":{"id":"800000000000000001","username":"zoë"},"nick":null,"roles":[]}`))
	m, _ = hget(t, client, k.CacheMembers(g), uid)
	wantJSON(t, "member back to defaults", m, `{"joined_at":"2024-01-01T00:00:00+00:00","premium_since":"2024-02-02T00:00:00+00:00"}`)

	// GUILD_UPDATE merges too; big numbers keep their digits.
	before = apply(t, c, ev("a", "GUILD_UPDATE", `{"id":"900000000000000001","name":"新しい","features":[],"afk_timeout":12345678901234567,"roles":[]}`))
	wantJSON(t, "guild before image", string(before[0]), guild)
	guild2, _ := get(t, client, k.CacheGuild(g))
	for _, want := range []string{`"name":"新しい"`, `"features":[]`, `"afk_timeout":12345678901234567`, `"joined_at":"2024-01-01T00:00:00+00:00"`, `"member_count":1`} {
		if !strings.Contains(guild2, want) {
			t.Errorf("updated guild %s lacks %s", guild2, want)
		}
	}
	if n, err := client.Do(context.Background(), client.B().Hlen().Key(k.CacheRoles(g)).Build()).AsInt64(); err != nil || n != 0 {
		t.Errorf("roles after GUILD_UPDATE with roles [] = %d (%v), want 0", n, err)
	}
}

func TestCacheEvents(t *testing.T) {
	be := realRedis(t)
	client := be.client
	c := newTestCache(t, client, CacheConfig{})
	k := NewCacheKeys("")
	g := wid(wGuildBase, 0)
	apply(t, c, ev("a", "GUILD_CREATE", wGuildCreate(0, 0, []int{0, 1, 2, 4}, false)))

	// channels
	ch5 := mustJSON(wChannel(g, 5, 1, true))
	if b := apply(t, c, ev("a", "CHANNEL_CREATE", ch5)); b[0] != nil {
		t.Errorf("CHANNEL_CREATE before = %s, want nil", b[0])
	}
	ch5b := mustJSON(wChannel(g, 5, 2, true))
	b := apply(t, c, ev("a", "CHANNEL_UPDATE", ch5b))
	wantJSON(t, "CHANNEL_UPDATE before", string(b[0]), ch5)
	b = apply(t, c, ev("a", "CHANNEL_DELETE", ch5b))
	wantJSON(t, "CHANNEL_DELETE before", string(b[0]), ch5b)
	if _, ok := hget(t, client, k.CacheChannels(g), wid(wChannelBase, 5)); ok {
		t.Error("deleted channel still cached")
	}
	if b := apply(t, c, ev("a", "CHANNEL_CREATE", `{"id":"1","type":1,"recipients":[]}`)); b[0] != nil {
		t.Error("DM channel gave a before image")
	}

	// threads and THREAD_LIST_SYNC
	t1 := mustJSON(wThread(g, 1, 1, 5))
	b = apply(t, c, ev("a", "THREAD_UPDATE", t1))
	wantJSON(t, "THREAD_UPDATE before", string(b[0]), mustJSON(wThread(g, 1, 1, 0)))
	apply(t, c, ev("a", "THREAD_CREATE", mustJSON(wThread(g, 2, 2, 0))), ev("a", "THREAD_CREATE", mustJSON(wThread(g, 3, 3, 0))))
	apply(t, c, ev("a", "THREAD_LIST_SYNC", mustJSON(obj{"guild_id": g, "channel_ids": []string{wid(wChannelBase, 1), wid(wChannelBase, 2)},
		"threads": []any{wThread(g, 4, 2, 0)}, "members": []any{}})))
	ths, _ := client.Do(context.Background(), client.B().Hkeys().Key(k.CacheThreads(g)).Build()).AsStrSlice()
	slices.Sort(ths)
	if want := []string{wid(wThreadBase, 3), wid(wThreadBase, 4)}; !slices.Equal(ths, want) {
		t.Errorf("threads after sync = %v, want %v", ths, want)
	}
	b = apply(t, c, ev("a", "THREAD_DELETE", mustJSON(obj{"id": wid(wThreadBase, 3), "guild_id": g, "parent_id": wid(wChannelBase, 3), "type": 11})))
	wantJSON(t, "THREAD_DELETE before", string(b[0]), mustJSON(wThread(g, 3, 3, 0)))

	// roles
	b = apply(t, c, ev("a", "GUILD_ROLE_UPDATE", mustJSON(obj{"guild_id": g, "role": wRole(1, 9)})))
	wantJSON(t, "GUILD_ROLE_UPDATE before", string(b[0]), mustJSON(wRole(1, 0)))
	b = apply(t, c, ev("a", "GUILD_ROLE_DELETE", mustJSON(obj{"guild_id": g, "role_id": wid(wRoleBase, 1)})))
	wantJSON(t, "GUILD_ROLE_DELETE before", string(b[0]), mustJSON(wRole(1, 9)))

	// members
	add := mustJSON(wMember(7, 0, []string{wid(wRoleBase, 0)}, g))
	if b := apply(t, c, ev("a", "GUILD_MEMBER_ADD", add)); b[0] != nil {
		t.Errorf("GUILD_MEMBER_ADD before = %s", b[0])
	}
	if got := userGuilds(t, client, k, wid(wUserBase, 7)); !slices.Equal(got, []string{g}) {
		t.Errorf("mutual guilds of user 7 = %v", got)
	}
	b = apply(t, c, ev("a", "GUILD_MEMBER_UPDATE", mustJSON(obj{"guild_id": g, "user": wUser(7, 1), "roles": []string{}, "nick": "x"})))
	wantJSON(t, "GUILD_MEMBER_UPDATE before", string(b[0]), asCached(t, without(add, "guild_id")))
	u7, _ := getUser(t, client, k, wid(wUserBase, 7))
	wantJSON(t, "user after member update", u7, asCached(t, mustJSON(wUser(7, 1))))
	b = apply(t, c, ev("a", "GUILD_MEMBER_REMOVE", mustJSON(obj{"guild_id": g, "user": wUser(7, 1)})))
	want := mustJSON(wMember(7, 0, []string{}, ""))
	want = strings.Replace(want, `"nick":null`, `"nick":"x"`, 1)
	var wm map[string]any
	_ = json.Unmarshal([]byte(want), &wm)
	wm["user"] = wUser(7, 1)
	wantJSON(t, "GUILD_MEMBER_REMOVE before", string(b[0]), asCached(t, mustJSON(wm)))
	if _, ok := getUser(t, client, k, wid(wUserBase, 7)); ok {
		t.Error("user 7 in no guild is still cached")
	}

	// chunk
	apply(t, c, ev("a", "GUILD_MEMBERS_CHUNK", mustJSON(obj{"guild_id": g, "members": []any{wMember(8, 0, nil, ""), wMember(9, 0, nil, "")},
		"presences": []any{wPresence(g, 8, "dnd", false)}})))
	if _, ok := hget(t, client, k.CacheMembers(g), wid(wUserBase, 9)); !ok {
		t.Error("chunk member 9 not cached")
	}
	if p, _ := hget(t, client, k.CachePresences(g), wid(wUserBase, 8)); !strings.Contains(p, `"dnd"`) {
		t.Errorf("chunk presence = %q", p)
	}

	// emojis, stickers
	b = apply(t, c, ev("a", "GUILD_EMOJIS_UPDATE", mustJSON(obj{"guild_id": g, "emojis": []any{}})))
	wantJSON(t, "GUILD_EMOJIS_UPDATE before", string(b[0]), mustJSON(wEmojis(g, 2, 0)))
	b = apply(t, c, ev("a", "GUILD_STICKERS_UPDATE", mustJSON(obj{"guild_id": g, "stickers": []any{obj{"id": "1", "name": "s", "tags": "", "type": 2, "format_type": 1}}})))
	if string(b[0]) != "[]" {
		t.Errorf("GUILD_STICKERS_UPDATE before = %q, want []", b[0])
	}

	// voice
	vs := wVoice(g, 1, 2, true)
	vs["member"] = wMember(1, 0, nil, "")
	b = apply(t, c, ev("a", "VOICE_STATE_UPDATE", mustJSON(vs)))
	if b[0] != nil {
		t.Errorf("voice join before = %s", b[0])
	}
	delete(vs, "member")
	v1, _ := hget(t, client, k.CacheVoiceStates(g), wid(wUserBase, 1))
	wantJSON(t, "voice state", v1, mustJSON(vs))
	left := wVoice(g, 1, 2, true)
	left["channel_id"] = nil
	b = apply(t, c, ev("a", "VOICE_STATE_UPDATE", mustJSON(left)))
	wantJSON(t, "voice leave before", string(b[0]), mustJSON(vs))
	if _, ok := hget(t, client, k.CacheVoiceStates(g), wid(wUserBase, 1)); ok {
		t.Error("voice state kept after leaving")
	}
	v0, _ := hget(t, client, k.CacheVoiceStates(g), wid(wUserBase, 0))
	wantJSON(t, "GUILD_CREATE voice state gets guild_id", v0, mustJSON(wVoice(g, 0, 1, true)))

	// presence
	b = apply(t, c, ev("a", "PRESENCE_UPDATE", mustJSON(wPresence(g, 2, "idle", true))))
	wantJSON(t, "PRESENCE_UPDATE before", string(b[0]), mustJSON(wPresence(g, 2, "online", false)))
	b = apply(t, c, ev("a", "PRESENCE_UPDATE", mustJSON(wPresence(g, 2, "offline", true))))
	wantJSON(t, "PRESENCE_UPDATE offline before", string(b[0]), mustJSON(wPresence(g, 2, "idle", false)))
	if _, ok := hget(t, client, k.CachePresences(g), wid(wUserBase, 2)); ok {
		t.Error("offline presence kept")
	}

	// user update
	b = apply(t, c, ev("a", "USER_UPDATE", mustJSON(wUser(0, 5))))
	wantJSON(t, "USER_UPDATE before", string(b[0]), asCached(t, mustJSON(wUser(0, 0))))
	if b := apply(t, c, ev("a", "USER_UPDATE", mustJSON(wUser(99, 5)))); b[0] != nil {
		t.Error("USER_UPDATE of an uncached user gave a before image")
	}
	if _, ok := getUser(t, client, k, wid(wUserBase, 99)); ok {
		t.Error("USER_UPDATE cached a user of no cached guild")
	}

	// a full GUILD_CREATE replaces the member list and ends memberships
	apply(t, c, ev("a", "GUILD_CREATE", wGuildCreate(0, 1, []int{0, 1}, false)))
	if _, ok := getUser(t, client, k, wid(wUserBase, 2)); ok {
		t.Error("user 2, gone from the full member list, still cached")
	}
	// a large one merges
	apply(t, c, ev("a", "GUILD_CREATE", wGuildCreate(0, 2, []int{3}, true)))
	if n, _ := client.Do(context.Background(), client.B().Hlen().Key(k.CacheMembers(g)).Build()).AsInt64(); n != 3 {
		t.Errorf("members after a large GUILD_CREATE = %d, want 3", n)
	}

	// bad payloads are skipped, the rest of the batch applies
	bs := apply(t, c, ev("a", "CHANNEL_UPDATE", `{"id":`), ev("a", "GUILD_ROLE_UPDATE", `{"guild_id":"x1","role":{}}`),
		ev("a", "CHANNEL_UPDATE", ch5))
	if bs[0] != nil || bs[1] != nil || c.Stats().Skipped != 2 {
		t.Errorf("bad payloads: before %q, skipped %d", bs[:2], c.Stats().Skipped)
	}
	if _, ok := hget(t, client, k.CacheChannels(g), wid(wChannelBase, 5)); !ok {
		t.Error("good event after bad ones not applied")
	}
}

// TestCacheRefusedScript: a cache key of the wrong type (written by
// someone else) makes Redis refuse that event's script; the event is left
// out and logged, the rest of the batch applies, Apply does not fail.
func TestCacheRefusedScript(t *testing.T) {
	client := realRedis(t).client
	c := newTestCache(t, client, CacheConfig{})
	k := NewCacheKeys("")
	g := wid(wGuildBase, 0)
	if err := client.Do(context.Background(), client.B().Set().Key(k.CacheChannels(g)).Value("junk").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	b := apply(t, c, ev("a", "CHANNEL_UPDATE", mustJSON(wChannel(g, 1, 0, true))),
		ev("a", "GUILD_ROLE_CREATE", mustJSON(obj{"guild_id": g, "role": wRole(1, 0)})))
	if b[0] != nil || c.Stats().Skipped != 1 {
		t.Errorf("before %q, skipped %d; want nil, 1", b[0], c.Stats().Skipped)
	}
	if _, ok := hget(t, client, k.CacheRoles(g), wid(wRoleBase, 1)); !ok {
		t.Error("the batch's other event was not applied")
	}
}

// applyInBatches applies events in random batch sizes.
func applyInBatches(t testing.TB, c *Cache, r *rand.Rand, evs []*Event) {
	t.Helper()
	for len(evs) > 0 {
		n := 1 + r.IntN(min(len(evs), 40))
		apply(t, c, evs[:n]...)
		evs = evs[n:]
	}
}

func TestCacheIdempotence(t *testing.T) {
	testCacheIdempotence(t, realRedis(t).client, 30)
}

func testCacheIdempotence(t *testing.T, client rueidis.Client, seeds int) {
	for seed := 1; seed <= seeds; seed++ {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		n := 60 + r.IntN(120)
		list := make([]wEvent, n)
		for i := range list {
			list[i] = wRandomEvent(r)
		}
		// One bot: a replay repeats that bot's own events. (Which bots see
		// a guild depends on how several bots' streams interleave; that is
		// TestCacheTwoBots' subject.)
		bots := make([]string, n)
		for i := range bots {
			bots[i] = "a"
		}
		events := func(l []wEvent, bs []string) []*Event {
			out := toEvents("", l)
			for i := range out {
				out[i].Bot = bs[i]
			}
			return out
		}
		ns := func(s string) string { return "idem" + s + string(rune('a'+seed%26)) + strings.Repeat("x", seed/26) }
		once := newTestCache(t, client, CacheConfig{Namespace: ns("1")})
		twice := newTestCache(t, client, CacheConfig{Namespace: ns("2")})
		replay := newTestCache(t, client, CacheConfig{Namespace: ns("3")})
		applyInBatches(t, once, r, events(list, bots))
		applyInBatches(t, twice, r, events(list, bots))
		applyInBatches(t, twice, r, events(list, bots))
		k := r.IntN(n)
		j := r.IntN(k + 1)
		applyInBatches(t, replay, r, events(list[:k], bots[:k]))
		applyInBatches(t, replay, r, events(list[j:k], bots[j:k]))
		applyInBatches(t, replay, r, events(list[k:], bots[k:]))

		want := dumpCache(t, client, ns("1"))
		if len(want) == 0 {
			t.Fatalf("seed %d: nothing cached", seed)
		}
		for name, got := range map[string]map[string]string{"twice": dumpCache(t, client, ns("2")), "replayed": dumpCache(t, client, ns("3"))} {
			if !reflect.DeepEqual(got, want) {
				for key, v := range want {
					if got[key] != v {
						t.Errorf("seed %d %s: %s = %q, once %q", seed, name, key, got[key], v)
					}
				}
				for key, v := range got {
					if _, ok := want[key]; !ok {
						t.Errorf("seed %d %s: extra key %s = %q", seed, name, key, v)
					}
				}
				t.FailNow()
			}
		}
	}
}

func TestCacheTwoBots(t *testing.T) {
	for _, mk := range []func(*testing.T) cacheBackend{realRedis, miniRedis} {
		be := mk(t)
		t.Run(be.name, func(t *testing.T) { testCacheTwoBots(t, be.client) })
	}
}

func TestCacheIdempotenceMiniredis(t *testing.T) {
	testCacheIdempotence(t, miniRedis(t).client, 5)
}

// TestCacheScriptFlush: after the server lost its scripts (restart,
// failover, SCRIPT FLUSH) Apply loads them again and the batch applies in
// order.
func TestCacheScriptFlush(t *testing.T) {
	client := realRedis(t).client
	c := newTestCache(t, client, CacheConfig{})
	k := NewCacheKeys("")
	g := wid(wGuildBase, 0)
	apply(t, c, ev("a", "GUILD_CREATE", wGuildCreate(0, 0, []int{1}, false)))
	if err := client.Do(context.Background(), client.B().ScriptFlush().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// The member merge runs in Lua inside the batch's transaction, the
	// role updates are plain commands around it.
	b := apply(t, c, ev("a", "GUILD_ROLE_UPDATE", mustJSON(obj{"guild_id": g, "role": wRole(1, 5)})),
		ev("a", "GUILD_MEMBER_UPDATE", mustJSON(obj{"guild_id": g, "user": wUser(1, 0), "roles": []string{}, "nick": "flushed"})),
		ev("a", "GUILD_ROLE_UPDATE", mustJSON(obj{"guild_id": g, "role": wRole(1, 6)})))
	wantJSON(t, "first before", string(b[0]), mustJSON(wRole(1, 0)))
	wantJSON(t, "second before", string(b[2]), mustJSON(wRole(1, 5)))
	r, _ := hget(t, client, k.CacheRoles(g), wid(wRoleBase, 1))
	wantJSON(t, "role", r, mustJSON(wRole(1, 6)))
	if m, _ := hget(t, client, k.CacheMembers(g), wid(wUserBase, 1)); !strings.Contains(m, `"nick":"flushed"`) {
		t.Errorf("member after the update = %s", m)
	}
	if n := c.Stats().Reloads; n != 1 {
		t.Errorf("reloads = %d, want 1", n)
	}
}

func testCacheTwoBots(t *testing.T, client rueidis.Client) {
	c := newTestCache(t, client, CacheConfig{Namespace: "bots"})
	k := NewCacheKeys("bots")
	g1, g2 := wid(wGuildBase, 1), wid(wGuildBase, 2)
	u := func(i int) string { return wid(wUserBase, i) }
	apply(t, c,
		ev("a", "GUILD_CREATE", wGuildCreate(1, 0, []int{1, 2, 3}, false)),
		ev("b", "GUILD_CREATE", wGuildCreate(1, 0, []int{1, 2, 3}, false)),
		ev("a", "GUILD_CREATE", wGuildCreate(2, 0, []int{3, 4}, false)))
	if got := smembers(t, client, k.CacheGuildBots(g1)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("bots of g1 = %v", got)
	}
	if got := userGuilds(t, client, k, u(3)); !slices.Equal(got, []string{g1, g2}) {
		t.Fatalf("mutual guilds of user 3 = %v", got)
	}
	full := dumpCache(t, client, "bots")

	// an outage keeps everything and marks the guild
	b := apply(t, c, ev("a", "GUILD_DELETE", `{"id":"`+g1+`","unavailable":true}`))
	if b[0] == nil {
		t.Error("GUILD_DELETE before image missing")
	}
	if v, ok := get(t, client, k.CacheGuildUnavailable(g1)); !ok || v != "1" {
		t.Error("unavailable guild not marked")
	}
	apply(t, c, ev("a", "GUILD_CREATE", wGuildCreate(1, 0, []int{1, 2, 3}, false)))
	if got := dumpCache(t, client, "bots"); !reflect.DeepEqual(got, full) {
		t.Errorf("after outage and GUILD_CREATE the cache differs:\n%v\nwant\n%v", got, full)
	}

	// bot a removed: b still sees g1, nothing goes
	apply(t, c, ev("a", "GUILD_DELETE", `{"id":"`+g1+`"}`))
	if _, ok := get(t, client, k.CacheGuild(g1)); !ok {
		t.Fatal("g1 deleted while bot b still sees it")
	}
	if got := smembers(t, client, k.CacheGuildBots(g1)); !slices.Equal(got, []string{"b"}) {
		t.Errorf("bots of g1 = %v, want [b]", got)
	}
	// bot b removed too: g1 goes, users 1 and 2 (in no other guild) too
	b = apply(t, c, ev("b", "GUILD_DELETE", `{"id":"`+g1+`"}`))
	if b[0] == nil {
		t.Error("GUILD_DELETE before image missing")
	}
	for key := range dumpCache(t, client, "bots") {
		if strings.Contains(key, "{"+g1+"}") {
			t.Errorf("key %s of g1 left after both bots left", key)
		}
	}
	for _, i := range []int{1, 2} {
		if _, ok := getUser(t, client, k, u(i)); ok {
			t.Errorf("user %d in no guild still cached", i)
		}
		if got := userGuilds(t, client, k, u(i)); len(got) != 0 {
			t.Errorf("user %d mutual guilds = %v", i, got)
		}
	}
	if _, ok := getUser(t, client, k, u(3)); !ok {
		t.Error("user 3, still in g2, evicted")
	}
	if got := userGuilds(t, client, k, u(3)); !slices.Equal(got, []string{g2}) {
		t.Errorf("mutual guilds of user 3 = %v, want [g2]", got)
	}
}

func TestCacheConfig(t *testing.T) {
	client := miniRedis(t).client
	if _, err := NewCache(client, CacheConfig{Bots: map[string]CacheBotConfig{"a": {Entities: []string{"guilds", "nope"}}}}); err == nil ||
		!strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown entity: err = %v", err)
	}
	if _, err := NewCache(client, CacheConfig{Namespace: "a{b}"}); err == nil {
		t.Error("namespace with braces accepted")
	}
	c := newTestCache(t, client, CacheConfig{Bots: map[string]CacheBotConfig{
		"own":   {Namespace: "own", Entities: []string{"guilds", "roles"}},
		"quiet": {Disabled: true},
	}})
	gc := wGuildCreate(0, 0, []int{1, 2}, false)
	apply(t, c, ev("own", "GUILD_CREATE", gc), ev("quiet", "GUILD_CREATE", gc))
	got := dumpCache(t, client, "own")
	var keys []string
	for key := range got {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	g := wid(wGuildBase, 0)
	if want := []string{":{" + g + "}:bots", ":{" + g + "}:guild", ":{" + g + "}:roles"}; !slices.Equal(keys, want) {
		t.Errorf("keys with guilds+roles = %v, want %v", keys, want)
	}
	if n := len(dumpCache(t, client, DefaultCacheNamespace)); n != 0 {
		t.Errorf("disabled bot wrote %d keys", n)
	}
}
