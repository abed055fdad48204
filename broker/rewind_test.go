package broker_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
)

func proxyClient(t *testing.T, addr string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func publishRange(t *testing.T, p *broker.Publisher, from, to int64) {
	t.Helper()
	for i := from; i <= to; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{"n":`+strconv.FormatInt(i, 10)+`}`))
	}
}

// publishIntoRefusal publishes from..to after the checkpoint was spoiled:
// the first event is taken, and the flusher may find the spoiled checkpoint
// (and refuse the rest) before the last one is handed over, so a
// CheckpointError ends the range early instead of failing the test.
func publishIntoRefusal(t *testing.T, p *broker.Publisher, from, to int64) {
	t.Helper()
	mustPublish(t, p, ev(from, "TYPING_START", `{}`))
	for i := from + 1; i <= to; i++ {
		err := p.Publish(t.Context(), ev(i, "TYPING_START", `{}`))
		var ce *broker.CheckpointError
		if errors.As(err, &ce) {
			return
		}
		if err != nil {
			t.Fatalf("publish seq %d: %v", i, err)
		}
	}
}

// controlKinds returns the control stream's entries of kind.
func controlEntries(t *testing.T, c rueidis.Client, kind broker.ControlKind) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, e := range readStream(t, c, broker.NewKeys("").Control()) {
		m := map[string]string{}
		for i := 0; i+1 < len(e.fields); i += 2 {
			m[e.fields[i]] = e.fields[i+1]
		}
		if m["kind"] == string(kind) {
			out = append(out, m)
		}
	}
	return out
}

// flushControl waits until queued control events are on the stream.
func waitControl(t *testing.T, c rueidis.Client, kind broker.ControlKind, n int) []map[string]string {
	t.Helper()
	var got []map[string]string
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		got = controlEntries(t, c, kind)
		if len(got) < n {
			return strconv.Itoa(len(got)) + " " + string(kind) + " control events, want " + strconv.Itoa(n)
		}
		return ""
	})
	return got
}

// refusedUntilResume publishes seq next and wants the CheckpointError that
// tells the shard to resume from resumeFrom.
func refusedUntilResume(t *testing.T, p *broker.Publisher, next, resumeFrom int64, status string) {
	t.Helper()
	err := p.Publish(t.Context(), ev(next, "TYPING_START", `{}`))
	var ce *broker.CheckpointError
	if !errors.As(err, &ce) || !ce.CheckpointRewound() || ce.ResumeFrom != resumeFrom || ce.Status != status || ce.Session != "s1" {
		t.Fatalf("publish of seq %d after the refusal: %v, want a CheckpointError (%s) to resume s1 from %d", next, err, status, resumeFrom)
	}
}

// TestPublisher_FailoverToStaleReplica: a real master and replica; the
// replica misses the last writes (SIGSTOP), the master dies and the replica
// is promoted. The next batch finds the checkpoint behind what was
// published: it is refused, the incident is open (key, stored seq), the
// shard's events are refused until it resumes from the stored checkpoint,
// and Discord's replay from there leaves every seq on the stream once.
func TestPublisher_FailoverToStaleReplica(t *testing.T) {
	master := redistest.Start(t, redistest.Options{})
	_, mport, _ := net.SplitHostPort(master.Addr)
	replica := redistest.Start(t, redistest.Options{Args: []string{"--replicaof", "127.0.0.1", mport}})
	rc := replica.Client(t)
	proxy := testkit.StartTCPProxy(t, master.Addr)
	c := proxyClient(t, proxy.Addr())
	p := newPublisher(t, c, broker.PublisherConfig{RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	keys := broker.NewKeys("")

	publishRange(t, p, 1, 100)
	flush(t, p, "b", 0)
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if s, _ := rc.Do(t.Context(), rc.B().Hget().Key(keys.Session("b", 0)).Field("seq").Build()).ToString(); s != "100" {
			return "replica checkpoint at " + s + ", want 100"
		}
		return ""
	})
	// The replica stops, and its link is cut so that nothing of what
	// follows reaches it (not even through its socket buffer).
	if err := syscall.Kill(replica.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	mc := master.Client(t)
	if err := mc.Do(t.Context(), mc.B().ClientKill().TypeReplica().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	publishRange(t, p, 101, 150)
	flush(t, p, "b", 0)
	master.Kill()
	if err := syscall.Kill(replica.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(t.Context(), rc.B().Arbitrary("REPLICAOF", "NO", "ONE").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	proxy.Cut(replica.Addr)

	mustPublish(t, p, ev(151, "TYPING_START", `{"n":151}`))
	flush(t, p, "b", 0)
	incs := p.Incidents()
	if len(incs) != 1 || incs[0].Status != "behind" || incs[0].Key != keys.Session("b", 0) || incs[0].StoredSeq != "100" ||
		incs[0].Published != 150 || incs[0].ResumeFrom != 100 {
		t.Fatalf("incidents %+v, want one: behind, stored 100, published 150, resume from 100", incs)
	}
	refusedUntilResume(t, p, 152, 100, "behind")
	ctl := waitControl(t, rc, broker.ControlCheckpoint, 1)
	if ctl[0]["status"] != "behind" || ctl[0]["key"] != keys.Session("b", 0) || ctl[0]["stored_seq"] != "100" || ctl[0]["seq"] != "150" {
		t.Errorf("checkpoint control event %v", ctl[0])
	}

	// Discord replays from the stored checkpoint.
	publishRange(t, p, 101, 160)
	flush(t, p, "b", 0)
	wantSeqs(t, "promoted replica's stream", seqs(t, readStream(t, rc, keys.Events("b"))), 1, 160)
	if incs := p.Incidents(); len(incs) != 0 {
		t.Errorf("incident still open after the replay: %+v", incs)
	}
	if st := shardStats(p, "b", 0); st.Seq != 160 {
		t.Errorf("checkpoint after the replay: %+v", st)
	}
}

// TestPublisher_RedisWiped: FLUSHALL under a running publisher. The next
// batch finds the checkpoint gone: consumer groups are created again (from
// the streams' start), the checkpoint is rewritten at what was published,
// a redis_lost and a gap (0..published] control event are written, and
// the shard resumes from there without losing what it held.
func TestPublisher_RedisWiped(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	p := newPublisher(t, c, broker.PublisherConfig{Bots: []broker.BotConfig{{
		Name: "b", Default: broker.StreamConfig{Groups: []string{"g"}},
	}}})
	publishRange(t, p, 1, 40)
	flush(t, p, "b", 0)
	srv.FlushAll(t)

	publishIntoRefusal(t, p, 41, 45)
	flush(t, p, "b", 0)
	incs := p.Incidents()
	if len(incs) != 1 || incs[0].Status != "gone" || incs[0].ResumeFrom != 40 {
		t.Fatalf("incidents %+v, want one: gone, resume from 40", incs)
	}
	if ck := hgetall(t, c, keys.Session("b", 0)); ck["session"] != "s1" || ck["seq"] != "40" {
		t.Errorf("checkpoint after the wipe: %v, want rewritten at s1/40", ck)
	}
	groups, err := c.Do(t.Context(), c.B().XinfoGroups().Key(keys.Events("b")).Build()).ToArray()
	if err != nil || len(groups) != 1 {
		t.Fatalf("consumer groups after the wipe: %d %v, want group g again", len(groups), err)
	}
	refusedUntilResume(t, p, 46, 40, "gone")
	lost := waitControl(t, c, broker.ControlRedisLost, 1)
	gaps := waitControl(t, c, broker.ControlGap, 1)
	if lost[0]["key"] != keys.Session("b", 0) || gaps[0]["session"] != "s1" || gaps[0]["last_seq"] != "0" || gaps[0]["to_seq"] != "40" {
		t.Errorf("redis_lost %v, gap %v: want the gap s1 (0, 40]", lost[0], gaps[0])
	}

	// The replay from 40 on reaches a consumer of group g.
	publishRange(t, p, 41, 50)
	flush(t, p, "b", 0)
	wantSeqs(t, "stream after the wipe", seqs(t, readStream(t, c, keys.Events("b"))), 41, 50)
	msgs, err := c.Do(t.Context(), c.B().Xreadgroup().Group("g", "c1").Count(100).Streams().Key(keys.Events("b")).Id(">").Build()).AsXRead()
	if err != nil || len(msgs[keys.Events("b")]) != 10 {
		t.Errorf("group g reads %d entries after the wipe (%v), want 10", len(msgs[keys.Events("b")]), err)
	}
	if incs := p.Incidents(); len(incs) != 0 {
		t.Errorf("incident still open after the replay: %+v", incs)
	}
}

// TestPublisher_CheckpointTampered: a checkpoint pushed ahead, of the wrong
// type or holding garbage is refused and reported (incident naming shard
// and key, control event), rewritten at what was published, and the shard
// resumes from there: the events Discord sent and that were not yet
// published are not skipped (before: 377 events skipped as duplicates, or
// WRONGTYPE on every retry).
func TestPublisher_CheckpointTampered(t *testing.T) {
	key := broker.NewKeys("").Session("b", 0)
	cases := []struct {
		status string
		spoil  func(ctx context.Context, c rueidis.Client) error
	}{
		{"ahead", func(ctx context.Context, c rueidis.Client) error {
			return c.Do(ctx, c.B().Hset().Key(key).FieldValue().FieldValue("seq", "397").Build()).Error()
		}},
		{"wrongtype", func(ctx context.Context, c rueidis.Client) error {
			if err := c.Do(ctx, c.B().Del().Key(key).Build()).Error(); err != nil {
				return err
			}
			return c.Do(ctx, c.B().Set().Key(key).Value("x").Build()).Error()
		}},
		{"garbage", func(ctx context.Context, c rueidis.Client) error {
			return c.Do(ctx, c.B().Hset().Key(key).FieldValue().FieldValue("seq", "twenty").Build()).Error()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.status, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			c := srv.Client(t)
			p := newPublisher(t, c, broker.PublisherConfig{})
			publishRange(t, p, 1, 20)
			flush(t, p, "b", 0)
			if err := tc.spoil(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			publishIntoRefusal(t, p, 21, 25)
			flush(t, p, "b", 0)
			incs := p.Incidents()
			if len(incs) != 1 || incs[0].Status != tc.status || incs[0].Key != key || incs[0].ResumeFrom != 20 {
				t.Fatalf("incidents %+v, want one: %s on %s, resume from 20", incs, tc.status, key)
			}
			ctl := waitControl(t, c, broker.ControlCheckpoint, 1)
			if ctl[0]["status"] != tc.status || ctl[0]["key"] != key || ctl[0]["shard"] != "0" {
				t.Errorf("control event %v", ctl[0])
			}
			if ck := hgetall(t, c, key); ck["session"] != "s1" || ck["seq"] != "20" {
				t.Errorf("checkpoint %v, want rewritten at s1/20", ck)
			}
			refusedUntilResume(t, p, 26, 20, tc.status)
			publishRange(t, p, 21, 30)
			flush(t, p, "b", 0)
			wantSeqs(t, "stream", seqs(t, readStream(t, c, "feathery:{bot:b}:events")), 1, 30)
			if incs := p.Incidents(); len(incs) != 0 {
				t.Errorf("incident still open after the replay: %+v", incs)
			}
		})
	}
}

// TestPublisher_DeleteSessionIsNoLoss: a session given up (its checkpoint
// deleted on purpose) while its events are still queued is not taken for
// Redis losing its data.
func TestPublisher_DeleteSessionIsNoLoss(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	cw := &blockingCache{}
	p := newPublisher(t, c, broker.PublisherConfig{Cache: cw})
	publishRange(t, p, 1, 10)
	flush(t, p, "b", 0)
	// The flusher holds 11 and 12 while the session is given up.
	cw.block()
	publishRange(t, p, 11, 12)
	if err := p.DeleteSession(t.Context(), "b", 0); err != nil {
		t.Fatal(err)
	}
	cw.release()
	e := ev(1, "READY", `{"session_id":"s2"}`)
	e.Session = "s2"
	mustPublish(t, p, e)
	flush(t, p, "b", 0)
	if incs := p.Incidents(); len(incs) != 0 {
		t.Fatalf("incidents after a deliberate delete: %+v", incs)
	}
	if n := len(readStream(t, c, "feathery:{bot:b}:events")); n != 13 {
		t.Errorf("stream has %d entries, want 13", n)
	}
}

// blockingCache is a CacheWriter that holds batches between block and
// release.
type blockingCache struct {
	mu sync.Mutex
	ch chan struct{}
}

func (b *blockingCache) block() {
	b.mu.Lock()
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

func (b *blockingCache) release() {
	b.mu.Lock()
	close(b.ch)
	b.ch = nil
	b.mu.Unlock()
}

func (b *blockingCache) Apply(ctx context.Context, _ []*broker.Event, _ [][]byte) error {
	b.mu.Lock()
	ch := b.ch
	b.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
