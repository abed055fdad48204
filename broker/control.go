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

// Control event kinds written to the control stream (Keys.Control).
const (
	ControlState      = "state"      // a shard changed state (State)
	ControlIdentified = "identified" // a shard started a new session
	ControlResumed    = "resumed"    // a shard resumed its session
	ControlGap        = "gap"        // a session was lost: events after Seq of Session were never received
	ControlFatal      = "fatal"      // a shard stopped for good (Err)
)

// ControlEvent is one of feathery's own events. The control stream entry
// has the fields v ("1"), kind, bot, shard, then state, session, err when
// not empty, seq (named last_seq for kind "gap": the last seq published of
// the lost session), and at (unix ms).
type ControlEvent struct {
	Bot     string
	Shard   int
	Kind    string
	State   string
	Session string
	Seq     int64
	Err     string
	At      time.Time
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
	maxLen := strconv.FormatInt(w.p.cfg.ControlMaxLen, 10)
	cmds := make(rueidis.Commands, 0, len(evs))
	for i := range evs {
		ev := &evs[i]
		fv := c.B().Xadd().Key(key).Maxlen().Almost().Threshold(maxLen).Id("*").FieldValue().
			FieldValue("v", "1").FieldValue("kind", ev.Kind).FieldValue("bot", ev.Bot).
			FieldValue("shard", strconv.Itoa(ev.Shard))
		if ev.State != "" {
			fv = fv.FieldValue("state", ev.State)
		}
		if ev.Session != "" {
			fv = fv.FieldValue("session", ev.Session)
		}
		seqField := "seq"
		if ev.Kind == ControlGap {
			seqField = "last_seq"
		}
		fv = fv.FieldValue(seqField, strconv.FormatInt(ev.Seq, 10))
		if ev.Err != "" {
			fv = fv.FieldValue("err", ev.Err)
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
