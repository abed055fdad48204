package broker

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// ControlKind is the kind of a control event: the "kind" field of a
// control stream entry. The gateway's ControlKind has the same values for
// the kinds it reports (cmd/ converts one to the other).
type ControlKind string

// Control event kinds written to the control stream (Keys.Control).
const (
	ControlState      ControlKind = "state"      // a shard changed state (State)
	ControlIdentified ControlKind = "identified" // a shard started a new session
	ControlResumed    ControlKind = "resumed"    // a shard resumed its session
	// ControlGap: events of Session are missing from the streams: those
	// after Seq (last_seq), up to ToSeq (to_seq) when it is set, else to
	// the end of the session.
	ControlGap   ControlKind = "gap"
	ControlFatal ControlKind = "fatal" // a shard stopped for good (Err)
	// ControlCheckpoint: a shard's stored checkpoint (Key) was found other
	// than this process left it (Status: behind, gone, ahead, wrongtype,
	// garbage; StoredSession and StoredSeq as found); the shard resumes
	// from the stored checkpoint. Seq is what the shard had published.
	ControlCheckpoint ControlKind = "checkpoint"
	// ControlRedisLost: Redis lost its data (a checkpoint, Key, is gone):
	// what the streams held is gone; consumer groups are created again.
	ControlRedisLost ControlKind = "redis_lost"
	// ControlShardingRequired: Discord closed a shard with 4011; it
	// stopped and the bot re-shards (Err).
	ControlShardingRequired ControlKind = "sharding_required"
	// ControlReshard: a step of a bot's live re-shard (Detail; shard -1).
	ControlReshard ControlKind = "reshard"

	// ControlRevoked: a shard stopped because another node owns it now.
	ControlRevoked ControlKind = "revoked"

	// Fleet events: Node is the node the event is about, Seq the lease's
	// fencing number (field fence).
	ControlLeaseAcquired ControlKind = "lease_acquired" // Node took the shard's lease
	ControlLeaseReleased ControlKind = "lease_released" // Node handed the shard over (flushed, checkpointed, released)
	ControlLeaseLost     ControlKind = "lease_lost"     // Node found another owner of its shard and stopped it
	ControlUnowned       ControlKind = "unowned"        // the shard has had no owner for longer than the lease TTL
	ControlOwnedAgain    ControlKind = "owned"          // an unowned shard has an owner again (Node)
)

// ControlKinds lists every control event kind.
func ControlKinds() []ControlKind {
	return []ControlKind{ControlState, ControlIdentified, ControlResumed, ControlGap, ControlFatal, ControlCheckpoint, ControlRedisLost,
		ControlShardingRequired, ControlReshard,
		ControlRevoked, ControlLeaseAcquired, ControlLeaseReleased, ControlLeaseLost, ControlUnowned, ControlOwnedAgain}
}

// ControlEvent is one of feathery's own events. The control stream entry
// has the fields v ("1"), kind, bot, shard, then state, session, err when
// not empty, seq (named last_seq for kind "gap": the last seq published
// before the gap), to_seq (gap with an end), key, status, stored_session,
// stored_seq (checkpoint) when set, node (the fleet's kinds, whose seq is
// named fence) when set, and at (unix ms).
type ControlEvent struct {
	Bot     string
	Shard   int
	Kind    ControlKind
	State   string
	Session string
	Seq     int64
	ToSeq   int64
	Err     string
	// Key, Status, StoredSession and StoredSeq describe a checkpoint
	// incident (ControlCheckpoint, ControlRedisLost).
	Key           string
	Status        string
	StoredSession string
	StoredSeq     string
	// Detail describes a bot-wide event (kind "reshard"), written as
	// "detail" when set.
	Detail string
	// Node is the fleet node the event is about (the fleet's kinds).
	Node string
	At   time.Time
}

// controlWriter appends control events to the control stream from its own
// bounded queue: Control never blocks, the oldest event is dropped when the
// queue is full.
type controlWriter struct {
	p       *Publisher
	mu      sync.Mutex
	q       []ControlEvent
	base    uint64 // id of q[0]
	written uint64 // ids below are written (or dropped)
	wake    chan struct{}
	wait    chan struct{} // closed when written advances; nil without waiters

	published atomic.Uint64
	dropped   atomic.Uint64
	errCount  atomic.Uint64
}

func newControlWriter(p *Publisher) *controlWriter {
	return &controlWriter{p: p, wake: make(chan struct{}, 1)}
}

// Control queues ev for the control stream and returns at once. At zero is
// set to now.
func (p *Publisher) Control(ev ControlEvent) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	w := p.control
	w.mu.Lock()
	if len(w.q) >= p.cfg.ControlQueueSize {
		w.q[0] = ControlEvent{}
		w.q = w.q[1:]
		w.base++
		w.dropped.Add(1)
		w.notifyLocked()
	}
	w.q = append(w.q, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *controlWriter) notifyLocked() {
	if w.base > w.written {
		w.written = w.base
	}
	if w.wait != nil {
		close(w.wait)
		w.wait = nil
	}
}

// run writes queued events until ctx ends.
func (w *controlWriter) run(ctx context.Context) {
	p := w.p
	backoff := p.cfg.RetryMin
	failing := 0
	var lastLog time.Time
	var batch []ControlEvent
	for {
		w.mu.Lock()
		n := min(len(w.q), 128)
		batch = append(batch[:0], w.q[:n]...)
		first := w.base
		w.mu.Unlock()
		if n == 0 {
			select {
			case <-w.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		err := w.write(ctx, batch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.errCount.Add(1)
			failing++
			if failing == 1 || time.Since(lastLog) >= failLogEvery {
				lastLog = time.Now()
				p.log.Warn("write control events failed, retrying", slog.Int("attempts", failing), slog.Any("err", err))
			}
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
			backoff = min(backoff*2, p.cfg.RetryMax)
			continue
		}
		failing, backoff = 0, p.cfg.RetryMin
		w.published.Add(uint64(n))
		w.mu.Lock()
		end := first + uint64(n)
		if end > w.base { // drop what was written and is still queued
			k := int(end - w.base)
			clear(w.q[:k])
			w.q = w.q[k:]
			w.base = end
		}
		w.notifyLocked()
		w.mu.Unlock()
	}
}

func (w *controlWriter) write(ctx context.Context, evs []ControlEvent) error {
	c := w.p.c
	key := w.p.keys.Control()
	maxLen := strconv.FormatInt(w.p.tuning().ControlMaxLen, 10)
	cmds := make(rueidis.Commands, 0, len(evs))
	for i := range evs {
		ev := &evs[i]
		fv := c.B().Xadd().Key(key).Maxlen().Almost().Threshold(maxLen).Id("*").FieldValue().
			FieldValue("v", "1").FieldValue("kind", string(ev.Kind)).FieldValue("bot", ev.Bot).
			FieldValue("shard", strconv.Itoa(ev.Shard))
		if ev.State != "" {
			fv = fv.FieldValue("state", ev.State)
		}
		if ev.Session != "" {
			fv = fv.FieldValue("session", ev.Session)
		}
		seqField := "seq"
		switch ev.Kind {
		case ControlGap:
			seqField = "last_seq"
		case ControlLeaseAcquired, ControlLeaseReleased, ControlLeaseLost, ControlUnowned, ControlOwnedAgain:
			seqField = "fence"
		}
		fv = fv.FieldValue(seqField, strconv.FormatInt(ev.Seq, 10))
		if ev.ToSeq > 0 {
			fv = fv.FieldValue("to_seq", strconv.FormatInt(ev.ToSeq, 10))
		}
		for _, f := range [...][2]string{{"key", ev.Key}, {"status", ev.Status}, {"stored_session", ev.StoredSession}, {"stored_seq", ev.StoredSeq}, {"err", ev.Err}} {
			if f[1] != "" {
				fv = fv.FieldValue(f[0], f[1])
			}
		}
		if ev.Detail != "" {
			fv = fv.FieldValue("detail", ev.Detail)
		}
		if ev.Node != "" {
			fv = fv.FieldValue("node", ev.Node)
		}
		cmds = append(cmds, fv.FieldValue("at", strconv.FormatInt(ev.At.UnixMilli(), 10)).Build())
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return err
		}
	}
	return nil
}

// flush waits until every event queued before the call is written.
func (w *controlWriter) flush(ctx context.Context) error {
	w.mu.Lock()
	target := w.base + uint64(len(w.q))
	w.mu.Unlock()
	for {
		w.mu.Lock()
		if w.written >= target {
			w.mu.Unlock()
			return nil
		}
		if w.wait == nil {
			w.wait = make(chan struct{})
		}
		ch := w.wait
		w.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
