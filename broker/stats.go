package broker

import "sort"

// PublisherStats is a snapshot of the Publisher's counters, JSON-able.
type PublisherStats struct {
	Shards []ShardStats `json:"shards"`
	// Control stream writer.
	ControlQueued    int    `json:"control_queued"`
	ControlPublished uint64 `json:"control_published"`
	ControlDropped   uint64 `json:"control_dropped"` // dropped oldest-first while the queue was full
	ControlErrors    uint64 `json:"control_errors"`
	// EventTypes counts each bot's events by name (Publish calls): the
	// names Discord sends and at most 64 others, then OtherEventType.
	EventTypes map[string]map[string]uint64 `json:"event_types"`
}

// ShardStats are the counters of one (bot, shard).
type ShardStats struct {
	Bot        string `json:"bot"`
	Shard      int    `json:"shard"`
	QueueDepth int    `json:"queue_depth"` // events waiting in the queue
	QueueCap   int    `json:"queue_cap"`
	QueueBytes int64  `json:"queue_bytes"` // payload bytes accepted and not yet handled
	Accepted   uint64 `json:"accepted"`    // events Publish accepted
	Handled    uint64 `json:"handled"`     // events durable, filtered or duplicate
	Published  uint64 `json:"published"`   // entries added to streams
	// Duplicates counts events skipped because the checkpoint of their
	// session was already at or past their seq (a replay after RESUME).
	Duplicates uint64 `json:"duplicates"`
	// Filtered counts dropped events by filter name (FilterIgnore, ...).
	Filtered map[string]uint64 `json:"filtered"`
	Batches  uint64            `json:"batches"`
	Errors   uint64            `json:"errors"` // failed publish attempts (each retried)
	// LastError is the most recent failure's text.
	LastError string `json:"last_error,omitempty"`
	// Session and Seq are the checkpoint this process last wrote.
	Session string `json:"session,omitempty"`
	Seq     int64  `json:"seq,omitempty"`
	// Refusals counts batches refused because the stored checkpoint was
	// found changed; Dropped the events dropped then (Discord replays them).
	Refusals uint64 `json:"checkpoint_refusals"`
	Dropped  uint64 `json:"dropped_for_replay"`
}

// Stats returns the current counters, shards sorted by bot and shard id.
func (p *Publisher) Stats() PublisherStats {
	var st PublisherStats
	st.EventTypes = map[string]map[string]uint64{}
	for _, b := range *p.bots.Load() {
		st.EventTypes[b.name] = b.eventTypes()
		for _, sq := range b.all() {
			s := ShardStats{
				Bot: b.name, Shard: sq.shard,
				QueueDepth: sq.q.len(), QueueCap: sq.q.limit, QueueBytes: sq.bytes.Load(),
				Accepted: sq.enq.Load(), Handled: sq.done.Load(),
				Published: sq.published.Load(), Duplicates: sq.duplicates.Load(),
				Batches: sq.batches.Load(), Errors: sq.errCount.Load(),
				Refusals: sq.refusals.Load(), Dropped: sq.dropped.Load(),
				Filtered: make(map[string]uint64, len(filterNames)),
			}
			for i, name := range filterNames {
				s.Filtered[name] = sq.filtered[i].Load()
			}
			if e := sq.lastErr.Load(); e != nil {
				s.LastError = *e
			}
			if ck := sq.ckStat.Load(); ck != nil {
				s.Session, s.Seq = ck.session, ck.seq
			}
			st.Shards = append(st.Shards, s)
		}
	}
	sort.Slice(st.Shards, func(i, j int) bool {
		if st.Shards[i].Bot != st.Shards[j].Bot {
			return st.Shards[i].Bot < st.Shards[j].Bot
		}
		return st.Shards[i].Shard < st.Shards[j].Shard
	})
	w := p.control
	w.mu.Lock()
	st.ControlQueued = len(w.q)
	w.mu.Unlock()
	st.ControlPublished = w.published.Load()
	st.ControlDropped = w.dropped.Load()
	st.ControlErrors = w.errCount.Load()
	return st
}

// ShardGauge is one shard queue's depth and totals: the part of ShardStats
// a caller polling every second needs, without its maps.
type ShardGauge struct {
	Bot        string
	Shard      int
	QueueDepth int
	Published  uint64
	Filtered   uint64 // every filter's count
}

// AppendGauges appends a ShardGauge per shard queue to dst (bot by bot, in
// no particular order) and returns it.
func (p *Publisher) AppendGauges(dst []ShardGauge) []ShardGauge {
	gauge := func(b *botState, sq *shardQueue) {
		g := ShardGauge{Bot: b.name, Shard: sq.shard, QueueDepth: sq.q.len(), Published: sq.published.Load()}
		for i := range sq.filtered {
			g.Filtered += sq.filtered[i].Load()
		}
		dst = append(dst, g)
	}
	for _, b := range *p.bots.Load() {
		for _, sq := range *b.shards.Load() {
			if sq != nil {
				gauge(b, sq)
			}
		}
		for _, sq := range *b.staged.Load() {
			gauge(b, sq)
		}
	}
	return dst
}
