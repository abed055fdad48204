package main

import (
	"context"
	"sort"
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

// WriteMetrics implements adminBackend.
func (d *daemon) WriteMetrics(ctx context.Context, w *metricsWriter) {
	shards := d.mgr.Status()
	var state, seq, latency, events, reconnects []sample
	for _, s := range shards {
		l := []string{"bot", s.Bot, "shard", itoa(s.Shard)}
		state = append(state, smp(1, append(l, "state", s.State.String())...))
		seq = append(seq, smp(float64(s.Seq), l...))
		latency = append(latency, smp(s.Latency.Seconds(), l...))
		events = append(events, smp(float64(s.Events), l...))
		reconnects = append(reconnects, smp(float64(s.Reconnects), l...))
	}
	w.family("feathery_shard_state", "gauge", "Shard state (1 for the current state).", state...)
	w.family("feathery_shard_seq", "gauge", "Last gateway sequence number of the shard.", seq...)
	w.family("feathery_shard_latency_seconds", "gauge", "Heartbeat round-trip time of the shard.", latency...)
	w.family("feathery_shard_events_total", "counter", "Dispatches received by the shard.", events...)
	w.family("feathery_shard_reconnects_total", "counter", "Connections the shard lost and re-opened.", reconnects...)
	d.writePublisherMetrics(w)
	if d.cache != nil {
		cs := d.cache.Stats()
		w.family("feathery_cache_events_total", "counter", "Events that changed the cache.", smp(float64(cs.Events)))
		w.family("feathery_cache_skipped_total", "counter", "Events whose payload the cache could not read.", smp(float64(cs.Skipped)))
	}
	up := 0.0
	if d.redisStatus(ctx).OK {
		up = 1
	}
	w.family("feathery_redis_up", "gauge", "Whether Redis answered PING.", smp(up))
	w.family("feathery_uptime_seconds", "gauge", "Seconds since feathery started.", smp(time.Since(d.started).Seconds()))
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

func (d *daemon) writePublisherMetrics(w *metricsWriter) {
	ps := d.pub.Stats()
	var depth, capacity, accepted, published, dups, batches, errs, filtered []sample
	for _, s := range ps.Shards {
		l := []string{"bot", s.Bot, "shard", itoa(s.Shard)}
		depth = append(depth, smp(float64(s.QueueDepth), l...))
		capacity = append(capacity, smp(float64(s.QueueCap), l...))
		accepted = append(accepted, smp(float64(s.Accepted), l...))
		published = append(published, smp(float64(s.Published), l...))
		dups = append(dups, smp(float64(s.Duplicates), l...))
		batches = append(batches, smp(float64(s.Batches), l...))
		errs = append(errs, smp(float64(s.Errors), l...))
		names := make([]string, 0, len(s.Filtered))
		for k := range s.Filtered {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			filtered = append(filtered, smp(float64(s.Filtered[k]), append(l, "filter", k)...))
		}
	}
	w.family("feathery_publisher_queue_depth", "gauge", "Events waiting in the shard's publish queue.", depth...)
	w.family("feathery_publisher_queue_capacity", "gauge", "Capacity of the shard's publish queue.", capacity...)
	w.family("feathery_publisher_accepted_total", "counter", "Events the publisher accepted from the shard.", accepted...)
	w.family("feathery_publisher_published_total", "counter", "Stream entries added for the shard.", published...)
	w.family("feathery_publisher_duplicates_total", "counter", "Replayed events skipped because their seq was already checkpointed.", dups...)
	w.family("feathery_publisher_batches_total", "counter", "Publish script calls.", batches...)
	w.family("feathery_publisher_errors_total", "counter", "Failed publish attempts (each retried).", errs...)
	w.family("feathery_filter_dropped_total", "counter", "Events dropped by each filter.", filtered...)
	w.family("feathery_control_published_total", "counter", "Control stream entries written.", smp(float64(ps.ControlPublished)))
	w.family("feathery_control_dropped_total", "counter", "Control events dropped while the control queue was full.", smp(float64(ps.ControlDropped)))
}
