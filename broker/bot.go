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
	types := map[string]*typeInfo{}
	b.types.Store(&types)
	shards := []*shardQueue{}
	b.shards.Store(&shards)
	return b
}

// typeInfo returns the decision for event name t.
func (b *botState) typeInfo(t string) *typeInfo {
	if ti := (*b.types.Load())[t]; ti != nil {
		return ti
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.types.Load()
	if ti := old[t]; ti != nil {
		return ti
	}
	ti := &typeInfo{name: strings.Clone(t)}
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
	next := make(map[string]*typeInfo, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[ti.name] = ti
	b.types.Store(&next)
	return ti
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
