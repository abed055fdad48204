package broker_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/redis/rueidis"
)

func TestPublisher_EntryFormat(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{})
	keys := broker.NewKeys("")

	// d with odd spacing, unicode and escapes must come back byte for byte.
	d1 := ` { "id" : "1", "content":"h\u00e9llo \"x\"",  "guild_id":"41771983423143937" } `
	e1 := ev(1, "MESSAGE_CREATE", d1)
	e1.GuildID = 41771983423143937
	e2 := ev(2, "USER_UPDATE", `{"id":"9"}`)
	mustPublish(t, p, e1)
	mustPublish(t, p, e2)
	flush(t, p, "b", 0)

	got := readStream(t, c, "feathery:{bot:b}:events")
	if keys.Events("b") != "feathery:{bot:b}:events" {
		t.Fatalf("Keys.Events = %q", keys.Events("b"))
	}
	want := []entry{
		{fields: []string{"v", "1", "t", "MESSAGE_CREATE", "d", d1, "bot", "b", "shard", "0", "session", "s1", "seq", "1",
			"guild", "41771983423143937", "at", "1700000000001"}},
		{fields: []string{"v", "1", "t", "USER_UPDATE", "d", `{"id":"9"}`, "bot", "b", "shard", "0", "session", "s1", "seq", "2",
			"at", "1700000000002"}},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i].fields, want[i].fields) {
			t.Errorf("entry %d:\n got %q\nwant %q", i, got[i].fields, want[i].fields)
		}
	}
	ck := hgetall(t, c, keys.Session("b", 0))
	wantCk := map[string]string{"session": "s1", "seq": "2", "resume_url": "wss://resume.example", "shards": "1", "intents": "513"}
	if !reflect.DeepEqual(ck, wantCk) {
		t.Errorf("checkpoint %v, want %v", ck, wantCk)
	}
	st := shardStats(p, "b", 0)
	if st.Published != 2 || st.Accepted != 2 || st.Handled != 2 || st.Session != "s1" || st.Seq != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestPublisher_OrderPerShard(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{QueueSize: 64, MaxBatch: 50})
	const shards, n = 4, 1500
	var wg sync.WaitGroup
	for s := range shards {
		wg.Go(func() {
			for i := int64(1); i <= n; i++ {
				e := ev(i, "TYPING_START", `{"shard":`+strconv.Itoa(s)+`}`)
				e.Shard, e.ShardCount = s, shards
				if err := p.Publish(t.Context(), e); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	for s := range shards {
		flush(t, p, "b", s)
	}
	all := readStream(t, c, "feathery:{bot:b}:events")
	per := map[string][]int64{}
	for _, e := range all {
		sh, _ := e.get("shard")
		if d, _ := e.get("d"); d != `{"shard":`+sh+`}` {
			t.Fatalf("entry of shard %s carries d %s", sh, d)
		}
		per[sh] = append(per[sh], e.seq(t))
	}
	for s := range shards {
		wantSeqs(t, "shard "+strconv.Itoa(s), per[strconv.Itoa(s)], 1, n)
	}
	st := shardStats(p, "b", 0)
	if st.Batches >= n {
		t.Errorf("shard 0 used %d batches for %d events: no batching", st.Batches, n)
	}
}

func TestPublisher_ReplayAddsNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p1 := newPublisher(t, c, broker.PublisherConfig{})
	for i := int64(1); i <= 10; i++ {
		mustPublish(t, p1, ev(i, "TYPING_START", `{}`))
	}
	flush(t, p1, "b", 0)
	if err := p1.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A new process (no local state) gets Discord's replay from seq 5 on.
	p2 := newPublisher(t, c, broker.PublisherConfig{})
	for i := int64(5); i <= 15; i++ {
		mustPublish(t, p2, ev(i, "TYPING_START", `{}`))
	}
	flush(t, p2, "b", 0)
	// Within the process, a replay is skipped without a round trip.
	for i := int64(12); i <= 16; i++ {
		mustPublish(t, p2, ev(i, "TYPING_START", `{}`))
	}
	flush(t, p2, "b", 0)
	wantSeqs(t, "stream", seqs(t, readStream(t, c, "feathery:{bot:b}:events")), 1, 16)
	st := shardStats(p2, "b", 0)
	if st.Published != 6 || st.Duplicates != 6+4 {
		t.Errorf("published %d duplicates %d, want 6 and 10", st.Published, st.Duplicates)
	}
	if ck := hgetall(t, c, "feathery:{bot:b}:session:0"); ck["seq"] != "16" {
		t.Errorf("checkpoint seq %s, want 16", ck["seq"])
	}
	// An all-old batch of the same session does not move the checkpoint back.
	p3 := newPublisher(t, c, broker.PublisherConfig{})
	mustPublish(t, p3, ev(3, "TYPING_START", `{}`))
	flush(t, p3, "b", 0)
	if ck := hgetall(t, c, "feathery:{bot:b}:session:0"); ck["seq"] != "16" {
		t.Errorf("checkpoint seq %s after an old replay, want 16", ck["seq"])
	}
}

func TestPublisher_NewSessionReplacesCheckpoint(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{})
	for i := int64(1); i <= 5; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{}`))
	}
	// The new session starts at 1 again, in the same batch or not.
	for i := int64(1); i <= 3; i++ {
		e := ev(i, "TYPING_START", `{}`)
		e.Session, e.ResumeURL = "s2", "wss://other.example"
		mustPublish(t, p, e)
	}
	flush(t, p, "b", 0)
	es := readStream(t, c, "feathery:{bot:b}:events")
	if len(es) != 8 {
		t.Fatalf("got %d entries, want 8", len(es))
	}
	for i, e := range es {
		want := "s1"
		if i >= 5 {
			want = "s2"
		}
		if s, _ := e.get("session"); s != want {
			t.Errorf("entry %d session %s, want %s", i, s, want)
		}
	}
	ck := hgetall(t, c, "feathery:{bot:b}:session:0")
	if ck["session"] != "s2" || ck["seq"] != "3" || ck["resume_url"] != "wss://other.example" {
		t.Errorf("checkpoint %v, want session s2 seq 3", ck)
	}
}

func TestPublisher_FilteredBatchAdvancesCheckpoint(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{Bots: []broker.BotConfig{{
		Name: "b", Filters: broker.FilterConfig{Ignore: []string{"TYPING_*"}, CacheOnly: []string{"PRESENCE_UPDATE"}},
	}}})
	for i := int64(1); i <= 4; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{}`))
	}
	mustPublish(t, p, ev(5, "PRESENCE_UPDATE", `{}`))
	flush(t, p, "b", 0)
	if n, _ := c.Do(t.Context(), c.B().Xlen().Key("feathery:{bot:b}:events").Build()).AsInt64(); n != 0 {
		t.Fatalf("stream has %d entries, want 0", n)
	}
	if ck := hgetall(t, c, "feathery:{bot:b}:session:0"); ck["seq"] != "5" || ck["session"] != "s1" {
		t.Fatalf("checkpoint %v, want s1/5", ck)
	}
	st := shardStats(p, "b", 0)
	if st.Filtered[broker.FilterIgnore] != 4 || st.Filtered[broker.FilterCacheOnly] != 1 || st.Published != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPublisher_Routes(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	cfg := broker.PublisherConfig{Bots: []broker.BotConfig{{
		Name:    "b",
		Default: broker.StreamConfig{Groups: []string{"all"}},
		Routes: []broker.Route{
			{Events: []string{"MESSAGE_CREATE"}, StreamConfig: broker.StreamConfig{Stream: "creates", MaxLen: 10, Groups: []string{"g1", "g2"}}},
			{Events: []string{"MESSAGE_*", "INTERACTION_CREATE"}, StreamConfig: broker.StreamConfig{Stream: "messages"}},
			{Events: []string{"GUILD_?EMBER_*"}, StreamConfig: broker.StreamConfig{Stream: "members", MaxAge: 5 * time.Millisecond}},
		},
	}}}
	p := newPublisher(t, c, cfg)
	if err := p.EnsureGroups(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A second publisher with the same groups: BUSYGROUP is fine.
	p2 := newPublisher(t, c, cfg)
	if err := p2.EnsureGroups(t.Context()); err != nil {
		t.Fatalf("ensure existing groups: %v", err)
	}
	seq := int64(0)
	pub := func(typ string) {
		seq++
		mustPublish(t, p, ev(seq, typ, `{}`))
	}
	for range 1000 {
		pub("MESSAGE_CREATE")
	}
	pub("MESSAGE_UPDATE")
	pub("INTERACTION_CREATE")
	pub("READY")
	for range 300 {
		pub("GUILD_MEMBER_ADD")
	}
	flush(t, p, "b", 0)
	// MINID ~ trims whole nodes of entries older than max_age: let the age
	// pass, then publish more.
	time.Sleep(20 * time.Millisecond)
	pub("GUILD_MEMBER_REMOVE")
	flush(t, p, "b", 0)

	xlen := func(k string) int64 {
		n, err := c.Do(t.Context(), c.B().Xlen().Key("feathery:{bot:b}:"+k).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := xlen("creates"); n < 10 || n > 200 {
		t.Errorf("creates has %d entries, want MAXLEN ~ 10 (10..200) of 1000", n)
	}
	if n := xlen("messages"); n != 2 {
		t.Errorf("messages has %d entries, want 2", n)
	}
	if n := xlen("events"); n != 1 {
		t.Errorf("events has %d entries, want 1 (READY)", n)
	}
	if n := xlen("members"); n < 1 || n > 201 {
		t.Errorf("members has %d entries, want old ones trimmed by max_age (1..201 of 301)", n)
	}
	groups := func(k string) []string {
		arr, err := c.Do(t.Context(), c.B().XinfoGroups().Key("feathery:{bot:b}:"+k).Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, g := range arr {
			m, _ := g.AsStrMap()
			n := m["name"]
			names = append(names, n)
		}
		return names
	}
	if g := groups("creates"); !reflect.DeepEqual(g, []string{"g1", "g2"}) {
		t.Errorf("groups on creates %v", g)
	}
	if g := groups("events"); !reflect.DeepEqual(g, []string{"all"}) {
		t.Errorf("groups on events %v", g)
	}
	// Groups created with $ at start see every published entry.
	res, err := c.Do(t.Context(), c.B().Xreadgroup().Group("all", "c1").Count(10).Streams().Key("feathery:{bot:b}:events").Id(">").Build()).AsXRead()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(res["feathery:{bot:b}:events"]); n != 1 {
		t.Errorf("group all read %d entries, want 1", n)
	}
}

func TestPublisher_ConfigErrors(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	cases := []struct {
		cfg  broker.PublisherConfig
		want string
	}{
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: ""}}}, "bots[0].name"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a{b"}}}, "bots[0].name"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a"}, {Name: "a"}}}, "bots[1].name"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a", Routes: []broker.Route{{Events: []string{"[x"}, StreamConfig: broker.StreamConfig{Stream: "s"}}}}}}, "bots[0].routes[0].events[0]"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a", Routes: []broker.Route{{Events: []string{"X"}}}}}}, "bots[0].routes[0].stream"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a", Routes: []broker.Route{{Events: []string{"X"}, StreamConfig: broker.StreamConfig{Stream: "s", MaxLen: 1, MaxAge: time.Second}}}}}}, "bots[0].routes[0].maxlen"},
		{broker.PublisherConfig{QueueSize: 2000000000}, "queue_size: 2000000000 is above the maximum"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a", Filters: broker.FilterConfig{Ignore: []string{"["}}}}}, "bots[0].filters.ignore[0]"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a", Filters: broker.FilterConfig{BotUserID: "abc"}}}}, "bots[0].filters.bot_user_id"},
		{broker.PublisherConfig{QueueSize: -1}, "queue_size"},
		{broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "a", Routes: []broker.Route{{Events: []string{"X"}, StreamConfig: broker.StreamConfig{Stream: "session:0"}}}}}}, "bots[0].routes[0].stream"},
		{broker.PublisherConfig{PrefixTTL: 2 * time.Second}, "prefix_ttl"},
	}
	for _, tc := range cases {
		_, err := broker.NewPublisher(c, tc.cfg)
		if err == nil || !containsStr(err.Error(), tc.want) {
			t.Errorf("config %+v: got error %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
}

func containsStr(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// fakeCache records what it sees and gives before images to UPDATEs.
type fakeCache struct {
	c    rueidis.Client
	mu   sync.Mutex
	seen []string
	// early lists each batch whose stream already held more entries
	// than the batches applied before it published: a batch published
	// before its cache effect.
	early     []string
	published int64 // publishable entries of the batches applied so far
	fail      int   // fail this many calls first
}

func (f *fakeCache) Apply(ctx context.Context, evs []*broker.Event, before [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail > 0 {
		f.fail--
		return errors.New("cache down")
	}
	n, _ := f.c.Do(ctx, f.c.B().Xlen().Key("feathery:{bot:b}:events").Build()).AsInt64()
	if n != f.published {
		f.early = append(f.early, fmt.Sprintf("stream had %d entries, earlier batches publish %d", n, f.published))
	}
	for i, e := range evs {
		f.seen = append(f.seen, fmt.Sprintf("%s/%d", e.Type, e.Seq))
		if e.Type == "GUILD_UPDATE" || e.Type == "MESSAGE_CREATE" {
			f.published++
		}
		if e.Type == "GUILD_UPDATE" {
			before[i] = []byte(`{"name":"old"}`)
		}
	}
	return nil
}

func TestPublisher_CacheWriter(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	fc := &fakeCache{c: c, fail: 2}
	p := newPublisher(t, c, broker.PublisherConfig{Cache: fc, RetryMin: time.Millisecond, Bots: []broker.BotConfig{{
		Name: "b", Filters: broker.FilterConfig{Ignore: []string{"TYPING_START"}, CacheOnly: []string{"PRESENCE_UPDATE"}},
	}}}) // Redis ok, the cache fails twice: the batch is retried whole.
	mustPublish(t, p, ev(1, "GUILD_UPDATE", `{"name":"new"}`))
	mustPublish(t, p, ev(2, "TYPING_START", `{}`))
	mustPublish(t, p, ev(3, "PRESENCE_UPDATE", `{}`))
	mustPublish(t, p, ev(4, "MESSAGE_CREATE", `{}`))
	flush(t, p, "b", 0)
	es := readStream(t, c, "feathery:{bot:b}:events")
	if len(es) != 2 {
		t.Fatalf("got %d entries, want 2", len(es))
	}
	if b, ok := es[0].get("before"); !ok || b != `{"name":"old"}` {
		t.Errorf("GUILD_UPDATE before = %q, %v", b, ok)
	}
	if _, ok := es[1].get("before"); ok {
		t.Errorf("MESSAGE_CREATE has a before field")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	want := []string{"GUILD_UPDATE/1", "PRESENCE_UPDATE/3", "MESSAGE_CREATE/4"}
	if !reflect.DeepEqual(fc.seen, want) {
		t.Errorf("cache saw %v, want %v (ignored left out, cache_only in)", fc.seen, want)
	}
	for _, e := range fc.early {
		t.Errorf("cache must run before its batch is published: %s", e)
	}
	if st := shardStats(p, "b", 0); st.Errors != 2 {
		t.Errorf("errors %d, want 2", st.Errors)
	}
}

func TestPublisher_CloseFlushesAndRefuses(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p, err := broker.NewPublisher(c, broker.PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for i := int64(1); i <= 300; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{}`))
	}
	p.Control(broker.ControlEvent{Bot: "b", Shard: 0, Kind: broker.ControlState, State: "ready"})
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantSeqs(t, "stream", seqs(t, readStream(t, c, "feathery:{bot:b}:events")), 1, 300)
	if n := len(readStream(t, c, "feathery:control")); n != 1 {
		t.Errorf("control stream has %d entries, want 1", n)
	}
	if err := p.Publish(t.Context(), ev(301, "TYPING_START", `{}`)); !errors.Is(err, broker.ErrClosed) {
		t.Errorf("publish after close: %v, want ErrClosed", err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestPublisher_Control(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{ControlQueueSize: 4, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	at := time.UnixMilli(1700000000123)
	p.Control(broker.ControlEvent{Bot: "b", Shard: 3, Kind: broker.ControlGap, Session: "s1", Seq: 41, At: at})
	p.Control(broker.ControlEvent{Bot: "b", Shard: 3, Kind: broker.ControlFatal, Err: "close 4004", At: at})
	testkit.EventuallyWhy(t, 5*time.Second, func() string {
		if n := len(readStream(t, c, "feathery:control")); n != 2 {
			return fmt.Sprintf("%d control entries", n)
		}
		return ""
	})
	es := readStream(t, c, "feathery:control")
	want0 := []string{"v", "1", "kind", "gap", "bot", "b", "shard", "3", "session", "s1", "last_seq", "41", "at", "1700000000123"}
	if !reflect.DeepEqual(es[0].fields, want0) {
		t.Errorf("gap entry %q, want %q", es[0].fields, want0)
	}
	want1 := []string{"v", "1", "kind", "fatal", "bot", "b", "shard", "3", "seq", "0", "err", "close 4004", "at", "1700000000123"}
	if !reflect.DeepEqual(es[1].fields, want1) {
		t.Errorf("fatal entry %q, want %q", es[1].fields, want1)
	}

	// Redis down: Control never blocks; the oldest events are dropped.
	srv.Stop()
	for i := range 10 {
		p.Control(broker.ControlEvent{Bot: "b", Kind: broker.ControlState, State: "s" + strconv.Itoa(i)})
	}
	st := p.Stats()
	if st.ControlDropped < 5 || st.ControlQueued > 4 {
		t.Errorf("dropped %d queued %d, want >= 5 dropped and <= 4 queued", st.ControlDropped, st.ControlQueued)
	}
	srv.Restart()
	testkit.EventuallyWhy(t, 10*time.Second, func() string {
		es, err := tryReadStream(t.Context(), c, "feathery:control")
		if err != nil || len(es) == 0 {
			return fmt.Sprint("read control stream: ", err)
		}
		last, _ := es[len(es)-1].get("state")
		if last != "s9" {
			return "last control state " + last
		}
		return ""
	})
}

func TestPublisher_BatchBytesBound(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{MaxBatchBytes: 1 << 20, MaxDelay: 50 * time.Millisecond})
	big := `"` + strings.Repeat("x", 400<<10) + `"`
	for i := int64(1); i <= 10; i++ {
		mustPublish(t, p, ev(i, "GUILD_CREATE", big))
	}
	huge := `"` + strings.Repeat("y", 2<<20) + `"` // above the bound: goes alone
	mustPublish(t, p, ev(11, "GUILD_CREATE", huge))
	flush(t, p, "b", 0)
	es := readStream(t, c, "feathery:{bot:b}:events")
	wantSeqs(t, "stream", seqs(t, es), 1, 11)
	if d, _ := es[10].get("d"); d != huge {
		t.Errorf("huge payload changed: %d bytes", len(d))
	}
	if st := shardStats(p, "b", 0); st.Batches < 6 {
		t.Errorf("%d batches for 10 × 400 KiB + 2 MiB under a 1 MiB bound, want >= 6", st.Batches)
	}
}

// After Close no goroutine of the Publisher is left.
func TestPublisher_CloseJoinsGoroutines(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p, err := broker.NewPublisher(c, broker.PublisherConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for s := range 3 {
		e := ev(1, "TYPING_START", `{}`)
		e.Shard = s
		mustPublish(t, p, e)
	}
	// The control writer runs for the Publisher's life; a shard's flusher
	// only while the shard has work.
	if n := publisherGoroutines(); n < 1 || n > 4 {
		t.Errorf("%d publisher goroutines running, want the control writer and at most 3 flushers", n)
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "broker.") {
				t.Logf("%s", g)
			}
		}
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := publisherGoroutines(); n != 0 {
		t.Fatalf("%d publisher goroutines left after Close", n)
	}
}

func publisherGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		// The entry closures: present even before a goroutine first runs.
		if strings.Contains(g, "broker.(*Publisher).startFlusher.func1()") || strings.Contains(g, "broker.NewPublisher.func1()") {
			n++
		}
	}
	return n
}
