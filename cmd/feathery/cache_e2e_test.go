package main

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/keyspace"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestCacheEndToEnd: the fake Discord's world and a stretch of its live
// traffic flow through feathery (16 shards) into a real redis-server (and a
// three-master Redis Cluster); afterwards the cache equals the fake's model
// entity by entity, and every before image on the stream equals the
// model's object before that event.
func TestCacheEndToEnd(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		testCacheEndToEnd(t, `{url: "redis://`+srv.Addr+`"}`, srv.Client(t))
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t, 3)
		testCacheEndToEnd(t, `{cluster: [`+strings.Join(cl.Addrs(), ", ")+`]}`, cl.Client(t))
	})
}

func testCacheEndToEnd(t *testing.T, redisSection string, rc rueidis.Client) {
	const shards = 16
	fake, err := discordtest.Start(discordtest.Config{
		Token: testToken, Shards: shards, MaxConcurrency: shards,
		IdentifyWindow: 200 * time.Millisecond, HeartbeatInterval: time.Second,
		Guilds: 40, MembersPerGuild: 25, Seed: 11, Rate: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	doc := `
redis: ` + redisSection + `
admin: {addr: "off"}
discord: {rest_url: "${REST}"}
identify_window: 200ms
shutdown_timeout: 10s
bots:
  - name: e2e
    token: ${TOKEN}
    intents: ALL
`
	cfg, err := parseConfig("e2e.yaml", []byte(doc), envOf(map[string]string{"TOKEN": testToken, "REST": fake.URL() + "/api/v10"}))
	if err != nil {
		t.Fatal(err)
	}
	d, err := runDaemon(t.Context(), cfg, daemonDeps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })

	// The world arrives with the GUILD_CREATEs; then live traffic.
	r := consumers.NewCacheReader(rc, "")
	testkit.Eventually(t, 30*time.Second, "every guild cached", func() bool {
		n := 0
		for id := range fake.Snapshot().Guilds {
			if _, err := r.Guild(t.Context(), id); err == nil {
				n++
			}
		}
		return n == len(fake.Snapshot().Guilds)
	})
	sent := func() int64 {
		var n int64
		for _, c := range fake.Stats().DispatchesPerShard {
			n += c
		}
		return n
	}
	base := sent()
	fake.SetRate(400)
	testkit.Eventually(t, 30*time.Second, "1200 live dispatches", func() bool { return sent() >= base+1200 })
	fake.SetRate(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := fake.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}

	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if diff := cacheDiff(t, r, rc, fake.Snapshot()); diff != "" {
			return "cache differs from the fake's model:\n" + diff
		}
		return ""
	})
	checkBeforeImages(t, rc, fake, shards)
}

// normalized decodes JSON and drops the named top-level members.
func normalized(t *testing.T, raw []byte, drop ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	if m, ok := v.(map[string]any); ok {
		for _, k := range drop {
			delete(m, k)
		}
	}
	return v
}

// asCachedUser is the user object raw the way the cache hands it back:
// with every member at Discord's default it stores users without
// (keyspace.ExpandUser).
func asCachedUser(t *testing.T, raw []byte) json.RawMessage {
	t.Helper()
	var head struct{ ID string }
	if err := json.Unmarshal(raw, &head); err != nil {
		t.Fatalf("decode user %q: %v", raw, err)
	}
	u, err := keyspace.ExpandUser(head.ID, raw)
	if err != nil {
		t.Fatalf("expand user %q: %v", raw, err)
	}
	return u
}

// asCachedMember is the member object raw (with its user) the way the
// cache hands it back (keyspace.ExpandMember; its user asCachedUser).
func asCachedMember(t *testing.T, raw []byte) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("decode member %q: %v", raw, err)
	}
	var user []byte
	if u, ok := m["user"]; ok {
		user = asCachedUser(t, u)
		delete(m, "user")
	}
	rest, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out, err := keyspace.ExpandMember(rest, user)
	if err != nil {
		t.Fatalf("expand member %q: %v", raw, err)
	}
	return out
}

func asCachedAll(t *testing.T, in map[string]json.RawMessage, f func(*testing.T, []byte) json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(in))
	for id, v := range in {
		out[id] = f(t, v)
	}
	return out
}

// guildOnlyInCache are members feathery keeps from GUILD_CREATE that the
// model's guild object leaves out.
var guildOnlyInCache = []string{"joined_at", "large", "member_count", "unavailable"}

func diffMaps(t *testing.T, what string, got, want map[string]json.RawMessage, drop ...string) string {
	var sb strings.Builder
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			fmt.Fprintf(&sb, "%s %s missing (want %s)\n", what, id, w)
			continue
		}
		if !reflect.DeepEqual(normalized(t, g, drop...), normalized(t, w, drop...)) {
			fmt.Fprintf(&sb, "%s %s:\n  got  %s\n  want %s\n", what, id, g, w)
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			fmt.Fprintf(&sb, "%s %s extra: %s\n", what, id, g)
		}
	}
	return sb.String()
}

func byID(t *testing.T, arr []byte) map[string]json.RawMessage {
	t.Helper()
	var list []json.RawMessage
	if err := json.Unmarshal(arr, &list); err != nil {
		t.Fatalf("decode array %q: %v", arr, err)
	}
	out := map[string]json.RawMessage{}
	for _, e := range list {
		var head struct{ ID string }
		_ = json.Unmarshal(e, &head)
		out[head.ID] = e
	}
	return out
}

// cacheDiff compares the cache with the model; "" = equal.
func cacheDiff(t *testing.T, r *consumers.CacheReader, rc rueidis.Client, w discordtest.World) string {
	t.Helper()
	ctx := t.Context()
	var sb strings.Builder
	must := func(m map[string]json.RawMessage, err error) map[string]json.RawMessage {
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	guildsOf := map[string][]string{}
	for id, g := range w.Guilds {
		guild, err := r.Guild(ctx, id)
		if err != nil {
			fmt.Fprintf(&sb, "guild %s: %v\n", id, err)
			continue
		}
		if !reflect.DeepEqual(normalized(t, guild, guildOnlyInCache...), normalized(t, g.Guild)) {
			fmt.Fprintf(&sb, "guild %s:\n  got  %s\n  want %s\n", id, guild, g.Guild)
		}
		sb.WriteString(diffMaps(t, "channel", must(r.Channels(ctx, id)), g.Channels))
		sb.WriteString(diffMaps(t, "thread", must(r.Threads(ctx, id)), g.Threads))
		sb.WriteString(diffMaps(t, "role", must(r.Roles(ctx, id)), g.Roles))
		sb.WriteString(diffMaps(t, "member", must(r.Members(ctx, id)), asCachedAll(t, g.Members, asCachedMember)))
		sb.WriteString(diffMaps(t, "voice state", must(r.VoiceStates(ctx, id)), g.VoiceStates, "guild_id"))
		sb.WriteString(diffMaps(t, "presence", must(r.Presences(ctx, id)), g.Presences))
		emojis, err := r.Emojis(ctx, id)
		if err != nil {
			emojis = []byte("[]")
		}
		sb.WriteString(diffMaps(t, "emoji", byID(t, emojis), g.Emojis))
		stickers, err := r.Stickers(ctx, id)
		if err != nil {
			stickers = []byte("[]")
		}
		sb.WriteString(diffMaps(t, "sticker", byID(t, stickers), g.Stickers))
		if bots, err := r.GuildBots(ctx, id); err != nil || !slices.Equal(bots, []string{"e2e"}) {
			fmt.Fprintf(&sb, "guild %s bots %v %v\n", id, bots, err)
		}
		for uid := range g.Members {
			guildsOf[uid] = append(guildsOf[uid], id)
		}
	}
	// users: exactly the model's, with their mutual guilds
	users := map[string]json.RawMessage{}
	guildKeys := 0
	for _, node := range rc.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(broker.DefaultCacheNamespace+":*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range e.Elements {
				if strings.HasPrefix(k, broker.DefaultCacheNamespace+":{u") && strings.HasSuffix(k, "}:users") {
					uids, err := node.Do(ctx, node.B().Hkeys().Key(k).Build()).AsStrSlice()
					if err != nil {
						t.Fatal(err)
					}
					for _, uid := range uids {
						u, err := r.User(ctx, uid)
						if err != nil {
							t.Fatal(err)
						}
						users[uid] = u
					}
				}
				if strings.HasSuffix(k, "}:guild") {
					guildKeys++
				}
			}
			cursor = e.Cursor
			if cursor == 0 {
				break
			}
		}
	}
	sb.WriteString(diffMaps(t, "user", users, asCachedAll(t, w.Users, asCachedUser)))
	for uid, gs := range guildsOf {
		slices.Sort(gs)
		if got, err := r.MutualGuilds(ctx, uid); err != nil || !slices.Equal(got, gs) {
			fmt.Fprintf(&sb, "mutual guilds of %s = %v (%v), want %v\n", uid, got, err, gs)
		}
	}
	if guildKeys != len(w.Guilds) {
		fmt.Fprintf(&sb, "%d guilds cached, model has %d\n", guildKeys, len(w.Guilds))
	}
	return sb.String()
}

// checkBeforeImages compares each stream entry's before field with the
// ledger's Before for the same (shard, session, seq). A member's user is
// compared by id only: users are shared by guilds on different shards, and
// shards are applied concurrently, so the user inside a before image may
// legitimately reflect another shard's newer or older update.
func checkBeforeImages(t *testing.T, rc rueidis.Client, fake *discordtest.Server, shards int) {
	t.Helper()
	type key struct {
		shard   int
		session string
		seq     int64
	}
	ledger := map[key]discordtest.LedgerEntry{}
	for s := 0; s < shards; s++ {
		for _, ss := range fake.Ledger(s) {
			for _, e := range ss.Entries {
				ledger[key{s, ss.Session, e.Seq}] = e
			}
		}
	}
	entries, err := rc.Do(t.Context(), rc.B().Xrange().Key(broker.NewKeys("").Events("e2e")).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	checked, bad := 0, 0
	for _, e := range entries {
		f := e.FieldValues
		shard, _ := strconv.Atoi(f["shard"])
		seq, _ := strconv.ParseInt(f["seq"], 10, 64)
		le, ok := ledger[key{shard, f["session"], seq}]
		if !ok {
			t.Errorf("entry %s (%s shard %d seq %d) not in the ledger", e.ID, f["t"], shard, seq)
			continue
		}
		got, want := f["before"], le.Before
		if (got == "") != (len(want) == 0) {
			bad++
			if bad <= 10 {
				t.Errorf("%s shard %d seq %d: before %q, ledger %q", le.T, shard, seq, got, want)
			}
			continue
		}
		if got == "" {
			continue
		}
		checked++
		var g, w any
		switch le.T {
		case "GUILD_UPDATE", "GUILD_DELETE":
			g, w = normalized(t, []byte(got), guildOnlyInCache...), normalized(t, want)
		case "VOICE_STATE_UPDATE":
			g, w = normalized(t, []byte(got), "guild_id"), normalized(t, want, "guild_id")
		case "GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE":
			g, w = byID(t, []byte(got)), byID(t, want)
		case "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE":
			userID := func(v any) any {
				if m, ok := v.(map[string]any); ok {
					if u, ok := m["user"].(map[string]any); ok {
						m["user"] = u["id"]
					}
				}
				return v
			}
			g, w = userID(normalized(t, []byte(got))), userID(normalized(t, asCachedMember(t, want)))
		case "USER_UPDATE":
			g, w = normalized(t, []byte(got)), normalized(t, asCachedUser(t, want))
		default:
			g, w = normalized(t, []byte(got)), normalized(t, want)
		}
		if !reflect.DeepEqual(g, w) {
			bad++
			if bad <= 10 {
				t.Errorf("%s shard %d seq %d before:\n  got  %s\n  want %s", le.T, shard, seq, got, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d entries with a before image differ", bad, len(entries))
	}
	if checked < 20 {
		t.Errorf("only %d before images checked; the traffic should give more", checked)
	}
	t.Logf("%d entries, %d before images equal the ledger's", len(entries), checked)
}
