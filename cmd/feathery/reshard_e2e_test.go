package main

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// reshardMix is live traffic whose dispatches differ byte for byte (ids,
// names) and change the model, so the cache can be compared afterwards:
// the hand-over tells events apart by their content.
var reshardMix = map[string]float64{
	"MESSAGE_CREATE": 40, "INTERACTION_CREATE": 8, "GUILD_MEMBER_ADD": 4, "GUILD_MEMBER_REMOVE": 2,
	"CHANNEL_CREATE": 2, "CHANNEL_UPDATE": 2, "CHANNEL_DELETE": 1, "GUILD_ROLE_CREATE": 2,
	"GUILD_ROLE_UPDATE": 2, "GUILD_ROLE_DELETE": 1, "GUILD_UPDATE": 1, "THREAD_CREATE": 1,
}

// testReshard: with traffic flowing, a bot re-shards 4 → 6 through the
// admin API and 6 → 3 through a reloaded config. Every dispatch the fake
// made is on the streams exactly once, judged by the event itself (the
// ledger's event identity, shared by the copies Discord sends both sets
// during the overlap); a guild's events stay in order; the new sets' READY
// and lazy GUILD_CREATEs are left out; the cache equals the fake's model;
// 4 + 6 + 3 identifies in all. Then feathery restarts with shards: 5: it
// resumes the 3 saved sessions and re-shards live to 5.
func testReshard(t *testing.T, bin string) {
	r := newConfigRig(t, bin, discordtest.Config{
		// Two identify buckets: each set identifies in ceil(count/2)
		// windows, the old set's shards sharing the buckets.
		Shards: 4, MaxConcurrency: 2, HeartbeatInterval: 2 * time.Second, Guilds: 32, MembersPerGuild: 8,
		Seed: 47, Rate: 300, Mix: reshardMix,
		// Scheduling delays on a loaded host may bring two IDENTIFYs of
		// a bucket closer at the fake than the limiter spaced them.
		IdentifyTolerance: 75 * time.Millisecond,
	}, nil)
	r.waitReady("first start")
	r.progress("traffic published", 300)
	sets := []int{4}
	settled := r.settled

	r.phase("reshard 4 -> 6 (API)")
	if code, body := r.post("/api/bots/"+deliveryBot+"/reshard", `{"shards": 6}`); code != http.StatusAccepted || !strings.Contains(body, `"ok": true`) {
		t.Fatalf("re-shard to 6: %d %s", code, body)
	}
	if code, body := r.post("/api/bots/"+deliveryBot+"/reshard", `{"shards": 8}`); code != http.StatusConflict {
		t.Errorf("a second re-shard during the first: %d %s, want 409", code, body)
	}
	testkit.Eventually(t, 90*time.Second, "re-sharded to 6", settled(6))
	sets = append(sets, 6)
	r.progress("traffic after the re-shard to 6", 300)

	r.phase("reshard 6 -> 3 (reload)")
	r.rewrite(func(c *bench.Config) { c.Bots[0].Shards = 3 })
	r.reload("shards: 3")
	testkit.Eventually(t, 90*time.Second, "re-sharded to 3", settled(3))
	sets = append(sets, 3)
	r.progress("traffic after the re-shard to 3", 300)

	// A restart with another count resumes the saved sessions, then
	// re-shards live: nothing Discord would replay is dropped.
	r.phase("restart with shards: 5")
	r.rewrite(func(c *bench.Config) { c.Bots[0].Shards = 5 })
	resumes := r.fake.Stats().Resumes
	stopCtx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	if err := r.f.Stop(stopCtx); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	cancel()
	r.start()
	testkit.Eventually(t, 90*time.Second, "restarted and re-sharded to 5", settled(5))
	sets = append(sets, 5)
	if st := r.fake.Stats(); st.Resumes < resumes+3 {
		t.Errorf("%d resumes after the restart, want at least %d: the saved sessions of 3 shards must resume", st.Resumes-resumes, 3)
	}
	r.progress("traffic after the restart", 300)

	r.phase("stop traffic")
	r.fake.SetRate(0)
	if err := r.fake.WaitIdle(r.ctx); err != nil {
		t.Fatal(err)
	}
	judgeReshard(t, r, sets, nil, nil)
	if t.Failed() {
		for _, l := range strings.Split(r.f.StderrTail(64<<20), "\n") {
			if strings.Contains(l, "re-shard") || strings.Contains(l, `"WARN"`) || strings.Contains(l, `"ERROR"`) || strings.Contains(l, "starting") {
				t.Log(l)
			}
		}
	}

	// The re-shard's own account, from the control stream.
	re := regexp.MustCompile(`overlap ([0-9.a-zµ]+), guilds switched (\d+), old-set events skipped (\d+), new-set events skipped (\d+)`)
	done := 0
	for _, e := range xrangeAll(t, r.rc, r.keys.Control()) {
		if e.FieldValues["kind"] != "reshard" {
			continue
		}
		if m := re.FindStringSubmatch(e.FieldValues["detail"]); m != nil {
			done++
			f := strings.Fields(e.FieldValues["detail"])
			t.Logf("figure: re-shard %s %s %s: overlap %s, %s guilds switched, events de-duplicated %s on the old set + %s on the new set",
				f[1], f[2], f[3], m[1], m[2], m[3], m[4])
		}
	}
	if done != 3 {
		t.Errorf("%d re-shard done control events, want 3", done)
	}
	if st := r.fake.Stats(); st.Identifies != 4+6+3+5 {
		t.Errorf("%d identifies, want %d (each set once)", st.Identifies, 4+6+3+5)
	} else {
		t.Logf("figure: re-shards 4 -> 6 -> 3, restart -> 5: identifies spent %d (4 + 6 + 3 + 5, each set once); session starts left %d", st.Identifies, st.SessionStartRemaining)
	}
	if gaps := gapEvents(t, r.rc, r.keys.Control(), deliveryBot); len(gaps) != 0 {
		t.Errorf("gap control events %v: no session may be lost", gaps)
	}
	for i, v := range r.fake.Stats().Violations {
		if i == 10 {
			break
		}
		t.Errorf("the fake saw a protocol violation: %+v", v)
	}
}

// settled reports whether feathery runs count shards, all ready, and no
// re-shard.
func (r *configRig) settled(count int) func() bool {
	return func() bool {
		st := featheryStatus(r.t, r.ctx, r.f)
		if len(st.Resharding) > 0 || len(st.Shards) != count {
			return false
		}
		for _, s := range st.Shards {
			if s.State != "ready" || s.ShardCount != count {
				return false
			}
		}
		return true
	}
}

// judgeReshard checks the streams against the fake's ledgers (see
// testReshard) and the cache against its model. deadOld are the shards of
// the first set that no longer ran when the second came: the second set's
// READY of such an id and GUILD_CREATE of their guilds are published.
// abandoned are the gaps of the sessions of a new set a crash abandoned
// during the overlap: an event one of whose two copies on the streams is
// from such a session is counted as doubled, not failed; an event of such
// a session after its gap that is nowhere on the streams as lost.
func judgeReshard(t *testing.T, r *configRig, sets []int, deadOld map[int]bool, abandoned map[gapKey][]gapRange) (doubled, lost int) {
	t.Helper()
	fake := r.fake
	type ref struct {
		shard   int
		session string
		seq     int64
	}
	type info struct {
		event int64
		t     string
		d     []byte
		guild string
	}
	byRef := map[ref]info{}
	want := map[int64]bool{}
	left := map[int64]bool{}
	var sessions []discordtest.LedgerSession
	for shard := range 8 {
		sessions = append(sessions, fake.Ledger(shard)...)
	}
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].Entries[0].Event < sessions[j].Entries[0].Event })
	set, prev := 0, 0
	for n, ls := range sessions {
		if n >= sets[0] && ls.Shards != sets[set] {
			prev = sets[set]
			set++
			if set >= len(sets) || ls.Shards != sets[set] {
				t.Fatalf("session %s of shard %d has %d shards: not one of the sets %v in order", ls.Session, ls.Shard, ls.Shards, sets)
			}
		}
		lazy := set > 0
		for i, e := range ls.Entries {
			byRef[ref{ls.Shard, ls.Session, e.Seq}] = info{e.Event, e.T, e.D, e.Guild}
			dead := set == 1 && (e.T == "READY" && deadOld[ls.Shard] || e.T == "GUILD_CREATE" && deadOld[guildShardOf(e.Guild, prev)])
			if lazy && (i == 0 && e.T == "READY" && ls.Shard >= prev || dead) {
				want[e.Event] = true // no shard of this id (or guild's) before: published
				continue
			}
			if lazy && (i == 0 && e.T == "READY" || e.T == "GUILD_CREATE") {
				left[e.Event] = true
				continue
			}
			lazy = false
			want[e.Event] = true
		}
	}
	var got []streamEntry
	last, lastChange := -1, time.Now()
	testkit.Eventually(t, 60*time.Second, "every event published (or no change for 3s)", func() bool {
		got = readEntries(t, r.rc, []string{r.events, r.messages})
		if len(got) != last {
			last, lastChange = len(got), time.Now()
		}
		return len(got) >= len(want) || time.Since(lastChange) > 3*time.Second
	})
	count := map[int64]int{}
	published := map[ref]bool{}
	type placed struct {
		id    [2]uint64
		event int64
		t     string
	}
	perGuild := map[string][]placed{}
	problems := 0
	problem := func(format string, args ...any) {
		problems++
		if problems <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, e := range got {
		in, ok := byRef[ref{e.Shard, e.Session, e.Seq}]
		if !ok {
			problem("%s %s: shard %d session %s seq %d %s is in no ledger", e.Stream, e.ID, e.Shard, e.Session, e.Seq, e.T)
			continue
		}
		count[in.event]++
		published[ref{e.Shard, e.Session, e.Seq}] = true
		if left[in.event] {
			problem("the hand-over's %s (shard %d session %s seq %d) was published", in.t, e.Shard, e.Session, e.Seq)
		}
		if e.T != in.t || string(e.D) != string(in.d) {
			problem("%s %s: t %s d %.60q, the ledger has t %s d %.60q", e.Stream, e.ID, e.T, e.D, in.t, in.d)
		}
		if want := map[bool]string{true: r.messages, false: r.events}[strings.HasPrefix(in.t, "MESSAGE_")]; e.Stream != want {
			problem("%s %s (%s) is on %s, want %s", e.Stream, e.ID, in.t, e.Stream, want)
		}
		if in.guild != "" && count[in.event] == 1 {
			// A copy doubled by a crash (see abandoned) stands later.
			perGuild[in.guild] = append(perGuild[in.guild], placed{entryID(t, e.ID), in.event, in.t})
		}
	}
	// The events a crash excuses (see abandoned).
	fromAbandoned, afterGap := map[int64]bool{}, map[int64]bool{}
	for k, in := range byRef {
		if gs, ok := abandoned[gapKey{k.shard, k.session}]; ok {
			fromAbandoned[in.event] = fromAbandoned[in.event] || published[k]
			afterGap[in.event] = afterGap[in.event] || slices.ContainsFunc(gs, func(g gapRange) bool { return g.covers(k.seq) })
		}
	}
	var missing, twice []int64
	for ev := range want {
		switch c := count[ev]; {
		case c == 0 && afterGap[ev]:
			lost++
		case c == 2 && fromAbandoned[ev]:
			doubled++
		case c == 0:
			missing = append(missing, ev)
		case c > 1:
			twice = append(twice, ev)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	sort.Slice(twice, func(i, j int) bool { return twice[i] < twice[j] })
	if len(missing) > 0 {
		problem("%d events missing, first %v", len(missing), missing[:min(10, len(missing))])
		where := map[int64][]string{}
		for k, in := range byRef {
			where[in.event] = append(where[in.event], fmt.Sprintf("shard %d session %s seq %d %s guild %s", k.shard, k.session[len(k.session)-2:], k.seq, in.t, in.guild))
		}
		for _, ev := range missing[:min(10, len(missing))] {
			t.Logf("missing event %d: %v", ev, where[ev])
		}
	}
	if len(twice) > 0 {
		problem("%d events doubled, first %v", len(twice), twice[:min(10, len(twice))])
	}
	// A guild's events stand in the order the fake made them. Entries of
	// one publish script share their stream ids' millisecond across
	// streams, so across streams only the milliseconds compare.
	for g, ps := range perGuild {
		sort.Slice(ps, func(i, j int) bool { return ps[i].event < ps[j].event })
		for i := 1; i < len(ps); i++ {
			if ps[i].id[0] < ps[i-1].id[0] {
				problem("guild %s: event %d (%s) stands before event %d (%s)", g, ps[i].event, ps[i].t, ps[i-1].event, ps[i-1].t)
			}
		}
	}
	t.Logf("%d events made (%d sessions), %d entries read, %d hand-over READY/GUILD_CREATE left out", len(want), len(sessions), len(got), len(left))

	if doubled+lost > 0 {
		// A crash's doubled or lost events (within reported gaps) leave
		// the cache as they made it.
		t.Logf("cache not compared with the fake's model: %d events doubled and %d lost by the crash", doubled, lost)
		return doubled, lost
	}
	cr := consumers.NewCacheReader(r.rc, "")
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if diff := cacheDiff(t, cr, r.rc, fake.Snapshot()); diff != "" {
			return "cache differs from the fake's model:\n" + diff
		}
		return ""
	})
	return doubled, lost
}

// guildShardOf is the shard of guild id among count shards.
func guildShardOf(id string, count int) int {
	g, _ := strconv.ParseUint(id, 10, 64)
	return int((g >> 22) % uint64(max(count, 1)))
}
