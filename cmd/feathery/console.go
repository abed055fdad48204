package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// The operations console: GET /api/console is the fleet-wide view behind
// the dashboard, built from every live node's snapshot (nodestatus.go), the
// stream sampler (sampler.go) and the control stream; the POST routes are
// its admin actions, behind the token.

// consoleBackend is what the console routes need; the daemon implements
// it. An adminBackend without it (tests of admin.go) serves no console.
type consoleBackend interface {
	Console(ctx context.Context) consoleReport
	// ReconnectAnywhere reconnects a shard here or forwards the action to
	// the node that runs it.
	ReconnectAnywhere(ctx context.Context, bot string, shard int) (node string, forwarded bool, err error)
	// DrainNode drains node (this one or another, forwarded).
	DrainNode(ctx context.Context, node string) (code int, answer string, err error)
	cacheBackend
}

// route is one route of the console or the cache API; openapi.json
// documents each (TestOpenAPI_Routes).
type route struct {
	method, pattern string
	h               http.HandlerFunc
}

// consoleRoutes adds the console's and the cache API's routes to mux.
func (a *adminServer) consoleRoutes(mux *http.ServeMux) {
	cb, ok := a.backend.(consoleBackend)
	if !ok {
		return
	}
	for _, r := range a.apiRoutes(cb) {
		mux.HandleFunc(r.method+" "+r.pattern, r.h)
	}
	// No icon: an empty answer keeps the browser from logging a 404.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /api/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiJSON)
	})
}

func (a *adminServer) apiRoutes(cb consoleBackend) []route {
	rs := []route{
		{"GET", "/api/console", func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, cb.Console(r.Context()))
		}},
		{"POST", "/api/console/shards/{bot}/{id}/reconnect", a.requireToken(func(w http.ResponseWriter, r *http.Request) {
			bot := r.PathValue("bot")
			id, err := strconv.Atoi(r.PathValue("id"))
			if err != nil || id < 0 {
				writeJSON(w, http.StatusBadRequest, apiError{"shard id must be a non-negative integer"})
				return
			}
			node, fwd, err := cb.ReconnectAnywhere(r.Context(), bot, id)
			switch {
			case errors.Is(err, errNotFound):
				writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no live node runs shard %d of bot %q", id, bot)})
				return
			case err != nil:
				writeJSON(w, http.StatusServiceUnavailable, apiError{"reconnect failed: " + err.Error()})
				return
			}
			a.log.Info("shard reconnect requested from the console", "bot", bot, "shard", id, "node", node, "forwarded", fwd, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusAccepted, map[string]any{"bot": bot, "shard": id, "node": node, "forwarded": fwd, "reconnecting": true})
		})},
		{"POST", "/api/console/nodes/{node}/drain", a.requireToken(func(w http.ResponseWriter, r *http.Request) {
			node := r.PathValue("node")
			code, answer, err := cb.DrainNode(r.Context(), node)
			if err != nil {
				writeJSON(w, code, apiError{err.Error()})
				return
			}
			writeJSON(w, code, map[string]any{"node": node, "answer": answer})
		})},
	}
	return append(rs, a.cacheRoutes(cb)...)
}

// consoleReport is the body of GET /api/console.
type consoleReport struct {
	Node string    `json:"node"` // the node that answered
	At   time.Time `json:"at"`
	// Problems are what an operator should look at now, worst first.
	Problems        []string         `json:"problems"`
	Nodes           []consoleNode    `json:"nodes"`
	Bots            []consoleBot     `json:"bots"`
	Shards          []consoleShard   `json:"shards"`
	EventsPerSecond float64          `json:"events_per_second"`
	History         []float64        `json:"history"` // fleet events/s, one a second, the last one now
	Streams         []streamInfo     `json:"streams"`
	StreamsAt       time.Time        `json:"streams_at"`
	Redis           redisHealth      `json:"redis"`
	Control         []controlRow     `json:"control"`
	Commands        []consoleCommand `json:"commands"`
	Errors          []string         `json:"errors,omitempty"`
	Features        map[string]bool  `json:"features"`
}

type consoleNode struct {
	Node            string    `json:"node"`
	Host            string    `json:"host"`
	PID             int       `json:"pid"`
	Version         string    `json:"version"`
	StartedAt       time.Time `json:"started_at"`
	At              time.Time `json:"at"`
	RedisOK         bool      `json:"redis_ok"`
	EventsPerSecond float64   `json:"events_per_second"`
	Shards          int       `json:"shards"`
	Ready           int       `json:"ready"`
	Self            bool      `json:"self"`
}

type consoleBot struct {
	Name        string  `json:"name"`
	ShardCount  int     `json:"shard_count"`
	Running     int     `json:"running"`
	Ready       int     `json:"ready"`
	Identifying int     `json:"identifying"`
	Resuming    int     `json:"resuming"`
	Unowned     int     `json:"unowned"`
	ETASeconds  float64 `json:"eta_seconds"` // -1 unknown, 0 all ready
	ReadyIn     string  `json:"ready_in,omitempty"`
}

type consoleShard struct {
	shardCell
	Node string `json:"n"`
}

type consoleCommand struct {
	commandDone
	Node string `json:"node"`
}

// controlRow is one recent entry of the control stream.
type controlRow struct {
	ID      string `json:"id"`
	At      int64  `json:"at"` // unix ms
	Kind    string `json:"kind"`
	Bot     string `json:"bot"`
	Shard   string `json:"shard"`
	State   string `json:"state,omitempty"`
	Session string `json:"session,omitempty"`
	Seq     string `json:"seq,omitempty"`
	Err     string `json:"err,omitempty"`
}

// initConsole builds the metrics, the sampler and the node status; the
// Redis client exists.
func (d *daemon) initConsole() {
	d.metrics = newMetrics(d)
	d.sampler = newSampler(d.redis.Redis(), d.cfg, 2*time.Second)
	d.status = newNodeStatus(d, d.log.With("component", "console"))
}

// startConsole runs the sampler and the node status until ctx ends (owned
// by d.wg).
func (d *daemon) startConsole(ctx context.Context) {
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		d.sampler.run(ctx)
	}()
	go func() {
		defer d.wg.Done()
		d.status.run(ctx)
	}()
}

// consoleControl counts gaps and fatal stops and marks shards that left
// ready.
func (d *daemon) consoleControl(ev gateway.ControlEvent) {
	d.status.onControl(ev)
	switch ev.Kind {
	case gateway.ControlGap:
		d.metrics.gaps.WithLabelValues(ev.Bot).Inc()
	case gateway.ControlFatal:
		d.metrics.fatal.WithLabelValues(ev.Bot).Inc()
	}
}

// Gatherer implements adminBackend.
func (d *daemon) Gatherer() prometheus.Gatherer { return d.metrics.reg }

// ReconnectAnywhere implements consoleBackend.
func (d *daemon) ReconnectAnywhere(ctx context.Context, bot string, shard int) (string, bool, error) {
	err := d.Reconnect(ctx, bot, shard)
	if err == nil || !errors.Is(err, errNotFound) {
		return d.status.id, false, err
	}
	for _, n := range d.status.fleetView(ctx).Nodes {
		if n.Node == d.status.id {
			continue
		}
		for _, c := range n.Shards {
			if c.Bot == bot && c.Shard == shard {
				if err := d.status.forward(ctx, n.Node, nodeCommand{Op: "reconnect", Bot: bot, Shard: shard}); err != nil {
					return n.Node, true, err
				}
				return n.Node, true, nil
			}
		}
	}
	return "", false, errNotFound
}

// DrainNode implements consoleBackend: this node's own drain endpoint, or
// the action forwarded to node.
func (d *daemon) DrainNode(ctx context.Context, node string) (int, string, error) {
	if node == d.status.id {
		code, answer := d.status.selfRequest(http.MethodPost, "/api/node/drain")
		if code == http.StatusNotFound || code == http.StatusMethodNotAllowed {
			return http.StatusNotImplemented, "", errors.New("not available: this build has no node drain (POST /api/node/drain)")
		}
		return code, answer, nil
	}
	for _, n := range d.status.fleetView(ctx).Nodes {
		if n.Node == node {
			if err := d.status.forward(ctx, node, nodeCommand{Op: "drain"}); err != nil {
				return http.StatusServiceUnavailable, "", err
			}
			return http.StatusAccepted, "forwarded to node " + node + "; its answer shows under recent actions", nil
		}
	}
	return http.StatusNotFound, "", fmt.Errorf("no live node %q", node)
}

// Console implements consoleBackend.
func (d *daemon) Console(ctx context.Context) consoleReport {
	now := time.Now()
	fv := d.status.fleetView(ctx)
	sample := d.sampler.last()
	r := consoleReport{
		Node: d.status.id, At: now, Errors: fv.Errors, Streams: sample.Streams, StreamsAt: sample.At,
		Redis: sample.Redis, History: make([]float64, historySeconds),
		Features: map[string]bool{"cache_api": true},
	}
	if sample.Error != "" {
		r.Errors = append(r.Errors, sample.Error)
	}
	bots := map[string]*consoleBot{}
	bot := func(name string) *consoleBot {
		b := bots[name]
		if b == nil {
			b = &consoleBot{Name: name}
			bots[name] = b
		}
		return b
	}
	for _, b := range d.cfg.Bots {
		bot(b.Name)
	}
	for _, n := range fv.Nodes {
		cn := consoleNode{Node: n.Node, Host: n.Host, PID: n.PID, Version: n.Version, StartedAt: n.StartedAt,
			At: n.At, RedisOK: n.RedisOK, EventsPerSecond: n.EventsPerSecond, Shards: len(n.Shards), Self: n.Node == d.status.id}
		for _, c := range n.Shards {
			if c.State == "ready" {
				cn.Ready++
			}
			r.Shards = append(r.Shards, consoleShard{shardCell: c, Node: n.Node})
		}
		r.Nodes = append(r.Nodes, cn)
		r.EventsPerSecond += n.EventsPerSecond
		// Align each node's history on its last second.
		off := len(r.History) - len(n.History)
		for i, v := range n.History {
			if off+i >= 0 {
				r.History[off+i] += v
			}
		}
		for name, p := range n.Progress {
			b := bot(name)
			b.Running += p.Total
			b.Ready += p.Ready
			b.Identifying += p.Identifying
			b.Resuming += p.Resuming
			if p.ETASeconds < 0 || b.ETASeconds < 0 {
				b.ETASeconds = -1
			} else {
				b.ETASeconds = max(b.ETASeconds, p.ETASeconds)
			}
			if p.ReadyIn != "" {
				b.ReadyIn = p.ReadyIn
			}
		}
		for name, c := range n.ShardCounts {
			b := bot(name)
			b.ShardCount = max(b.ShardCount, c)
		}
		for _, c := range n.Commands {
			r.Commands = append(r.Commands, consoleCommand{commandDone: c, Node: n.Node})
		}
	}
	for name, u := range fv.Unowned {
		bot(name).Unowned = u
	}
	for _, b := range bots {
		r.Bots = append(r.Bots, *b)
	}
	sort.Slice(r.Bots, func(i, j int) bool { return r.Bots[i].Name < r.Bots[j].Name })
	sort.Slice(r.Shards, func(i, j int) bool {
		if r.Shards[i].Bot != r.Shards[j].Bot {
			return r.Shards[i].Bot < r.Shards[j].Bot
		}
		return r.Shards[i].Shard < r.Shards[j].Shard
	})
	sort.Slice(r.Commands, func(i, j int) bool { return r.Commands[i].Done.After(r.Commands[j].Done) })
	r.Control, _ = d.recentControl(ctx)
	r.Problems = problemsOf(&r)
	return r
}

// recentControl reads the control stream's latest entries that matter: not
// the routine state changes (those are on the grid), but gaps, fatal
// stops, sessions identified and resumed, ownership changes, failures.
func (d *daemon) recentControl(ctx context.Context) ([]controlRow, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c := d.redis.Redis()
	key := broker.NewKeys(d.cfg.Redis.Prefix).Control()
	es, err := c.Do(ctx, c.B().Xrevrange().Key(key).End("+").Start("-").Count(500).Build()).AsXRange()
	if err != nil {
		return nil, fmt.Errorf("read control stream: %w", err)
	}
	var out []controlRow
	for _, e := range es {
		f := e.FieldValues
		row := controlRow{ID: e.ID, Kind: f["kind"], Bot: f["bot"], Shard: f["shard"], State: f["state"],
			Session: f["session"], Err: f["err"], Seq: f["seq"]}
		if row.Seq == "" {
			row.Seq = f["last_seq"]
		}
		row.At, _ = strconv.ParseInt(f["at"], 10, 64)
		if row.Kind == string(broker.ControlState) && row.State != "failed" {
			continue
		}
		out = append(out, row)
		if len(out) == 40 {
			break
		}
	}
	return out, nil
}

var _ = rueidis.Nil // the control stream reader uses rueidis replies

// problemsOf lists what looks wrong, in words, worst first.
func problemsOf(r *consoleReport) []string {
	var p []string
	if !r.Redis.OK {
		msg := "Redis is down"
		if r.Redis.Error != "" {
			msg += ": " + r.Redis.Error
		}
		p = append(p, msg)
	}
	p = append(p, r.Redis.Problems...)
	if len(r.Nodes) == 0 {
		p = append(p, "no live node has written its status in the last few seconds")
	}
	failed := 0
	for _, s := range r.Shards {
		if s.State == "failed" {
			failed++
		}
	}
	if failed > 0 {
		p = append(p, fmt.Sprintf("%d shards failed for good (see their last error)", failed))
	}
	for _, b := range r.Bots {
		if b.Unowned > 0 {
			p = append(p, fmt.Sprintf("bot %s: %d of %d shards are run by no live node", b.Name, b.Unowned, b.ShardCount))
		}
		if nr := b.Running - b.Ready; nr > 0 {
			p = append(p, fmt.Sprintf("bot %s: %d of %d shards not ready", b.Name, nr, b.Running))
		}
	}
	for _, s := range r.Streams {
		for _, g := range s.Groups {
			if g.LagPerSecond > 0 && g.Lag != nil && *g.Lag > 0 {
				p = append(p, fmt.Sprintf("group %s of stream %s is falling behind: lag %d, +%.0f/s", g.Name, s.Key, *g.Lag, g.LagPerSecond))
			}
		}
	}
	for _, c := range r.Control {
		if c.Kind == string(broker.ControlGap) && time.Since(time.UnixMilli(c.At)) < 15*time.Minute {
			p = append(p, fmt.Sprintf("gap: bot %s shard %s lost session %s after seq %s", c.Bot, c.Shard, c.Session, c.Seq))
		}
	}
	return p
}
