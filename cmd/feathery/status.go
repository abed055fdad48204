package main

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// statusReport is the body of GET /api/status.
type statusReport struct {
	Version         string      `json:"version"`
	StartedAt       time.Time   `json:"started_at"`
	Uptime          string      `json:"uptime"`
	EventsPerSecond float64     `json:"events_per_second"`
	Published       int64       `json:"published"`
	Filtered        int64       `json:"filtered"`
	Redis           redisStatus `json:"redis"`
	Shards          []shardRow  `json:"shards"`
	// Filters counts what each filter dropped, over every shard.
	Filters map[string]int64 `json:"filters"`
	// Publisher is the broker's own statistics.
	Publisher any `json:"publisher"`
	// Cache counts what the cache writer did; absent when the cache is off.
	Cache *broker.CacheStats `json:"cache,omitempty"`
	// Resharding lists the live re-shards in progress (their new sets'
	// shards are among Shards, with the new shard_count).
	Resharding []gateway.ReshardStatus `json:"resharding,omitempty"`
}

type redisStatus struct {
	Mode  string `json:"mode"` // embedded, url or cluster
	Addr  string `json:"addr"` // never with credentials
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// shardRow is one shard in the status report.
type shardRow struct {
	Bot        string  `json:"bot"`
	Shard      int     `json:"shard"`
	ShardCount int     `json:"shard_count"`
	State      string  `json:"state"`
	Session    string  `json:"session,omitempty"`
	Seq        int64   `json:"seq"`
	LatencyMS  float64 `json:"latency_ms"`
	QueueDepth int     `json:"queue_depth"`
	Events     uint64  `json:"events"`
	Reconnects uint64  `json:"reconnects"`
	Resumes    uint64  `json:"resumes"`
	Identifies uint64  `json:"identifies"`
	Error      string  `json:"error,omitempty"`
}

func shardRowOf(s gateway.ShardStatus) shardRow {
	return shardRow{
		Bot:        s.Bot,
		Shard:      s.Shard,
		ShardCount: s.ShardCount,
		State:      s.State.String(),
		Session:    s.Session,
		Seq:        s.Seq,
		LatencyMS:  float64(s.Latency) / float64(time.Millisecond),
		Events:     s.Events,
		Reconnects: s.Reconnects,
		Resumes:    s.Resumes,
		Identifies: s.Identifies,
		Error:      s.LastError,
	}
}

// rateMeter turns a growing counter into a per-second rate, sampled once a
// second by run.
type rateMeter struct {
	mu   sync.Mutex
	last float64
}

func (m *rateMeter) run(ctx context.Context, total func() uint64) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	prev, prevAt := total(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur := total()
			r := (float64(cur) - float64(prev)) / now.Sub(prevAt).Seconds()
			m.mu.Lock()
			m.last = r
			m.mu.Unlock()
			prev, prevAt = cur, now
		}
	}
}

func (m *rateMeter) rate() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

func itoa(i int) string { return strconv.Itoa(i) }

// publisherTotals sums the publisher's per-shard counters.
func publisherTotals(ps broker.PublisherStats) (published, filtered int64, byFilter map[string]int64) {
	byFilter = map[string]int64{}
	for _, s := range ps.Shards {
		published += int64(s.Published)
		for k, v := range s.Filtered {
			byFilter[k] += int64(v)
			filtered += int64(v)
		}
	}
	return published, filtered, byFilter
}
