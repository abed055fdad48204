package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
)

// Redis stops mid-stream: Publish blocks once the shard's queue is full
// (visible in Stats), nothing is dropped, and after Redis comes back every
// event lands exactly once, in order.
func TestPublisher_RedisOutageBackpressure(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := srv.Client(t)
	const queue = 32
	p := newPublisher(t, c, broker.PublisherConfig{
		QueueSize: queue, MaxBatch: 16,
		RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
	})
	for i := int64(1); i <= 200; i++ {
		mustPublish(t, p, ev(i, "MESSAGE_CREATE", fmt.Sprintf(`{"n":%d}`, i)))
	}
	flush(t, p, "b", 0)

	srv.Stop()
	const total = 600
	done := make(chan error, 1)
	progress := make(chan int64, total)
	go func() {
		for i := int64(201); i <= total; i++ {
			if err := p.Publish(context.Background(), ev(i, "MESSAGE_CREATE", fmt.Sprintf(`{"n":%d}`, i))); err != nil {
				done <- err
				return
			}
			progress <- i
		}
		done <- nil
	}()
	// Backpressure: the queue fills and Publish stops returning.
	testkit.EventuallyWhy(t, 10*time.Second, func() string {
		st := shardStats(p, "b", 0)
		if st.QueueDepth < queue || st.Errors == 0 {
			return fmt.Sprintf("queue depth %d/%d, errors %d", st.QueueDepth, st.QueueCap, st.Errors)
		}
		return ""
	})
	accepted := shardStats(p, "b", 0).Accepted
	if accepted >= total {
		t.Fatalf("all %d events accepted while Redis was down: no backpressure", accepted)
	}
	select {
	case err := <-done:
		t.Fatalf("publisher goroutine finished while Redis was down: %v", err)
	default:
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	err := p.Flush(ctx, "b", 0)
	cancel()
	if err == nil {
		t.Fatalf("flush succeeded while Redis was down")
	}
	// A blocked Publish on another shard's full queue honours its ctx: at
	// most queue + one batch are accepted, then Publish times out.
	blocked := false
	for i := int64(1); i <= queue+16+1; i++ {
		e := ev(i, "TYPING_START", `{}`)
		e.Shard = 1
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := p.Publish(ctx, e)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			blocked = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !blocked {
		t.Fatalf("shard 1 accepted more than queue + one batch while Redis was down")
	}
	if st := shardStats(p, "b", 0); st.LastError == "" {
		t.Errorf("no last error in stats while Redis is down")
	}

	srv.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("publishing did not resume after Redis came back")
	}
	flush(t, p, "b", 0)
	var es []entry // shard 0's entries
	for _, e := range readStream(t, c, "feathery:{bot:b}:events") {
		if sh, _ := e.get("shard"); sh == "0" {
			es = append(es, e)
		}
	}
	wantSeqs(t, "stream after outage", seqs(t, es), 1, total)
	for _, e := range es {
		if d, _ := e.get("d"); d != fmt.Sprintf(`{"n":%d}`, e.seq(t)) {
			t.Fatalf("entry seq %d carries d %s", e.seq(t), d)
		}
	}
	if ck := hgetall(t, c, "feathery:{bot:b}:session:0"); ck["seq"] != fmt.Sprint(total) {
		t.Errorf("checkpoint seq %s, want %d", ck["seq"], total)
	}
}

// The publish path on a three-master Redis Cluster: every script call's
// keys share the bot's hash tag, so no CROSSSLOT; sessions and the identify
// limiter work there too.
func TestPublisher_Cluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	client, err := broker.NewClient(broker.RedisConfig{ClusterAddrs: cl.Addrs()}) // client-side caching on

	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	c := client.Redis()
	bots := []string{"alpha", "beta", "gamma", "delta"}
	var cfgs []broker.BotConfig
	for _, b := range bots {
		cfgs = append(cfgs, broker.BotConfig{
			Name:    b,
			Default: broker.StreamConfig{Groups: []string{"g"}},
			Routes: []broker.Route{{Events: []string{"MESSAGE_*"}, StreamConfig: broker.StreamConfig{
				Stream: "messages", MaxLen: 1000, Groups: []string{"g"}}}},
			Filters: broker.FilterConfig{PrefixFilter: true, Prefixes: []string{"!"}},
		})
	}
	p := newPublisher(t, c, broker.PublisherConfig{Bots: cfgs, ClientSideCaching: client.ClientSideCaching()})
	if err := p.EnsureGroups(t.Context()); err != nil {
		t.Fatal(err)
	}
	keys := broker.NewKeys("")
	for _, b := range bots {
		for i := int64(4); i <= 50; i += 4 {
			if err := c.Do(t.Context(), c.B().Sadd().Key(keys.GuildPrefixes(uint64(1000+i), b)).Member("?").Build()).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, b := range bots {
		for s := range 2 {
			for i := int64(1); i <= 50; i++ {
				e := ev(i, "GUILD_UPDATE", `{}`)
				if i%2 == 0 {
					e = ev(i, "MESSAGE_CREATE", `{"content":"?x"}`)
					e.GuildID = uint64(1000 + i) // guild prefix lookups spread over slots
				}
				e.Bot, e.Shard, e.ShardCount = b, s, 2
				mustPublish(t, p, e)
			}
			flush(t, p, b, s)
		}
	}
	store := broker.NewSessionStore(c, keys)
	for _, b := range bots {
		if n := len(readStream(t, c, keys.Events(b))); n != 50 {
			t.Errorf("bot %s: %d events, want 50", b, n)
		}
		if n := len(readStream(t, c, keys.Stream(b, "messages"))); n != 24 {
			t.Errorf("bot %s: %d messages, want 24 (guild prefix ?)", b, n)
		}
		if st := shardStats(p, b, 1); st.Filtered[broker.FilterPrefix] != 13 {
			t.Errorf("bot %s: prefix filtered %d, want 13", b, st.Filtered[broker.FilterPrefix])
		}
		sess, err := store.Load(t.Context(), b, 1)
		if err != nil || sess.ID != "s1" || sess.Seq != 50 || sess.ShardCount != 2 {
			t.Errorf("bot %s: session %+v, %v", b, sess, err)
		}
	}
	lim := broker.NewIdentifyLimiter(c, broker.IdentifyConfig{Keys: keys})
	if err := lim.Wait(t.Context(), "alpha", 0, broker.Limits{MaxConcurrency: 1, Window: time.Millisecond, Remaining: 5, ResetAfter: time.Hour}); err != nil {
		t.Fatalf("identify on cluster: %v", err)
	}
}

// The per-shard byte bound holds while Redis is down: big events stop
// being accepted once QueueBytes is reached.
func TestPublisher_QueueBytesBound(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	c := srv.Client(t)
	const limit, size = 1 << 20, 100 << 10
	p := newPublisher(t, c, broker.PublisherConfig{QueueBytes: limit, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	srv.Stop()
	payload := `"` + strings.Repeat("z", size-2) + `"`
	accepted := int64(0)
	for i := int64(1); ; i++ {
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		err := p.Publish(ctx, ev(i, "GUILD_CREATE", payload))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted = i
		if i > 2*limit/size {
			t.Fatalf("accepted %d events of %d bytes under a %d-byte bound", i, size, limit)
		}
	}
	if accepted < limit/size-1 {
		t.Errorf("accepted only %d events", accepted)
	}
	if st := shardStats(p, "b", 0); st.QueueBytes > limit {
		t.Errorf("queue holds %d bytes, bound %d", st.QueueBytes, limit)
	}
	srv.Restart()
	flush(t, p, "b", 0)
	wantSeqs(t, "stream", seqs(t, readStream(t, c, "feathery:{bot:b}:events")), 1, accepted)
	if st := shardStats(p, "b", 0); st.QueueBytes != 0 {
		t.Errorf("queue bytes %d after flush, want 0", st.QueueBytes)
	}
}
