package consumers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// Handler handles one entry. Returning nil acknowledges it (one XACK for the
// entries of a read that succeeded, sent once the read is handled); an error
// leaves it pending, so it is delivered again after ClaimIdle, and moved to
// the dead-letter stream once it has been delivered MaxDeliveries times.
// With several streams, Run calls the handler from one goroutine per stream,
// so it must then be safe for concurrent use; within a stream, calls are
// sequential and in stream order.
type Handler func(ctx context.Context, m Message) error

// Defaults applied by NewGroupReader to zero GroupConfig fields.
const (
	DefaultCount         = 100
	DefaultBlock         = 5 * time.Second
	DefaultClaimIdle     = 30 * time.Second
	DefaultMaxDeliveries = 5
	DefaultShutdownGrace = 10 * time.Second
	// DeadLetterSuffix is appended to a stream's key to name its default
	// dead-letter stream; the key's hash tag, if any, is kept, so both
	// streams live in the same Redis Cluster slot.
	DeadLetterSuffix = ":dead"
)

// opTimeout bounds the acknowledgements and dead-letter writes that must
// still happen while Run is stopping.
const opTimeout = 5 * time.Second

// GroupConfig configures a GroupReader. Zero values take the defaults named
// on each field.
type GroupConfig struct {
	// Streams are the stream keys to read (at least one).
	Streams []string
	// Group is the consumer group name (required). Run creates it on each
	// stream if missing (with MKSTREAM), starting at StartID.
	Group string
	// StartID is where a group created by Run starts: "0" (default, the
	// whole stream) or "$" (only entries added from now on).
	StartID string
	// Consumer names this reader within the group; default "<hostname>-<pid>".
	// A restarted process that keeps its name first re-reads what it had
	// been given but had not acknowledged.
	Consumer string
	// Count is the most entries fetched per read; default 100.
	Count int64
	// Block is the longest one XREADGROUP waits for new entries; default 5s.
	Block time.Duration
	// ClaimIdle is how long an entry stays pending with another consumer (or
	// after a failed handler) before this reader claims it with XAUTOCLAIM;
	// default 30s. It must exceed the time a consumer needs for one batch
	// of Count entries, or live consumers' entries get claimed twice.
	ClaimIdle time.Duration
	// ClaimInterval is how often XAUTOCLAIM runs; default ClaimIdle/2.
	ClaimInterval time.Duration
	// MaxDeliveries is how many deliveries an entry gets before it goes to
	// the dead-letter stream; default 5; negative = never dead-letter.
	MaxDeliveries int64
	// DeadLetterStream receives dead entries of every stream; default: each
	// stream's key + DeadLetterSuffix.
	DeadLetterStream string
	// HandlerTimeout bounds one handler call through its ctx; 0 = no bound.
	HandlerTimeout time.Duration
	// ShutdownGrace is how long an in-flight handler may go on after Run's
	// ctx is cancelled before the handler's own ctx is cancelled; default 10s.
	ShutdownGrace time.Duration
	// DrainOnStop makes a stopping reader handle (and acknowledge) the rest
	// of the entries it has already read, within ShutdownGrace, and let a
	// blocking read in flight finish (stopping then takes up to Block), so
	// a clean stop leaves nothing pending with this consumer. Off, the entries after
	// the one in flight stay pending: re-read by the next run under the same
	// Consumer name, or claimed by another consumer after ClaimIdle.
	DrainOnStop bool
	// Logger receives the reader's logs; nil discards them.
	Logger *slog.Logger
}

// GroupStats counts what a GroupReader did since it was made.
type GroupStats struct {
	Handled      int64 `json:"handled"`       // handler calls
	Acked        int64 `json:"acked"`         // entries acknowledged after success
	Failed       int64 `json:"failed"`        // handler calls that returned an error
	Claimed      int64 `json:"claimed"`       // entries taken over with XAUTOCLAIM
	DeadLettered int64 `json:"dead_lettered"` // entries moved to a dead-letter stream
	Undecodable  int64 `json:"undecodable"`   // entries whose fields could not be decoded (dead-lettered)
	ReadErrors   int64 `json:"read_errors"`   // failed Redis calls (retried)
}

// GroupReader reads streams through a consumer group; see Run.
type GroupReader struct {
	client  rueidis.Client
	cfg     GroupConfig
	log     *slog.Logger
	running atomic.Bool

	handled, acked, failed, claimed, dead, undecodable, readErrors atomic.Int64
}

// NewGroupReader checks cfg, applies defaults and returns a reader. It does
// not talk to Redis.
func NewGroupReader(client rueidis.Client, cfg GroupConfig) (*GroupReader, error) {
	if client == nil {
		return nil, fmt.Errorf("%w: client is nil", ErrConfig)
	}
	if len(cfg.Streams) == 0 {
		return nil, fmt.Errorf("%w: Streams is empty", ErrConfig)
	}
	seen := map[string]bool{}
	for _, s := range cfg.Streams {
		if s == "" {
			return nil, fmt.Errorf("%w: Streams has an empty key", ErrConfig)
		}
		if seen[s] {
			return nil, fmt.Errorf("%w: Streams lists %q twice", ErrConfig, s)
		}
		seen[s] = true
	}
	cfg.Streams = slices.Clone(cfg.Streams)
	if cfg.Group == "" {
		return nil, fmt.Errorf("%w: Group is empty", ErrConfig)
	}
	if cfg.StartID == "" {
		cfg.StartID = "0"
	}
	if cfg.Consumer == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "consumer"
		}
		cfg.Consumer = host + "-" + strconv.Itoa(os.Getpid())
	}
	switch {
	case cfg.Count < 0:
		return nil, fmt.Errorf("%w: Count is negative", ErrConfig)
	case cfg.Count == 0:
		cfg.Count = DefaultCount
	}
	switch {
	case cfg.Block < 0:
		return nil, fmt.Errorf("%w: Block is negative", ErrConfig)
	case cfg.Block == 0:
		cfg.Block = DefaultBlock
	case cfg.Block < time.Millisecond:
		cfg.Block = time.Millisecond
	}
	switch {
	case cfg.ClaimIdle < 0:
		return nil, fmt.Errorf("%w: ClaimIdle is negative", ErrConfig)
	case cfg.ClaimIdle == 0:
		cfg.ClaimIdle = DefaultClaimIdle
	}
	switch {
	case cfg.ClaimInterval < 0:
		return nil, fmt.Errorf("%w: ClaimInterval is negative", ErrConfig)
	case cfg.ClaimInterval == 0:
		cfg.ClaimInterval = max(cfg.ClaimIdle/2, time.Millisecond)
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if cfg.HandlerTimeout < 0 {
		return nil, fmt.Errorf("%w: HandlerTimeout is negative", ErrConfig)
	}
	switch {
	case cfg.ShutdownGrace < 0:
		return nil, fmt.Errorf("%w: ShutdownGrace is negative", ErrConfig)
	case cfg.ShutdownGrace == 0:
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("group", cfg.Group, "consumer", cfg.Consumer)
	return &GroupReader{client: client, cfg: cfg, log: log}, nil
}

// Config returns the configuration with defaults applied.
func (r *GroupReader) Config() GroupConfig { return r.cfg }

// Stats returns the reader's counters.
func (r *GroupReader) Stats() GroupStats {
	return GroupStats{
		Handled: r.handled.Load(), Acked: r.acked.Load(), Failed: r.failed.Load(),
		Claimed: r.claimed.Load(), DeadLettered: r.dead.Load(),
		Undecodable: r.undecodable.Load(), ReadErrors: r.readErrors.Load(),
	}
}

// DeadLetterStreamFor names the dead-letter stream of a stream.
func (r *GroupReader) DeadLetterStreamFor(stream string) string {
	if r.cfg.DeadLetterStream != "" {
		return r.cfg.DeadLetterStream
	}
	return stream + DeadLetterSuffix
}

// Run reads until ctx is cancelled, then returns nil once the handler calls
// in flight have returned (and their entries are acknowledged). It
//
//   - creates the group on each stream if missing (an existing group is fine);
//   - first re-reads this consumer's own pending entries (a restart under
//     the same Consumer name hands them to the handler again);
//   - then reads new entries with a blocking XREADGROUP (up to Count at a
//     time) and, after handling a read's entries in order, acknowledges those
//     whose handler returned nil with one XACK;
//   - every ClaimInterval, takes over entries pending for longer than
//     ClaimIdle (left by a dead consumer, or by a failed handler) with
//     XAUTOCLAIM and handles them;
//   - moves an entry that was delivered MaxDeliveries times without success,
//     or whose fields cannot be decoded, to the dead-letter stream (its fields
//     plus dead_from, dead_id, deliveries, error) and acknowledges it.
//
// Delivery is at least once: an entry may reach a handler again after a
// crash, a failed acknowledgement or a claim. Redis errors while reading are
// logged and retried with backoff. Run returns an error only when the groups
// cannot be created, or when it is already running.
func (r *GroupReader) Run(ctx context.Context, h Handler) error {
	if h == nil {
		return fmt.Errorf("%w: handler is nil", ErrConfig)
	}
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("run group reader: already running")
	}
	defer r.running.Store(false)

	for _, s := range r.cfg.Streams {
		if err := r.createGroup(ctx, s); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	var wg sync.WaitGroup
	for _, s := range r.cfg.Streams {
		wg.Go(func() { r.lane(ctx, s, h) })
	}
	wg.Wait()
	return nil
}

func (r *GroupReader) createGroup(ctx context.Context, stream string) error {
	cmd := r.client.B().XgroupCreate().Key(stream).Group(r.cfg.Group).Id(r.cfg.StartID).Mkstream().Build()
	if err := r.client.Do(ctx, cmd).Error(); err != nil && !rueidis.IsRedisBusyGroup(err) {
		return fmt.Errorf("create group %s on %s: %w", r.cfg.Group, stream, err)
	}
	return nil
}

// lane is the read loop of one stream; it returns when ctx is done.
func (r *GroupReader) lane(ctx context.Context, stream string, h Handler) {
	log := r.log.With("stream", stream)
	bo := backoff{}
	for !r.ownPending(ctx, stream, h, log) {
		if !bo.wait(ctx) {
			return
		}
	}
	bo.reset()
	nextClaim := time.Now()
	for ctx.Err() == nil {
		if !time.Now().Before(nextClaim) {
			if r.claim(ctx, stream, h, log) {
				nextClaim = time.Now().Add(r.cfg.ClaimInterval)
			} else if !bo.wait(ctx) {
				return
			}
			continue
		}
		block := min(r.cfg.Block, time.Until(nextClaim))
		cmd := r.client.B().Xreadgroup().Group(r.cfg.Group, r.cfg.Consumer).
			Count(r.cfg.Count).Block(max(block.Milliseconds(), 1)).
			Streams().Key(stream).Id(">").Build()
		rctx := ctx
		if r.cfg.DrainOnStop {
			// A read cancelled in flight may still have been served: its
			// entries would stay pending unseen. Let it finish (within
			// Block) and handle what it brought.
			rctx = context.WithoutCancel(ctx)
		}
		res, err := r.client.Do(rctx, cmd).AsXRead()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if rueidis.IsRedisNil(err) {
				bo.reset()
				continue
			}
			r.readError(ctx, stream, "read new entries", err, log)
			if !bo.wait(ctx) {
				return
			}
			continue
		}
		bo.reset()
		r.handleBatch(ctx, stream, res[stream], nil, h, log)
	}
}

// readError logs a failed Redis call and re-creates the group in case the
// stream or group was deleted under us.
func (r *GroupReader) readError(ctx context.Context, stream, what string, err error, log *slog.Logger) {
	r.readErrors.Add(1)
	log.Warn("redis call failed; retrying", "op", what, "err", err)
	if cerr := r.createGroup(ctx, stream); cerr != nil && ctx.Err() == nil {
		log.Debug("re-create group failed", "err", cerr)
	}
}

// ownPending hands this consumer's pending entries (from an earlier run
// under the same name) to the handler once. It reports false on a Redis
// error, to be retried.
func (r *GroupReader) ownPending(ctx context.Context, stream string, h Handler, log *slog.Logger) bool {
	last := "0"
	for ctx.Err() == nil {
		cmd := r.client.B().Xreadgroup().Group(r.cfg.Group, r.cfg.Consumer).
			Count(r.cfg.Count).Streams().Key(stream).Id(last).Build()
		res, err := r.client.Do(ctx, cmd).AsXRead()
		if err != nil && !rueidis.IsRedisNil(err) {
			if ctx.Err() != nil {
				return true
			}
			r.readError(ctx, stream, "read own pending entries", err, log)
			return false
		}
		entries := res[stream]
		if len(entries) == 0 {
			return true
		}
		log.Info("re-reading own pending entries", "count", len(entries), "from", entries[0].ID)
		if !r.handleOwned(ctx, stream, entries, h, log) {
			return false
		}
		last = entries[len(entries)-1].ID
	}
	return true
}

// claim takes over entries idle for longer than ClaimIdle and handles them.
// It reports false on a Redis error.
func (r *GroupReader) claim(ctx context.Context, stream string, h Handler, log *slog.Logger) bool {
	cursor := "0-0"
	for ctx.Err() == nil {
		cmd := r.client.B().Xautoclaim().Key(stream).Group(r.cfg.Group).Consumer(r.cfg.Consumer).
			MinIdleTime(strconv.FormatInt(max(r.cfg.ClaimIdle.Milliseconds(), 1), 10)).
			Start(cursor).Count(r.cfg.Count).Build()
		cctx := ctx
		if r.cfg.DrainOnStop {
			cctx = context.WithoutCancel(ctx) // a claim served but cancelled would stay pending unseen
		}
		arr, err := r.client.Do(cctx, cmd).ToArray()
		if err != nil {
			if ctx.Err() != nil {
				return true
			}
			r.readError(ctx, stream, "claim idle entries", err, log)
			return false
		}
		if len(arr) < 2 {
			r.readError(ctx, stream, "claim idle entries", fmt.Errorf("XAUTOCLAIM reply has %d elements, want 2 or 3", len(arr)), log)
			return false
		}
		next, err := arr[0].ToString()
		if err != nil {
			r.readError(ctx, stream, "claim idle entries", fmt.Errorf("XAUTOCLAIM cursor: %w", err), log)
			return false
		}
		entries, err := arr[1].AsXRange()
		if err != nil {
			r.readError(ctx, stream, "claim idle entries", fmt.Errorf("XAUTOCLAIM entries: %w", err), log)
			return false
		}
		if len(entries) > 0 {
			r.claimed.Add(int64(len(entries)))
			log.Info("claimed idle entries", "count", len(entries), "from", entries[0].ID)
			if !r.handleOwned(ctx, stream, entries, h, log) {
				return false
			}
		}
		if next == "0-0" || next == "" {
			return true
		}
		cursor = next
	}
	return true
}

// handleOwned handles entries that were delivered before (own pending or
// claimed): it looks up each one's delivery count and skips those no longer
// pending with this consumer (acknowledged or claimed by another meanwhile).
func (r *GroupReader) handleOwned(ctx context.Context, stream string, entries []rueidis.XRangeEntry, h Handler, log *slog.Logger) bool {
	counts, err := r.deliveries(ctx, stream, entries)
	if err != nil {
		if ctx.Err() == nil {
			r.readError(ctx, stream, "read delivery counts", err, log)
		}
		return ctx.Err() != nil
	}
	r.handleBatch(ctx, stream, entries, counts, h, log)
	return true
}

// handleBatch handles the entries of one read in stream order and then
// acknowledges every entry whose handler succeeded (or that is gone from the
// stream) with a single XACK. counts holds each entry's delivery count, 0 to
// skip it (no longer pending with this consumer); nil means first delivery
// for all. Once ctx is done no further handler is called (unless DrainOnStop,
// then until ShutdownGrace ends): the rest stays pending with this consumer,
// and what was handled is still acknowledged.
func (r *GroupReader) handleBatch(ctx context.Context, stream string, entries []rueidis.XRangeEntry, counts []int64, h Handler, log *slog.Logger) {
	if len(entries) == 0 {
		return
	}
	hctx, release := r.handlerContext(ctx)
	acks := make([]string, 0, len(entries))
	var handled int64
	for i, e := range entries {
		if ctx.Err() != nil && (!r.cfg.DrainOnStop || hctx.Err() != nil) {
			break
		}
		deliveries := int64(1)
		if counts != nil {
			if counts[i] == 0 {
				continue // not ours any more
			}
			deliveries = counts[i]
		}
		switch r.process(ctx, hctx, stream, e, deliveries, h, log) {
		case outcomeHandled:
			acks = append(acks, e.ID)
			handled++
		case outcomeGone:
			acks = append(acks, e.ID)
		}
	}
	release()
	if len(acks) > 0 && r.ack(ctx, stream, acks, log) {
		r.acked.Add(handled)
	}
}

// deliveries returns the delivery count of each entry while pending with
// this consumer (XPENDING, extended form), 0 for entries that are not.
func (r *GroupReader) deliveries(ctx context.Context, stream string, entries []rueidis.XRangeEntry) ([]int64, error) {
	cmds := make(rueidis.Commands, len(entries))
	for i, e := range entries {
		cmds[i] = r.client.B().Xpending().Key(stream).Group(r.cfg.Group).
			Start(e.ID).End(e.ID).Count(1).Consumer(r.cfg.Consumer).Build()
	}
	out := make([]int64, len(entries))
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		rows, err := res.ToArray()
		if err != nil {
			return nil, fmt.Errorf("xpending %s: %w", entries[i].ID, err)
		}
		if len(rows) == 0 {
			continue
		}
		row, err := rows[0].ToArray()
		if err != nil || len(row) < 4 {
			return nil, fmt.Errorf("xpending %s: unexpected reply row", entries[i].ID)
		}
		n, err := row[3].AsInt64()
		if err != nil {
			return nil, fmt.Errorf("xpending %s deliveries: %w", entries[i].ID, err)
		}
		out[i] = max(n, 1)
	}
	return out, nil
}

// outcome is what became of one entry in process.
type outcome int

const (
	outcomePending outcome = iota // stays pending (handler failed) or already dead-lettered
	outcomeHandled                // handler succeeded: acknowledge
	outcomeGone                   // trimmed from the stream while pending: acknowledge
)

// process decodes one entry and calls the handler with hctx, or
// dead-letters it. It reports whether the entry is to be acknowledged; the
// caller acknowledges a whole batch at once.
func (r *GroupReader) process(ctx, hctx context.Context, stream string, e rueidis.XRangeEntry, deliveries int64, h Handler, log *slog.Logger) outcome {
	if e.FieldValues == nil {
		// Deleted from the stream (trimmed) while pending: nothing to handle.
		log.Debug("pending entry no longer in the stream", "id", e.ID)
		return outcomeGone
	}
	m, err := DecodeEntry(e.ID, e.FieldValues)
	m.Stream = stream
	m.Deliveries = deliveries
	if err != nil {
		r.undecodable.Add(1)
		log.Warn("undecodable entry; dead-lettering", "id", e.ID, "err", err)
		r.deadLetter(ctx, stream, e, deliveries, err.Error(), log)
		return outcomePending
	}
	if r.cfg.MaxDeliveries > 0 && deliveries > r.cfg.MaxDeliveries {
		r.deadLetter(ctx, stream, e, deliveries,
			fmt.Sprintf("delivered %d times without acknowledgement (limit %d)", deliveries, r.cfg.MaxDeliveries), log)
		return outcomePending
	}
	r.handled.Add(1)
	if herr := r.call(hctx, h, m); herr != nil {
		r.failed.Add(1)
		log.Warn("handler failed; entry stays pending", "id", e.ID, "t", m.T, "deliveries", deliveries, "err", herr)
		if ctx.Err() == nil && r.cfg.MaxDeliveries > 0 && deliveries >= r.cfg.MaxDeliveries {
			r.deadLetter(ctx, stream, e, deliveries, herr.Error(), log)
		}
		return outcomePending
	}
	return outcomeHandled
}

// handlerContext returns the ctx for the handler calls of one batch and a
// release func to call after the last of them. The ctx outlives Run's ctx
// by ShutdownGrace, so an in-flight handler can finish during a graceful
// stop; after that it is cancelled.
func (r *GroupReader) handlerContext(ctx context.Context) (context.Context, func()) {
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		t := time.NewTimer(r.cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel()
		case <-hctx.Done():
		}
	})
	return hctx, func() {
		cancel()
		if !stop() {
			<-done // the grace timer goroutine was started: wait for it
		}
	}
}

// call runs the handler with the batch's hctx, bounded by HandlerTimeout.
// A panic becomes an error (the entry stays pending).
func (r *GroupReader) call(hctx context.Context, h Handler, m Message) (err error) {
	if r.cfg.HandlerTimeout > 0 {
		var cancel context.CancelFunc
		hctx, cancel = context.WithTimeout(hctx, r.cfg.HandlerTimeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v\n%s", p, debug.Stack())
		}
	}()
	return h(hctx, m)
}

// ack acknowledges entries of one stream in one XACK, even while Run is
// stopping.
func (r *GroupReader) ack(ctx context.Context, stream string, ids []string, log *slog.Logger) bool {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if err := r.client.Do(actx, r.client.B().Xack().Key(stream).Group(r.cfg.Group).Id(ids...).Build()).Error(); err != nil {
		log.Warn("ack failed; entries will be delivered again", "count", len(ids), "first", ids[0], "err", err)
		return false
	}
	return true
}

// maxErrorLen bounds the error text stored with a dead entry.
const maxErrorLen = 2000

// deadLetter copies an entry to the dead-letter stream, then acknowledges it.
// A failure leaves it pending, so a later claim tries again.
func (r *GroupReader) deadLetter(ctx context.Context, stream string, e rueidis.XRangeEntry, deliveries int64, reason string, log *slog.Logger) {
	if len(reason) > maxErrorLen {
		reason = reason[:maxErrorLen]
	}
	dead := r.DeadLetterStreamFor(stream)
	keys := make([]string, 0, len(e.FieldValues))
	for k := range e.FieldValues {
		switch k {
		case FieldDeadFrom, FieldDeadID, FieldDeadDeliveries, FieldDeadError:
			continue // replaced below
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fv := r.client.B().Xadd().Key(dead).Id("*").FieldValue()
	for _, k := range keys {
		fv = fv.FieldValue(k, e.FieldValues[k])
	}
	fv = fv.FieldValue(FieldDeadFrom, stream).FieldValue(FieldDeadID, e.ID).
		FieldValue(FieldDeadDeliveries, strconv.FormatInt(deliveries, 10)).FieldValue(FieldDeadError, reason)

	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if err := r.client.Do(dctx, fv.Build()).Error(); err != nil {
		log.Warn("dead-letter write failed; entry stays pending", "id", e.ID, "dead_stream", dead, "err", err)
		return
	}
	if r.ack(ctx, stream, []string{e.ID}, log) {
		r.dead.Add(1)
		log.Warn("entry moved to dead-letter stream", "id", e.ID, "dead_stream", dead, "deliveries", deliveries, "reason", reason)
	}
}

// backoff waits between retries of a failing Redis call: 50ms doubling to 5s.
type backoff struct{ d time.Duration }

func (b *backoff) reset() { b.d = 0 }

// wait sleeps for the next delay; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	if b.d == 0 {
		b.d = 50 * time.Millisecond
	} else {
		b.d = min(2*b.d, 5*time.Second)
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
