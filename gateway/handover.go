package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The hand-over of a live re-shard.
//
// While a bot's new shard set (count M) identifies, its old set (count N)
// keeps publishing, and Discord sends every event to both: to old shard
// guild>>22 % N and new shard guild>>22 % M (events without a guild to
// shard 0 of each). The hand-over decides, guild by guild, which set's copy
// is published, so that each event stands on the streams once and a guild's
// events stay in order:
//
//   - A new shard's guild starts with its marker: the lazy GUILD_CREATE of
//     a guild READY listed (events of the guild before it are the old set's),
//     else READY itself (guilds joined later, and shard 0's events without a
//     guild). The new set's READY and lazy GUILD_CREATEs are not published:
//     the old set already published the guild, and a second GUILD_CREATE
//     would look like a join. They are recorded for the checkpoint only
//     (Event.Skip).
//   - The old set publishes a guild's events and remembers their identity
//     (a hash of t and d) until the guild switches.
//   - A new-set event of the guild the old set already published is
//     skipped. One it has not is held: the new set is ahead.
//   - When the old set receives the event the new set holds first, the
//     guild switches: the old set's queue is flushed (its earlier events
//     of the guild are on the streams), then the new set publishes what it
//     held, and from then on the old set skips the guild.
//   - Cut-over, once every new shard is READY and has its guilds: the old
//     set skips every guild that holds nothing, its queues are flushed, and
//     those guilds switch; the new set skips what the old set published
//     that it receives late. Guilds with held events switch as above
//     (bounded by a deadline), then the old set is stopped.
//
// A guild whose old shard does not run (stopped, failed, never started)
// switches at its marker: its GUILD_CREATE is then published.
//
// Identity by content cannot tell apart two byte-identical dispatches of
// one guild that Discord sends within the overlap; real dispatches carry
// ids and timestamps, so this does not happen in practice.

// heldState is what becomes of a new-set event the hand-over holds.
type heldState uint8

const (
	heldUndecided heldState = iota
	heldPublish
	heldSkip
)

// heldEvent is a new-set event in its shard's ordered output.
type heldEvent struct {
	ev    Event // Data is an owned copy
	guild uint64
	hash  uint64
	state heldState
}

// hoGuild is the hand-over state of one guild (0: events without a guild).
type hoGuild struct {
	// switching: the old set skips the guild; the new set holds its events
	// until the old set's queue is flushed. switched: the new set
	// publishes the guild.
	switching, switched bool
	// recent are the hashes of the guild's events the old set published,
	// oldest first (at most maxRecent).
	recent []uint64
	// pend are the new set's events of the guild not yet decided, in order.
	pend []*heldEvent
	// late are the hashes of the switched guild's events the new set
	// received after markLoaded (at most maxLate): the old set delivering
	// one shows it caught up.
	late []uint64
}

// maxLate bounds hoGuild.late.
const maxLate = 256

// hoShard is the hand-over state of one new-set shard.
type hoShard struct {
	s       *shard
	drainMu sync.Mutex // one drain at a time, in order
	// The rest is guarded by handover.mu.
	buf        []*heldEvent    // ordered output not yet given to the Sink
	lazy       map[uint64]bool // guilds of READY whose GUILD_CREATE has not come
	ready      bool            // READY seen
	session    string          // last session and resume URL seen
	resumeURL  string
	heldBytes  int
	lastSeq    int64
	intents    uint64
	shardCount int
}

// Hand-over bounds.
const (
	// maxRecent bounds the hashes remembered per guild.
	maxRecent = 4096
	// maxHeldBytes bounds what a new shard holds; beyond it the guild of
	// its oldest held event switches at once (its events may then be
	// published twice rather than held without bound).
	maxHeldBytes = 32 << 20
)

type hoPhase int

const (
	phaseOverlap hoPhase = iota // both sets run
	phaseCutting                // old set skips guilds without held events
	phaseCut                    // the new set publishes; late duplicates skipped
	phaseDone                   // the new set publishes directly
)

// handover decides which set publishes each event during a re-shard.
type handover struct {
	m      *Manager
	oldBot *botRun
	newBot *botRun
	seed   maphash.Seed
	ctx    context.Context // bounds the Sink calls made for another shard
	// started is when the re-shard started (immutable).
	started time.Time

	mu     sync.Mutex
	phase  hoPhase
	guilds map[uint64]*hoGuild
	shards map[int]*hoShard
	// loadedAt is when every new shard had its guilds; caught are the old
	// shards seen delivering an event the new set received after it (they
	// have caught up with the new set: no backlog from before its markers).
	loadedAt time.Time
	caught   map[int]bool

	skippedOld, skippedNew, switches atomic.Uint64
}

func newHandover(ctx context.Context, m *Manager, oldBot, newBot *botRun) *handover {
	h := &handover{m: m, oldBot: oldBot, newBot: newBot, seed: maphash.MakeSeed(), ctx: ctx,
		guilds: map[uint64]*hoGuild{}, shards: map[int]*hoShard{}, caught: map[int]bool{}}
	for id, s := range newBot.shards {
		h.shards[id] = &hoShard{s: s, lazy: map[uint64]bool{}}
	}
	return h
}

func (h *handover) hash(ev *Event) uint64 {
	var mh maphash.Hash
	mh.SetSeed(h.seed)
	mh.WriteString(ev.Type)
	mh.WriteByte(0)
	mh.Write(ev.Data)
	return mh.Sum64()
}

// guildLocked returns the state of guild g. h.mu held.
func (h *handover) guildLocked(g uint64) *hoGuild {
	gs := h.guilds[g]
	if gs == nil {
		gs = &hoGuild{}
		h.guilds[g] = gs
	}
	return gs
}

// oldAlive reports whether the old shard of guild g runs and may still
// publish it.
func (h *handover) oldAlive(g uint64) bool {
	id := 0
	if g != 0 {
		id = int((g >> 22) % uint64(h.oldBot.count))
	}
	s := h.oldBot.shards[id]
	return s != nil && h.shardAlive(s)
}

// shardAlive reports whether s runs (not stopped or failed).
func (h *handover) shardAlive(s *shard) bool {
	s.mu.Lock()
	st := s.state
	s.mu.Unlock()
	return st != StateFailed && st != StateStopped
}

// oldShardOf is the old set's shard of guild g.
func (h *handover) oldShardOf(g uint64) int {
	if g == 0 {
		return 0
	}
	return int((g >> 22) % uint64(h.oldBot.count))
}

// markLoaded notes that every new shard has its guilds.
func (h *handover) markLoaded() {
	h.mu.Lock()
	h.loadedAt = time.Now()
	h.mu.Unlock()
}

// caughtUp reports whether every running old shard was seen delivering an
// event the new set received after markLoaded.
func (h *handover) caughtUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.oldBot.order {
		if !h.caught[s.id] && h.shardAlive(s) {
			return false
		}
	}
	return true
}

// sessionEvent reports events about the session, not a guild.
func sessionEvent(t string) bool { return t == "READY" || t == "RESUMED" }

// fromOld is the old set's path: it publishes ev, or records it for the
// checkpoint only when the new set has the guild. Called from the shard's
// goroutine.
func (h *handover) fromOld(ctx context.Context, s *shard, ev *Event) error {
	sink := h.m.cfg.Sink
	if sessionEvent(ev.Type) {
		return sink.Publish(ctx, ev)
	}
	g := ev.GuildID
	hash := h.hash(ev)
	h.mu.Lock()
	gs := h.guildLocked(g)
	startSwitch := false
	switch {
	case h.phase == phaseDone || gs.switched || gs.switching:
		if !h.caught[s.id] && slices.Contains(gs.late, hash) {
			h.caught[s.id] = true
		}
		ev.Skip = true
	case len(gs.pend) > 0 && gs.pend[0].hash == hash:
		// The new set holds this very event first: it takes the guild.
		if !h.loadedAt.IsZero() && gs.pend[0].ev.Received.After(h.loadedAt) {
			h.caught[s.id] = true
		}
		gs.switching, startSwitch = true, true
		ev.Skip = true
	case h.phase == phaseCutting && len(gs.pend) == 0:
		gs.switching = true // switched once the old queues are flushed
		ev.Skip = true
	case h.phase >= phaseCut && len(gs.pend) == 0:
		h.switchLocked(gs, true) // the old queues were flushed at the cut
		ev.Skip = true
	default:
		if len(gs.recent) == maxRecent {
			gs.recent = slices.Delete(gs.recent, 0, maxRecent/4)
		}
		gs.recent = append(gs.recent, hash)
	}
	h.mu.Unlock()
	if ev.Skip {
		h.skippedOld.Add(1)
	}
	err := sink.Publish(ctx, ev)
	ev.Skip = false
	if err != nil {
		return err
	}
	if startSwitch {
		h.flushOld(ctx, s.id)
		h.completeSwitch(g, false)
	}
	return nil
}

// flushOld waits until the old shard's accepted events are durable.
func (h *handover) flushOld(ctx context.Context, id int) {
	f, ok := h.m.cfg.Sink.(Flusher)
	if !ok {
		return
	}
	if err := f.Flush(ctx, h.oldBot.cfg.Name, id); err != nil {
		h.m.log.Warn("re-shard: flush old shard before switching a guild", "bot", h.oldBot.cfg.Name, "shard", id, "err", err)
	}
}

// completeSwitch hands guild g to the new set: what it held of g is
// published, in order. keepRecent keeps the old set's hashes to skip what
// the new set receives late (a switch at cut-over); a switch because the
// new set was ahead clears them.
func (h *handover) completeSwitch(g uint64, keepRecent bool) {
	h.mu.Lock()
	gs := h.guildLocked(g)
	h.switchLocked(gs, keepRecent)
	h.mu.Unlock()
	h.drainAll()
}

// switchLocked marks gs switched and its held events to publish. h.mu held.
func (h *handover) switchLocked(gs *hoGuild, keepRecent bool) {
	if gs.switched {
		return
	}
	gs.switched, gs.switching = true, false
	for _, p := range gs.pend {
		p.state = heldPublish
	}
	gs.pend = nil
	if !keepRecent {
		gs.recent = nil
	}
	h.switches.Add(1)
}

// fromNew is the new set's path: it publishes ev, skips it, or holds it
// for later, keeping the shard's output in order. Called from the shard's
// goroutine.
func (h *handover) fromNew(ctx context.Context, s *shard, ev *Event) error {
	h.mu.Lock()
	if h.phase == phaseDone {
		h.mu.Unlock()
		return h.m.cfg.Sink.Publish(ctx, ev)
	}
	hs := h.shards[s.id]
	hs.session, hs.resumeURL, hs.lastSeq = ev.Session, ev.ResumeURL, ev.Seq
	hs.intents, hs.shardCount = ev.Intents, ev.ShardCount
	g := ev.GuildID
	state := heldPublish
	var hash uint64
	var gs *hoGuild
	var flushOld = -1
	switch {
	case ev.Type == "READY":
		hs.ready = true
		clear(hs.lazy)
		for _, id := range readyGuildIDs(ev.Data) {
			hs.lazy[id] = true
		}
		if old := h.oldBot.shards[s.id]; old != nil && h.shardAlive(old) {
			state = heldSkip
		}
	case ev.Type == "RESUMED":
	case hs.lazy[g] && (ev.Type == "GUILD_CREATE" || ev.Type == "GUILD_DELETE"):
		delete(hs.lazy, g)
		gs = h.guildLocked(g)
		if h.oldAlive(g) && !gs.switched {
			state = heldSkip
		} else {
			h.switchLocked(gs, false)
		}
	case hs.lazy[g]:
		state = heldSkip // before its marker: the old set's
	default:
		gs = h.guildLocked(g)
		hash = h.hash(ev)
		if h.phase >= phaseCut && !gs.switched && !gs.switching && len(gs.pend) == 0 {
			// A guild the old set sent nothing of since the cut.
			h.switchLocked(gs, true)
		}
		switch {
		case gs.switched:
			if i := slices.Index(gs.recent, hash); i >= 0 {
				gs.recent = gs.recent[i+1:]
				state = heldSkip
			} else if len(gs.recent) > 0 {
				gs.recent = nil
			}
			if state == heldPublish && !h.loadedAt.IsZero() && h.phase < phaseCut && len(gs.late) < maxLate {
				gs.late = append(gs.late, hash)
			}
		case len(gs.pend) == 0 && slices.Contains(gs.recent, hash):
			i := slices.Index(gs.recent, hash)
			gs.recent = gs.recent[i+1:]
			state = heldSkip
			if !h.loadedAt.IsZero() {
				h.caught[h.oldShardOf(g)] = true
			}
		default:
			state = heldUndecided
			if h.phase >= phaseCutting {
				gs.switching = true
			}
			if !gs.switching && !h.oldAlive(g) {
				gs.switching = true
				flushOld = 0
				if g != 0 {
					flushOld = int((g >> 22) % uint64(h.oldBot.count))
				}
			}
		}
	}
	if state == heldSkip {
		h.skippedNew.Add(1)
	}
	// Every event goes through the ordered output (even one decided now),
	// so that nothing overtakes what is held.
	he := &heldEvent{ev: *ev, guild: g, hash: hash, state: state}
	he.ev.Data = nil
	if state != heldSkip {
		he.ev.Data = append([]byte(nil), ev.Data...)
	}
	hs.buf = append(hs.buf, he)
	hs.heldBytes += len(he.ev.Data)
	if state == heldUndecided {
		gs.pend = append(gs.pend, he)
	}
	var force *hoGuild
	if hs.heldBytes > maxHeldBytes {
		for _, x := range hs.buf {
			if x.state == heldUndecided {
				force = h.guilds[x.guild]
				break
			}
		}
		if force != nil {
			h.m.log.Warn("re-shard: a new shard holds too much; switching the guild of its oldest held event now (it may be published twice)",
				"bot", h.oldBot.cfg.Name, "shard", s.id, "guild", he.guild)
			h.switchLocked(force, false)
		}
	}
	h.mu.Unlock()
	if flushOld >= 0 {
		h.flushOld(ctx, flushOld)
		h.completeSwitch(g, false)
		return nil
	}
	h.drain(hs)
	return nil
}

// drain gives the decided events at the front of hs's output to the Sink,
// in order.
func (h *handover) drain(hs *hoShard) {
	hs.drainMu.Lock()
	defer hs.drainMu.Unlock()
	for {
		h.mu.Lock()
		n := 0
		for n < len(hs.buf) && hs.buf[n].state != heldUndecided {
			n++
		}
		out := slices.Clone(hs.buf[:n])
		hs.buf = slices.Delete(hs.buf, 0, n)
		for _, he := range out {
			hs.heldBytes -= len(he.ev.Data)
		}
		h.mu.Unlock()
		if n == 0 {
			return
		}
		for i, he := range out {
			he.ev.Skip = he.state == heldSkip
			if err := h.m.cfg.Sink.Publish(h.ctx, &he.ev); err != nil {
				// Keep it and what follows, in order: nothing after it may
				// move the checkpoint past it (after a restart Discord
				// replays them).
				h.mu.Lock()
				hs.buf = append(slices.Clone(out[i:]), hs.buf...)
				for _, x := range out[i:] {
					hs.heldBytes += len(x.ev.Data)
				}
				h.mu.Unlock()
				h.m.log.Warn("re-shard: the Sink refused a held event; holding it and those after it", "bot", he.ev.Bot, "shard", he.ev.Shard, "seq", he.ev.Seq, "type", he.ev.Type, "err", err)
				return
			}
		}
	}
}

// drainAll drains every new shard.
func (h *handover) drainAll() {
	for _, hs := range h.shardList() {
		h.drain(hs)
	}
}

func (h *handover) shardList() []*hoShard {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*hoShard, 0, len(h.shards))
	for _, hs := range h.shards {
		out = append(out, hs)
	}
	return out
}

// loaded reports whether every new shard is READY, has every guild READY
// listed and is connected.
func (h *handover) loaded() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hs := range h.shards {
		if !hs.ready || len(hs.lazy) > 0 || hs.s.status().State != StateReady {
			return false
		}
	}
	return true
}

// held is the number of guilds whose events the new set holds.
func (h *handover) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, gs := range h.guilds {
		if len(gs.pend) > 0 {
			n++
		}
	}
	return n
}

// startCut makes the old set skip every guild that holds nothing.
func (h *handover) startCut() {
	h.mu.Lock()
	h.phase = phaseCutting
	for _, gs := range h.guilds {
		if !gs.switched && len(gs.pend) == 0 {
			gs.switching = true
		}
	}
	h.mu.Unlock()
}

// finishCut switches the guilds startCut stopped (the old queues flushed
// since).
func (h *handover) finishCut() {
	h.mu.Lock()
	h.phase = phaseCut
	for _, gs := range h.guilds {
		if gs.switching {
			h.switchLocked(gs, true)
		}
	}
	h.mu.Unlock()
	h.drainAll()
}

// switchDead switches the guilds with held events whose old shard no
// longer runs (or, force, every guild with held events).
func (h *handover) switchDead(force bool) {
	var flush []int
	h.mu.Lock()
	for g, gs := range h.guilds {
		if gs.switched || len(gs.pend) == 0 || (!force && h.oldAlive(g)) {
			continue
		}
		id := 0
		if g != 0 {
			id = int((g >> 22) % uint64(h.oldBot.count))
		}
		if !slices.Contains(flush, id) {
			flush = append(flush, id)
		}
		gs.switching = true
	}
	h.mu.Unlock()
	if len(flush) == 0 {
		return
	}
	for _, id := range flush {
		h.flushOld(h.ctx, id)
	}
	h.mu.Lock()
	for _, gs := range h.guilds {
		if gs.switching && len(gs.pend) > 0 {
			h.switchLocked(gs, false)
		}
	}
	h.mu.Unlock()
	h.drainAll()
}

// checkpoint queues, behind what each new shard holds, a checkpoint-only
// event at the last seq it accepted, so that every new shard's session
// replaces the old set's in the shared checkpoints.
func (h *handover) checkpoint() {
	h.mu.Lock()
	for id, hs := range h.shards {
		if hs.session == "" {
			continue
		}
		hs.buf = append(hs.buf, &heldEvent{state: heldSkip, ev: Event{
			Bot: h.newBot.cfg.Name, Shard: id, ShardCount: hs.shardCount, Intents: hs.intents,
			Session: hs.session, ResumeURL: hs.resumeURL, Seq: hs.lastSeq, Type: "RESHARD_CHECKPOINT",
		}})
	}
	h.mu.Unlock()
	h.drainAll()
}

// finish ends the hand-over once nothing is held: the new set publishes
// directly from now on.
func (h *handover) finish() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hs := range h.shards {
		if len(hs.buf) > 0 {
			return false
		}
	}
	h.phase = phaseDone
	h.guilds = nil
	return true
}

// stats describe the hand-over for logs and control events.
func (h *handover) stats() string {
	return fmt.Sprintf("guilds switched %d, old-set events skipped %d, new-set events skipped %d",
		h.switches.Load(), h.skippedOld.Load(), h.skippedNew.Load())
}

// readyGuildIDs returns the ids of READY's guilds.
func readyGuildIDs(d []byte) []uint64 {
	v, ok := topLevelValue(d, "guilds")
	if !ok {
		return nil
	}
	var gs []struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(v, &gs) != nil {
		return nil
	}
	out := make([]uint64, 0, len(gs))
	for _, g := range gs {
		id := string(g.ID)
		if u, err := strconv.Unquote(id); err == nil {
			id = u
		}
		if n, err := strconv.ParseUint(id, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}
