package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"
)

// action is what happens to events of one type.
type action uint8

const (
	actPublish   action = iota
	actIgnore           // dropped before the cache
	actCacheOnly        // cache only
)

// msgKind marks the events the message filters look at.
type msgKind uint8

const (
	msgNone msgKind = iota
	msgCreate
	msgUpdate
)

// typeInfo is the decision for one event name, computed once per bot
// configuration.
type typeInfo struct {
	name   string // owned copy of the event name
	action action
	stream int // index into conf.streams
	msg    msgKind
	ready  bool
	conf   *botConf // the configuration this decision was made under
	// count counts the bot's events of this name: the type's own counter,
	// or the bot's "other" counter for a name the table does not keep.
	count *atomic.Uint64
	own   atomic.Uint64
}

// streamSpec is one target stream of a bot.
type streamSpec struct {
	StreamConfig
	key    string
	maxLen string // MaxLen formatted
}

// botState is everything per bot: its configuration, the shards and the
// bot's user id.
type botState struct {
	p    *Publisher
	name string
	// conf is the bot's configuration in force; setConfig swaps it whole.
	// A flusher reads it once per batch, Publish once per event.
	conf atomic.Pointer[botConf]

	mu     sync.Mutex                    // guards writes of shards and setConfig
	other  atomic.Uint64                 // events of names the tables do not keep
	shards atomic.Pointer[[]*shardQueue] // indexed by shard id

	// staging is the shard count whose events go to staged queues (a
	// re-shard's new set), 0 = none; staged holds them by shard id.
	staging atomic.Int64
	staged  atomic.Pointer[map[int]*shardQueue]

	userID atomic.Pointer[string] // bot user id for mentions
	w      *pubWriter             // sends the shards' publish calls
	// groupsFrom0: Redis lost its data, so the groups are created from the
	// streams' start (what other shards published since is not missed).
	groupsFrom0 atomic.Bool
}

// botConf is one configuration of a bot, immutable once built but for its
// event-name table: compiled routes and filters.
type botConf struct {
	b       *botState
	cfg     BotConfig
	streams []streamSpec // [0] is the default stream, then one per route

	mu         sync.Mutex // guards writes of types
	types      atomic.Pointer[map[string]*typeInfo]
	others     int // names in types that are not Discord's; guarded by mu
	groupsDone atomic.Bool
}

func newBotState(p *Publisher, cfg BotConfig) *botState {
	cfg.Name = strings.Clone(cfg.Name)
	b := &botState{p: p, name: cfg.Name}
	b.w = newPubWriter(b)
	b.setConfig(cfg)
	shards := []*shardQueue{}
	b.shards.Store(&shards)
	staged := map[int]*shardQueue{}
	b.staged.Store(&staged)
	return b
}

// setConfig puts cfg in force for the events the bot's flushers take from
// now on. The event counts carry over.
func (b *botState) setConfig(cfg BotConfig) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cfg.Name = b.name
	c := &botConf{b: b, cfg: cfg}
	def := cfg.Default
	if def.Stream == "" {
		def.Stream = DefaultStream
	}
	c.streams = append(c.streams, streamSpec{StreamConfig: def, key: b.p.keys.Stream(b.name, def.Stream)})
	for _, r := range cfg.Routes {
		c.streams = append(c.streams, streamSpec{StreamConfig: r.StreamConfig, key: b.p.keys.Stream(b.name, r.Stream)})
	}
	for i := range c.streams {
		c.streams[i].maxLen = strconv.FormatInt(c.streams[i].MaxLen, 10)
	}
	if cfg.Filters.BotUserID != "" {
		id := cfg.Filters.BotUserID
		b.userID.Store(&id)
	}
	var old map[string]*typeInfo
	if prev := b.conf.Load(); prev != nil {
		old = *prev.types.Load()
	}
	types := make(map[string]*typeInfo, len(discordEventTypes))
	for _, t := range discordEventTypes {
		ti := c.decide(t)
		ti.count = &ti.own
		types[t] = ti
	}
	for name, oti := range old {
		if oti.count != &oti.own {
			continue
		}
		ti := types[name]
		if ti == nil {
			ti = c.decide(name)
			ti.count = &ti.own
			types[name] = ti
			c.others++
		}
		ti.own.Store(oti.own.Load())
	}
	c.types.Store(&types)
	b.conf.Store(c)
}

// The event-name table of a bot holds Discord's dispatch names and at most
// maxOtherEventTypes others, each at most maxEventTypeLen bytes long: a
// stream of ever new names (a broken or hostile gateway) neither grows it
// nor makes every event copy it. Events of a name it does not keep are
// decided one by one and counted as OtherEventType.
const (
	maxOtherEventTypes = 64
	maxEventTypeLen    = 64
)

// OtherEventType is the name PublisherStats.EventTypes counts the events
// of other names under, once a bot's table is full.
const OtherEventType = "other"

// typeInfo returns the decision for event name t and counts one event of
// it.
func (b *botState) typeInfo(t string) *typeInfo {
	ti := b.conf.Load().lookupType(t)
	ti.count.Add(1)
	return ti
}

func (c *botConf) lookupType(t string) *typeInfo {
	if ti := (*c.types.Load())[t]; ti != nil {
		return ti
	}
	if len(t) > maxEventTypeLen {
		return c.decide(t)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.types.Load()
	if ti := old[t]; ti != nil {
		return ti
	}
	ti := c.decide(t)
	if c.others >= maxOtherEventTypes {
		return ti
	}
	c.others++
	ti.count = &ti.own
	next := make(map[string]*typeInfo, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[ti.name] = ti
	c.types.Store(&next)
	return ti
}

// decide computes the decision for event name t; its events count as
// OtherEventType until the caller says otherwise.
func (c *botConf) decide(t string) *typeInfo {
	ti := &typeInfo{name: strings.Clone(t), conf: c}
	ti.count = &c.b.other
	f := &c.cfg.Filters
	switch {
	case matchAny(f.Ignore, t):
		ti.action = actIgnore
	case matchAny(f.CacheOnly, t):
		ti.action = actCacheOnly
	}
	for i := range c.cfg.Routes {
		if matchAny(c.cfg.Routes[i].Events, t) {
			ti.stream = i + 1
			break
		}
	}
	switch t {
	case "MESSAGE_CREATE":
		ti.msg = msgCreate
	case "MESSAGE_UPDATE":
		ti.msg = msgUpdate
	case "READY":
		ti.ready = true
	}
	return ti
}

// eventTypes returns the bot's event counts by name (OtherEventType for
// the names the table does not keep); names without events are left out.
func (b *botState) eventTypes() map[string]uint64 {
	out := map[string]uint64{}
	for name, ti := range *b.conf.Load().types.Load() {
		if n := ti.count.Load(); n > 0 && ti.count == &ti.own {
			out[name] = n
		}
	}
	if n := b.other.Load(); n > 0 {
		out[OtherEventType] = n
	}
	return out
}

// lookup returns the shard's queue or nil.
func (b *botState) lookup(shard int) *shardQueue {
	s := *b.shards.Load()
	if shard >= 0 && shard < len(s) {
		return s[shard]
	}
	return nil
}

// maxShardID bounds shard ids so a wild value cannot allocate a huge slice.
const maxShardID = 1 << 20

// shard returns the shard's queue, creating it on first use (its flusher
// starts with its first event).
func (b *botState) shard(shard int) (*shardQueue, error) {
	if sq := b.lookup(shard); sq != nil {
		return sq, nil
	}
	if shard < 0 || shard >= maxShardID {
		return nil, fmt.Errorf("publish: shard id %d out of range", shard)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if sq := b.lookup(shard); sq != nil {
		return sq, nil
	}
	p := b.p
	if p.closing.Load() {
		return nil, ErrClosed
	}
	old := *b.shards.Load()
	n := len(old)
	if shard >= n {
		n = shard + 1
	}
	next := make([]*shardQueue, n)
	copy(next, old)
	sq := newShardQueue(b, shard)
	next[shard] = sq
	b.shards.Store(&next)
	return sq, nil
}

// all returns the bot's shard queues.
func (b *botState) all() []*shardQueue {
	var out []*shardQueue
	for _, sq := range *b.shards.Load() {
		if sq != nil {
			out = append(out, sq)
		}
	}
	return append(out, b.stagedAll()...)
}

// groupsLost makes the next ensureGroups create the groups again, from the
// streams' start: Redis lost its data.
func (b *botState) groupsLost() {
	b.groupsFrom0.Store(true)
	b.conf.Load().groupsDone.Store(false)
}

// ensureGroups creates the consumer groups of the bot's streams once (and
// again after groupsLost). A group is created at the stream's end ("$"),
// after a loss at its start ("0": the streams hold only what was published
// since).
func (b *botState) ensureGroups(ctx context.Context) error {
	return b.conf.Load().ensureGroups(ctx, b.p.c)
}

// ensureGroups creates the consumer groups of the configuration's streams
// once (and again after groupsLost).
func (bc *botConf) ensureGroups(ctx context.Context, c rueidis.Client) error {
	b := bc.b
	if bc.groupsDone.Load() {
		return nil
	}
	from := "$"
	lost := b.groupsFrom0.Load()
	if lost {
		from = "0"
	}
	var cmds []rueidisCompleted
	var names []string
	for _, s := range bc.streams {
		for _, g := range s.Groups {
			cmds = append(cmds, c.B().XgroupCreate().Key(s.key).Group(g).Id(from).Mkstream().Build())
			names = append(names, "group "+g+" on "+s.key)
		}
	}
	if len(cmds) > 0 {
		for i, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil && !isBusyGroup(err) {
				return fmt.Errorf("create consumer %s: %w", names[i], err)
			}
		}
	}
	if lost {
		b.groupsFrom0.CompareAndSwap(true, false)
	}
	bc.groupsDone.Store(true)
	return nil
}

// userIDValue is the bot's user id, "" while unknown.
func (b *botState) userIDValue() string {
	if p := b.userID.Load(); p != nil {
		return *p
	}
	return ""
}
