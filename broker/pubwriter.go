package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feathery/feathery/luascripts"
)

// pubWriter sends the publish calls of one bot. A shard's flusher prepares
// its batch (filters, prefixes, expectation) and hands it here; one round
// then applies every batch waiting to the cache in one Cache.Apply and
// publishes them in one script call, one section per shard, each section
// with its own checkpoint and fence check and its own verdict (see
// publish.lua). All keys of a bot carry its {bot:B} hash tag, so one call
// fits one Redis Cluster slot.
//
// Rounds are run by the flushers themselves (group commit), not by a
// goroutine of their own: a flusher that hands in a batch while no round
// is running leads one at once, with whatever is waiting, its own batch
// included; batches handed in during a round wait for the next, which the
// first of them leads when the round ends. So a lone event costs no more
// hand-offs than a call of its own, and the batches of many shards share a
// call as soon as calls overlap. With GatherDelay set, a round that would
// start while no other runs first waits until its oldest batch is that
// old, for company. A round beside one in flight (pipelining, at most
// pubLanes) starts only when at least laneThreshold events wait, where
// every call is full anyway, or when the oldest batch has waited roundWait:
// one slow round (a burst's cache work) does not hold up the bot's other
// shards for longer.
type pubWriter struct {
	b *botState

	mu       sync.Mutex
	pending  []*shardQueue // batches waiting for a round, in arrival order
	events   int           // events of the pending batches
	inflight int           // rounds running
	taken    int           // batches in the rounds running

	free []*writerLane // the states of finished rounds, for the next ones

	// Counters, read by tests and benchmarks.
	calls    atomic.Uint64 // script calls made
	sections atomic.Uint64 // shard batches they carried
}

// pubLanes is the number of rounds of one bot running at most.
const pubLanes = 4

func newPubWriter(b *botState) *pubWriter {
	return &pubWriter{b: b}
}

// The states of a batch handed to the writer.
const (
	callPending = iota // in pending
	callTaken          // in a round
	callDone           // outcome set
)

// pubCall is a shard's batch handed to its bot's writer, and the outcome.
type pubCall struct {
	run   []*item
	size  int         // Data bytes of run
	n     int         // events counted in pubWriter.events
	state int         // guarded by pubWriter.mu
	since time.Time   // when the batch was handed in
	timer *time.Timer // the gathering wait of a round this flusher leads
	hold  *time.Timer // the longest wait behind a round in flight
	out   luascripts.PublishOutcome
	err   error // the call's error (Redis, cache), nil when out holds the verdict
	rtt   time.Duration
	// wake has a token when the batch is done or its flusher should lead
	// a round.
	wake chan struct{}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// submit hands sq's prepared batch run to the writer and returns its
// outcome, leading rounds when it is the flusher's turn. When ctx ends
// first, a pending batch is withdrawn and one in a round waited for (the
// round's calls end with ctx): the flusher owns its scratch again when
// submit returns.
func (w *pubWriter) submit(ctx context.Context, sq *shardQueue, run []*item) (luascripts.PublishResult, time.Duration, error) {
	c := &sq.call
	c.run, c.size = run, 0
	for _, it := range run {
		c.size += len(it.ev.Data)
	}
	c.n = max(len(sq.sc.evs), 1) // a section of checkpoint only still costs a call
	c.since = time.Now()
	select {
	case <-c.wake: // a token left by a round finished while this flusher led another
	default:
	}
	w.mu.Lock()
	c.state = callPending
	w.pending = append(w.pending, sq)
	w.events += c.n
	for c.state != callDone {
		if c.state == callPending && w.canLead() {
			w.lead(ctx, sq)
			continue
		}
		// A pending batch does not wait behind a slow round (a burst's
		// cache work, a slow Redis) for longer than roundWait: then it
		// starts a round beside it.
		var hold <-chan time.Time
		if c.state == callPending && w.inflight < pubLanes {
			// (With every lane busy, the first round to end wakes the
			// oldest batch.)
			d := max(roundWait, w.b.p.tuning().GatherDelay) - time.Since(c.since)
			if d <= 0 {
				d = time.Microsecond
			}
			if c.hold == nil {
				c.hold = time.NewTimer(d)
			} else {
				c.hold.Reset(d)
			}
			hold = c.hold.C
		}
		w.mu.Unlock()
		select {
		case <-c.wake:
		case <-hold:
		case <-ctx.Done():
			w.mu.Lock()
			if c.state == callPending {
				w.withdraw(sq)
				w.mu.Unlock()
				c.run = nil
				return luascripts.PublishResult{}, 0, ctx.Err()
			}
			for c.state != callDone {
				w.mu.Unlock()
				<-c.wake
				w.mu.Lock()
			}
			w.mu.Unlock()
			c.run = nil
			return luascripts.PublishResult{}, 0, ctx.Err()
		}
		if hold != nil {
			c.hold.Stop()
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	c.run = nil
	if c.err != nil {
		return luascripts.PublishResult{}, c.rtt, c.err
	}
	return c.out.Result, c.rtt, c.out.Err
}

// withdraw takes sq out of the pending batches; w.mu is held.
func (w *pubWriter) withdraw(sq *shardQueue) {
	for i, q := range w.pending {
		if q == sq {
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
			w.events -= sq.call.n
			return
		}
	}
}

// laneThreshold is how many events must wait before a round starts beside
// one in flight.
func laneThreshold(cfg *PublisherConfig) int { return max(cfg.MaxBatch/4, 1) }

// roundWait is the longest a batch waits behind rounds in flight (at least
// GatherDelay) before it starts a round beside them.
const roundWait = 2 * time.Millisecond

// canLead reports whether a round may start now; w.mu is held.
func (w *pubWriter) canLead() bool {
	if len(w.pending) == 0 || w.inflight >= pubLanes {
		return false
	}
	if w.inflight == 0 {
		return true
	}
	cfg := w.b.p.tuning()
	return w.events >= laneThreshold(cfg) || time.Since(w.pending[0].call.since) >= max(roundWait, cfg.GatherDelay)
}

// lead runs one round with the batches waiting, oldest first: at most
// MaxBatch events and MaxBatchBytes bytes (at least one batch). w.mu is
// held on entry and on return, not during the round. self is the leading
// flusher's queue. When batches are left waiting and may go, the first of
// them is woken to lead the next round.
func (w *pubWriter) lead(ctx context.Context, self *shardQueue) {
	cfg := w.b.p.tuning()
	if cfg.GatherDelay > 0 && w.inflight == 0 && w.events < laneThreshold(cfg) {
		if wait := cfg.GatherDelay - time.Since(w.pending[0].call.since); wait > 0 {
			// Gather: the wait counts as a round in flight, so batches
			// handed in meanwhile join this one (or, once enough wait,
			// start one beside it).
			w.inflight++
			w.mu.Unlock()
			t := self.call.timer
			if t == nil {
				t = time.NewTimer(wait)
				self.call.timer = t
			} else {
				t.Reset(wait)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			w.mu.Lock()
			w.inflight--
			if len(w.pending) == 0 {
				return // taken by a round beside this wait, or withdrawn
			}
		}
	}
	l := w.takeLane()
	events, size, k := 0, 0, 0
	for _, sq := range w.pending {
		if k > 0 && (events+sq.call.n > cfg.MaxBatch || size+sq.call.size > cfg.MaxBatchBytes) {
			break
		}
		events += sq.call.n
		size += sq.call.size
		sq.call.state = callTaken
		k++
	}
	l.batch = append(l.batch[:0], w.pending[:k]...)
	rest := copy(w.pending, w.pending[k:])
	clear(w.pending[rest:])
	w.pending = w.pending[:rest]
	w.events -= events
	w.inflight++
	w.taken += k
	if w.canLead() {
		signal(w.pending[0].call.wake)
	}
	w.mu.Unlock()

	l.round(ctx, w)

	w.mu.Lock()
	for _, sq := range l.batch {
		sq.call.state = callDone
		if sq != self {
			signal(sq.call.wake)
		}
	}
	w.taken -= len(l.batch)
	clear(l.batch)
	w.inflight--
	w.free = append(w.free, l)
	if w.canLead() {
		signal(w.pending[0].call.wake)
	}
}

// takeLane returns a round's state to reuse; w.mu is held.
func (w *pubWriter) takeLane() *writerLane {
	if n := len(w.free); n > 0 {
		l := w.free[n-1]
		w.free = w.free[:n-1]
		return l
	}
	return new(writerLane)
}

// writerLane is the reusable state of a round.
type writerLane struct {
	batch  []*shardQueue
	live   []*shardQueue // the batches in the script call
	evs    []*Event
	before [][]byte
	multi  luascripts.PublishBatch
	outs   []luascripts.PublishOutcome
}

// round applies the batches to the cache, publishes them in one call and
// sets every batch's outcome.
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
					sq.call.err, sq.call.rtt = err, 0
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
			sq.call.err, sq.call.rtt = err, 0
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
			sq.call.err, sq.call.rtt = err, rtt
		}
	} else {
		for i, sq := range l.live {
			sq.call.out, sq.call.err, sq.call.rtt = outs[i], nil, rtt
		}
		clear(outs)
		l.outs = outs[:0]
		// The arguments view the batches' events and scratch: let them
		// go (a lane outlives its round).
		clear(l.multi.Keys)
		clear(l.multi.Args)
	}
	clear(l.live)
}
