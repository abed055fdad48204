package broker

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/feathery/feathery/luascripts"
)

// item is one queued event with its own copy of Data.
type item struct {
	ev    Event
	buf   []byte
	info  *typeInfo
	gen   uint64 // shardQueue.gen when queued: older items are dropped
	fence int64  // the shard's fence when the event was queued
}

var itemPool = sync.Pool{New: func() any { return new(item) }}

// maxPooledBuf is the largest Data buffer kept for reuse.
const maxPooledBuf = 64 << 10

func putItem(it *item) {
	if cap(it.buf) > maxPooledBuf {
		it.buf = nil
	}
	it.ev = Event{}
	it.info = nil
	it.fence = 0
	itemPool.Put(it)
}

// decision is what a batch does with one item.
type decision uint8

const (
	decPublish   decision = iota
	decDuplicate          // at or below the checkpoint of its session
	decIgnore
	decCacheOnly
	decBot
	decWebhook
	decPrefix        // dropped by the prefix filter
	decPrefixPending // needs the guild's prefixes
	decSkip          // Event.Skip: checkpoint only
)

// filterNames are the filter counters' names, in counter order.
var filterNames = [...]string{FilterIgnore, FilterCacheOnly, FilterBot, FilterWebhook, FilterPrefix}

// filterSlot is the counter of the filter that dropped an item, false when
// no filter did.
func filterSlot(d decision) (int, bool) {
	switch d {
	case decIgnore:
		return 0, true
	case decCacheOnly:
		return 1, true
	case decBot:
		return 2, true
	case decWebhook:
		return 3, true
	case decPrefix:
		return 4, true
	}
	return 0, false
}

// shardQueue is one shard's bounded queue and the state of its flusher.
type shardQueue struct {
	b     *botState
	shard int
	ckKey string // checkpoint hash
	lease string // lease hash
	q     *itemQueue
	call  pubCall // the batch handed to the bot's writer

	// fence is the fencing number batches carry (0 = no fleet); fencedAt
	// the fence the publish script refused (batches under it are dropped).
	fence, fencedAt atomic.Int64

	pubMu     sync.Mutex // Publish side: interned strings, gen and gate
	session   string
	resumeURL string
	// gen counts the refusals of the stored checkpoint: items queued
	// under an older gen are dropped (Discord replays them).
	gen uint64
	// gate, while set, refuses events until the shard resumes from the
	// stored checkpoint (see rewind).
	gate *rewind
	// forgetBefore: items queued before this count (enq) belong to a
	// session whose checkpoint was deleted on purpose (DeleteSession):
	// published without an expectation.
	forgetBefore atomic.Uint64
	// promoteTo, when set, is the checkpoint the (staged) queue writes from
	// its next batch on (Promote).
	promoteTo atomic.Pointer[string]

	enq    atomic.Uint64 // events accepted by Publish
	done   atomic.Uint64 // events handled (durable, filtered or duplicate)
	bytes  atomic.Int64  // Data bytes accepted and not yet handled
	waitMu sync.Mutex
	waitCh chan struct{} // closed when done advances; nil without waiters

	published  atomic.Uint64
	duplicates atomic.Uint64
	batches    atomic.Uint64
	errCount   atomic.Uint64
	filtered   [len(filterNames)]atomic.Uint64
	ckStat     atomic.Pointer[checkpoint]
	lastErr    atomic.Pointer[string]
	refusals   atomic.Uint64 // batches the publish script refused
	dropped    atomic.Uint64 // events dropped after a refusal (replayed)
	incident   atomic.Pointer[CheckpointIncident]

	// running is set while the queue has a flusher goroutine: one runs
	// only while the shard has work (see kick).
	running atomic.Bool

	// Owned by the flusher goroutine (the one running; the next one
	// started after it cleared running).
	ck        checkpoint // what this process believes is stored
	ckWritten bool       // ck was written by this process (not a resume point)
	unchecked bool       // promoted: the next checkpoint written expects nothing
	curGen    uint64     // gen of the last refusal
	carry     *item
	lastBatch int // events in the previous batch
	// sc is the flusher's batch scratch, taken from the Publisher's pool
	// when the flusher starts and given back when it exits: an idle
	// shard holds none.
	sc      *scratch
	failing int       // consecutive failed attempts
	lastLog time.Time // last failure log line
}

type checkpoint struct {
	session string
	seq     int64
}

func newShardQueue(b *botState, shard int) *shardQueue {
	return &shardQueue{b: b, shard: shard, ckKey: b.p.keys.Session(b.name, shard), lease: b.p.keys.Lease(b.name, shard),
		q: newItemQueue(b.p.tuning().QueueSize), call: pubCall{wake: make(chan struct{}, 1)}}
}

// isFenced reports whether the current fence was refused.
func (sq *shardQueue) isFenced() bool {
	f := sq.fence.Load()
	return f != 0 && sq.fencedAt.Load() == f
}

// enqueue copies ev into a pooled item and queues it.
func (sq *shardQueue) enqueue(ctx context.Context, ev *Event) error {
	if sq.isFenced() {
		return ErrFenced
	}
	sq.pubMu.Lock()
	if g := sq.gate; g != nil {
		if ev.Session == g.session && ev.Seq > g.resumeFrom+1 {
			sq.pubMu.Unlock()
			return g.err(sq)
		}
		// The shard resumed from the stored checkpoint (or started a new
		// session): events flow again.
		sq.gate = nil
	}
	gen := sq.gen
	sq.pubMu.Unlock()
	ti := sq.b.typeInfo(ev.Type)
	size := int64(len(ev.Data))
	if ti.action == actIgnore && !ti.ready {
		size = 0
	}
	if err := sq.reserve(ctx, size); err != nil {
		return err
	}
	it := itemPool.Get().(*item)
	sq.pubMu.Lock()
	if ev.Session != sq.session {
		sq.session = strings.Clone(ev.Session)
	}
	if ev.ResumeURL != sq.resumeURL {
		sq.resumeURL = strings.Clone(ev.ResumeURL)
	}
	it.ev = Event{
		Bot: sq.b.name, Shard: sq.shard, ShardCount: ev.ShardCount, Intents: ev.Intents,
		Session: sq.session, ResumeURL: sq.resumeURL, Seq: ev.Seq, Type: ti.name,
		GuildID: ev.GuildID, Received: ev.Received, Skip: ev.Skip,
	}
	sq.pubMu.Unlock()
	if ti.action != actIgnore || ti.ready {
		it.buf = append(it.buf[:0], ev.Data...)
		it.ev.Data = it.buf
	}
	it.info = ti
	it.gen = gen
	it.fence = sq.fence.Load()
	for {
		ok, space := sq.q.push(it)
		if ok {
			sq.enq.Add(1)
			sq.kick()
			return nil
		}
		select {
		case <-space:
		case <-ctx.Done():
			sq.bytes.Add(-size)
			putItem(it)
			return ctx.Err()
		case <-sq.b.p.ctx.Done():
			sq.bytes.Add(-size)
			putItem(it)
			return ErrClosed
		}
	}
}

// reserve waits until size more bytes fit under QueueBytes (a single event
// larger than the bound is let through when nothing else is queued), then
// counts them.
func (sq *shardQueue) reserve(ctx context.Context, size int64) error {
	limit := int64(sq.b.p.tuning().QueueBytes)
	for {
		cur := sq.bytes.Load()
		if cur == 0 || cur+size <= limit {
			if sq.bytes.CompareAndSwap(cur, cur+size) {
				return nil
			}
			continue
		}
		ch := sq.waiter()
		if cur2 := sq.bytes.Load(); cur2 != cur {
			continue
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-sq.b.p.ctx.Done():
			return ErrClosed
		}
	}
}

// waiter returns a channel closed when the flusher next makes progress.
func (sq *shardQueue) waiter() chan struct{} {
	sq.waitMu.Lock()
	defer sq.waitMu.Unlock()
	if sq.waitCh == nil {
		sq.waitCh = make(chan struct{})
	}
	return sq.waitCh
}

// flush waits until every event accepted before the call is handled.
func (sq *shardQueue) flush(ctx context.Context) error {
	target := sq.enq.Load()
	for {
		ch := sq.waiter()
		if sq.done.Load() >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-sq.b.p.ctx.Done():
			return ErrClosed
		}
	}
}

// advance marks n more events (of size Data bytes) handled and wakes
// waiters.
func (sq *shardQueue) advance(n int, size int64) {
	sq.bytes.Add(-size)
	sq.done.Add(uint64(n))
	sq.waitMu.Lock()
	if sq.waitCh != nil {
		close(sq.waitCh)
		sq.waitCh = nil
	}
	sq.waitMu.Unlock()
}

// kick makes sure the queue has a flusher: it starts one unless one runs.
// Called after each push, so an event is never left without one: a
// flusher that finds the queue empty clears running before it looks at
// the queue a last time (see run).
func (sq *shardQueue) kick() {
	if sq.running.Load() || !sq.running.CompareAndSwap(false, true) {
		return
	}
	if !sq.b.p.startFlusher(sq) {
		// Closed: nothing is published any more.
		sq.running.Store(false)
	}
}

// run is the flusher: it takes micro-batches off the queue until the queue
// is empty (nothing carried, no batch in flight or being retried) and no
// event came for a while (linger), then exits; kick starts the next one. It stops early when ctx ends. running
// is set on entry.
func (sq *shardQueue) run(ctx context.Context) {
	p := sq.b.p
	sq.sc = p.takeScratch()
	for {
		cfg := p.tuning()
		var first *item
		if sq.carry != nil {
			first, sq.carry = sq.carry, nil
		}
		if first == nil {
			if ctx.Err() != nil {
				return
			}
			if first = sq.q.pop(); first == nil && sq.linger(ctx) {
				continue
			}
			if first == nil {
				// Idle: give the scratch back and exit. An event pushed
				// after running is cleared starts a flusher of its own
				// (kick); one pushed before is seen here.
				p.putScratch(sq.sc)
				sq.sc = nil
				sq.running.Store(false)
				if sq.q.len() == 0 || !sq.running.CompareAndSwap(false, true) {
					return
				}
				sq.sc = p.takeScratch()
				continue
			}
		}
		sc := sq.sc
		batch := append(sc.batch[:0], first)
		size := len(first.ev.Data)
		// A batch waits for company only while the shard is busy: events
		// were already queued behind its first one, or the last batch
		// carried more than one. A quiet shard (one event now and then)
		// gains nothing from waiting and flushes at once. MaxDelay bounds
		// the whole wait, counted from the batch's first event: one timer
		// per batch, started when the queue first runs dry.
		busy := sq.q.len() > 0 || sq.lastBatch > 1
		lingering, expired := false, cfg.MaxDelay <= 0 || !busy
	collect:
		for len(batch) < cfg.MaxBatch {
			it := sq.q.pop()
			if it == nil {
				if expired {
					break collect
				}
				if !lingering {
					lingering = true
					if sc.timer == nil {
						sc.timer = time.NewTimer(cfg.MaxDelay)
					} else {
						sc.timer.Reset(cfg.MaxDelay)
					}
				}
				select {
				case <-sq.q.ready:
					continue
				case <-sc.timer.C:
					expired = true
					continue
				case <-ctx.Done():
					sc.timer.Stop()
					sc.batch = batch
					return
				}
			}
			if size+len(it.ev.Data) > cfg.MaxBatchBytes {
				sq.carry = it
				break
			}
			batch = append(batch, it)
			size += len(it.ev.Data)
		}
		if lingering && !expired {
			sc.timer.Stop()
		}
		sq.lastBatch = len(batch)
		sc.batch = batch
		if k := sq.promoteTo.Swap(nil); k != nil {
			sq.ckKey = *k
			sq.ck, sq.ckWritten, sq.unchecked = checkpoint{}, false, true
		}
		ok := sq.process(ctx, batch)
		clear(batch)
		if !ok {
			return
		}
	}
}

// flusherLinger is how long a flusher waits for its shard's next event
// before it exits (Publisher.linger): a shard with an event a second or
// more keeps its flusher (waking one costs less than starting one, see
// BenchmarkPublishTick), an idle one gives it up.
const flusherLinger = time.Second

// linger waits up to the Publisher's linger for an event; false when none
// came.
func (sq *shardQueue) linger(ctx context.Context) bool {
	d := sq.b.p.linger
	if d <= 0 {
		return false
	}
	sc := sq.sc
	if sc.idle == nil {
		sc.idle = time.NewTimer(d)
	} else {
		sc.idle.Reset(d)
	}
	select {
	case <-sq.q.ready:
		sc.idle.Stop()
		return true
	case <-sc.idle.C:
		return false
	case <-ctx.Done():
		sc.idle.Stop()
		return true // run sees ctx end
	}
}

// process publishes batch, one run per session, gen and fence; false
// when stopped. Items queued before the last refusal of the checkpoint are
// dropped.
func (sq *shardQueue) process(ctx context.Context, batch []*item) bool {
	start := 0
	for i := 1; i <= len(batch); i++ {
		if i < len(batch) && batch[i].ev.Session == batch[start].ev.Session && batch[i].gen == batch[start].gen && batch[i].fence == batch[start].fence {
			continue
		}
		run := batch[start:i]
		start = i
		if run[0].gen != sq.curGen {
			sq.drop(run, false)
			continue
		}
		if !sq.publishRun(ctx, run) {
			return false
		}
	}
	return true
}

// drop marks run handled without publishing it.
func (sq *shardQueue) drop(run []*item, tainted bool) {
	var size int64
	for _, it := range run {
		size += int64(len(it.ev.Data))
		if !tainted {
			putItem(it)
		}
	}
	sq.dropped.Add(uint64(len(run)))
	sq.advance(len(run), size)
}

// scratch holds a flusher's reusable batch buffers, from the Publisher's
// pool (takeScratch, putScratch).
type scratch struct {
	batch    []*item
	timer    *time.Timer // MaxDelay: the wait of a batch for company
	idle     *time.Timer // flusherLinger
	dec      []decision
	content  []string
	evs      []*Event
	before   [][]byte
	cacheIdx []int // item index -> index in evs, -1 if not cached
	entries  []luascripts.PublishEntry
	streams  []luascripts.PublishStream
	args     luascripts.PublishArgs
	guilds   []uint64
	resolved bool
	expect   luascripts.Expectation // of the last attempt
	rtt      time.Duration          // the publish script's round trip (Observer)
	conf     *botConf               // the bot's configuration for this run
}

// footprint is roughly the bytes sc's buffers hold (the script arguments'
// number buffer aside).
func (sc *scratch) footprint() int {
	const ptr, str, slice = int(unsafe.Sizeof(uintptr(0))), int(unsafe.Sizeof("")), int(unsafe.Sizeof([]byte(nil)))
	return cap(sc.batch)*ptr + cap(sc.dec) + cap(sc.content)*str + cap(sc.evs)*ptr +
		cap(sc.before)*slice + cap(sc.cacheIdx)*int(unsafe.Sizeof(0)) +
		cap(sc.entries)*int(unsafe.Sizeof(luascripts.PublishEntry{})) +
		cap(sc.streams)*int(unsafe.Sizeof(luascripts.PublishStream{})) +
		(cap(sc.args.Keys)+cap(sc.args.Args))*str + cap(sc.guilds)*8
}

// publishRun handles one run of items of one session, retrying until it
// succeeds or ctx ends; false when stopped.
func (sq *shardQueue) publishRun(ctx context.Context, run []*item) bool {
	p := sq.b.p
	sc := sq.sc
	began := time.Now()
	sq.decide(run)
	cfg := p.tuning()
	allDup := true
	for _, d := range sc.dec {
		if d != decDuplicate {
			allDup = false
			break
		}
	}
	var res luascripts.PublishResult
	tainted := false
	fence := run[0].fence
	fenced := fence != 0 && sq.fencedAt.Load() == fence
	if !allDup && !fenced {
		backoff := cfg.RetryMin
		for {
			var err error
			res, err = sq.attempt(ctx, run)
			if err == nil {
				break
			}
			if errors.Is(err, luascripts.ErrFenced) {
				fenced = true
				sq.fencedOut(fence, err)
				break
			}
			var re *luascripts.RefusedError
			if errors.As(err, &re) && re.Status.Repairable() {
				if sq.expectation(run) != sc.expect {
					// The session's checkpoint was deleted on purpose
					// while the call ran (DeleteSession): try again
					// without expecting it.
					continue
				}
				sq.recovered()
				if !sq.refused(ctx, run, re) {
					return false
				}
				sq.drop(run, tainted)
				return true
			}
			// A failed command may still sit in the client's queue
			// referencing the batch's buffers: give them to the GC.
			tainted = true
			sc.args = luascripts.PublishArgs{}
			if ctx.Err() != nil {
				return false
			}
			sq.failed(err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false
			}
			backoff = min(backoff*2, cfg.RetryMax)
		}
		if !fenced {
			sq.recovered()
		}
	}
	if fenced {
		// Another node owns the shard: drop the run, unpublished and
		// not checkpointed.
		sq.drop(run, tainted)
		return true
	}
	// Commit: counters, checkpoint, waiters.
	var dups uint64
	for _, d := range sc.dec {
		if d == decDuplicate {
			dups++
		} else if i, ok := filterSlot(d); ok {
			sq.filtered[i].Add(1)
		}
	}
	sq.published.Add(uint64(res.Added))
	sq.duplicates.Add(dups + uint64(res.Skipped))
	if !allDup {
		sq.batches.Add(1)
		last := run[len(run)-1].ev
		// The checkpoint as the script wrote it (a higher stored seq of
		// the session stays).
		if top := max(runMaxSeq(run), res.Seq); sq.ck.session != last.Session || top > sq.ck.seq {
			sq.ck = checkpoint{session: last.Session, seq: top}
			ck := sq.ck
			sq.ckStat.Store(&ck)
		}
		sq.ckWritten, sq.unchecked = true, false
		if inc := sq.incident.Load(); inc != nil && (sq.ck.session != inc.Session || sq.ck.seq >= inc.Published) {
			sq.repaired(inc)
		}
	}
	if !allDup && p.cfg.Observer != nil {
		sq.observe(run, began)
	}
	n := len(run)
	var size int64
	for _, it := range run {
		size += int64(len(it.ev.Data))
		if !tainted {
			putItem(it)
		}
	}
	sq.advance(n, size)
	return true
}

// decide classifies every item of run (filters and local duplicates) under
// the bot's configuration in force, which it keeps in sc.conf for the rest
// of the run.
func (sq *shardQueue) decide(run []*item) {
	sc := sq.sc
	b := sq.b
	conf := b.conf.Load()
	sc.conf = conf
	f := &conf.cfg.Filters
	sc.dec = sc.dec[:0]
	sc.content = sc.content[:0]
	sc.resolved = false
	top := int64(-1) // highest seq of the run's session handled so far
	if len(run) > 0 && sq.ck.session == run[0].ev.Session {
		top = sq.ck.seq
	}
	for _, it := range run {
		ev := &it.ev
		if it.info.conf != conf && (it.info.action != actIgnore || it.info.ready) {
			// Queued under an earlier configuration (an event queued as
			// ignored kept no payload: it stays ignored).
			it.info = conf.lookupType(ev.Type)
		}
		d := decPublish
		content := ""
		dup := ev.Seq <= top
		top = max(top, ev.Seq)
		switch {
		case ev.Skip:
			d = decSkip
		case dup:
			d = decDuplicate
		case it.info.ready:
			if id := peekReadyUserID(ev.Data); id != "" && f.BotUserID == "" && id != b.userIDValue() {
				b.userID.Store(&id)
			}
			d = actionDecision(it.info.action)
		case it.info.action != actPublish:
			d = actionDecision(it.info.action)
		case it.info.msg != msgNone && (f.DropBotMessages || f.DropWebhookMessages || (f.PrefixFilter && it.info.msg == msgCreate)):
			m := peekMessage(ev.Data)
			switch {
			case f.DropBotMessages && m.bot:
				d = decBot
			case f.DropWebhookMessages && m.webhook:
				d = decWebhook
			case f.PrefixFilter && it.info.msg == msgCreate && m.hasContent:
				switch {
				case hasPrefix(m.content, f.Prefixes) || mentions(m.content, b.userIDValue()):
				case ev.GuildID == 0:
					d = decPrefix
				default:
					d = decPrefixPending
					content = m.content
				}
			}
		}
		sc.dec = append(sc.dec, d)
		sc.content = append(sc.content, content)
	}
}

// runMaxSeq is the highest seq of run.
func runMaxSeq(run []*item) int64 {
	top := run[0].ev.Seq
	for _, it := range run[1:] {
		top = max(top, it.ev.Seq)
	}
	return top
}

func actionDecision(a action) decision {
	switch a {
	case actIgnore:
		return decIgnore
	case actCacheOnly:
		return decCacheOnly
	}
	return decPublish
}

// attempt resolves pending prefix checks, then has the bot's writer apply
// the cache and run the publish script once.
func (sq *shardQueue) attempt(ctx context.Context, run []*item) (luascripts.PublishResult, error) {
	sc := sq.sc
	if !sc.resolved {
		if err := sq.resolvePrefixes(ctx, run); err != nil {
			return luascripts.PublishResult{}, err
		}
		sc.resolved = true
	}
	sc.evs = sc.evs[:0]
	sc.cacheIdx = sc.cacheIdx[:0]
	for i, it := range run {
		switch sc.dec[i] {
		case decDuplicate, decIgnore, decSkip:
			sc.cacheIdx = append(sc.cacheIdx, -1)
		default:
			sc.cacheIdx = append(sc.cacheIdx, len(sc.evs))
			sc.evs = append(sc.evs, &it.ev)
		}
	}
	sc.before = sc.before[:0]
	for range sc.evs {
		sc.before = append(sc.before, nil)
	}
	sc.expect = sq.expectation(run)
	// The bot's writer applies the cache, builds the arguments (sq.build)
	// and publishes, with the batches of the bot's other shards.
	res, rtt, err := sq.b.w.submit(ctx, sq, run)
	sc.rtt = rtt
	return res, err
}

// expectation is what the checkpoint should hold before run: what this
// process wrote last, or, for a session's first run here, the point the
// shard resumed from (the seq before the run's first).
func (sq *shardQueue) expectation(run []*item) luascripts.Expectation {
	first := &run[0].ev
	if sq.unchecked {
		// Promoted: the shard's checkpoint holds the old set's session.
		return luascripts.Expectation{}
	}
	if sq.done.Load() < sq.forgetBefore.Load() {
		// The checkpoint of this session was deleted on purpose.
		sq.ck, sq.ckWritten = checkpoint{}, false
		return luascripts.Expectation{}
	}
	if sq.ck.session == first.Session && first.Seq == sq.ck.seq+1 {
		return luascripts.Expectation{Session: first.Session, Seq: sq.ck.seq, Written: sq.ckWritten}
	}
	return luascripts.Expectation{Session: first.Session, Seq: max(first.Seq-1, 0)}
}

// build fills the scratch's script arguments for run; decide and the cache
// have run.
func (sq *shardQueue) build(run []*item, now time.Time, expect luascripts.Expectation) {
	sc := sq.sc
	sc.streams = sc.streams[:0]
	for i := range sc.conf.streams {
		s := &sc.conf.streams[i]
		ps := luascripts.PublishStream{Key: s.key}
		switch {
		case s.MaxLen > 0:
			ps.TrimKind, ps.Threshold = "MAXLEN", s.maxLen
		case s.MaxAge > 0:
			ps.TrimKind, ps.Threshold = "MINID", strconv.FormatInt(now.Add(-s.MaxAge).UnixMilli(), 10)+"-0"
		}
		sc.streams = append(sc.streams, ps)
	}
	sc.entries = sc.entries[:0]
	for i, it := range run {
		if sc.dec[i] != decPublish {
			continue
		}
		ev := &it.ev
		at := ev.Received
		if at.IsZero() {
			at = now
		}
		e := luascripts.PublishEntry{
			Stream: it.info.stream, Seq: ev.Seq, Type: ev.Type, Data: ev.Data,
			Guild: ev.GuildID, At: at.UnixMilli(),
		}
		if j := sc.cacheIdx[i]; j >= 0 {
			e.Before = sc.before[j]
		}
		sc.entries = append(sc.entries, e)
	}
	last := &run[len(run)-1].ev
	call := luascripts.PublishCall{
		Checkpoint: sq.ckKey,
		Streams:    sc.streams,
		Session:    last.Session,
		Seq:        runMaxSeq(run),
		ResumeURL:  last.ResumeURL,
		ShardCount: last.ShardCount,
		Intents:    last.Intents,
		Bot:        sq.b.name,
		Shard:      sq.shard,
		Entries:    sc.entries,
		Expect:     expect,
		Lease:      sq.lease,
		Fence:      run[0].fence,
	}
	sc.args.Build(&call)
}

// resolvePrefixes settles decPrefixPending items with the guilds' prefixes.
func (sq *shardQueue) resolvePrefixes(ctx context.Context, run []*item) error {
	sc := sq.sc
	sc.guilds = sc.guilds[:0]
	for i, d := range sc.dec {
		if d == decPrefixPending {
			sc.guilds = append(sc.guilds, run[i].ev.GuildID)
		}
	}
	if len(sc.guilds) == 0 {
		return nil
	}
	sets, err := sq.b.p.prefixes.lookup(ctx, sq.b.name, sc.guilds)
	if err != nil {
		return err
	}
	k := 0
	for i, d := range sc.dec {
		if d != decPrefixPending {
			continue
		}
		if hasPrefix(sc.content[i], sets[k]) {
			sc.dec[i] = decPublish
		} else {
			sc.dec[i] = decPrefix
		}
		k++
	}
	return nil
}

// fencedOut records that the publish script refused fence and tells the
// fleet (once per fence).
func (sq *shardQueue) fencedOut(fence int64, err error) {
	if sq.fencedAt.Swap(fence) == fence {
		return
	}
	msg := err.Error()
	sq.lastErr.Store(&msg)
	sq.b.p.log.Warn("publish refused: another node took the shard's lease; dropping its queued events",
		slog.String("bot", sq.b.name), slog.Int("shard", sq.shard), slog.Int64("fence", fence), slog.Any("err", err))
	if f := sq.b.p.cfg.OnFenced; f != nil {
		f(sq.b.name, sq.shard, fence)
	}
}

// failLogEvery rate-limits the flusher's failure log.
const failLogEvery = 10 * time.Second

func (sq *shardQueue) failed(err error) {
	sq.errCount.Add(1)
	msg := err.Error()
	sq.lastErr.Store(&msg)
	sq.failing++
	if sq.failing == 1 || time.Since(sq.lastLog) >= failLogEvery {
		sq.lastLog = time.Now()
		sq.b.p.log.Warn("publish batch failed, retrying", slog.String("bot", sq.b.name),
			slog.Int("shard", sq.shard), slog.Int("attempts", sq.failing),
			slog.Int("queue_depth", sq.q.len()), slog.Any("err", err))
	}
}

func (sq *shardQueue) recovered() {
	if sq.failing > 0 {
		sq.b.p.log.Info("publish recovered", slog.String("bot", sq.b.name),
			slog.Int("shard", sq.shard), slog.Int("failed_attempts", sq.failing))
		sq.failing = 0
	}
}
