package consumers_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/redis/rueidis"
)

// recorder is a handler that records what it saw, per stream.
type recorder struct {
	mu   sync.Mutex
	ids  map[string][]string // stream -> ids in call order
	msgs map[string]consumers.Message
}

func newRecorder() *recorder {
	return &recorder{ids: map[string][]string{}, msgs: map[string]consumers.Message{}}
}

func (r *recorder) handle(_ context.Context, m consumers.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids[m.Stream] = append(r.ids[m.Stream], m.ID)
	r.msgs[m.ID] = m
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range r.ids {
		n += len(v)
	}
	return n
}

func (r *recorder) streamIDs(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ids[s])
}

func TestNewGroupReader_Config(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	cases := []struct {
		name string
		cfg  consumers.GroupConfig
		want string
	}{
		{"no streams", consumers.GroupConfig{Group: "g"}, "Streams is empty"},
		{"empty stream", consumers.GroupConfig{Streams: []string{""}, Group: "g"}, "empty key"},
		{"duplicate stream", consumers.GroupConfig{Streams: []string{"a", "a"}, Group: "g"}, `"a" twice`},
		{"no group", consumers.GroupConfig{Streams: []string{"a"}}, "Group is empty"},
		{"negative count", consumers.GroupConfig{Streams: []string{"a"}, Group: "g", Count: -1}, "Count"},
		{"negative claim idle", consumers.GroupConfig{Streams: []string{"a"}, Group: "g", ClaimIdle: -1}, "ClaimIdle"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := consumers.NewGroupReader(c, tc.cfg)
			if !errors.Is(err, consumers.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{Streams: []string{"s"}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	got := r.Config()
	if got.Consumer == "" || got.Count != consumers.DefaultCount || got.Block != consumers.DefaultBlock ||
		got.ClaimIdle != consumers.DefaultClaimIdle || got.ClaimInterval != consumers.DefaultClaimIdle/2 ||
		got.MaxDeliveries != consumers.DefaultMaxDeliveries || got.StartID != "0" {
		t.Fatalf("defaults not applied: %+v", got)
	}
	if d := r.DeadLetterStreamFor("{bot}:events"); d != "{bot}:events:dead" {
		t.Fatalf("dead-letter stream: got %q, want %q", d, "{bot}:events:dead")
	}
}

// Every entry of two streams is handled once, in order per stream, and
// acknowledged: nothing stays pending.
func TestGroupReader_ReadsAndAcksAll(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	streams := []string{"{b}:events", "{b}:messages"}
	want := map[string][]string{}
	for i, s := range streams {
		want[s] = xadd(t, c, s, int64(i*1000+1), 120) // more than Count: several reads
	}
	rec := newRecorder()
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: streams, Group: "workers", Consumer: "w1", Count: 50, Block: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error { return r.Run(ctx, rec.handle) })

	// Entries added while the reader blocks are read too.
	for i, s := range streams {
		want[s] = append(want[s], xadd(t, c, s, int64(i*1000+500), 30)...)
	}
	testkit.Eventually(t, 20*time.Second, "all entries handled", func() bool { return rec.count() == 300 })
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool {
		return pendingCount(t, c, streams[0], "workers") == 0 && pendingCount(t, c, streams[1], "workers") == 0
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: got %v, want nil", err)
	}
	for _, s := range streams {
		if got := rec.streamIDs(s); !slices.Equal(got, want[s]) {
			t.Fatalf("stream %s: handler saw %d ids %v..., want %d in XADD order", s, len(got), got[:min(3, len(got))], len(want[s]))
		}
	}
	m := rec.msgs[want[streams[0]][0]]
	if m.T != "MESSAGE_CREATE" || m.Bot != "testbot" || m.Shard != 3 || m.Seq != 1 || m.Guild != "81384788765712384" ||
		m.Deliveries != 1 || m.Stream != streams[0] || string(m.D) != `{"id":"1001","content":"m1"}` {
		t.Fatalf("first message decoded wrong: %+v", m)
	}
	st := r.Stats()
	if st.Handled != 300 || st.Acked != 300 || st.Failed != 0 || st.DeadLettered != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// A consumer that read entries and died without acknowledging them: another
// consumer claims them after ClaimIdle and handles each once.
func TestGroupReader_ReclaimsFromDeadConsumer(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	ids := xadd(t, c, s, 1, 25)
	if err := c.Do(context.Background(), c.B().XgroupCreate().Key(s).Group(g).Id("0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// Consumer A reads 20 entries and dies: no ack.
	res, err := c.Do(context.Background(), c.B().Xreadgroup().Group(g, "A").Count(20).Streams().Key(s).Id(">").Build()).AsXRead()
	if err != nil || len(res[s]) != 20 {
		t.Fatalf("consumer A read: %d entries, err %v", len(res[s]), err)
	}

	rec := newRecorder()
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "B",
		Block: 50 * time.Millisecond, ClaimIdle: 200 * time.Millisecond, ClaimInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error { return r.Run(ctx, rec.handle) })
	testkit.Eventually(t, 10*time.Second, "B handled all 25", func() bool { return rec.count() == 25 })
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return pendingCount(t, c, s, g) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := rec.streamIDs(s)
	once := map[string]int{}
	for _, id := range got {
		once[id]++
	}
	if len(got) != len(ids) || len(once) != len(ids) || !allIn(ids, once) {
		t.Fatalf("B handled %v, want each of %v once", got, ids)
	}
	for _, id := range ids[:20] {
		if d := rec.msgs[id].Deliveries; d != 2 {
			t.Fatalf("claimed entry %s: Deliveries %d, want 2", id, d)
		}
	}
	if st := r.Stats(); st.Claimed != 20 {
		t.Fatalf("Claimed: got %d, want 20", st.Claimed)
	}
}

// A consumer restarted under the same name re-reads what it had been given
// but not acknowledged, without waiting for ClaimIdle.
func TestGroupReader_RestartRereadsOwnPending(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	ids := xadd(t, c, s, 1, 10)
	if err := c.Do(context.Background(), c.B().XgroupCreate().Key(s).Group(g).Id("0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), c.B().Xreadgroup().Group(g, "A").Count(10).Streams().Key(s).Id(">").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "A", Count: 3, Block: 50 * time.Millisecond, ClaimIdle: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error { return r.Run(ctx, rec.handle) })
	testkit.Eventually(t, 10*time.Second, "own pending re-read", func() bool { return rec.count() == 10 })
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return pendingCount(t, c, s, g) == 0 })
	_ = stop()
	if got := rec.streamIDs(s); !slices.Equal(got, ids) {
		t.Fatalf("got %v, want %v", got, ids)
	}
	if d := rec.msgs[ids[0]].Deliveries; d != 2 {
		t.Fatalf("Deliveries: got %d, want 2", d)
	}
}

// An entry whose handler keeps failing is delivered MaxDeliveries times, then
// moved to the dead-letter stream with its fields and why; an undecodable
// entry goes there at once. Other entries are unaffected.
func TestGroupReader_DeadLetter(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	good1 := xadd(t, c, s, 1, 1)[0]
	poisonFields := entryFields("MESSAGE_CREATE", 2, `{"id":"poison"}`)
	poison := xaddFields(t, c, s, poisonFields)
	garbageFields := entryFields("MESSAGE_CREATE", 3, `{}`)
	garbageFields["shard"] = "minus-one"
	garbage := xaddFields(t, c, s, garbageFields)
	good2 := xadd(t, c, s, 4, 1)[0]

	var mu sync.Mutex
	calls := map[string]int{}
	var acked []string
	handler := func(_ context.Context, m consumers.Message) error {
		mu.Lock()
		defer mu.Unlock()
		calls[m.ID]++
		if m.ID == poison {
			return fmt.Errorf("cannot handle %s (try %d)", m.ID, m.Deliveries)
		}
		acked = append(acked, m.ID)
		return nil
	}
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "w", MaxDeliveries: 3,
		Block: 50 * time.Millisecond, ClaimIdle: 100 * time.Millisecond, ClaimInterval: 30 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	dead := s + ":dead"
	stop := runReader(t, func(ctx context.Context) error { return r.Run(ctx, handler) })
	testkit.Eventually(t, 15*time.Second, "two dead entries", func() bool {
		n, _ := c.Do(context.Background(), c.B().Xlen().Key(dead).Build()).AsInt64()
		return n == 2
	})
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return pendingCount(t, c, s, g) == 0 })
	_ = stop()

	mu.Lock()
	defer mu.Unlock()
	if calls[poison] != 3 {
		t.Fatalf("poison handled %d times, want 3 (MaxDeliveries)", calls[poison])
	}
	if calls[garbage] != 0 {
		t.Fatalf("undecodable entry reached the handler %d times", calls[garbage])
	}
	if !slices.Equal(acked, []string{good1, good2}) {
		t.Fatalf("good entries handled: %v, want %v", acked, []string{good1, good2})
	}
	entries, err := c.Do(context.Background(), c.B().Xrange().Key(dead).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]map[string]string{}
	for _, e := range entries {
		byID[e.FieldValues["dead_id"]] = e.FieldValues
	}
	p := byID[poison]
	if p == nil {
		t.Fatalf("poison entry not in %s: %v", dead, entries)
	}
	for k, v := range poisonFields {
		if p[k] != v {
			t.Fatalf("dead entry field %s: got %q, want %q", k, p[k], v)
		}
	}
	if p["dead_from"] != s || p["deliveries"] != "3" || !strings.Contains(p["error"], "cannot handle "+poison+" (try 3)") {
		t.Fatalf("dead entry metadata: %v", p)
	}
	gb := byID[garbage]
	if gb == nil || gb["shard"] != "minus-one" || !strings.Contains(gb["error"], `field "shard"`) || gb["deliveries"] != "1" {
		t.Fatalf("garbage dead entry: %v", gb)
	}
	if st := r.Stats(); st.DeadLettered != 2 || st.Undecodable != 1 || st.Failed != 3 {
		t.Fatalf("stats: %+v", st)
	}
}

// A consumer killed repeatedly while handling an entry (it is claimed and
// never acknowledged) stops receiving it once it exceeds MaxDeliveries.
func TestGroupReader_DeadLettersOverDeliveredClaims(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	id := xadd(t, c, s, 1, 1)[0]
	ctx := context.Background()
	if err := c.Do(ctx, c.B().XgroupCreate().Key(s).Group(g).Id("0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// Delivered to a consumer that died (1), then claimed by two more that
	// died too (2, 3).
	if err := c.Do(ctx, c.B().Xreadgroup().Group(g, "dead1").Streams().Key(s).Id(">").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for _, cons := range []string{"dead2", "dead3"} {
		if err := c.Do(ctx, c.B().Xautoclaim().Key(s).Group(g).Consumer(cons).MinIdleTime("0").Start("0-0").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	var calls int
	var mu sync.Mutex
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "w", MaxDeliveries: 3,
		Block: 50 * time.Millisecond, ClaimIdle: 50 * time.Millisecond, ClaimInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error {
		return r.Run(ctx, func(context.Context, consumers.Message) error { mu.Lock(); calls++; mu.Unlock(); return nil })
	})
	testkit.Eventually(t, 10*time.Second, "entry dead-lettered", func() bool {
		n, _ := c.Do(ctx, c.B().Xlen().Key(s+":dead").Build()).AsInt64()
		return n == 1
	})
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return pendingCount(t, c, s, g) == 0 })
	_ = stop()
	mu.Lock()
	defer mu.Unlock()
	if calls != 0 {
		t.Fatalf("handler called %d times for an entry over MaxDeliveries", calls)
	}
	e, _ := c.Do(ctx, c.B().Xrange().Key(s+":dead").Start("-").End("+").Build()).AsXRange()
	if e[0].FieldValues["dead_id"] != id || e[0].FieldValues["deliveries"] != "4" || !strings.Contains(e[0].FieldValues["error"], "without acknowledgement") {
		t.Fatalf("dead entry: %v", e[0].FieldValues)
	}
}

// On cancel, the handler in flight finishes (with a live ctx), its entry is
// acknowledged, no new handler starts, and Run returns nil. The entries read
// but not started stay pending with the consumer and are handled by its next
// run.
func TestGroupReader_GracefulStop(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	ids := xadd(t, c, s, 1, 10)

	started := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	var ctxErrAtEnd error
	handler := func(ctx context.Context, m consumers.Message) error {
		mu.Lock()
		seen = append(seen, m.ID)
		first := len(seen) == 1
		mu.Unlock()
		if first {
			close(started)
			<-release
			ctxErrAtEnd = ctx.Err()
		}
		return nil
	}
	cfg := consumers.GroupConfig{Streams: []string{s}, Group: g, Consumer: "w", Count: 10, Block: 50 * time.Millisecond, ClaimIdle: time.Hour}
	r, err := consumers.NewGroupReader(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, handler) }()
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while a handler was in flight", err)
	default:
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the in-flight handler finished")
	}
	if ctxErrAtEnd != nil {
		t.Fatalf("in-flight handler's ctx was cancelled at once (%v); want it live during ShutdownGrace", ctxErrAtEnd)
	}
	if !slices.Equal(seen, ids[:1]) {
		t.Fatalf("handled %v after cancel, want only %v", seen, ids[:1])
	}
	if n := pendingCount(t, c, s, g); n != 9 {
		t.Fatalf("pending after stop: got %d, want 9 (first acked)", n)
	}

	// The next run under the same name handles the other nine once.
	rec := newRecorder()
	r2, err := consumers.NewGroupReader(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error { return r2.Run(ctx, rec.handle) })
	testkit.Eventually(t, 10*time.Second, "rest handled", func() bool { return rec.count() == 9 })
	testkit.Eventually(t, 5*time.Second, "nothing pending", func() bool { return pendingCount(t, c, s, g) == 0 })
	_ = stop()
	if got := rec.streamIDs(s); !slices.Equal(got, ids[1:]) {
		t.Fatalf("second run handled %v, want %v", got, ids[1:])
	}
}

// A handler that does not finish within ShutdownGrace sees its ctx
// cancelled; its entry stays pending (not dead-lettered, even at the
// delivery limit) and Run returns nil.
func TestGroupReader_ShutdownGraceCancelsHandler(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	xadd(t, c, s, 1, 1)
	started := make(chan struct{})
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "w", MaxDeliveries: 1,
		Block: 50 * time.Millisecond, ShutdownGrace: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var handlerErr error
	stop := runReader(t, func(ctx context.Context) error {
		return r.Run(ctx, func(hctx context.Context, m consumers.Message) error {
			close(started)
			<-hctx.Done()
			handlerErr = hctx.Err()
			return handlerErr
		})
	})
	<-started
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !errors.Is(handlerErr, context.Canceled) {
		t.Fatalf("handler ctx error: %v", handlerErr)
	}
	if n := pendingCount(t, c, s, g); n != 1 {
		t.Fatalf("pending: got %d, want 1", n)
	}
	if n, _ := c.Do(context.Background(), c.B().Xlen().Key(s+":dead").Build()).AsInt64(); n != 0 {
		t.Fatalf("entry dead-lettered on shutdown")
	}
}

// A failing handler's entry is retried (claimed by the same consumer after
// ClaimIdle) and acknowledged once the handler succeeds.
func TestGroupReader_RetriesFailedHandler(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	id := xadd(t, c, s, 1, 1)[0]
	var mu sync.Mutex
	var deliveries []int64
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "w",
		Block: 50 * time.Millisecond, ClaimIdle: 100 * time.Millisecond, ClaimInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error {
		return r.Run(ctx, func(_ context.Context, m consumers.Message) error {
			mu.Lock()
			defer mu.Unlock()
			deliveries = append(deliveries, m.Deliveries)
			if len(deliveries) < 2 {
				return errors.New("transient")
			}
			if len(deliveries) == 2 {
				panic("handler panics are errors too")
			}
			return nil
		})
	})
	testkit.Eventually(t, 10*time.Second, "entry acked", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) >= 3 && pendingCount(t, c, s, g) == 0
	})
	_ = stop()
	if !slices.Equal(deliveries, []int64{1, 2, 3}) {
		t.Fatalf("deliveries seen: %v, want [1 2 3] (entry %s)", deliveries, id)
	}
}

// Tail reads raw entries without a group, from the start or from now on.
func TestTail(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s = "{b}:events"
	old := xadd(t, c, s, 1, 5)

	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := consumers.Tail(ctx, c, s, "0", func(e consumers.Entry) error {
		m, err := e.Message()
		if err != nil {
			return err
		}
		got = append(got, m.ID)
		if len(got) == len(old) {
			cancel()
		}
		return nil
	})
	if err != nil || !slices.Equal(got, old) {
		t.Fatalf("Tail from 0: got %v err %v, want %v", got, err, old)
	}

	// From an id: only what follows it.
	stopErr := errors.New("enough")
	got = nil
	err = consumers.Tail(context.Background(), c, s, old[2], func(e consumers.Entry) error {
		got = append(got, e.ID)
		if len(got) == 2 {
			return stopErr
		}
		return nil
	})
	if !errors.Is(err, stopErr) || !slices.Equal(got, old[3:]) {
		t.Fatalf("Tail from id: got %v err %v, want %v and the handler's error", got, err, old[3:])
	}

	// From "$": never an old entry, and new ones arrive.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	seen := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- consumers.Tail(ctx2, c, s, "$", func(e consumers.Entry) error { seen <- e.ID; return nil })
	}()
	deadline := time.Now().Add(10 * time.Second)
	var first string
	for first == "" {
		if time.Now().After(deadline) {
			t.Fatal("Tail from $ saw nothing")
		}
		xadd(t, c, s, 100, 1)
		select {
		case first = <-seen:
		case <-time.After(50 * time.Millisecond):
		}
	}
	if slices.Contains(old, first) {
		t.Fatalf("Tail from $ delivered old entry %s", first)
	}
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("Tail: %v", err)
	}
}

var _ rueidis.Client // the tests drive Redis through rueidis directly

// allIn reports whether every id is a key of m.
func allIn(ids []string, m map[string]int) bool {
	for _, id := range ids {
		if m[id] == 0 {
			return false
		}
	}
	return true
}

// Entries of one read are acknowledged together after the read is handled:
// exactly those whose handler returned nil, never a failed one.
func TestGroupReader_AcksOnlySucceededOfBatch(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	ids := xadd(t, c, s, 1, 10)
	var failed []string
	for i, id := range ids {
		if i%3 == 1 {
			failed = append(failed, id)
		}
	}
	var mu sync.Mutex
	calls := 0
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{
		Streams: []string{s}, Group: g, Consumer: "w", Count: 10,
		Block: 50 * time.Millisecond, ClaimIdle: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runReader(t, func(ctx context.Context) error {
		return r.Run(ctx, func(_ context.Context, m consumers.Message) error {
			mu.Lock()
			calls++
			mu.Unlock()
			if slices.Contains(failed, m.ID) {
				return errors.New("refused")
			}
			return nil
		})
	})
	testkit.Eventually(t, 10*time.Second, "successes acked", func() bool {
		return r.Stats().Acked == int64(len(ids)-len(failed))
	})
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	rows, err := c.Do(context.Background(), c.B().Xpending().Key(s).Group(g).Start("-").End("+").Count(100).Build()).ToArray()
	if err != nil {
		t.Fatal(err)
	}
	var pending []string
	for _, row := range rows {
		fields, err := row.ToArray()
		if err != nil || len(fields) == 0 {
			t.Fatalf("XPENDING row: %v", err)
		}
		id, _ := fields[0].ToString()
		pending = append(pending, id)
	}
	if !slices.Equal(pending, failed) {
		t.Fatalf("pending after the batch: %v, want the failed %v", pending, failed)
	}
	if st := r.Stats(); calls != len(ids) || st.Handled != int64(len(ids)) || st.Failed != int64(len(failed)) {
		t.Fatalf("calls %d, stats %+v; want %d calls, %d failed", calls, st, len(ids), len(failed))
	}
}

// With DrainOnStop, a stopping reader handles and acknowledges the rest of
// the entries it had read: nothing stays pending.
func TestGroupReader_DrainOnStop(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "workers"
	ids := xadd(t, c, s, 1, 10)

	started := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	var seen []string
	handler := func(ctx context.Context, m consumers.Message) error {
		mu.Lock()
		seen = append(seen, m.ID)
		first := len(seen) == 1
		mu.Unlock()
		if first {
			close(started)
			<-release
		}
		return ctx.Err()
	}
	r, err := consumers.NewGroupReader(c, consumers.GroupConfig{Streams: []string{s}, Group: g, Consumer: "w",
		Count: 10, Block: 50 * time.Millisecond, ClaimIdle: time.Hour, DrainOnStop: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, handler) }()
	<-started
	cancel()
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: got %v, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
	if !slices.Equal(seen, ids) {
		t.Fatalf("handled %v, want all of %v", seen, ids)
	}
	if n := pendingCount(t, c, s, g); n != 0 {
		t.Fatalf("pending after stop: got %d, want 0", n)
	}
	if st := r.Stats(); st.Acked != 10 {
		t.Fatalf("stats %+v, want 10 acked", st)
	}
}
