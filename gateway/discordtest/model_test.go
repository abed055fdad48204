package discordtest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// miniCache applies dispatches the way a cache would, to check that the
// fake's events, before images and model agree.
type miniCache struct {
	t      *testing.T
	guilds map[string]*cacheGuild
}

type cacheGuild struct {
	info                                                json.RawMessage
	members, roles, channels, threads, presences, voice map[string]json.RawMessage
	emojis                                              json.RawMessage
}

func obj(t *testing.T, b []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decode %s: %v", truncate(string(b), 200), err)
	}
	return m
}

func without(t *testing.T, b []byte, keys ...string) json.RawMessage {
	t.Helper()
	m := obj(t, b)
	for _, k := range keys {
		delete(m, k)
	}
	out, _ := json.Marshal(m)
	return out
}

func str(t *testing.T, b json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("want a string, got %s", b)
	}
	return s
}

// sameJSON compares two JSON documents by value.
func sameJSON(a, b []byte) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func byID(t *testing.T, list json.RawMessage, key func(map[string]json.RawMessage) string) map[string]json.RawMessage {
	t.Helper()
	var items []json.RawMessage
	if err := json.Unmarshal(list, &items); err != nil {
		t.Fatalf("decode list: %v", err)
	}
	out := map[string]json.RawMessage{}
	for _, it := range items {
		out[key(obj(t, it))] = it
	}
	return out
}

func (c *miniCache) guildCreate(d []byte) {
	t := c.t
	m := obj(t, d)
	id := func(o map[string]json.RawMessage) string { return str(t, o["id"]) }
	userID := func(o map[string]json.RawMessage) string { return str(t, obj(t, o["user"])["id"]) }
	g := &cacheGuild{
		info: without(t, d, "roles", "emojis", "stickers", "channels", "threads", "members", "voice_states", "presences",
			"joined_at", "large", "unavailable", "member_count", "stage_instances", "guild_scheduled_events", "soundboard_sounds"),
		members:   byID(t, m["members"], userID),
		roles:     byID(t, m["roles"], id),
		channels:  byID(t, m["channels"], id),
		threads:   byID(t, m["threads"], id),
		presences: byID(t, m["presences"], userID),
		voice:     byID(t, m["voice_states"], func(o map[string]json.RawMessage) string { return str(t, o["user_id"]) }),
		emojis:    m["emojis"],
	}
	c.guilds[str(t, m["id"])] = g
}

func (c *miniCache) checkBefore(e LedgerEntry, cached json.RawMessage) {
	c.t.Helper()
	if !sameJSON(e.Before, cached) {
		c.t.Fatalf("seq %d %s: before %s, the cache had %s", e.Seq, e.T, e.Before, cached)
	}
}

func (c *miniCache) apply(e LedgerEntry) {
	t := c.t
	t.Helper()
	if e.T == "GUILD_CREATE" {
		c.guildCreate(e.D)
		return
	}
	m := obj(t, e.D)
	gid := e.Guild
	g := c.guilds[gid]
	if g == nil {
		switch e.T {
		case "READY", "RESUMED":
			return
		}
		t.Fatalf("seq %d %s for unknown guild %q", e.Seq, e.T, gid)
	}
	if raw, ok := m["guild_id"]; ok && str(t, raw) != gid {
		t.Fatalf("seq %d: ledger guild %s, d.guild_id %s", e.Seq, gid, raw)
	}
	set := func(coll map[string]json.RawMessage, id string, v json.RawMessage, isUpdate bool) {
		if isUpdate {
			c.checkBefore(e, coll[id])
		} else if e.Before != nil {
			t.Fatalf("seq %d %s: before image on a create", e.Seq, e.T)
		}
		coll[id] = v
	}
	del := func(coll map[string]json.RawMessage, id string) {
		c.checkBefore(e, coll[id])
		delete(coll, id)
	}
	switch e.T {
	case "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE":
		uid := str(t, obj(t, m["user"])["id"])
		set(g.members, uid, without(t, e.D, "guild_id"), e.T == "GUILD_MEMBER_UPDATE")
	case "GUILD_MEMBER_REMOVE":
		uid := str(t, obj(t, m["user"])["id"])
		del(g.members, uid)
		delete(g.presences, uid)
		delete(g.voice, uid)
	case "CHANNEL_CREATE", "CHANNEL_UPDATE":
		set(g.channels, str(t, m["id"]), e.D, e.T == "CHANNEL_UPDATE")
	case "CHANNEL_DELETE":
		del(g.channels, str(t, m["id"]))
	case "THREAD_CREATE", "THREAD_UPDATE":
		set(g.threads, str(t, m["id"]), without(t, e.D, "newly_created"), e.T == "THREAD_UPDATE")
	case "THREAD_DELETE":
		del(g.threads, str(t, m["id"]))
	case "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE":
		set(g.roles, str(t, obj(t, m["role"])["id"]), m["role"], e.T == "GUILD_ROLE_UPDATE")
	case "GUILD_ROLE_DELETE":
		del(g.roles, str(t, m["role_id"]))
	case "PRESENCE_UPDATE":
		uid := str(t, obj(t, m["user"])["id"])
		c.checkBefore(e, g.presences[uid])
		if str(t, m["status"]) == "offline" {
			delete(g.presences, uid)
		} else {
			g.presences[uid] = without(t, e.D, "guild_id")
		}
	case "VOICE_STATE_UPDATE":
		uid := str(t, m["user_id"])
		c.checkBefore(e, g.voice[uid])
		if string(m["channel_id"]) == "null" {
			delete(g.voice, uid)
		} else {
			g.voice[uid] = without(t, e.D, "guild_id", "member")
		}
	case "GUILD_DELETE":
		c.checkBefore(e, g.info)
		delete(c.guilds, gid)
	case "GUILD_UPDATE":
		c.checkBefore(e, g.info)
		g.info = without(t, e.D, "roles", "emojis", "stickers")
	case "GUILD_EMOJIS_UPDATE":
		c.checkBefore(e, g.emojis)
		g.emojis = m["emojis"]
	case "MESSAGE_CREATE", "TYPING_START", "INTERACTION_CREATE", "GUILD_MEMBERS_CHUNK", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_REACTION_ADD":
		if e.Before != nil {
			t.Fatalf("seq %d %s has a before image", e.Seq, e.T)
		}
	default:
		t.Fatalf("seq %d: unexpected %s", e.Seq, e.T)
	}
}

func sameMap(t *testing.T, what string, got, want map[string]json.RawMessage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: cache has %d, model %d", what, len(got), len(want))
	}
	for k, v := range want {
		if !sameJSON(got[k], v) {
			t.Fatalf("%s %s: cache %s, model %s", what, k, got[k], v)
		}
	}
}

// TestEventsKeepModelConsistent applies every dispatch of a long run to a
// small cache: each before image equals what the cache held, and at the end
// the cache equals the model's snapshot.
func TestEventsKeepModelConsistent(t *testing.T) {
	mix := DefaultMix()
	mix["MESSAGE_CREATE"], mix["TYPING_START"], mix["INTERACTION_CREATE"] = 1, 1, 1
	mix["GUILD_CREATE"], mix["GUILD_DELETE"] = 0.3, 0.3
	mix["MESSAGE_UPDATE"], mix["MESSAGE_DELETE"], mix["MESSAGE_REACTION_ADD"] = 0.5, 0.5, 0.5
	s := startFake(t, Config{Guilds: 4, MembersPerGuild: 8, Seed: 11, Mix: mix, IdentifyWindow: time.Nanosecond})
	c, _, _ := connectIdentify(t, s, "", 0, 1, allIntents)
	c.close()
	s.generate(6000)
	c2, _, _ := connectIdentify(t, s, "", 0, 1, allIntents) // a second session sees the resulting GUILD_CREATEs
	c2.close()
	ledger := s.Ledger(0)
	cache := &miniCache{t: t, guilds: map[string]*cacheGuild{}}
	kinds := map[string]int{}
	for _, e := range ledger[0].Entries {
		cache.apply(e)
		kinds[e.T]++
	}
	for name := range mix {
		if kinds[name] == 0 {
			t.Errorf("no %s in 6000 events", name)
		}
	}
	w := s.Snapshot()
	if len(cache.guilds) != len(w.Guilds) {
		t.Fatalf("cache has %d guilds, model %d", len(cache.guilds), len(w.Guilds))
	}
	for id, gs := range w.Guilds {
		g := cache.guilds[id]
		if !sameJSON(g.info, gs.Guild) {
			t.Fatalf("guild %s: cache %s, model %s", id, g.info, gs.Guild)
		}
		sameMap(t, "members", g.members, gs.Members)
		sameMap(t, "roles", g.roles, gs.Roles)
		sameMap(t, "channels", g.channels, gs.Channels)
		sameMap(t, "threads", g.threads, gs.Threads)
		sameMap(t, "presences", g.presences, gs.Presences)
		sameMap(t, "voice states", g.voice, gs.VoiceStates)
		sameMap(t, "emojis", byID(t, g.emojis, func(o map[string]json.RawMessage) string { return str(t, o["id"]) }), gs.Emojis)
		for uid, m := range gs.Members {
			u := obj(t, m)["user"]
			if !sameJSON(w.Users[uid], u) {
				t.Fatalf("user %s: users has %s, member has %s", uid, w.Users[uid], u)
			}
		}
	}
	// The second session's GUILD_CREATEs describe the same model.
	cache2 := &miniCache{t: t, guilds: map[string]*cacheGuild{}}
	for _, e := range ledger[1].Entries {
		cache2.apply(e)
	}
	for id, g := range cache2.guilds {
		sameMap(t, "members (second session)", g.members, w.Guilds[id].Members)
	}
}

func TestDeterministicForSeed(t *testing.T) {
	run := func() (World, []LedgerEntry) {
		s := startFake(t, Config{Guilds: 5, Seed: 42})
		c, _, _ := connectIdentify(t, s, "", 0, 1, allIntents)
		s.generate(500)
		c.close()
		return s.Snapshot(), s.Ledger(0)[0].Entries
	}
	w1, l1 := run()
	w2, l2 := run()
	if !reflect.DeepEqual(w1, w2) {
		t.Fatal("two fakes with one seed built different worlds")
	}
	if len(l1) != len(l2) {
		t.Fatalf("ledgers of %d and %d entries", len(l1), len(l2))
	}
	for i := range l1 {
		if i == 0 {
			continue // READY names the listener's port
		}
		if l1[i].T != l2[i].T || !bytes.Equal(l1[i].D, l2[i].D) {
			t.Fatalf("entry %d differs: %s %s / %s %s", i, l1[i].T, l1[i].D, l2[i].T, l2[i].D)
		}
	}
	s3 := startFake(t, Config{Guilds: 5, Seed: 43})
	if reflect.DeepEqual(w1, s3.Snapshot()) {
		t.Fatal("another seed built the same world")
	}
}

// TestInjectGuildCreate: an injected GUILD_CREATE enters the model whole.
func TestInjectGuildCreate(t *testing.T) {
	s := startFake(t, Config{Guilds: 1, Seed: 4})
	c, rd, got := connectIdentify(t, s, "", 0, 1, allIntents)
	defer c.close()
	orig := rd.Guilds[0].ID
	const newID = "175928847299117063"
	d := bytes.Replace(got[1].D, []byte(`"id":"`+orig+`"`), []byte(`"id":"`+newID+`"`), 1)
	if err := s.Dispatch(0, "GUILD_CREATE", d); err != nil {
		t.Fatal(err)
	}
	w := s.Snapshot()
	ng, ok := w.Guilds[newID]
	if !ok {
		t.Fatal("injected guild not in the model")
	}
	sameMap(t, "members", ng.Members, w.Guilds[orig].Members)
	sameMap(t, "roles", ng.Roles, w.Guilds[orig].Roles)
	if len(ng.Channels) != len(w.Guilds[orig].Channels) {
		t.Fatalf("%d channels, want %d", len(ng.Channels), len(w.Guilds[orig].Channels))
	}
	entries := s.Ledger(0)[0].Entries
	if last := entries[len(entries)-1]; last.T != "GUILD_CREATE" || last.Guild != newID {
		t.Fatalf("ledger %s guild %s", last.T, last.Guild)
	}
	if err := s.Dispatch(0, "GUILD_DELETE", []byte(`{"id":"`+newID+`"}`)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Snapshot().Guilds[newID]; ok {
		t.Fatal("GUILD_DELETE left the guild in the model")
	}
}
