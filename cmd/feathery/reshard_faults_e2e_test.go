package main

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// guildsPerShard is the fewest and the most guilds of the fake's world on
// one of count shards.
func guildsPerShard(fake *discordtest.Server, count int) (fewest, most int) {
	per := make([]int, count)
	for id := range fake.Snapshot().Guilds {
		per[guildShardOf(id, count)]++
	}
	fewest = per[0]
	for _, n := range per {
		fewest, most = min(fewest, n), max(most, n)
	}
	return fewest, most
}

// shardSessions are the sessions feathery's shards run, by shard id.
func (r *configRig) shardSessions() map[int]string {
	out := map[int]string{}
	for _, s := range featheryStatus(r.t, r.ctx, r.f).Shards {
		out[s.Shard] = s.Session
	}
	return out
}

// lastOnStreams is the highest seq of session on the bot's streams.
func (r *configRig) lastOnStreams(session string) int64 {
	last := int64(0)
	for _, e := range readEntries(r.t, r.rc, []string{r.events, r.messages}) {
		if e.Session == session {
			last = max(last, e.Seq)
		}
	}
	return last
}

// testShardingRequired: Discord closes a shard with 4011 once the bot has
// outgrown its shard count. feathery (one process) re-shards to the count
// /gateway/bot then recommends instead of stopping, the other shard
// publishing meanwhile: every dispatch of the ledger is on the streams
// exactly once, judged by its content (the closed shard's guilds come back
// with the new set's GUILD_CREATEs, published since their old shard is
// gone); a gap control event names the session 4011 ended and its last
// published seq; no fatal event, and the process runs on.
func testShardingRequired(t *testing.T, bin string) {
	r := newConfigRig(t, bin, discordtest.Config{
		Shards: 2, MaxConcurrency: 4, HeartbeatInterval: 2 * time.Second, Guilds: 24, MembersPerGuild: 6,
		Seed: 13, Rate: 300, Mix: reshardMix,
	}, nil)
	// The largest shard at 4 shards fits under the limit; every shard at 2
	// does not.
	fewest2, _ := guildsPerShard(r.fake, 2)
	_, most4 := guildsPerShard(r.fake, 4)
	if most4 >= fewest2 {
		t.Fatalf("seed gives %d guilds on the largest of 4 shards, %d on the smallest of 2: pick another", most4, fewest2)
	}
	r.waitReady("first start")
	r.progress("traffic published", 300)
	closed := r.shardSessions()[1]

	r.phase("4011 on shard 1")
	if err := r.fake.SetShards(4); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.SetMaxGuildsPerShard(most4); err != nil {
		t.Fatal(err)
	}
	if err := r.fake.CloseShard(1, 4011); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 90*time.Second, "re-sharded to the 4 shards Discord recommends", r.settled(4))
	r.progress("traffic after the re-shard", 300)
	r.phase("stop traffic")
	r.fake.SetRate(0)
	if err := r.fake.WaitIdle(r.ctx); err != nil {
		t.Fatal(err)
	}
	judgeReshard(t, r, []int{2, 4}, map[int]bool{1: true}, nil)

	if done, err := r.f.Exited(); done {
		t.Fatalf("feathery exited after 4011: %v", err)
	}
	if n := r.controlCount(broker.ControlFatal, ""); n != 0 {
		t.Errorf("%d fatal control events, want none", n)
	}
	if n := r.controlCount(broker.ControlShardingRequired, ""); n != 1 {
		t.Errorf("%d sharding_required control events, want 1", n)
	}
	gaps := gapEvents(t, r.rc, r.keys.Control(), deliveryBot)
	if len(gaps) != 1 || len(gaps[gapKey{1, closed}]) != 1 {
		t.Fatalf("gap control events %v, want one for shard 1 session %s (ended by 4011)", gaps, closed)
	}
	var inLedger int64
	for _, ls := range r.fake.Ledger(1) {
		if ls.Session == closed {
			inLedger = ls.Entries[len(ls.Entries)-1].Seq
		}
	}
	if g, onStreams := gaps[gapKey{1, closed}][0], r.lastOnStreams(closed); g.last < onStreams || g.last > inLedger || g.to != 0 {
		t.Errorf("gap of session %s: last seq %d (to %d), want the last published: at least %d (on the streams), at most %d (sent)", closed, g.last, g.to, onStreams, inLedger)
	}
	if st := r.fake.Stats(); st.Identifies != 2+4 {
		t.Errorf("%d identifies, want 6 (2, then the 4 of the new set)", st.Identifies)
	}
	for i, v := range r.fake.Stats().Violations {
		if i == 10 {
			break
		}
		t.Errorf("the fake saw a protocol violation: %+v", v)
	}
}

// testNewSession: a reloaded config that changes the bot's intents (POST
// /api/reload) and then its token (SIGHUP) makes the bot's shards identify
// anew; each dropped session is named by a gap control event with its last
// published seq, every other dispatch is on the streams once, and neither
// token appears in feathery's logs, API replies or control stream.
func testNewSession(t *testing.T, bin string) {
	const newToken = "Mz.other-token-after-a-reset.0123456789abcdef"
	r := newConfigRig(t, bin, discordtest.Config{
		Shards: 2, HeartbeatInterval: 2 * time.Second, Guilds: 12, MembersPerGuild: 8, Seed: 53, Rate: 200,
		OtherTokens: []string{newToken},
	}, nil)
	r.waitReady("first start")
	r.progress("traffic published", 200)
	start := r.fake.Stats()
	var replies []string
	change := func(what string, mod func(*bench.Bot), apply func()) {
		t.Helper()
		before := r.shardSessions()
		r.rewrite(func(c *bench.Config) { mod(&c.Bots[0]) })
		r.phase(what)
		apply()
		testkit.Eventually(t, 60*time.Second, what+": every shard on a new session", func() bool {
			now := featheryStatus(t, r.ctx, r.f).Shards
			for _, s := range now {
				if s.State != "ready" || s.Session == "" || s.Session == before[s.Shard] {
					return false
				}
			}
			return len(now) == len(before)
		})
		for id, sess := range before {
			r.dropped = append(r.dropped, gapKey{id, sess})
		}
		r.progress("traffic after: "+what, 200)
	}
	change("intents changed (POST /api/reload)", func(b *bench.Bot) { b.Intents = "ALL_UNPRIVILEGED|GUILD_MEMBERS" }, func() {
		code, body := r.post("/api/reload", "")
		replies = append(replies, body)
		if code != http.StatusOK {
			t.Fatalf("reload: %d %s", code, body)
		}
	})
	change("token changed (SIGHUP)", func(b *bench.Bot) { b.Token = newToken }, func() {
		if err := r.f.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	})
	_, _, status := httpDo(t, "GET", "http://"+r.opts.AdminAddr+"/api/status", "")
	replies = append(replies, status)

	// Each gap names the dropped session's last published seq.
	gaps := gapEvents(t, r.rc, r.keys.Control(), deliveryBot)
	for _, k := range r.dropped {
		var sent int64
		for _, ls := range r.fake.Ledger(k.shard) {
			if ls.Session == k.session {
				sent = ls.Entries[len(ls.Entries)-1].Seq
			}
		}
		onStreams := r.lastOnStreams(k.session)
		for _, g := range gaps[k] {
			if g.last < onStreams || g.last > sent {
				t.Errorf("gap of shard %d session %s: last seq %d, want the last published: at least %d (on the streams), at most %d (sent)",
					k.shard, k.session, g.last, onStreams, sent)
			}
		}
	}
	r.tokens = []string{newToken}
	r.finish(start.Identifies+4, nil)

	for _, tok := range []string{testToken, newToken} {
		for _, reply := range replies {
			if strings.Contains(reply, tok) {
				t.Errorf("an admin API reply contains a bot token: %.200s", reply)
			}
		}
		for _, e := range xrangeAll(t, r.rc, r.keys.Control()) {
			for _, v := range e.FieldValues {
				if strings.Contains(v, tok) {
					t.Errorf("control event %s contains a bot token", e.ID)
				}
			}
		}
	}
}

// testReshardCrash: feathery is killed (SIGKILL) while a re-shard 4 → 6
// (from a reloaded config) has both sets running. The next start resumes
// the old set's saved sessions (no identify for them), reports each session
// of the abandoned new set as a gap (bot, shard, session, last published
// seq) and re-shards to 6 again. Judged against the ledger: every event
// is on the streams; the only events twice are ones the abandoned set
// published before the crash and the old set published again on its
// replay, and the only ones missing are within an abandoned session's gap
// (both counted: the figures of what a crash in the overlap costs).
func testReshardCrash(t *testing.T, bin string) {
	r := newConfigRig(t, bin, discordtest.Config{
		// One identify bucket: the new set's 6 shards identify one a
		// window, so the overlap lasts long enough to kill in.
		Shards: 4, MaxConcurrency: 1, HeartbeatInterval: 2 * time.Second, Guilds: 32, MembersPerGuild: 8,
		Seed: 59, Rate: 300, Mix: reshardMix,
		// Scheduling delays on a loaded host may bring two IDENTIFYs of
		// a bucket closer at the fake than the limiter spaced them.
		IdentifyTolerance: 75 * time.Millisecond,
	}, nil)
	r.waitReady("first start")
	r.progress("traffic published", 300)
	oldSessions := r.shardSessions()

	r.phase("reshard 4 -> 6 (reload)")
	r.rewrite(func(c *bench.Config) { c.Bots[0].Shards = 6 })
	r.reload("shards: 6")
	// Two sessions of the new set ready and recorded in Redis (their
	// staged checkpoints): a session killed before its READY was durable
	// left nothing to report, the old set's resume covers it.
	testkit.Eventually(t, 60*time.Second, "two shards of the new set ready, their sessions checkpointed", func() bool {
		recorded := 0
		for _, s := range featheryStatus(t, r.ctx, r.f).Shards {
			if s.ShardCount != 6 || s.State != "ready" {
				continue
			}
			key := r.keys.StagedSession(deliveryBot, s.Shard, 6)
			got, err := r.rc.Do(r.ctx, r.rc.B().Hget().Key(key).Field("session").Build()).ToString()
			if err == nil && got != "" {
				recorded++
			}
		}
		return recorded >= 2
	})
	r.phase("kill -9 during the overlap")
	if err := r.f.Kill(); err != nil {
		t.Fatal(err)
	}
	if n := r.fake.Stats().Identifies; n >= 4+6 {
		t.Fatalf("%d identifies at the kill: the new set was complete, the overlap was missed", n)
	}
	resumes := r.fake.Stats().Resumes
	r.start()
	testkit.Eventually(t, 90*time.Second, "restarted and re-sharded to 6", r.settled(6))
	if st := r.fake.Stats(); st.Resumes < resumes+4 {
		t.Errorf("%d resumes after the restart, want at least 4: the old set's saved sessions must resume", st.Resumes-resumes)
	}
	r.progress("traffic after the re-shard", 300)
	r.phase("stop traffic")
	r.fake.SetRate(0)
	if err := r.fake.WaitIdle(r.ctx); err != nil {
		t.Fatal(err)
	}

	// The gaps name the abandoned new set's sessions, none of the old set.
	gaps := gapEvents(t, r.rc, r.keys.Control(), deliveryBot)
	abandoned := map[gapKey][]gapRange{}
	for k, g := range gaps {
		if oldSessions[k.shard] == k.session {
			t.Errorf("gap for shard %d session %s of the old set, which resumed", k.shard, k.session)
			continue
		}
		abandoned[k] = g
	}
	newSet := 0
	for id := range 6 {
		for _, ls := range r.fake.Ledger(id) {
			if ls.Shards != 6 || len(ls.Entries) == 0 {
				continue
			}
			if _, ok := abandoned[gapKey{id, ls.Session}]; ok {
				newSet++
			}
		}
	}
	if newSet < 2 {
		t.Errorf("%d gap events name sessions of the abandoned new set, want one for each of its shards that was ready (at least 2): %v", newSet, gaps)
	}
	doubled, lost := judgeReshard(t, r, []int{4, 6}, nil, abandoned)
	t.Logf("figure: kill -9 during a re-shard 4 -> 6: %d sessions of the new set abandoned (gap events), %d events doubled, %d lost within their gaps", len(abandoned), doubled, lost)
	if n := r.controlCount(broker.ControlReshard, ""); n == 0 {
		t.Error("no reshard control event")
	}
	for i, v := range r.fake.Stats().Violations {
		if i == 10 {
			break
		}
		t.Errorf("the fake saw a protocol violation: %+v", v)
	}
}
