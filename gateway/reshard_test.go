package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// pub is one event a streamSink published.
type pub struct {
	shard, count int
	session      string
	seq          int64
	t            string
	guild        uint64
}

// streamSink publishes synchronously in call order, like one stream, and
// leaves out the events the hand-over marks Skip.
type streamSink struct {
	mu      sync.Mutex
	out     []pub
	skipped int
}

func (s *streamSink) Publish(_ context.Context, ev *gateway.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev.Skip {
		s.skipped++
		return nil
	}
	s.out = append(s.out, pub{ev.Shard, ev.ShardCount, ev.Session, ev.Seq, ev.Type, ev.GuildID})
	return nil
}

func (s *streamSink) Flush(context.Context, string, int) error { return nil }

func (s *streamSink) published() []pub {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]pub(nil), s.out...)
}

// uniqueMix is live traffic whose dispatches all differ byte for byte
// (ids, names): the hand-over identifies events by their content.
var uniqueMix = map[string]float64{
	"MESSAGE_CREATE": 40, "INTERACTION_CREATE": 10, "GUILD_MEMBER_ADD": 4, "GUILD_MEMBER_REMOVE": 2,
	"CHANNEL_CREATE": 2, "CHANNEL_UPDATE": 2, "GUILD_ROLE_CREATE": 2, "GUILD_ROLE_UPDATE": 2,
	"GUILD_UPDATE": 1, "THREAD_CREATE": 1,
}

// TestManager_Reshard: a bot re-shards 2 → 3 → 2 with traffic flowing; the
// events published equal the events the fake made, each once (judged by
// the fake's event identity, which both sets' copies share), in per-guild
// order; the new sets' READY and lazy GUILD_CREATEs are not published.
func TestManager_Reshard(t *testing.T) {
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 2, Guilds: 24, MembersPerGuild: 6, Seed: 11, Rate: 300, Mix: uniqueMix})
	sink := &streamSink{}
	h := startStreamManager(t, fake, gateway.BotConfig{Shards: 2}, sink, nil)
	m := h.m
	allReady := func(count int) func() bool { return reshardSettled(m, count) }
	testkit.Eventually(t, 30*time.Second, "2 shards ready", allReady(2))
	progress := func(what string) {
		n := len(sink.published())
		testkit.Eventually(t, 30*time.Second, what, func() bool { return len(sink.published()) >= n+200 })
	}
	progress("traffic")
	for _, to := range []int{3, 2} {
		if err := m.Reshard(t.Context(), "main", to, nil); err != nil {
			t.Fatalf("re-shard to %d: %v", to, err)
		}
		if err := m.Reshard(t.Context(), "main", to+1, nil); err == nil {
			t.Errorf("a second re-shard was accepted while one runs")
		}
		// Cut over: the old set is gone, but the hand-over still skips
		// late copies for a while (seconds): the re-shard is not over, and
		// another one is refused rather than taking the new set's events
		// from it.
		testkit.Eventually(t, 60*time.Second, fmt.Sprintf("cut over to %d", to), func() bool {
			st := m.Status()
			return len(st) == to && st[0].ShardCount == to
		})
		if rs := m.Resharding(); len(rs) != 1 || rs[0].To != to {
			t.Errorf("re-sharding after the cut-over: %+v, want the re-shard to %d listed until its hand-over ends", rs, to)
		}
		if err := m.Reshard(t.Context(), "main", to+1, nil); !errors.Is(err, gateway.ErrResharding) {
			t.Errorf("a re-shard during the last one's hand-over: %v, want ErrResharding", err)
		}
		testkit.Eventually(t, 60*time.Second, fmt.Sprintf("re-shard to %d done", to), allReady(to))
		progress(fmt.Sprintf("traffic after the re-shard to %d", to))
	}
	stopAndCheckResharded(t, fake, 2, nil, sink)
	if n := h.ctl.count(-1, gateway.ControlReshard); n != 4 {
		t.Errorf("%d reshard control events, want 4 (started and done, twice)", n)
	}
}

// stopTraffic stops the fake's traffic and waits until it sent all.
func stopTraffic(t *testing.T, fake *discordtest.Server) {
	t.Helper()
	fake.SetRate(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := fake.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// stopAndCheckResharded stops the traffic, then judges the sink (see
// checkResharded).
func stopAndCheckResharded(t *testing.T, fake *discordtest.Server, firstCount int, deadOld map[int]bool, sink *streamSink) {
	t.Helper()
	stopTraffic(t, fake)
	checkResharded(t, fake, firstCount, deadOld, sink)
}

// checkResharded judges what sink published against the fake's ledgers:
// every event once, per-guild order kept, the hand-over's READY and lazy
// GUILD_CREATEs of sessions after the first set left out — but for the
// shards of the first set in deadOld, which no longer ran when the next
// set came.
func checkResharded(t *testing.T, fake *discordtest.Server, firstCount int, deadOld map[int]bool, sink *streamSink) {
	t.Helper()
	type key struct {
		session string
		seq     int64
	}
	type info struct {
		event int64
		t     string
		guild string
	}
	byRef := map[key]info{}
	want := map[int64]bool{}
	suppressed := map[int64]bool{}
	var sessions []discordtest.LedgerSession
	for shard := range 8 {
		sessions = append(sessions, fake.Ledger(shard)...)
	}
	// The first set's sessions are the first identified.
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].Entries[0].Event < sessions[j].Entries[0].Event })
	// Sets follow each other: the shard count changes between them. A new
	// set's READY is left out when the set before ran a shard of its id.
	prevCount, curCount, sets := 0, firstCount, 1
	for n, ls := range sessions {
		if n >= firstCount && ls.Shards != curCount {
			prevCount, curCount = curCount, ls.Shards
			sets++
		}
		oldAlive := func(id int) bool { return id < prevCount && (sets > 2 || !deadOld[id]) }
		{
			lazy := n >= firstCount
			for i, e := range ls.Entries {
				byRef[key{ls.Session, e.Seq}] = info{e.Event, e.T, e.Guild}
				if lazy && (i == 0 && e.T == "READY" && !oldAlive(ls.Shard) ||
					e.T == "GUILD_CREATE" && !oldAlive(guildShard(e.Guild, prevCount))) {
					want[e.Event] = true
					continue
				}
				if lazy && (i == 0 && e.T == "READY" || e.T == "GUILD_CREATE") {
					suppressed[e.Event] = true
					continue
				}
				lazy = false
				want[e.Event] = true
			}
		}
	}
	var got []pub
	last, lastChange := -1, time.Now()
	testkit.Eventually(t, 30*time.Second, "every event published (or no change for 3s)", func() bool {
		got = sink.published()
		if len(got) != last {
			last, lastChange = len(got), time.Now()
		}
		seen := map[int64]bool{}
		for _, p := range got {
			seen[byRef[key{p.session, p.seq}].event] = true
		}
		for ev := range want {
			if !seen[ev] {
				return time.Since(lastChange) > 3*time.Second
			}
		}
		return true
	})
	count := map[int64]int{}
	lastOfGuild := map[string]int64{}
	problems := 0
	report := func(format string, args ...any) {
		problems++
		if problems <= 15 {
			t.Errorf(format, args...)
		}
	}
	for _, p := range got {
		in, ok := byRef[key{p.session, p.seq}]
		if !ok {
			report("published %s seq %d (%s) is in no ledger", p.session, p.seq, p.t)
			continue
		}
		count[in.event]++
		if suppressed[in.event] {
			report("the hand-over's %s (session %s seq %d) was published", in.t, p.session, p.seq)
		}
		if in.guild != "" {
			if last := lastOfGuild[in.guild]; in.event < last {
				report("guild %s: event %d (%s) published after event %d", in.guild, in.event, in.t, last)
			}
			lastOfGuild[in.guild] = max(lastOfGuild[in.guild], in.event)
		}
	}
	var missing, doubled []int64
	for ev := range want {
		switch c := count[ev]; {
		case c == 0:
			missing = append(missing, ev)
		case c > 1:
			doubled = append(doubled, ev)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i] < missing[j] })
	sort.Slice(doubled, func(i, j int) bool { return doubled[i] < doubled[j] })
	if len(missing) > 0 || len(doubled) > 0 {
		report("%d events missing %v, %d doubled %v", len(missing), head(missing), len(doubled), head(doubled))
		where := map[int64][]string{}
		for k, in := range byRef {
			where[in.event] = append(where[in.event], fmt.Sprintf("%s/%d %s guild %s", k.session[len(k.session)-2:], k.seq, in.t, in.guild))
		}
		for i, ev := range append(missing, doubled...) {
			if i == 10 {
				break
			}
			t.Logf("event %d: %v", ev, where[ev])
		}
	}
	t.Logf("%d events made, %d published, %d hand-over entries left out, %d skipped by the Sink", len(want), len(got), len(suppressed), sink.skipped)
}

func head(s []int64) string {
	if len(s) > 10 {
		return fmt.Sprint(s[:10]) + "..." + strconv.Itoa(len(s)-10) + " more"
	}
	return fmt.Sprint(s)
}

// guildShard is the shard of guild id among count shards.
func guildShard(id string, count int) int {
	g, _ := strconv.ParseUint(id, 10, 64)
	return int((g >> 22) % uint64(count))
}

// TestManager_ShardingRequired: Discord closes a shard with 4011 once the
// bot has outgrown its shard count: the bot re-shards to the count
// /gateway/bot now recommends instead of stopping, the other old shard
// publishing meanwhile; afterwards every event the fake made (but for the
// closed session's lost tail, reported as a gap) was published once, in
// per-guild order.
func TestManager_ShardingRequired(t *testing.T) {
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 4, Guilds: 24, MembersPerGuild: 6, Seed: 13, Rate: 200, Mix: uniqueMix})
	// The largest shard at 4 shards fits; every shard at 2 does not.
	max4, min2 := 0, 1<<30
	per := map[[2]int]int{}
	for id := range fake.Snapshot().Guilds {
		per[[2]int{2, guildShard(id, 2)}]++
		per[[2]int{4, guildShard(id, 4)}]++
	}
	for k, n := range per {
		if k[0] == 4 {
			max4 = max(max4, n)
		} else {
			min2 = min(min2, n)
		}
	}
	if max4 >= min2 {
		t.Fatalf("seed gives %d guilds on the largest of 4 shards, %d on the smallest of 2: pick another", max4, min2)
	}
	sink := &streamSink{}
	h := startStreamManager(t, fake, gateway.BotConfig{Shards: 2}, sink, nil)
	m := h.m
	testkit.Eventually(t, 30*time.Second, "2 shards ready", func() bool {
		st := m.Status()
		return len(st) == 2 && st[0].State == gateway.StateReady && st[1].State == gateway.StateReady
	})
	n := len(sink.published())
	testkit.Eventually(t, 30*time.Second, "traffic", func() bool { return len(sink.published()) >= n+200 })

	if err := fake.SetShards(4); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetMaxGuildsPerShard(max4); err != nil {
		t.Fatal(err)
	}
	if err := fake.CloseShard(1, 4011); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "re-sharded to the 4 shards Discord recommends", reshardSettled(m, 4))
	n = len(sink.published())
	testkit.Eventually(t, 30*time.Second, "traffic after the re-shard", func() bool { return len(sink.published()) >= n+200 })
	stopTraffic(t, fake)
	if c := h.ctl.count(1, "fatal"); c != 0 {
		t.Errorf("%d fatal control events for shard 1, want none", c)
	}
	if c := h.ctl.count(1, gateway.ControlShardingRequired); c != 1 {
		t.Errorf("%d sharding_required control events for shard 1, want 1", c)
	}
	if ev, ok := h.ctl.find(1, gateway.ControlGap); !ok || ev.Session == "" {
		t.Errorf("no gap (session_lost) event names the session 4011 ended: %+v", ev)
	}
	checkResharded(t, fake, 2, map[int]bool{1: true}, sink)
}

// TestManager_Autoscale: a bot with shards auto and AutoscaleEvery asks
// /gateway/bot again and re-shards live when Discord recommends more.
func TestManager_Autoscale(t *testing.T) {
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 4, Guilds: 12, MembersPerGuild: 4, Seed: 17, Rate: 100, Mix: uniqueMix})
	sink := &streamSink{}
	m := startStreamManager(t, fake, gateway.BotConfig{AutoscaleEvery: 2 * time.Second}, sink, nil).m
	settled := func(count int) func() bool { return reshardSettled(m, count) }
	testkit.Eventually(t, 30*time.Second, "the 2 recommended shards ready", settled(2))
	if err := fake.SetShards(3); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 60*time.Second, "re-sharded to the 3 now recommended", settled(3))
	stopAndCheckResharded(t, fake, 2, nil, sink)
}

// startStreamManager runs the bot "main" (bot's Shards and autoscale
// settings; name, token and intents filled in) on fake, publishing to
// sink; the manager closes at the test's end.
func startStreamManager(t *testing.T, fake *discordtest.Server, bot gateway.BotConfig, sink *streamSink, mod func(*gateway.ManagerConfig)) *harness {
	t.Helper()
	h := &harness{fake: fake, ctl: &controls{}}
	bot.Name, bot.Token, bot.Intents = "main", testToken, 1|2|512|32768|128|256
	cfg := gateway.ManagerConfig{
		Bots: []gateway.BotConfig{bot},
		Sink: sink, RESTURL: fake.URL() + "/api/v10", IdentifyWindow: 200 * time.Millisecond,
		Logger: testLogger().With("test", t.Name()), OnControl: h.ctl.add,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := gateway.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	h.m = m
	return h
}

// reshardSettled reports whether m runs count shards, all ready, and no
// re-shard.
func reshardSettled(m *gateway.Manager, count int) func() bool {
	return func() bool {
		st := m.Status()
		if len(st) != count || len(m.Resharding()) > 0 {
			return false
		}
		for _, s := range st {
			if s.State != gateway.StateReady || s.ShardCount != count {
				return false
			}
		}
		return true
	}
}

// TestManager_Autoscale_GuildsPerShard: a bot with shards auto whose
// shards hold more guilds on average than AutoscaleMaxGuilds re-shards
// live, though Discord recommends no more, to the count that puts the
// average at 80% of the threshold; then it stays. Every event the fake made
// is published once.
func TestManager_Autoscale_GuildsPerShard(t *testing.T) {
	fake := startFake(t, discordtest.Config{Shards: 2, MaxConcurrency: 4, Guilds: 24, MembersPerGuild: 4, Seed: 19, Rate: 100, Mix: uniqueMix})
	sink := &streamSink{}
	// 24 guilds on 2 shards: 12 a shard, above 10; 80% of 10 is 8 a
	// shard: 3 shards.
	var checks atomic.Int64
	m := startStreamManager(t, fake, gateway.BotConfig{AutoscaleEvery: time.Second, AutoscaleMaxGuilds: 10}, sink, func(c *gateway.ManagerConfig) {
		c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasSuffix(r.URL.Path, "/gateway/bot") {
				checks.Add(1)
			}
			return http.DefaultTransport.RoundTrip(r)
		})}
	}).m
	testkit.Eventually(t, 60*time.Second, "re-sharded to 3 for the guilds per shard", reshardSettled(m, 3))
	guilds := 0
	for _, st := range m.Status() {
		guilds += st.Guilds
	}
	if guilds != 24 {
		t.Errorf("the shards count %d guilds, want the fake's 24", guilds)
	}
	// Two more checks: 8 a shard is below the threshold, no re-shard.
	after := checks.Load()
	testkit.Eventually(t, 30*time.Second, "two more autoscale checks", func() bool { return checks.Load() >= after+2 })
	if st := m.Status(); len(st) != 3 || len(m.Resharding()) > 0 {
		t.Errorf("%d shards and re-shards %v after the checks, want 3 and none", len(st), m.Resharding())
	}
	if got := fake.Stats().Identifies; got != 2+3 {
		t.Errorf("%d identifies, want 5 (2, then 3)", got)
	}
	stopAndCheckResharded(t, fake, 2, nil, sink)
}

// roundTripFunc is an http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
