package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feathery/feathery/luascripts"
)

// pubWriter sends the publish calls of one bot. A shard's flusher prepares
// its batch (filters, prefixes, expectation), hands it here and waits; a
// writer lane takes every batch waiting when it is free, applies them to
// the cache in one Cache.Apply and publishes them in one script call, one
// section per shard, each section with its own checkpoint and fence check
// and its own verdict (see publish.lua). All keys of a bot carry its
// {bot:B} hash tag, so one call fits one Redis Cluster slot.
//
// There is no gathering window: a lane sends what is waiting as soon as it
// is free, so a lone event goes at once, and while a call is in flight the
// batches of other shards pile up for the next one. The first lane takes
// any amount; further lanes start a call beside one in flight only when at
// least laneThreshold events wait, so calls overlap (pipelining) only under
// load, where each is full anyway.
type pubWriter struct {
	b *botState

	mu       sync.Mutex
	pending  []*shardQueue // flushers waiting for their call, in arrival order
	events   int           // events of the pending batches
	inflight int           // lanes in a call
	started  bool
	wake     chan struct{} // cap 1: pending or inflight changed

	// Counters for benchmarks and stats.
	calls    atomic.Uint64 // script calls made
	sections atomic.Uint64 // shard batches they carried
}

// pubLanes is the number of calls of one bot in flight at most.
const pubLanes = 4

func newPubWriter(b *botState) *pubWriter {
	return &pubWriter{b: b, wake: make(chan struct{}, 1)}
}

// pubCall is a shard's batch handed to its bot's writer, and the outcome.
type pubCall struct {
	run  []*item
	size int // Data bytes of run
	out  luascripts.PublishOutcome
	err  error // the call's error (Redis, cache), nil when out holds the verdict
	rtt  time.Duration
	done chan struct{} // cap 1: the writer finished with the batch
}

func (w *pubWriter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// submit hands sq's prepared batch run to the writer and waits for its
// outcome. When ctx ends first the batch is withdrawn, or, if a lane took
// it already, waited for (the lane's calls end with ctx): the flusher owns
// its scratch again when submit returns.
func (w *pubWriter) submit(ctx context.Context, sq *shardQueue, run []*item) (luascripts.PublishResult, time.Duration, error) {
	c := &sq.call
	c.run, c.size = run, 0
	for _, it := range run {
		c.size += len(it.ev.Data)
	}
	n := len(sq.sc.evs)
	if n == 0 {
		n = 1 // a section of checkpoint only still costs a call
	}
	w.mu.Lock()
	if !w.started {
		w.started = true
		p := w.b.p
		for range pubLanes {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				w.lane(p.ctx)
			}()
		}
	}
	w.pending = append(w.pending, sq)
	w.events += n
	w.mu.Unlock()
	w.signal()
	select {
	case <-c.done:
	case <-ctx.Done():
		if w.withdraw(sq, n) {
			return luascripts.PublishResult{}, 0, ctx.Err()
		}
		<-c.done
	}
	c.run = nil
	if c.err != nil {
		return luascripts.PublishResult{}, c.rtt, c.err
	}
	return c.out.Result, c.rtt, c.out.Err
}

// withdraw takes sq out of the pending batches; false when a lane has it.
func (w *pubWriter) withdraw(sq *shardQueue, n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, q := range w.pending {
		if q == sq {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			w.events -= n
			return true
		}
	}
	return false
}

// laneThreshold is how many events must wait before a lane starts a call
// beside one in flight.
func laneThreshold(cfg *PublisherConfig) int { return max(cfg.MaxBatch/4, 1) }

// take waits for batches a lane may send and takes them: at most MaxBatch
// events and MaxBatchBytes bytes (at least one batch). Nil when ctx ended.
func (w *pubWriter) take(ctx context.Context, into []*shardQueue) []*shardQueue {
	for {
		cfg := w.b.p.tuning()
		w.mu.Lock()
		if len(w.pending) > 0 && (w.inflight == 0 || w.events >= laneThreshold(cfg)) {
			events, size, k := 0, 0, 0
			for _, sq := range w.pending {
				n := max(len(sq.sc.evs), 1)
				if k > 0 && (events+n > cfg.MaxBatch || size+sq.call.size > cfg.MaxBatchBytes) {
					break
				}
				events += n
				size += sq.call.size
				k++
			}
			into = append(into, w.pending[:k]...)
			rest := copy(w.pending, w.pending[k:])
			clear(w.pending[rest:])
			w.pending = w.pending[:rest]
			w.events -= events
			w.inflight++
			more := rest > 0
			w.mu.Unlock()
			if more {
				w.signal() // another lane may take the rest
			}
			return into
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// lane is one writer goroutine of the bot; it runs until ctx ends.
func (w *pubWriter) lane(ctx context.Context) {
	var l writerLane
	for {
		batch := w.take(ctx, l.batch[:0])
		if batch == nil {
			return
		}
		l.batch = batch
		l.round(ctx, w)
		clear(l.batch)
		w.mu.Lock()
		w.inflight--
		pending := len(w.pending) > 0
		w.mu.Unlock()
		if pending {
			w.signal()
		}
	}
}

// writerLane is a lane's reusable state.
type writerLane struct {
	batch  []*shardQueue
	live   []*shardQueue // the batches in the script call
	evs    []*Event
	before [][]byte
	multi  luascripts.PublishBatch
	outs   []luascripts.PublishOutcome
}

// round applies the batches to the cache, publishes them in one call and
// hands every flusher its outcome.
func (l *writerLane) round(ctx context.Context, w *pubWriter) {
	p := w.b.p
	if p.cfg.Cache != nil {
		l.evs = l.evs[:0]
		for _, sq := range l.batch {
			l.evs = append(l.evs, sq.sc.evs...)
		}
		if len(l.evs) > 0 {
			l.before = append(l.before[:0], make([][]byte, len(l.evs))...)
			if err := p.cfg.Cache.Apply(ctx, l.evs, l.before); err != nil {
				for _, sq := range l.batch {
					finish(sq, err, 0)
				}
				clear(l.evs)
				return
			}
			off := 0
			for _, sq := range l.batch {
				off += copy(sq.sc.before, l.before[off:off+len(sq.sc.evs)])
			}
			clear(l.evs)
			clear(l.before)
		}
	}
	now := time.Now()
	l.multi.Reset()
	l.live = l.live[:0]
	for _, sq := range l.batch {
		if err := sq.sc.conf.ensureGroups(ctx, p.c); err != nil {
			finish(sq, err, 0)
			continue
		}
		sq.build(sq.call.run, now, sq.sc.expect)
		l.multi.Add(&sq.sc.args)
		l.live = append(l.live, sq)
	}
	if len(l.live) == 0 {
		return
	}
	w.calls.Add(1)
	w.sections.Add(uint64(len(l.live)))
	t0 := time.Now()
	outs, err := luascripts.PublishMulti(ctx, p.c, &l.multi, l.outs[:0])
	rtt := time.Since(t0)
	if err != nil {
		// The failed command may still sit in the client's queue
		// referencing the batches' buffers: give them to the GC.
		l.multi = luascripts.PublishBatch{}
		for _, sq := range l.live {
			finish(sq, err, rtt)
		}
	} else {
		for i, sq := range l.live {
			sq.call.out = outs[i]
			finish(sq, nil, rtt)
		}
		clear(outs)
		l.outs = outs[:0]
	}
	clear(l.live)
}

// finish hands sq its outcome.
func finish(sq *shardQueue, err error, rtt time.Duration) {
	sq.call.err, sq.call.rtt = err, rtt
	sq.call.done <- struct{}{}
}
