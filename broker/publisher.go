package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// CacheWriter applies a batch of events to the cache. The Publisher calls
// it before the batch's publish script, with the events in shard order
// (ignored events and events already published are left out). before has
// len(evs) nil entries; Apply sets before[i] to the cached object evs[i]
// replaced (UPDATE/DELETE), which becomes the entry's "before" field. The
// events and their Data are valid only during the call. Apply must be
// idempotent: after an error the Publisher calls it again with the same
// batch.
type CacheWriter interface {
	Apply(ctx context.Context, evs []*Event, before [][]byte) error
}

// Publisher is the gateway's Sink: it turns each shard's events into
// entries of Redis streams, in order, once, and advances the shard's
// checkpoint in the same atomic step.
//
// Each (bot, shard) has a bounded queue (grown on demand) and, while it
// has events, one flusher goroutine that takes micro-batches off it and
// filters them (a shard idle for flusherLinger has neither goroutine nor
// batch buffers); the batches of a bot's shards then go to Redis
// together: one Cache.Apply and one publish script call with a section per
// shard batch, each section checked (checkpoint, fence) and answered on its
// own (see pubWriter). While Redis
// fails the flushers retry with backoff; the queues fill and Publish
// blocks — backpressure for the shard.
type Publisher struct {
	c    rueidis.Client
	cfg  PublisherConfig
	keys Keys
	log  *slog.Logger

	prefixes *prefixCache
	control  *controlWriter
	// live holds the limits in force (Reconfigure swaps it); cfg keeps
	// what cannot change (Prefix, Cache, Logger, ClientSideCaching).
	live atomic.Pointer[PublisherConfig]

	lostMu    sync.Mutex
	lostAt    time.Time     // last "Redis lost its data" report
	lostCount atomic.Uint64 // checkpoints found gone

	mu      sync.Mutex // guards creation in bots and shards
	bots    atomic.Pointer[map[string]*botState]
	closing atomic.Bool
	ctx     context.Context // stops the goroutines
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
	// runMu guards stopped: flushers start (wg.Add) only before Close
	// waits for them.
	runMu   sync.RWMutex
	stopped bool
	// linger is how long an idle shard keeps its flusher (flusherLinger;
	// tests shorten it before the first event).
	linger time.Duration
	// scratch holds the batch scratch of flushers that went idle, for the
	// next flusher to start (see takeScratch).
	scratch sync.Pool
}

// NewPublisher validates cfg and returns a Publisher writing through c. It
// does not touch Redis: consumer groups are created before a bot's first
// batch (or by EnsureGroups).
func NewPublisher(c rueidis.Client, cfg PublisherConfig) (*Publisher, error) {
	if c == nil {
		return nil, errors.New("new publisher: nil redis client")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("publisher config: %w", err)
	}
	cfg.setDefaults()
	cfg.Bots = append([]BotConfig(nil), cfg.Bots...)
	p := &Publisher{c: c, cfg: cfg, keys: NewKeys(cfg.Prefix), log: cfg.Logger, linger: flusherLinger}
	live := cfg
	p.live.Store(&live)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.prefixes = newPrefixCache(c, p.keys, cfg.ClientSideCaching, cfg.PrefixTTL)
	bots := make(map[string]*botState, len(cfg.Bots))
	for i := range cfg.Bots {
		bots[cfg.Bots[i].Name] = newBotState(p, cfg.Bots[i])
	}
	p.bots.Store(&bots)
	p.control = newControlWriter(p)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.control.run(p.ctx)
	}()
	return p, nil
}

// tuning returns the limits in force (batching, queue bytes, retries,
// control stream trim); callers read it once per batch.
func (p *Publisher) tuning() *PublisherConfig { return p.live.Load() }

// Reconfigure puts a new configuration in force without stopping anything:
// each bot's routes, filters, trimming and consumer groups (a flusher takes
// them from its next batch; groups of new streams are created before it),
// new bots, and the limits MaxBatch, MaxBatchBytes, MaxDelay, QueueBytes,
// PrefixTTL, ControlMaxLen, RetryMin and RetryMax. QueueSize applies to
// shard queues created from now on. Prefix must not change, and the Cache
// and Logger of the running Publisher stay. A bot missing from cfg keeps
// the configuration it has (its shards are stopped by the caller; events
// still queued are published as configured). An invalid cfg changes nothing.
func (p *Publisher) Reconfigure(cfg PublisherConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("publisher config: %w", err)
	}
	if cfg.Prefix != p.cfg.Prefix {
		return fmt.Errorf("publisher config: prefix: cannot change from %q to %q while running", p.cfg.Prefix, cfg.Prefix)
	}
	cfg.ClientSideCaching, cfg.Cache, cfg.Logger = p.cfg.ClientSideCaching, p.cfg.Cache, p.cfg.Logger
	cfg.setDefaults()
	cfg.Bots = append([]BotConfig(nil), cfg.Bots...)
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.bots.Load()
	next := make(map[string]*botState, len(old)+len(cfg.Bots))
	for k, v := range old {
		next[k] = v
	}
	for i := range cfg.Bots {
		bc := cfg.Bots[i]
		if b := next[bc.Name]; b != nil {
			b.setConfig(bc)
			continue
		}
		b := newBotState(p, bc)
		next[b.name] = b
	}
	p.bots.Store(&next)
	p.prefixes.setTTL(cfg.PrefixTTL)
	p.live.Store(&cfg)
	return nil
}

// Keys is the key layout the Publisher writes.
func (p *Publisher) Keys() Keys { return p.keys }

// Publish queues ev for publishing. It copies what it keeps (ev.Data is
// only valid during the call) and returns once the event is queued; it
// blocks while the shard's queue is full, until ctx ends.
func (p *Publisher) Publish(ctx context.Context, ev *Event) error {
	if p.closing.Load() {
		return ErrClosed
	}
	b, err := p.bot(ev.Bot)
	if err != nil {
		return err
	}
	var sq *shardQueue
	if c := b.staging.Load(); c != 0 && int64(ev.ShardCount) == c {
		sq, err = b.stagedShard(ev.Shard, ev.ShardCount)
	} else {
		sq, err = b.shard(ev.Shard)
	}
	if err != nil {
		return err
	}
	return sq.enqueue(ctx, ev)
}

// Flush waits until every event Published for (bot, shard) before the
// call is durable on its stream and in the checkpoint. It returns an error
// wrapping ErrFenced when the shard's batches were refused (see SetFence):
// then what was queued is dropped, not published.
func (p *Publisher) Flush(ctx context.Context, bot string, shard int) error {
	b := (*p.bots.Load())[bot]
	if b == nil {
		return nil
	}
	for _, sq := range []*shardQueue{b.lookup(shard), (*b.staged.Load())[shard]} {
		if sq == nil {
			continue
		}
		if err := sq.flush(ctx); err != nil {
			return fmt.Errorf("flush %s shard %d: %w", bot, shard, err)
		}
		if sq.isFenced() {
			return fmt.Errorf("flush %s shard %d: %w", bot, shard, ErrFenced)
		}
	}
	return nil
}

// SetFence makes the batches of (bot, shard) carry fence from the next
// Publish on: the publish script then writes them only while the shard's
// lease (Keys.Lease) holds that fencing number. 0 turns fencing off (a
// single process, no fleet). A new fence lifts a refusal of the old one.
func (p *Publisher) SetFence(bot string, shard int, fence int64) error {
	if p.closing.Load() {
		return ErrClosed
	}
	b, err := p.bot(bot)
	if err != nil {
		return err
	}
	sq, err := b.shard(shard)
	if err != nil {
		return err
	}
	sq.fence.Store(fence)
	return nil
}

// EnsureGroups creates the consumer groups of every configured bot's
// streams now, instead of before each bot's first batch.
func (p *Publisher) EnsureGroups(ctx context.Context) error {
	for _, b := range *p.bots.Load() {
		if err := b.ensureGroups(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Close refuses new events, waits (bounded by ctx) until every queued
// event is durable and the control queue is written, then stops and joins
// every goroutine. Events still queued when ctx ends are not published and
// not checkpointed; Discord replays them on RESUME.
func (p *Publisher) Close(ctx context.Context) error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.closing.Store(true)
	var errs []error
	for _, b := range *p.bots.Load() {
		for _, sq := range b.all() {
			if err := sq.flush(ctx); err != nil {
				errs = append(errs, fmt.Errorf("flush %s shard %d: %w", b.name, sq.shard, err))
			}
		}
	}
	if err := p.control.flush(ctx); err != nil {
		errs = append(errs, fmt.Errorf("flush control events: %w", err))
	}
	p.cancel()
	p.runMu.Lock()
	p.stopped = true
	p.runMu.Unlock()
	p.wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("close publisher: %w", errors.Join(errs...))
	}
	return nil
}

// bot returns the state of the named bot, creating a default one for a bot
// that is not configured.
func (p *Publisher) bot(name string) (*botState, error) {
	if b := (*p.bots.Load())[name]; b != nil {
		return b, nil
	}
	if err := CheckName(name); err != nil {
		return nil, fmt.Errorf("publish: bot name: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old := *p.bots.Load()
	if b := old[name]; b != nil {
		return b, nil
	}
	next := make(map[string]*botState, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	b := newBotState(p, BotConfig{Name: name})
	next[b.name] = b
	p.bots.Store(&next)
	return b, nil
}

// startFlusher starts sq's flusher, owned by p; false once Close stopped
// the goroutines. A shard keeps its flusher while it has an event a second
// or more (flusherLinger), so a start is rare next to the events.
func (p *Publisher) startFlusher(sq *shardQueue) bool {
	p.runMu.RLock()
	defer p.runMu.RUnlock()
	if p.stopped {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sq.run(p.ctx)
	}()
	return true
}

// maxKeptScratch is the largest scratch (bytes of its buffers, roughly)
// given back to the pool: a burst's large buffers are not kept once its
// shard goes idle.
const maxKeptScratch = 64 << 10

// takeScratch returns a batch scratch for a flusher that starts: one an
// idle flusher gave back, or a new one. A busy shard keeps its flusher and
// so its scratch; the pool is what lets the many shards of a bot at a
// modest rate, whose flushers come and go, share a few scratches without
// allocating per batch. The pool empties itself across garbage collections
// while no flusher takes from it.
func (p *Publisher) takeScratch() *scratch {
	if sc, _ := p.scratch.Get().(*scratch); sc != nil {
		return sc
	}
	return new(scratch)
}

// putScratch gives an idle flusher's scratch back, without the references
// it holds to events and configuration.
func (p *Publisher) putScratch(sc *scratch) {
	if sc == nil || sc.footprint() > maxKeptScratch {
		return
	}
	clear(sc.batch[:cap(sc.batch)])
	clear(sc.content[:cap(sc.content)])
	clear(sc.evs[:cap(sc.evs)])
	clear(sc.before[:cap(sc.before)])
	clear(sc.entries[:cap(sc.entries)])
	clear(sc.streams[:cap(sc.streams)])
	clear(sc.args.Keys[:cap(sc.args.Keys)])
	clear(sc.args.Args[:cap(sc.args.Args)])
	sc.conf = nil
	sc.expect = luascripts.Expectation{}
	p.scratch.Put(sc)
}
