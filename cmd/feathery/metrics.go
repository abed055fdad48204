package main

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// Metrics: every family is summed by bot, never labelled by shard, so the
// series count does not grow with the shard count (1,000 or 10,000 shards
// give the same families and labels). The labels are:
//
//	bot     a bot name from the config (few)
//	state   a shard state (8 values)
//	code    a gateway close code (Discord's 4000–4014, 1000/1001, a few more)
//	filter  a filter name (7 values)
//	stream, group  the configured streams and their consumer groups
//
// A shard's own figures (state, latency, last error, counters) are on the
// dashboard and in GET /api/status, which are made for per-shard detail.
// Fleet gauges (feathery_fleet_*) are the fleet's view from Redis: every
// node reports the same value, so aggregate them with max(), not sum().

// metrics are feathery's Prometheus metrics. The event-driven ones are
// counted here; the rest is read from the gateway, publisher, cache and
// samplers when scraped (daemonCollector).
type metrics struct {
	reg *prometheus.Registry

	closeCodes      *prometheus.CounterVec
	invalidSessions *prometheus.CounterVec
	gaps            *prometheus.CounterVec
	fatal           *prometheus.CounterVec

	batchSeconds *prometheus.HistogramVec
	redisSeconds *prometheus.HistogramVec
	eventAge     *prometheus.HistogramVec
	batchSize    *prometheus.HistogramVec

	perBot sync.Map // bot -> *botObservers, resolved once
}

// botObservers are one bot's histograms, resolved once.
type botObservers struct {
	batch, redis, age, size prometheus.Observer
}

// newMetrics builds the registry: Go runtime and process collectors, the
// event counters and histograms, and d's collector (nil in tests of the
// families alone).
func newMetrics(d *daemon) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.closeCodes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feathery_gateway_close_codes_total",
		Help: "Gateway connections the gateway closed, by bot and close code.",
	}, []string{"bot", "code"})
	m.invalidSessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feathery_gateway_invalid_sessions_total",
		Help: "INVALID_SESSION received, by bot and whether it was resumable.",
	}, []string{"bot", "resumable"})
	m.gaps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feathery_gaps_total",
		Help: "Sessions dropped without RESUME (a gap control event: events after the last published seq were not replayed).",
	}, []string{"bot"})
	m.fatal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "feathery_shard_fatal_total",
		Help: "Shards stopped for good by a fatal close code or error.",
	}, []string{"bot"})
	latencyBuckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	m.batchSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "feathery_publish_batch_seconds",
		Help:    "Time from a batch taken off a shard's queue to its checkpoint (cache scripts, publish script and retries).",
		Buckets: latencyBuckets,
	}, []string{"bot"})
	m.redisSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "feathery_redis_roundtrip_seconds",
		Help:    "Round trip of the publish script call to Redis.",
		Buckets: latencyBuckets,
	}, []string{"bot"})
	m.eventAge = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "feathery_event_age_at_publish_seconds",
		Help:    "Time from receiving a dispatch from Discord to its entry on the stream.",
		Buckets: latencyBuckets,
	}, []string{"bot"})
	m.batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "feathery_publish_batch_events",
		Help:    "Events in one publish script call.",
		Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
	}, []string{"bot"})
	m.reg.MustRegister(m.closeCodes, m.invalidSessions, m.gaps, m.fatal,
		m.batchSeconds, m.redisSeconds, m.eventAge, m.batchSize)
	if d != nil {
		m.reg.MustRegister(daemonCollector{d})
		for _, b := range d.cfg.Bots {
			// Every bot's series exist from the start (alerts on rate()
			// need a zero to begin with).
			m.bot(b.Name)
			m.gaps.WithLabelValues(b.Name)
			m.fatal.WithLabelValues(b.Name)
			m.invalidSessions.WithLabelValues(b.Name, "true")
			m.invalidSessions.WithLabelValues(b.Name, "false")
		}
	}
	return m
}

func (m *metrics) bot(name string) *botObservers {
	if o, ok := m.perBot.Load(name); ok {
		return o.(*botObservers)
	}
	o, _ := m.perBot.LoadOrStore(name, &botObservers{
		batch: m.batchSeconds.WithLabelValues(name),
		redis: m.redisSeconds.WithLabelValues(name),
		age:   m.eventAge.WithLabelValues(name),
		size:  m.batchSize.WithLabelValues(name),
	})
	return o.(*botObservers)
}

// Batch implements broker.PublishObserver.
func (m *metrics) Batch(bot string, events int, took, redis time.Duration) {
	o := m.bot(bot)
	o.batch.Observe(took.Seconds())
	o.redis.Observe(redis.Seconds())
	o.size.Observe(float64(events))
}

// EventAge implements broker.PublishObserver.
func (m *metrics) EventAge(bot string, age time.Duration) {
	m.bot(bot).age.Observe(age.Seconds())
}

// connectionEnd counts close codes and invalid sessions
// (gateway.ManagerConfig.OnConnectionEnd).
func (m *metrics) connectionEnd(e gateway.ConnectionEnd) {
	switch {
	case e.CloseCode != 0:
		m.closeCodes.WithLabelValues(e.Bot, strconv.Itoa(e.CloseCode)).Inc()
	case e.InvalidSession:
		m.invalidSessions.WithLabelValues(e.Bot, strconv.FormatBool(e.Resumable)).Inc()
	}
}

var _ broker.PublishObserver = (*metrics)(nil)

// daemonCollector reads the daemon's state when scraped.
type daemonCollector struct{ d *daemon }

var (
	descShards      = prometheus.NewDesc("feathery_shards", "Shards of this node by state.", []string{"bot", "state"}, nil)
	descIdentifies  = prometheus.NewDesc("feathery_shard_identifies_total", "IDENTIFYs sent by this node's shards.", []string{"bot"}, nil)
	descResumes     = prometheus.NewDesc("feathery_shard_resumes_total", "Sessions resumed by this node's shards.", []string{"bot"}, nil)
	descReconnects  = prometheus.NewDesc("feathery_shard_reconnects_total", "Connections this node's shards lost and re-opened.", []string{"bot"}, nil)
	descEvents      = prometheus.NewDesc("feathery_shard_events_total", "Dispatches received by this node's shards.", []string{"bot"}, nil)
	descLatencyMax  = prometheus.NewDesc("feathery_shard_latency_max_seconds", "Highest heartbeat → ACK round trip among this node's ready shards.", []string{"bot"}, nil)
	descLatencyMean = prometheus.NewDesc("feathery_shard_latency_mean_seconds", "Mean heartbeat → ACK round trip of this node's ready shards.", []string{"bot"}, nil)
	descQueueDepth  = prometheus.NewDesc("feathery_publisher_queue_depth", "Events waiting in this node's publish queues (sum over shards).", []string{"bot"}, nil)
	descQueueMax    = prometheus.NewDesc("feathery_publisher_queue_depth_max", "Fullest publish queue of a shard of this node (events).", []string{"bot"}, nil)
	descPublished   = prometheus.NewDesc("feathery_publisher_published_total", "Stream entries added.", []string{"bot"}, nil)
	descDuplicates  = prometheus.NewDesc("feathery_publisher_duplicates_total", "Replayed events skipped because their seq was already checkpointed.", []string{"bot"}, nil)
	descBatches     = prometheus.NewDesc("feathery_publisher_batches_total", "Publish script calls.", []string{"bot"}, nil)
	descPubErrors   = prometheus.NewDesc("feathery_publisher_errors_total", "Failed publish attempts (each retried).", []string{"bot"}, nil)
	descFiltered    = prometheus.NewDesc("feathery_filter_dropped_total", "Events dropped by each filter.", []string{"bot", "filter"}, nil)
	descCtlPub      = prometheus.NewDesc("feathery_control_published_total", "Control stream entries written.", nil, nil)
	descCtlDrop     = prometheus.NewDesc("feathery_control_dropped_total", "Control events dropped while the control queue was full.", nil, nil)
	descCacheEvents = prometheus.NewDesc("feathery_cache_events_total", "Events that changed the cache.", nil, nil)
	descCacheSkip   = prometheus.NewDesc("feathery_cache_skipped_total", "Events whose payload the cache could not read.", nil, nil)
	descRedisUp     = prometheus.NewDesc("feathery_redis_up", "Whether Redis answered PING.", nil, nil)
	descUptime      = prometheus.NewDesc("feathery_uptime_seconds", "Seconds since feathery started.", nil, nil)
	descBuild       = prometheus.NewDesc("feathery_build_info", "Always 1; the version is the label.", []string{"version"}, nil)
	descStreamLen   = prometheus.NewDesc("feathery_stream_length", "Entries in the stream (XLEN, sampled).", []string{"bot", "stream"}, nil)
	descGroupLag    = prometheus.NewDesc("feathery_stream_group_lag", "Entries of the stream not yet delivered to the consumer group (XINFO GROUPS lag, sampled).", []string{"bot", "stream", "group"}, nil)
	descGroupPend   = prometheus.NewDesc("feathery_stream_group_pending", "Entries delivered to the group and not acknowledged (XINFO GROUPS pending, sampled).", []string{"bot", "stream", "group"}, nil)
	descSampleAge   = prometheus.NewDesc("feathery_stream_sample_age_seconds", "Age of the last successful stream sample.", nil, nil)
	descFleetNodes  = prometheus.NewDesc("feathery_fleet_nodes", "Live nodes that wrote their status to Redis in the last few seconds (the same on every node: aggregate with max).", nil, nil)
	descUnowned     = prometheus.NewDesc("feathery_fleet_unowned_shards", "Shards of the bot no live node runs (the same on every node: aggregate with max).", []string{"bot"}, nil)
)

func (c daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descShards, descIdentifies, descResumes, descReconnects, descEvents,
		descLatencyMax, descLatencyMean, descQueueDepth, descQueueMax, descPublished, descDuplicates, descBatches,
		descPubErrors, descFiltered, descCtlPub, descCtlDrop, descCacheEvents, descCacheSkip, descRedisUp,
		descUptime, descBuild, descStreamLen, descGroupLag, descGroupPend, descSampleAge, descFleetNodes, descUnowned} {
		ch <- d
	}
}

type botSums struct {
	states                                    [8]float64
	identifies, resumes, reconnects, events   float64
	latMax, latSum                            float64
	ready                                     int
	depth, depthMax, published, dups, batches float64
	errs                                      float64
	filtered                                  map[string]float64
}

func (c daemonCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	bots := map[string]*botSums{}
	get := func(bot string) *botSums {
		b := bots[bot]
		if b == nil {
			b = &botSums{filtered: map[string]float64{}}
			bots[bot] = b
		}
		return b
	}
	for _, b := range d.cfg.Bots {
		get(b.Name)
	}
	for _, s := range d.mgr.Status() {
		b := get(s.Bot)
		if st := int(s.State); st >= 0 && st < len(b.states) {
			b.states[st]++
		}
		b.identifies += float64(s.Identifies)
		b.resumes += float64(s.Resumes)
		b.reconnects += float64(s.Reconnects)
		b.events += float64(s.Events)
		if s.State == gateway.StateReady && s.Latency > 0 {
			b.ready++
			b.latSum += s.Latency.Seconds()
			b.latMax = max(b.latMax, s.Latency.Seconds())
		}
	}
	ps := d.pub.Stats()
	for _, s := range ps.Shards {
		b := get(s.Bot)
		b.depth += float64(s.QueueDepth)
		b.depthMax = max(b.depthMax, float64(s.QueueDepth))
		b.published += float64(s.Published)
		b.dups += float64(s.Duplicates)
		b.batches += float64(s.Batches)
		b.errs += float64(s.Errors)
		for k, v := range s.Filtered {
			b.filtered[k] += float64(v)
		}
	}
	names := make([]string, 0, len(bots))
	for n := range bots {
		names = append(names, n)
	}
	sort.Strings(names)
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	for _, n := range names {
		b := bots[n]
		for st, v := range b.states {
			ch <- prometheus.MustNewConstMetric(descShards, gauge, v, n, gateway.State(st).String())
		}
		ch <- prometheus.MustNewConstMetric(descIdentifies, counter, b.identifies, n)
		ch <- prometheus.MustNewConstMetric(descResumes, counter, b.resumes, n)
		ch <- prometheus.MustNewConstMetric(descReconnects, counter, b.reconnects, n)
		ch <- prometheus.MustNewConstMetric(descEvents, counter, b.events, n)
		mean := 0.0
		if b.ready > 0 {
			mean = b.latSum / float64(b.ready)
		}
		ch <- prometheus.MustNewConstMetric(descLatencyMax, gauge, b.latMax, n)
		ch <- prometheus.MustNewConstMetric(descLatencyMean, gauge, mean, n)
		ch <- prometheus.MustNewConstMetric(descQueueDepth, gauge, b.depth, n)
		ch <- prometheus.MustNewConstMetric(descQueueMax, gauge, b.depthMax, n)
		ch <- prometheus.MustNewConstMetric(descPublished, counter, b.published, n)
		ch <- prometheus.MustNewConstMetric(descDuplicates, counter, b.dups, n)
		ch <- prometheus.MustNewConstMetric(descBatches, counter, b.batches, n)
		ch <- prometheus.MustNewConstMetric(descPubErrors, counter, b.errs, n)
		for f, v := range b.filtered {
			ch <- prometheus.MustNewConstMetric(descFiltered, counter, v, n, f)
		}
	}
	ch <- prometheus.MustNewConstMetric(descCtlPub, counter, float64(ps.ControlPublished))
	ch <- prometheus.MustNewConstMetric(descCtlDrop, counter, float64(ps.ControlDropped))
	if d.cache != nil {
		cs := d.cache.Stats()
		ch <- prometheus.MustNewConstMetric(descCacheEvents, counter, float64(cs.Events))
		ch <- prometheus.MustNewConstMetric(descCacheSkip, counter, float64(cs.Skipped))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 0.0
	if d.redisStatus(ctx).OK {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descRedisUp, gauge, up)
	ch <- prometheus.MustNewConstMetric(descUptime, gauge, time.Since(d.started).Seconds())
	ch <- prometheus.MustNewConstMetric(descBuild, gauge, 1, version())

	sample := d.sampler.last()
	for _, s := range sample.Streams {
		ch <- prometheus.MustNewConstMetric(descStreamLen, gauge, float64(s.Length), s.Bot, s.Stream)
		for _, g := range s.Groups {
			if g.Lag != nil {
				ch <- prometheus.MustNewConstMetric(descGroupLag, gauge, float64(*g.Lag), s.Bot, s.Stream, g.Name)
			}
			ch <- prometheus.MustNewConstMetric(descGroupPend, gauge, float64(g.Pending), s.Bot, s.Stream, g.Name)
		}
	}
	if !sample.At.IsZero() {
		ch <- prometheus.MustNewConstMetric(descSampleAge, gauge, time.Since(sample.At).Seconds())
	}
	fleet := d.status.fleet()
	ch <- prometheus.MustNewConstMetric(descFleetNodes, gauge, float64(fleet.Nodes))
	for _, n := range names {
		ch <- prometheus.MustNewConstMetric(descUnowned, gauge, float64(fleet.Unowned[n]), n)
	}
}
