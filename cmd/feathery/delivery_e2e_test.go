package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestDelivery_EndToEnd is the delivery contract with real processes: the
// fake Discord (live traffic) → a feathery child process → a redis-server
// child process with AOF (appendfsync always). Afterwards the routed
// streams, de-interleaved per shard, equal the fake's ledger: every
// dispatch once, t and d byte for byte, on the stream its route names, in
// per-shard order (READY and RESUMED included: feathery publishes them);
// only sessions lost for good identified again, each has a gap control
// event, and only ledger entries after that event's last_seq may be
// missing.
func TestDelivery_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs redis-server")
	}
	bin := buildBinary(t)
	t.Run("faults", func(t *testing.T) { testDeliveryFaults(t, bin) })
	t.Run("session_expired", func(t *testing.T) { testDeliverySessionExpired(t, bin) })
	t.Run("crash_during_outage", func(t *testing.T) { testDeliveryCrashDuringOutage(t, bin) })
	t.Run("replica_failover", func(t *testing.T) { testDeliveryReplicaFailover(t, bin) })
	t.Run("wiped_redis", func(t *testing.T) { testDeliveryWipedRedis(t, bin) })
	t.Run("kill_during_resume", func(t *testing.T) { testDeliveryKillDuringResume(t, bin) })
	t.Run("frozen_redis", func(t *testing.T) { testDeliveryFrozenRedis(t, bin) })
}

const (
	deliveryBot       = "e2e"
	deliveryQueueSize = 64
)

// deliveryRig is one fake Discord, one redis-server and one feathery
// process publishing the fake's traffic with MESSAGE_* routed to their own
// stream.
type deliveryRig struct {
	t        *testing.T
	ctx      context.Context
	shards   int
	fake     *discordtest.Server
	rs       *bench.RedisServer
	opts     bench.FeatheryOptions
	f        *bench.Feathery
	dir      string
	rc       rueidis.Client
	keys     broker.Keys
	events   string
	messages string
	phases   []string
	// Failover rigs: feathery and rc reach Redis through proxy; rs is the
	// master, replica its replica.
	proxy   *testkit.TCPProxy
	replica *bench.RedisServer
	// bounded are the sessions that may end with a gap with an end (Redis
	// lost what was published up to it).
	bounded map[int]string
	// dropped are further sessions that end with a gap, besides finish's
	// lost (several of one shard: each changed token or intents drops
	// the shard's session).
	dropped []gapKey
	// tokens are further bot tokens feathery's output must not contain.
	tokens []string
	// incidents: checkpoint control events are expected (Redis lost
	// writes); elsewhere one is a false alarm.
	incidents bool
}

// rigOptions vary the rig's Redis.
type rigOptions struct {
	// failover starts a replica of the master and puts a proxy in front
	// of the master, switched by the test.
	failover bool
}

func newDeliveryRig(t *testing.T, bin string, fc discordtest.Config) *deliveryRig {
	t.Helper()
	return newDeliveryRigWith(t, bin, fc, rigOptions{})
}

func newDeliveryRigWith(t *testing.T, bin string, fc discordtest.Config, ro rigOptions) *deliveryRig {
	t.Helper()
	rs, err := bench.StartRedis(bench.RedisOptions{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rs.Close() })
	redisURL, redisAddr := rs.URL(), rs.Addr
	var replica *bench.RedisServer
	var proxy *testkit.TCPProxy
	if ro.failover {
		_, port, _ := strings.Cut(rs.Addr, ":")
		replica, err = bench.StartRedis(bench.RedisOptions{AppendOnly: true, Args: []string{"--replicaof", "127.0.0.1", port}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { replica.Close() })
		proxy = testkit.StartTCPProxy(t, rs.Addr)
		redisURL, redisAddr = "redis://"+proxy.Addr(), proxy.Addr()
	}
	fc.Token = testToken
	fc.MaxConcurrency = fc.Shards
	fc.IdentifyWindow = 150 * time.Millisecond
	fake, err := discordtest.Start(fc)
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
		RedisURL: redisURL, RESTURL: fake.URL() + "/api/v10", AdminAddr: admin,
		LogLevel: "debug", IdentifyWindow: fc.IdentifyWindow, ShutdownTimeout: 20 * time.Second,
		Publisher: bench.PublisherTuning{QueueSize: deliveryQueueSize},
		Bots: []bench.Bot{{
			Name: deliveryBot, Token: testToken, Shards: fc.Shards, Compression: "zstd-stream", Cache: true,
			Routes: []bench.Route{{Events: []string{"MESSAGE_*"}, Stream: "messages", Groups: []string{"g"}}},
		}},
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	keys := broker.NewKeys("")
	r := &deliveryRig{
		t: t, ctx: ctx, shards: fc.Shards, fake: fake, rs: rs, dir: dir, proxy: proxy, replica: replica,
		opts: bench.FeatheryOptions{Binary: bin, Config: cfgPath, AdminAddr: admin},
		rc:   redisClient(t, redisAddr), keys: keys,
		events: keys.Events(deliveryBot), messages: keys.Stream(deliveryBot, "messages"),
	}
	r.start()
	t.Cleanup(func() {
		r.f.Kill()
		if t.Failed() {
			t.Logf("phases: %s", strings.Join(r.phases, ", "))
			t.Logf("feathery's log (%s) ends with:\n%s", r.f.StderrPath(), r.f.StderrTail(3000))
		}
	})
	return r
}

// start launches feathery.
func (r *deliveryRig) start() {
	r.t.Helper()
	f, err := bench.StartFeathery(r.opts)
	if err != nil {
		r.t.Fatal(err)
	}
	r.f = f
}

// phase notes the time a step starts, for the failure report.
func (r *deliveryRig) phase(name string) {
	r.phases = append(r.phases, time.Now().Format("15:04:05.000")+" "+name)
}

// published is the number of entries on the event streams.
func (r *deliveryRig) published() int64 {
	return xlen(r.t, r.rc, r.messages) + xlen(r.t, r.rc, r.events)
}

// waitReady waits until feathery reports every shard ready and Redis up.
func (r *deliveryRig) waitReady(what string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.ctx, 45*time.Second)
	defer cancel()
	if _, err := r.f.WaitReady(ctx, r.shards); err != nil {
		r.t.Fatalf("%s: %v", what, err)
	}
}

// progress waits until more entries than now are on the streams.
func (r *deliveryRig) progress(what string, more int64) {
	r.t.Helper()
	base := r.published()
	testkit.Eventually(r.t, 45*time.Second, what, func() bool { return r.published() >= base+more })
}

// recovered waits until the fake counted at least the resumes and
// identifies given and feathery reports every shard ready again.
func (r *deliveryRig) recovered(what string, resumes, identifies int64) {
	r.t.Helper()
	testkit.Eventually(r.t, 45*time.Second, what+": resumes and identifies", func() bool {
		st := r.fake.Stats()
		return st.Resumes >= resumes && st.Identifies >= identifies
	})
	r.waitReady(what)
}

// fullQueues lists the shards whose queue is at its bound and fails the
// test if one holds more.
func (r *deliveryRig) fullQueues() (full []int) {
	r.t.Helper()
	for _, s := range featheryStatus(r.t, r.ctx, r.f).Shards {
		if s.QueueDepth > deliveryQueueSize {
			r.t.Fatalf("shard %d queue holds %d events, bound %d", s.Shard, s.QueueDepth, deliveryQueueSize)
		}
		if s.QueueDepth == deliveryQueueSize {
			full = append(full, s.Shard)
		}
	}
	return full
}

// finish stops the traffic, waits until feathery has published what was
// sent, stops feathery with SIGTERM and checks everything against the
// ledger. lost are the sessions (shard → session) that may end with a gap;
// it returns the ledger entries excused by a gap event.
func (r *deliveryRig) finish(identifies int64, lost map[int]string) (excused int) {
	t := r.t
	t.Helper()
	r.phase("stop traffic")
	r.fake.SetRate(0)
	if err := r.fake.WaitIdle(r.ctx); err != nil {
		t.Fatal(err)
	}
	sent := int64(0)
	for id := range r.shards {
		for _, ls := range r.fake.Ledger(id) {
			sent += int64(len(ls.Entries))
		}
	}
	last, lastChange := r.published(), time.Now()
	testkit.Eventually(t, 60*time.Second, "every dispatch published (or no change for 3s)", func() bool {
		n := r.published()
		if n != last {
			last, lastChange = n, time.Now()
		}
		return n >= sent || time.Since(lastChange) > 3*time.Second
	})
	r.phase("SIGTERM")
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	if err := r.f.Stop(ctx); err != nil {
		t.Errorf("graceful stop: %v", err)
	}

	st := r.fake.Stats()
	for i, v := range st.Violations {
		if i == 10 {
			break
		}
		t.Errorf("the fake saw a protocol violation: %+v", v)
	}
	if st.Identifies != identifies {
		t.Errorf("%d identifies in all, want %d: only the first start and the sessions lost for good may identify", st.Identifies, identifies)
	}
	if n := r.controlCount(broker.ControlCheckpoint, ""); n > 0 && !r.incidents {
		t.Errorf("%d checkpoint control events, yet Redis lost nothing and nobody wrote its keys", n)
	}
	gaps := gapEvents(t, r.rc, r.keys.Control(), deliveryBot)
	ended := slices.Clone(r.dropped)
	for id, sess := range lost {
		ended = append(ended, gapKey{id, sess})
	}
	for _, k := range ended {
		if !slices.ContainsFunc(gaps[k], func(g gapRange) bool { return g.to == 0 }) {
			t.Errorf("shard %d: no gap control event names session %s, lost for good", k.shard, k.session)
		}
	}
	for id, sess := range r.bounded {
		if !slices.ContainsFunc(gaps[gapKey{id, sess}], func(g gapRange) bool { return g.to > 0 }) {
			t.Errorf("shard %d: no gap control event names what Redis lost of session %s", id, sess)
		}
	}
	for k, rs := range gaps {
		for _, g := range rs {
			if g.to == 0 && !slices.Contains(ended, k) || g.to > 0 && r.bounded[k.shard] != k.session {
				t.Errorf("gap control event for shard %d session %s (%d, %d], which was not lost", k.shard, k.session, g.last, g.to)
			}
		}
	}
	// The graceful stop checkpointed each shard's session at its last
	// dispatch, so a next process resumes with nothing to replay.
	for id := range r.shards {
		ls := r.fake.Ledger(id)
		cur := ls[len(ls)-1]
		cp, err := r.rc.Do(r.ctx, r.rc.B().Hgetall().Key(r.keys.Session(deliveryBot, id)).Build()).AsStrMap()
		if err != nil {
			t.Fatalf("read checkpoint of shard %d: %v", id, err)
		}
		if want := strconv.FormatInt(cur.Entries[len(cur.Entries)-1].Seq, 10); cp["session"] != cur.Session || cp["seq"] != want {
			t.Errorf("shard %d checkpoint after the graceful stop: session %q seq %q, want %q %s", id, cp["session"], cp["seq"], cur.Session, want)
		}
	}
	got := readEntries(t, r.rc, []string{r.events, r.messages})
	excused = checkDelivery(t, r.fake, r.shards, deliveryBot, got, gaps, func(typ string) string {
		if strings.HasPrefix(typ, "MESSAGE_") {
			return r.messages
		}
		return r.events
	})

	for _, name := range []string{r.f.StderrPath(), filepath.Join(r.dir, "stdout.log")} {
		out, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range append([]string{testToken}, r.tokens...) {
			if bytes.Contains(out, []byte(tok)) {
				t.Errorf("feathery's output %s contains a bot token", filepath.Base(name))
			}
		}
		if name == r.f.StderrPath() && !bytes.Contains(out, []byte(`"level":"DEBUG"`)) {
			t.Errorf("%s has no debug lines: not the log this test meant to check", name)
		}
	}
	return excused
}

// testDeliveryFaults: 16 shards with traffic go through, in turn, a SIGKILL
// and restart of feathery (every shard resumes), a Redis outage long
// enough for the shard queues to fill (two shards dropped by Discord
// meanwhile), a fake Discord restart plus dropped TCP connections, and
// bursts of RECONNECT, resumable INVALID_SESSION and INVALID_SESSION
// d:false (only those two identify again).
func testDeliveryFaults(t *testing.T, bin string) {
	const (
		shards    = 16
		rate      = 400
		heartbeat = 2 * time.Second
	)
	r := newDeliveryRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: heartbeat, ReconnectDelay: 500 * time.Millisecond,
		Guilds: 48, MembersPerGuild: 8, Seed: 23, Rate: rate,
	})
	fake := r.fake

	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 200)
	start := fake.Stats()
	if start.Identifies != shards {
		t.Fatalf("first start: %d identifies, want %d", start.Identifies, shards)
	}

	// 1. SIGKILL feathery and start it again: every shard resumes.
	r.phase("SIGKILL")
	if err := r.f.Kill(); err != nil {
		t.Fatal(err)
	}
	r.start()
	r.recovered("restart after SIGKILL", start.Resumes+shards, 0)
	if st := fake.Stats(); st.Identifies != start.Identifies {
		t.Errorf("restart after SIGKILL identified: %d identifies, want %d (every shard must resume)", st.Identifies, start.Identifies)
	}
	r.progress("traffic after the restart", 200)

	// 2. Stop Redis (graceful, AOF) until the shard queues are full, then
	// start it again.
	r.phase("stop Redis")
	if err := r.rs.Stop(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 45*time.Second, "shard queues full while Redis is down", func() bool { return len(r.fullQueues()) >= shards/2 })
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
	testkit.Eventually(t, 45*time.Second, "traffic while Redis is down", func() bool {
		r.fullQueues()
		return dispatched(fake) >= sentNow+int64(2*heartbeat.Seconds()*rate)
	})
	r.phase("start Redis")
	if err := r.rs.Restart(); err != nil {
		t.Fatal(err)
	}
	r.waitReady("Redis back")
	testkit.Eventually(t, 45*time.Second, "the shards dropped during the outage resumed", func() bool {
		return fake.Stats().Resumes >= outageResumes+2
	})
	r.progress("traffic after the Redis outage", 200)

	// 3. Cut the connections to Discord: the fake drops every connection,
	// then four shards lose theirs again.
	before := fake.Stats()
	r.phase("restart fake")
	if err := fake.Restart(); err != nil {
		t.Fatal(err)
	}
	r.recovered("fake Discord restart", before.Resumes+shards, 0)
	r.phase("drop connections")
	before = fake.Stats()
	for _, id := range []int{1, 5, 9, 13} {
		if err := fake.CloseShard(id, 0); err != nil {
			t.Fatalf("drop shard %d: %v", id, err)
		}
	}
	r.recovered("dropped connections", before.Resumes+4, 0)
	r.progress("traffic after the dropped connections", 200)

	// 4. Bursts: RECONNECT on ten shards, resumable INVALID_SESSION on
	// four, and INVALID_SESSION d:false on two (those identify again).
	before = fake.Stats()
	lost := map[int]string{}
	for _, id := range []int{14, 15} {
		ls := fake.Ledger(id)
		lost[id] = ls[len(ls)-1].Session
	}
	r.phase("bursts")
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
	for id := range lost {
		if err := fake.Invalidate(id, false); err != nil {
			t.Fatalf("invalidate shard %d for good: %v", id, err)
		}
	}
	r.recovered("bursts", before.Resumes+14, before.Identifies+2)
	r.progress("traffic after the bursts", 200)

	r.finish(start.Identifies+int64(len(lost)), lost)
}

// testDeliverySessionExpired: Discord drops two shards while Redis is down
// and their readers are blocked on full queues; the outage outlasts the
// resume window, so those sessions end with dispatches that were never
// received (the fake's ledger has them). When Redis returns the two shards
// identify, feathery writes a gap control event naming each lost session
// with the last seq it published, and every ledger entry up to that seq is
// on the streams; the other shards resumed nothing and lost nothing.
func testDeliverySessionExpired(t *testing.T, bin string) {
	const (
		shards = 4
		rate   = 200
		window = 2 * time.Second
	)
	r := newDeliveryRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: time.Second, ResumeWindow: window,
		Guilds: 16, MembersPerGuild: 8, Seed: 29, Rate: rate,
	})
	fake := r.fake
	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 200)
	start := fake.Stats()

	r.phase("stop Redis")
	if err := r.rs.Stop(); err != nil {
		t.Fatal(err)
	}
	// Blocked shards: queue full and the fake ten dispatches ahead of what
	// feathery accepted, so the reader waits on the queue, not the socket,
	// and cannot notice the drop before Redis returns.
	var blocked []int
	testkit.Eventually(t, 45*time.Second, "two shards blocked on full queues while Redis is down", func() bool {
		blocked = blocked[:0]
		for _, s := range featheryStatus(t, r.ctx, r.f).Shards {
			ls := fake.Ledger(s.Shard)
			if s.QueueDepth == deliveryQueueSize && len(ls) > 0 && len(ls[len(ls)-1].Entries) > 0 &&
				ls[len(ls)-1].Entries[len(ls[len(ls)-1].Entries)-1].Seq >= s.Seq+10 {
				blocked = append(blocked, s.Shard)
			}
		}
		return len(blocked) >= 2
	})
	lost := map[int]string{}
	for _, id := range blocked[:2] {
		ls := fake.Ledger(id)
		lost[id] = ls[len(ls)-1].Session
		if err := fake.CloseShard(id, 0); err != nil {
			t.Fatalf("drop shard %d: %v", id, err)
		}
	}
	r.phase("dropped")
	// The dropped sessions expire while traffic for them goes on.
	testkit.Eventually(t, 45*time.Second, "the dropped sessions expired", func() bool { return fake.Stats().Sessions <= shards-len(lost) })
	r.phase("start Redis")
	if err := r.rs.Restart(); err != nil {
		t.Fatal(err)
	}
	r.recovered("Redis back", 0, start.Identifies+int64(len(lost)))
	r.progress("traffic after the outage", 200)

	if excused := r.finish(start.Identifies+int64(len(lost)), lost); excused == 0 {
		t.Error("no ledger entry was excused by a gap: the lost sessions lost nothing, so the gap path went untested")
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

// gapRange is one gap of a session: the events after last, up to to (0:
// to the end of the session), are missing.
type gapRange struct{ last, to int64 }

func (g gapRange) covers(seq int64) bool { return seq > g.last && (g.to == 0 || seq <= g.to) }

// gapEvents returns the gap control events of bot by (shard, session).
func gapEvents(t *testing.T, rc rueidis.Client, control, bot string) map[gapKey][]gapRange {
	t.Helper()
	out := map[gapKey][]gapRange{}
	for _, e := range xrangeAll(t, rc, control) {
		if e.FieldValues["kind"] != string(broker.ControlGap) || e.FieldValues["bot"] != bot {
			continue
		}
		shard, err1 := strconv.Atoi(e.FieldValues["shard"])
		seq, err2 := strconv.ParseInt(e.FieldValues["last_seq"], 10, 64)
		var to int64
		var err3 error
		if v, ok := e.FieldValues["to_seq"]; ok {
			to, err3 = strconv.ParseInt(v, 10, 64)
		}
		if err1 != nil || err2 != nil || err3 != nil || e.FieldValues["session"] == "" {
			t.Errorf("gap control event %s: bad fields %v", e.ID, e.FieldValues)
			continue
		}
		k := gapKey{shard, e.FieldValues["session"]}
		out[k] = append(out[k], gapRange{seq, to})
	}
	return out
}

// covered reports whether a gap of (shard, session) covers seq, and
// whether that gap is open-ended.
func covered(gaps map[gapKey][]gapRange, shard int, session string, seq int64) (ok, open bool) {
	for _, g := range gaps[gapKey{shard, session}] {
		if g.covers(seq) {
			ok = true
			open = open || g.to == 0
		}
	}
	return ok, open
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

// streamEntry is one decoded event entry.
type streamEntry struct {
	consumers.Message
}

// readEntries decodes every entry of the streams.
func readEntries(t *testing.T, rc rueidis.Client, streams []string) []streamEntry {
	t.Helper()
	var out []streamEntry
	for _, key := range streams {
		for _, e := range xrangeAll(t, rc, key) {
			m, err := consumers.DecodeEntry(e.ID, e.FieldValues)
			if err != nil {
				t.Errorf("%s entry %s: %v", key, e.ID, err)
				continue
			}
			m.Stream = key
			out = append(out, streamEntry{Message: m})
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
func checkDelivery(t *testing.T, fake *discordtest.Server, shards int, bot string, got []streamEntry, gaps map[gapKey][]gapRange, route func(string) string) (excused int) {
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
	var expected, verified, lost int
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
					if ok, _ := covered(gaps, shard, ls.Session, le.Seq); ok {
						excused++
						continue
					}
					lost++
					problem("lost: shard %d session %s seq %d %s", shard, ls.Session, le.Seq, le.T)
					continue
				}
				if _, open := covered(gaps, shard, ls.Session, le.Seq); open {
					problem("shard %d session %s seq %d %s was published, yet a gap event says the session ended before it", shard, ls.Session, le.Seq, le.T)
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
	return excused
}

// testDeliveryCrashDuringOutage: feathery is killed while Redis is down and
// its shards are blocked on full queues. Started again before Redis
// returns, it exits at once with one line naming Redis (it cannot load the
// checkpoints; a supervisor starts it again) and identifies nothing. Once
// Redis is back and feathery runs again, every shard RESUMEs from its
// checkpoint and Discord's replay fills the streams with what the killed
// process held in its queues: nothing lost, nothing doubled.
func testDeliveryCrashDuringOutage(t *testing.T, bin string) {
	const shards = 4
	r := newDeliveryRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: time.Second,
		Guilds: 16, MembersPerGuild: 8, Seed: 31, Rate: 200,
	})
	fake := r.fake
	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 200)
	start := fake.Stats()

	r.phase("stop Redis")
	if err := r.rs.Stop(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 45*time.Second, "two shard queues full while Redis is down", func() bool { return len(r.fullQueues()) >= 2 })
	r.phase("SIGKILL")
	if err := r.f.Kill(); err != nil {
		t.Fatal(err)
	}
	r.start()
	ctx, cancel := context.WithTimeout(r.ctx, 45*time.Second)
	defer cancel()
	if err := r.f.Wait(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("feathery started without Redis: exit %v (%v)", err, ctx.Err())
	}
	if tail := r.f.StderrTail(300); !strings.Contains(tail, "redis") {
		t.Errorf("exit without Redis does not name it: %q", tail)
	}
	sentNow := dispatched(fake)
	testkit.Eventually(t, 45*time.Second, "traffic while Redis is down", func() bool { return dispatched(fake) >= sentNow+200 })
	r.phase("start Redis")
	if err := r.rs.Restart(); err != nil {
		t.Fatal(err)
	}
	r.start()
	r.recovered("restart with Redis back", start.Resumes+shards, 0)
	r.progress("traffic after the outage", 200)
	r.finish(start.Identifies, nil)
}

// checkpointSeqs reads every shard's checkpoint seq through c.
func (r *deliveryRig) checkpointSeqs(c rueidis.Client) []int64 {
	out := make([]int64, r.shards)
	for id := range r.shards {
		s, _ := c.Do(r.ctx, c.B().Hget().Key(r.keys.Session(deliveryBot, id)).Field("seq").Build()).AsInt64()
		out[id] = s
	}
	return out
}

// controlCount is the number of control events of kind (and status, when
// not "") on the control stream.
func (r *deliveryRig) controlCount(kind broker.ControlKind, status string) int {
	n := 0
	for _, e := range xrangeAll(r.t, r.rc, r.keys.Control()) {
		if e.FieldValues["kind"] == string(kind) && (status == "" || e.FieldValues["status"] == status) {
			n++
		}
	}
	return n
}

// testDeliveryReplicaFailover: Redis master with a replica; the replica
// misses the last writes (stopped, its link cut), the master dies, the
// replica is promoted and the address moves to it. Every shard finds its
// checkpoint behind what it published, resumes from the stored one, and
// Discord's replay fills the promoted replica's streams: every stream equals
// the ledger, no gap, no identify.
func testDeliveryReplicaFailover(t *testing.T, bin string) {
	const shards = 4
	r := newDeliveryRigWith(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: 2 * time.Second,
		Guilds: 16, MembersPerGuild: 8, Seed: 37, Rate: 200,
	}, rigOptions{failover: true})
	r.incidents = true
	fake := r.fake
	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 200)
	start := fake.Stats()
	mc, err := bench.NewRedisClient(r.rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	rc, err := bench.NewRedisClient(r.replica.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	testkit.Eventually(t, 30*time.Second, "the replica in sync", func() bool {
		n, err := mc.Do(r.ctx, mc.B().Wait().Numreplicas(1).Timeout(1000).Build()).AsInt64()
		return err == nil && n == 1
	})

	r.phase("replica stopped, link cut")
	if err := syscall.Kill(r.replica.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := mc.Do(r.ctx, mc.B().ClientKill().TypeReplica().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	r.progress("traffic only the master has", 300)
	r.phase("master killed, replica promoted")
	masterSeqs := r.checkpointSeqs(mc)
	if err := r.rs.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(r.replica.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(r.ctx, rc.B().Arbitrary("REPLICAOF", "NO", "ONE").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	replicaSeqs := r.checkpointSeqs(rc)
	var missed int64
	behind := 0 // shards whose checkpoint went back
	for id := range shards {
		missed += masterSeqs[id] - replicaSeqs[id]
		if masterSeqs[id] > replicaSeqs[id] {
			behind++
		}
	}
	if missed <= 0 {
		t.Fatalf("the promoted replica misses nothing (master %v, replica %v): the failover tests nothing", masterSeqs, replicaSeqs)
	}
	t.Logf("the promoted replica misses %d events (checkpoints master %v, replica %v)", missed, masterSeqs, replicaSeqs)
	r.proxy.Cut(r.replica.Addr)

	testkit.Eventually(t, 60*time.Second, "every shard that lost writes found its checkpoint behind", func() bool {
		return r.controlCount(broker.ControlCheckpoint, "behind") >= behind
	})
	r.recovered("resumed from the stored checkpoints", start.Resumes+int64(behind), 0)
	r.progress("traffic after the failover", 200)
	r.finish(start.Identifies, nil)
}

// testDeliveryWipedRedis: FLUSHALL under a running feathery. Every shard
// finds its checkpoint gone: the consumer groups exist again, a redis_lost
// control event is written, each shard writes a gap naming what Redis lost
// of its session (up to what it had published), rewrites its checkpoint and
// resumes from it: after the wipe nothing is lost or doubled.
func testDeliveryWipedRedis(t *testing.T, bin string) {
	const shards = 4
	r := newDeliveryRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: 2 * time.Second,
		Guilds: 16, MembersPerGuild: 8, Seed: 41, Rate: 200,
	})
	fake := r.fake
	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 200)
	start := fake.Stats()
	r.bounded, r.incidents = map[int]string{}, true
	for id := range shards {
		ls := fake.Ledger(id)
		r.bounded[id] = ls[len(ls)-1].Session
	}
	r.phase("FLUSHALL")
	if err := r.rc.Do(r.ctx, r.rc.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// A shard finds the wipe with its next event: make sure each gets one.
	for id := range shards {
		if err := fake.Dispatch(id, "MESSAGE_CREATE", []byte(`{"id":"`+strconv.Itoa(900+id)+`","channel_id":"1","content":"after the wipe","author":{"id":"2"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 60*time.Second, "every shard found its checkpoint gone", func() bool {
		return r.controlCount(broker.ControlCheckpoint, "gone") >= shards
	})
	if n := r.controlCount(broker.ControlRedisLost, ""); n != 1 {
		t.Errorf("%d redis_lost control events, want 1", n)
	}
	r.recovered("resumed from the rewritten checkpoints", start.Resumes+shards, 0)
	groups, err := r.rc.Do(r.ctx, r.rc.B().XinfoGroups().Key(r.messages).Build()).ToArray()
	if err != nil || len(groups) != 1 {
		t.Errorf("consumer groups on %s after the wipe: %d %v, want g again", r.messages, len(groups), err)
	}
	r.progress("traffic after the wipe", 200)
	if excused := r.finish(start.Identifies, nil); excused == 0 {
		t.Error("no ledger entry was excused by the wipe's gaps")
	}
	if tail, err := os.ReadFile(r.f.StderrPath()); err == nil && bytes.Count(tail, []byte("redis lost its data (FLUSHALL")) != 1 {
		t.Errorf("the log says %d times that Redis lost its data, want once", bytes.Count(tail, []byte("redis lost its data (FLUSHALL")))
	}
}

// testDeliveryKillDuringResume: feathery is killed, started again, and
// killed again while its shards are resuming (replays in flight); the
// third process resumes every shard from its checkpoint: nothing lost,
// nothing doubled, no identify.
func testDeliveryKillDuringResume(t *testing.T, bin string) {
	const shards = 8
	r := newDeliveryRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: 2 * time.Second,
		Guilds: 24, MembersPerGuild: 8, Seed: 43, Rate: 300,
	})
	fake := r.fake
	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 300)
	start := fake.Stats()
	for round := range 2 {
		r.phase("SIGKILL " + strconv.Itoa(round))
		if err := r.f.Kill(); err != nil {
			t.Fatal(err)
		}
		before := fake.Stats().Resumes
		r.start()
		testkit.Eventually(t, 45*time.Second, "the first resumes", func() bool { return fake.Stats().Resumes > before })
	}
	r.phase("SIGKILL during resume")
	if err := r.f.Kill(); err != nil {
		t.Fatal(err)
	}
	before := fake.Stats().Resumes
	r.start()
	r.recovered("restart after the kill during resume", before+shards, 0)
	r.progress("traffic after the restarts", 200)
	r.finish(start.Identifies, nil)
}

// testDeliveryFrozenRedis: Redis is frozen (SIGSTOP) for 15 s under
// traffic: connections stay open and answer nothing. The shards'
// queues fill, they keep heartbeating, and once Redis thaws everything is
// published: nothing lost, nothing doubled, no identify, no gap.
func testDeliveryFrozenRedis(t *testing.T, bin string) {
	const shards = 4
	r := newDeliveryRig(t, bin, discordtest.Config{
		Shards: shards, HeartbeatInterval: 2 * time.Second,
		Guilds: 16, MembersPerGuild: 8, Seed: 47, Rate: 200,
	})
	fake := r.fake
	r.waitReady("first start")
	r.phase("ready")
	r.progress("traffic published", 200)
	start := fake.Stats()
	r.phase("SIGSTOP Redis")
	if err := syscall.Kill(r.rs.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	thawed := false
	defer func() {
		if !thawed {
			_ = syscall.Kill(r.rs.PID(), syscall.SIGCONT)
		}
	}()
	testkit.Eventually(t, 60*time.Second, "15 s frozen with the queues filling", func() bool {
		return time.Since(frozen) > 15*time.Second
	})
	r.phase("SIGCONT Redis")
	if err := syscall.Kill(r.rs.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	thawed = true
	r.waitReady("Redis thawed")
	r.progress("traffic after the freeze", 200)
	r.finish(start.Identifies, nil)
}
