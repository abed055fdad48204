package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
)

// gateCache is a CacheWriter that holds its first call until released and
// counts the events of each call (one call per batch).
type gateCache struct {
	started chan struct{} // closed when the first call begins
	release chan struct{} // close to let the first call finish
	sizes   chan int
}

func newGateCache() *gateCache {
	return &gateCache{started: make(chan struct{}), release: make(chan struct{}), sizes: make(chan int, 100)}
}

func (g *gateCache) Apply(ctx context.Context, evs []*broker.Event, _ [][]byte) error {
	select {
	case <-g.started:
	default:
		close(g.started)
		select {
		case <-g.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.sizes <- len(evs)
	return nil
}

// A busy shard's batch waits (up to MaxDelay) for more events: while the
// first batch is held, three events queue up; the next batch takes them,
// finds the queue dry and waits, and two events published meanwhile join it.
// Three batches in all would mean it did not wait.
func TestPublisher_MaxDelayGathersWhenBusy(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	g := newGateCache()
	p := newPublisher(t, c, broker.PublisherConfig{MaxDelay: 3 * time.Second, Cache: g})
	mustPublish(t, p, ev(1, "TYPING_START", `{}`))
	<-g.started
	for i := int64(2); i <= 4; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{}`))
	}
	close(g.release)
	testkit.EventuallyWhy(t, 5*time.Second, func() string {
		if n, _ := c.Do(t.Context(), c.B().Xlen().Key("feathery:{bot:b}:events").Build()).AsInt64(); n < 1 {
			return "first batch not published"
		}
		return ""
	})
	for i := int64(5); i <= 6; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{}`))
	}
	flush(t, p, "b", 0)
	wantSeqs(t, "stream", seqs(t, readStream(t, c, "feathery:{bot:b}:events")), 1, 6)
	if st := shardStats(p, "b", 0); st.Batches != 2 {
		t.Errorf("%d batches, want 2: [1] and [2..6] gathered within MaxDelay", st.Batches)
	}
}

// A quiet shard does not wait: an event published alone is durable long
// before MaxDelay (an hour here).
func TestPublisher_MaxDelayQuietShardFlushesAtOnce(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{MaxDelay: time.Hour})
	for i := int64(1); i <= 3; i++ {
		mustPublish(t, p, ev(i, "TYPING_START", `{}`))
		flush(t, p, "b", 0) // fails the test after 20s
	}
	wantSeqs(t, "stream", seqs(t, readStream(t, c, "feathery:{bot:b}:events")), 1, 3)
}

// MaxDelay counts from a batch's first event: a steady trickle (one event
// every 20ms, each arriving before a per-gap wait would run out) does not
// hold a busy shard's batch back until MaxBatch fills.
func TestPublisher_MaxDelayBoundsTheWait(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	g := newGateCache()
	p := newPublisher(t, c, broker.PublisherConfig{MaxDelay: 300 * time.Millisecond, MaxBatch: 512, Cache: g})
	// Make the shard busy: two events queue behind a held first batch.
	mustPublish(t, p, ev(1, "TYPING_START", `{}`))
	<-g.started
	mustPublish(t, p, ev(2, "TYPING_START", `{}`))
	mustPublish(t, p, ev(3, "TYPING_START", `{}`))
	close(g.release)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := int64(4); i <= 500; i++ {
			if err := p.Publish(ctx, ev(i, "TYPING_START", `{}`)); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	// The trickle lasts 10s; seq 3 must reach the stream long before.
	testkit.EventuallyWhy(t, 5*time.Second, func() string {
		if n, _ := c.Do(t.Context(), c.B().Xlen().Key("feathery:{bot:b}:events").Build()).AsInt64(); n < 3 {
			return "second batch still waiting"
		}
		return ""
	})
	cancel()
	<-done
}
