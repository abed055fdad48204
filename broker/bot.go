package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// typeInfo is the decision for one event name, computed once per bot.
type typeInfo struct {
	name   string // owned copy of the event name
	action action
	stream int // index into botState.streams
	msg    msgKind
	ready  bool
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

// botState is everything per bot: compiled routes, the event-name table,
// the shards and the bot's user id.
type botState struct {
	p       *Publisher
	name    string
	cfg     BotConfig
	streams []streamSpec // [0] is the default stream, then one per route

	mu     sync.Mutex // guards writes of types and shards
	types  atomic.Pointer[map[string]*typeInfo]
	others int                           // names in types that are not Discord's; guarded by mu
	other  atomic.Uint64                 // events of names types does not keep
	shards atomic.Pointer[[]*shardQueue] // indexed by shard id

	userID     atomic.Pointer[string] // bot user id for mentions
	groupsDone atomic.Bool
	// groupsFrom0: Redis lost its data, so the groups are created from the
	// streams' start (what other shards published since is not missed).
	groupsFrom0 atomic.Bool
}

func newBotState(p *Publisher, cfg BotConfig) *botState {
	cfg.Name = strings.Clone(cfg.Name)
	b := &botState{p: p, name: cfg.Name, cfg: cfg}
	def := cfg.Default
	if def.Stream == "" {
		def.Stream = DefaultStream
	}
	b.streams = append(b.streams, streamSpec{StreamConfig: def, key: p.keys.Stream(b.name, def.Stream)})
	for _, r := range cfg.Routes {
		b.streams = append(b.streams, streamSpec{StreamConfig: r.StreamConfig, key: p.keys.Stream(b.name, r.Stream)})
	}
	for i := range b.streams {
		b.streams[i].maxLen = strconv.FormatInt(b.streams[i].MaxLen, 10)
	}
	if cfg.Filters.BotUserID != "" {
		id := cfg.Filters.BotUserID
		b.userID.Store(&id)
	}
	types := make(map[string]*typeInfo, len(discordEventTypes))
	for _, t := range discordEventTypes {
		ti := b.decide(t)
		ti.count = &ti.own
		types[t] = ti
	}
	b.types.Store(&types)
	shards := []*shardQueue{}
	b.shards.Store(&shards)
	return b
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
	ti := b.lookupType(t)
	ti.count.Add(1)
	return ti
}

func (b *botState) lookupType(t string) *typeInfo {
	if ti := (*b.types.Load())[t]; ti != nil {
		return ti
	}
	if len(t) > maxEventTypeLen {
		return b.decide(t)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.types.Load()
	if ti := old[t]; ti != nil {
		return ti
	}
	ti := b.decide(t)
	if b.others >= maxOtherEventTypes {
		return ti
	}
	b.others++
	ti.count = &ti.own
	next := make(map[string]*typeInfo, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[ti.name] = ti
	b.types.Store(&next)
	return ti
}

// decide computes the decision for event name t; its events count as
// OtherEventType until the caller says otherwise.
func (b *botState) decide(t string) *typeInfo {
	ti := &typeInfo{name: strings.Clone(t)}
	ti.count = &b.other
	f := &b.cfg.Filters
	switch {
	case matchAny(f.Ignore, t):
		ti.action = actIgnore
	case matchAny(f.CacheOnly, t):
		ti.action = actCacheOnly
	}
	for i := range b.cfg.Routes {
		if matchAny(b.cfg.Routes[i].Events, t) {
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
	for name, ti := range *b.types.Load() {
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

// shard returns the shard's queue, starting its flusher on first use.
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
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sq.run(p.ctx)
	}()
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
	return out
}

// groupsLost makes the next ensureGroups create the groups again, from the
// streams' start: Redis lost its data.
func (b *botState) groupsLost() {
	b.groupsFrom0.Store(true)
	b.groupsDone.Store(false)
}

// ensureGroups creates the consumer groups of the bot's streams once (and
// again after groupsLost). A group is created at the stream's end ("$"),
// after a loss at its start ("0": the streams hold only what was published
// since).
func (b *botState) ensureGroups(ctx context.Context) error {
	if b.groupsDone.Load() {
		return nil
	}
	from := "$"
	lost := b.groupsFrom0.Load()
	if lost {
		from = "0"
	}
	c := b.p.c
	var cmds []rueidisCompleted
	var names []string
	for _, s := range b.streams {
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
	b.groupsDone.Store(true)
	return nil
}

// userIDValue is the bot's user id, "" while unknown.
func (b *botState) userIDValue() string {
	if p := b.userID.Load(); p != nil {
		return *p
	}
	return ""
}
