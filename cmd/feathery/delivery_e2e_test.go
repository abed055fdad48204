package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/gateway/discordtest"
)

// TestDelivery_EndToEnd is the delivery contract with real processes: the
// fake Discord (16 shards, live traffic) → a feathery child process → a
// redis-server child process with AOF. With traffic flowing it goes through
// a SIGKILL and restart of feathery, a Redis outage long enough for the
// shard queues to fill, a fake Discord restart plus dropped TCP
// connections, and bursts of RECONNECT and INVALID_SESSION. Afterwards the
// routed streams, de-interleaved per shard, equal the fake's ledger: every
// dispatch once, t and d byte for byte, on the stream its route names, in
// per-shard order; only shards whose session was invalidated for good
// identified again, and each such session has a gap control event.
func TestDelivery_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server")
	}
	const (
		shards    = 16
		bot       = "e2e"
		queueSize = 64
		rate      = 400
		heartbeat = 2 * time.Second
	)
	bin := buildBinary(t)

	rs, err := bench.StartRedis(bench.RedisOptions{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	fake, err := discordtest.Start(discordtest.Config{
		Token: testToken, Shards: shards, MaxConcurrency: shards,
		IdentifyWindow: 150 * time.Millisecond, HeartbeatInterval: heartbeat,
		ReconnectDelay: 500 * time.Millisecond,
		Guilds:         48, MembersPerGuild: 8, Seed: 23, Rate: rate,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })

	admin, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "feathery.yaml")
	if err := bench.WriteConfig(cfgPath, bench.Config{
		RedisURL: rs.URL(), RESTURL: fake.URL() + "/api/v10", AdminAddr: admin,
		LogLevel: "debug", IdentifyWindow: 150 * time.Millisecond, ShutdownTimeout: 20 * time.Second,
		Publisher: bench.PublisherTuning{QueueSize: queueSize},
		Bots: []bench.Bot{{
			Name: bot, Token: testToken, Shards: shards, Compression: "zstd-stream", Cache: true,
			Routes: []bench.Route{{Events: []string{"MESSAGE_*"}, Stream: "messages", Groups: []string{"g"}}},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	opts := bench.FeatheryOptions{Binary: bin, Config: cfgPath, AdminAddr: admin}
	f, err := bench.StartFeathery(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Kill() })

	rc := redisClient(t, rs.Addr)
	keys := broker.NewKeys("")
	messages, events := keys.Stream(bot, "messages"), keys.Events(bot)
	published := func() int64 { return xlen(t, rc, messages) + xlen(t, rc, events) }

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	waitReady := func(what string) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 45*time.Second)
		defer wcancel()
		if _, err := f.WaitReady(wctx, shards); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// progress waits until more entries than now are on the streams.
	progress := func(what string, more int64) {
		t.Helper()
		base := published()
		waitFor(t, 45*time.Second, what, func() bool { return published() >= base+more })
	}
	// recovered waits until the fake counted at least the resumes and
	// identifies given and feathery reports every shard ready again.
	recovered := func(what string, resumes, identifies int64) {
		t.Helper()
		waitFor(t, 45*time.Second, what+": resumes and identifies", func() bool {
			st := fake.Stats()
			return st.Resumes >= resumes && st.Identifies >= identifies
		})
		waitReady(what)
	}

	phase := func(name string) { t.Logf("%s %s", time.Now().Format("15:04:05.000"), name) }
	waitReady("first start")
	phase("ready")
	progress("traffic published", 200)
	start := fake.Stats()
	if start.Identifies != shards {
		t.Fatalf("first start: %d identifies, want %d", start.Identifies, shards)
	}

	// 1. SIGKILL feathery and start it again: every shard resumes.
	phase("SIGKILL")
	if err := f.Kill(); err != nil {
		t.Fatal(err)
	}
	f, err = bench.StartFeathery(opts)
	if err != nil {
		t.Fatal(err)
	}
	recovered("restart after SIGKILL", start.Resumes+shards, 0)
	if st := fake.Stats(); st.Identifies != start.Identifies {
		t.Errorf("restart after SIGKILL identified: %d identifies, want %d (every shard must resume)", st.Identifies, start.Identifies)
	}
	progress("traffic after the restart", 200)

	// 2. Stop Redis (graceful, AOF) until the shard queues are full, then
	// start it again.
	phase("stop Redis")
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	// Backpressure: queues fill up to their bound and no further.
	queues := func() (full int) {
		for _, s := range featheryStatus(t, ctx, f).Shards {
			if s.QueueDepth > queueSize {
				t.Fatalf("shard %d queue holds %d events, bound %d", s.Shard, s.QueueDepth, queueSize)
			}
			if s.QueueDepth == queueSize {
				full++
			}
		}
		return full
	}
	waitFor(t, 45*time.Second, "shard queues full while Redis is down", func() bool { return queues() >= shards/2 })
	// Keep Redis down while the fake sends two heartbeat intervals more of
	// traffic (feathery no longer reads it and must keep heartbeating);
	// meanwhile Discord drops two backpressured shards, which must resume
	// from what was accepted.
	outageResumes := fake.Stats().Resumes
	for _, id := range []int{3, 7} {
		if err := fake.CloseShard(id, 0); err != nil {
			t.Fatalf("drop shard %d during the outage: %v", id, err)
		}
	}
	sentNow := dispatched(fake)
	waitFor(t, 45*time.Second, "traffic while Redis is down", func() bool {
		queues()
		return dispatched(fake) >= sentNow+int64(2*heartbeat.Seconds()*rate)
	})
	phase("start Redis")
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	waitReady("Redis back")
	waitFor(t, 45*time.Second, "the shards dropped during the outage resumed", func() bool {
		return fake.Stats().Resumes >= outageResumes+2
	})
	progress("traffic after the Redis outage", 200)

	// 3. Cut the connections to Discord: the fake drops every connection,
	// then four shards lose theirs again.
	before := fake.Stats()
	phase("restart fake")
	if err := fake.Restart(); err != nil {
		t.Fatal(err)
	}
	recovered("fake Discord restart", before.Resumes+shards, 0)
	phase("drop connections")
	before = fake.Stats()
	for _, id := range []int{1, 5, 9, 13} {
		if err := fake.CloseShard(id, 0); err != nil {
			t.Fatalf("drop shard %d: %v", id, err)
		}
	}
	recovered("dropped connections", before.Resumes+4, 0)
	progress("traffic after the dropped connections", 200)

	// 4. Bursts: RECONNECT on ten shards, resumable INVALID_SESSION on
	// four, and INVALID_SESSION d:false on two (those identify again).
	before = fake.Stats()
	lostSessions := map[int]string{} // shard -> session invalidated for good
	for _, id := range []int{14, 15} {
		ls := fake.Ledger(id)
		lostSessions[id] = ls[len(ls)-1].Session
	}
	phase("bursts")
	for id := range 10 {
		if err := fake.Reconnect(id); err != nil {
			t.Fatalf("reconnect shard %d: %v", id, err)
		}
	}
	for _, id := range []int{10, 11, 12, 13} {
		if err := fake.Invalidate(id, true); err != nil {
			t.Fatalf("invalidate shard %d: %v", id, err)
		}
	}
	for id := range lostSessions {
		if err := fake.Invalidate(id, false); err != nil {
			t.Fatalf("invalidate shard %d for good: %v", id, err)
		}
	}
	recovered("bursts", before.Resumes+14, before.Identifies+2)
	progress("traffic after the bursts", 200)

	// Stop the traffic and wait until feathery has published what was sent.
	phase("stop traffic")
	fake.SetRate(0)
	if err := fake.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	sent := int64(0)
	for id := range shards {
		for _, ls := range fake.Ledger(id) {
			sent += int64(len(ls.Entries))
		}
	}
	last, lastChange := published(), time.Now()
	waitFor(t, 60*time.Second, "every dispatch published (or no change for 3s)", func() bool {
		n := published()
		if n != last {
			last, lastChange = n, time.Now()
		}
		return n >= sent || time.Since(lastChange) > 3*time.Second
	})
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	phase("SIGTERM")
	if err := f.Stop(sctx); err != nil {
		t.Errorf("graceful stop: %v", err)
	}

	st := fake.Stats()
	if len(st.Violations) > 0 {
		for i, v := range st.Violations {
			if i == 10 {
				break
			}
			t.Errorf("the fake saw a protocol violation: %+v", v)
		}
	}
	if want := start.Identifies + int64(len(lostSessions)); st.Identifies != want {
		t.Errorf("%d identifies in all, want %d: only the sessions invalidated for good may identify again", st.Identifies, want)
	}

	gaps := gapEvents(t, rc, keys.Control(), bot)
	for id, sess := range lostSessions {
		if _, ok := gaps[gapKey{id, sess}]; !ok {
			t.Errorf("shard %d: no gap control event names session %s, invalidated with d:false", id, sess)
		}
	}
	for k := range gaps {
		if lostSessions[k.shard] != k.session {
			t.Errorf("gap control event for shard %d session %s, which was never invalidated for good", k.shard, k.session)
		}
	}
	got := readEntries(t, rc, []string{events, messages})
	checkDelivery(t, fake, shards, bot, got, gaps, func(typ string) string {
		if strings.HasPrefix(typ, "MESSAGE_") {
			return messages
		}
		return events
	})

	for _, name := range []string{f.StderrPath(), filepath.Join(dir, "stdout.log")} {
		out, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(out, []byte(testToken)) {
			t.Errorf("feathery's output %s contains the bot token", filepath.Base(name))
		}
		if name == f.StderrPath() && !bytes.Contains(out, []byte(`"msg":"resumed"`)) {
			t.Errorf("feathery's debug log %s has no resume in it: not the log this test meant to check", name)
		}
	}
	if t.Failed() {
		t.Logf("feathery's log (%s) ends with:\n%s", f.StderrPath(), f.StderrTail(3000))
	}
}

// dispatched is the number of dispatches the fake has sent or queued.
func dispatched(fake *discordtest.Server) int64 {
	var n int64
	for _, c := range fake.Stats().DispatchesPerShard {
		n += c
	}
	return n
}

// featheryStatus reads the child process' /api/status.
func featheryStatus(t *testing.T, ctx context.Context, f *bench.Feathery) statusReport {
	t.Helper()
	var st statusReport
	b, err := f.Status(ctx)
	if err != nil {
		return st
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode status: %v", err)
	}
	return st
}

type gapKey struct {
	shard   int
	session string
}

// gapEvents returns the gap control events of bot: (shard, session) → the
// last seq published of the lost session.
func gapEvents(t *testing.T, rc rueidis.Client, control, bot string) map[gapKey]int64 {
	t.Helper()
	out := map[gapKey]int64{}
	for _, e := range xrangeAll(t, rc, control) {
		if e.FieldValues["kind"] != broker.ControlGap || e.FieldValues["bot"] != bot {
			continue
		}
		shard, err1 := strconv.Atoi(e.FieldValues["shard"])
		seq, err2 := strconv.ParseInt(e.FieldValues["last_seq"], 10, 64)
		if err1 != nil || err2 != nil || e.FieldValues["session"] == "" {
			t.Errorf("gap control event %s: bad fields %v", e.ID, e.FieldValues)
			continue
		}
		out[gapKey{shard, e.FieldValues["session"]}] = seq
	}
	return out
}

// xrangeAll reads a whole stream, a page at a time.
func xrangeAll(t *testing.T, rc rueidis.Client, key string) []rueidis.XRangeEntry {
	t.Helper()
	var all []rueidis.XRangeEntry
	from := "-"
	for {
		page, err := rc.Do(context.Background(), rc.B().Xrange().Key(key).Start(from).End("+").Count(5000).Build()).AsXRange()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", key, err)
		}
		all = append(all, page...)
		if len(page) < 5000 {
			return all
		}
		from = "(" + page[len(page)-1].ID
	}
}

// streamEntry is one event entry with its place on its stream.
type streamEntry struct {
	consumers.Message
	pos int // index on its stream
}

// readEntries decodes every entry of the streams.
func readEntries(t *testing.T, rc rueidis.Client, streams []string) []streamEntry {
	t.Helper()
	var out []streamEntry
	for _, key := range streams {
		for i, e := range xrangeAll(t, rc, key) {
			m, err := consumers.DecodeEntry(e.ID, e.FieldValues)
			if err != nil {
				t.Errorf("%s entry %s: %v", key, e.ID, err)
				continue
			}
			m.Stream = key
			out = append(out, streamEntry{Message: m, pos: i})
		}
	}
	return out
}

// entryID orders stream entry ids ("ms-n").
func entryID(t *testing.T, id string) [2]uint64 {
	ms, n, _ := strings.Cut(id, "-")
	a, err1 := strconv.ParseUint(ms, 10, 64)
	b, err2 := strconv.ParseUint(n, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("bad stream entry id %q", id)
	}
	return [2]uint64{a, b}
}

func idLess(a, b [2]uint64) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// checkDelivery compares the entries with the fake's ledger, shard by
// shard: each ledger entry stands exactly once on the stream route names,
// with t and d byte for byte; entries of a session stand in seq order on
// each stream and in stream-id order across streams; a shard's sessions
// follow each other in ledger order on each stream; no entry is unknown to
// the ledger. Entries after a gap event's last seq of a lost session may
// be missing (Discord cannot replay them).
func checkDelivery(t *testing.T, fake *discordtest.Server, shards int, bot string, got []streamEntry, gaps map[gapKey]int64, route func(string) string) {
	t.Helper()
	type ref struct {
		shard   int
		session string
		seq     int64
	}
	at := map[ref][]streamEntry{}
	for _, e := range got {
		if e.Bot != bot {
			t.Errorf("%s %s: bot %q, want %q", e.Stream, e.ID, e.Bot, bot)
		}
		r := ref{e.Shard, e.Session, e.Seq}
		at[r] = append(at[r], e)
	}
	var expected, verified, lost, excused int
	problems := 0
	problem := func(format string, args ...any) {
		problems++
		if problems <= 20 {
			t.Errorf(format, args...)
		}
	}
	for shard := range shards {
		ledger := fake.Ledger(shard)
		order := map[string]int{}
		for i, ls := range ledger {
			order[ls.Session] = i
			var prevID [2]uint64
			var prevSeq int64
			var prevStream string
			for _, le := range ls.Entries {
				expected++
				r := ref{shard, ls.Session, le.Seq}
				es := at[r]
				delete(at, r)
				if len(es) == 0 {
					if gapSeq, ok := gaps[gapKey{shard, ls.Session}]; ok && le.Seq > gapSeq {
						excused++
						continue
					}
					lost++
					problem("lost: shard %d session %s seq %d %s", shard, ls.Session, le.Seq, le.T)
					continue
				}
				if gapSeq, ok := gaps[gapKey{shard, ls.Session}]; ok && le.Seq > gapSeq {
					problem("shard %d session %s seq %d %s was published, yet the gap event names last seq %d", shard, ls.Session, le.Seq, le.T, gapSeq)
				}
				if len(es) > 1 {
					problem("doubled: shard %d session %s seq %d %s stands %d times", shard, ls.Session, le.Seq, le.T, len(es))
				}
				e := es[0]
				if e.T != le.T || !bytes.Equal(e.D, le.D) {
					problem("shard %d session %s seq %d: entry %s has t %s d %.80q, sent t %s d %.80q", shard, ls.Session, le.Seq, e.ID, e.T, e.D, le.T, le.D)
					continue
				}
				if want := route(le.T); e.Stream != want {
					problem("shard %d session %s seq %d %s: on %s, want %s", shard, ls.Session, le.Seq, le.T, e.Stream, want)
				}
				// One publish script stamps the ids of every stream it writes
				// from the same clock, so across streams only the
				// millisecond parts compare.
				id := entryID(t, e.ID)
				if prevSeq > 0 && (e.Stream == prevStream && idLess(id, prevID) || id[0] < prevID[0]) {
					problem("out of order: shard %d session %s seq %d (%s %s) stands before seq %d (%s)", shard, ls.Session, le.Seq, e.Stream, e.ID, prevSeq, prevStream)
				}
				prevID, prevSeq, prevStream = id, le.Seq, e.Stream
				verified++
			}
		}
		// Per stream, a shard's sessions follow each other in ledger order.
		lastSession := map[string]int{}
		for _, e := range got {
			if e.Shard != shard {
				continue
			}
			o, ok := order[e.Session]
			if !ok {
				continue // reported below as unknown
			}
			if o < lastSession[e.Stream] {
				problem("out of order: shard %d session %s (%s %s) stands after a later session", shard, e.Session, e.Stream, e.ID)
			}
			lastSession[e.Stream] = max(lastSession[e.Stream], o)
		}
	}
	for r, es := range at {
		problem("unexpected: %s %s is shard %d session %s seq %d %s, not in the ledger", es[0].Stream, es[0].ID, r.shard, r.session, r.seq, es[0].T)
	}
	if problems > 20 {
		t.Errorf("... %d problems in all", problems)
	}
	t.Logf("ledger %d dispatches: %d verified, %d lost, %d after a reported gap; %d entries read", expected, verified, lost, excused, len(got))
	if verified == 0 {
		t.Error("nothing verified")
	}
}
