package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// Every node writes its own status snapshot to Redis once a second
// (Keys.NodeStatus, a JSON string that expires after nodeStatusTTL) and
// indexes it (Keys.NodeIndex). Any node's dashboard reads every live node's
// snapshot, so the page shows the whole fleet whichever node serves it.
// Admin actions aimed at a shard or node elsewhere go through that node's
// command list (Keys.NodeCommands), read by its status loop.

const (
	nodeStatusTTL   = 5 * time.Second
	historySeconds  = 15 * 60
	maxCommandsKept = 10
)

// nodeSnapshot is one node's status as stored in Redis.
type nodeSnapshot struct {
	Node      string    `json:"node"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Version   string    `json:"version"`
	Admin     string    `json:"admin,omitempty"`
	StartedAt time.Time `json:"started_at"`
	At        time.Time `json:"at"`
	RedisOK   bool      `json:"redis_ok"`
	// EventsPerSecond is the last second's rate; History the rates of up
	// to the last 15 minutes, one a second, the last one at At.
	EventsPerSecond float64   `json:"events_per_second"`
	History         []float64 `json:"history"`
	Published       int64     `json:"published"`
	Filtered        int64     `json:"filtered"`
	// Progress is each bot's start-up progress on this node.
	Progress map[string]botProgress `json:"progress"`
	// ShardCounts is each bot's total shard count (for unowned shards).
	ShardCounts map[string]int `json:"shard_counts"`
	Shards      []shardCell    `json:"shards"`
	Commands    []commandDone  `json:"commands,omitempty"`
}

// shardCell is one shard in a snapshot, with short names: a node with
// thousands of shards writes this every second.
type shardCell struct {
	Bot        string  `json:"b"`
	Shard      int     `json:"s"`
	State      string  `json:"st"`
	LatencyMS  float64 `json:"lat"`
	Seq        int64   `json:"seq"`
	Events     uint64  `json:"ev"`
	Queue      int     `json:"q"`
	Reconnects uint64  `json:"rc"`
	Resumes    uint64  `json:"rs"`
	Identifies uint64  `json:"id"`
	Error      string  `json:"err,omitempty"`
	// Changed is when the shard last left "ready" (unix ms), 0 if never.
	Changed int64 `json:"chg,omitempty"`
}

// nodeCommand is an admin action forwarded to a node through Redis.
type nodeCommand struct {
	Op    string    `json:"op"` // reconnect or drain
	Bot   string    `json:"bot,omitempty"`
	Shard int       `json:"shard,omitempty"`
	From  string    `json:"from"`
	At    time.Time `json:"at"`
}

// commandDone is a forwarded action's outcome, shown on the dashboard.
type commandDone struct {
	nodeCommand
	Code   int    `json:"code"`
	Answer string `json:"answer"`
	Done   time.Time
}

// fleetView is every live node's snapshot.
type fleetView struct {
	At      time.Time      `json:"at"`
	Nodes   []nodeSnapshot `json:"nodes"`
	Errors  []string       `json:"errors,omitempty"`
	Unowned map[string]int `json:"unowned"`
}

// fleetSummary is what the metrics need of the fleet view.
type fleetSummary struct {
	Nodes   int
	Unowned map[string]int
}

// nodeStatus writes this node's snapshot and reads the fleet's.
type nodeStatus struct {
	d    *daemon
	id   string
	host string
	keys broker.Keys
	c    rueidis.Client
	log  *slog.Logger
	prog *progress

	mu        sync.Mutex
	history   []float64
	lastEv    uint64
	lastAt    time.Time
	changed   map[shardKey]int64         // when the shard last left ready, unix ms
	state     map[shardKey]gateway.State // the shard's last state
	commands  []commandDone
	fleetAt   time.Time
	fleetLast fleetView
	fleetMu   sync.Mutex // serialises fleet reads

	// Reused by every tick (the run goroutine's): a node with thousands
	// of shards builds its snapshot every second.
	status []gateway.ShardStatus
	gauges []broker.ShardGauge
	queue  map[shardKey]int
	cells  []shardCell
	buf    bytes.Buffer
}

type shardKey struct {
	bot   string
	shard int
}

// nodeID is node.id or host name and pid.
func nodeID(cfg *Config) string {
	if cfg.Node.ID != "" {
		return cfg.Node.ID
	}
	h, _ := os.Hostname()
	h = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, h)
	if h == "" {
		h = "node"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}

func newNodeStatus(d *daemon, log *slog.Logger) *nodeStatus {
	host, _ := os.Hostname()
	return &nodeStatus{
		d: d, id: nodeID(d.cfg), host: host, keys: broker.NewKeys(d.cfg.Redis.Prefix),
		c: d.redis.Redis(), log: log, prog: newProgress(log, 5*time.Second),
		changed: map[shardKey]int64{}, state: map[shardKey]gateway.State{},
	}
}

// onControl records when a shard left ready (the dashboard marks it).
func (n *nodeStatus) onControl(ev gateway.ControlEvent) {
	if ev.Kind != gateway.ControlState {
		return
	}
	k := shardKey{ev.Bot, ev.Shard}
	n.mu.Lock()
	if n.state[k] == gateway.StateReady && ev.State != gateway.StateReady {
		n.changed[k] = ev.At.UnixMilli()
	}
	n.state[k] = ev.State
	n.mu.Unlock()
}

// run writes the snapshot every second until ctx ends.
func (n *nodeStatus) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			n.remove()
			return
		case now := <-t.C:
			n.tick(ctx, now)
		}
	}
}

// tick writes one snapshot and runs the commands forwarded to this node.
func (n *nodeStatus) tick(ctx context.Context, now time.Time) {
	snap := n.snapshot(now)
	n.buf.Reset()
	if err := json.NewEncoder(&n.buf).Encode(snap); err != nil {
		n.log.Error("encode node status", "err", err)
		return
	}
	b := bytes.TrimSuffix(n.buf.Bytes(), []byte("\n"))
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c := n.c
	res := c.DoMulti(wctx,
		c.B().Set().Key(n.keys.NodeStatus(n.id)).Value(rueidis.BinaryString(b)).Px(nodeStatusTTL).Build(),
		c.B().Zadd().Key(n.keys.NodeIndex()).ScoreMember().ScoreMember(float64(now.UnixMilli()), n.id).Build(),
		c.B().Zremrangebyscore().Key(n.keys.NodeIndex()).Min("-inf").Max(strconv.FormatInt(now.Add(-time.Minute).UnixMilli(), 10)).Build(),
		c.B().Lpop().Key(n.keys.NodeCommands(n.id)).Count(16).Build(),
	)
	for _, r := range res[:3] {
		if err := r.Error(); err != nil {
			// A command that timed out may still sit in the client's
			// queue, its value viewing n.buf: leave that buffer to it.
			n.buf = bytes.Buffer{}
			n.log.Debug("write node status", "err", err) // Redis down: the dashboard says so
			return
		}
	}
	cmds, err := res[3].AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		n.log.Debug("read node commands", "err", err)
	}
	for _, raw := range cmds {
		n.runCommand(ctx, raw)
	}
}

// snapshot builds this node's status and advances the progress log. The
// snapshot's Shards share the node's reused cells: it is valid until the
// next call.
func (n *nodeStatus) snapshot(now time.Time) nodeSnapshot {
	d := n.d
	n.status = d.mgr.AppendStatus(n.status[:0])
	shards := n.status
	n.prog.update(now, d.started, shards)
	n.gauges = d.pub.AppendGauges(n.gauges[:0])
	if n.queue == nil {
		n.queue = map[shardKey]int{}
	}
	queue := n.queue
	clear(queue)
	var published, filtered uint64
	for _, g := range n.gauges {
		queue[shardKey{g.Bot, g.Shard}] = g.QueueDepth
		published += g.Published
		filtered += g.Filtered
	}
	var total uint64
	snap := nodeSnapshot{
		Node: n.id, Host: n.host, PID: os.Getpid(), Version: version(), StartedAt: d.started, At: now,
		Progress: n.prog.snapshot(), ShardCounts: map[string]int{},
		Shards: n.cells[:0],
	}
	if d.admin != nil {
		snap.Admin = d.admin.Addr()
	}
	n.mu.Lock()
	for _, s := range shards {
		total += s.Events
		k := shardKey{s.Bot, s.Shard}
		snap.Shards = append(snap.Shards, shardCell{
			Bot: s.Bot, Shard: s.Shard, State: s.State.String(),
			LatencyMS: float64(s.Latency.Microseconds()) / 1000, Seq: s.Seq, Events: s.Events,
			Queue: queue[k], Reconnects: s.Reconnects, Resumes: s.Resumes, Identifies: s.Identifies,
			Error: s.LastError, Changed: n.changed[k],
		})
		if s.ShardCount > snap.ShardCounts[s.Bot] {
			snap.ShardCounts[s.Bot] = s.ShardCount
		}
	}
	rate := 0.0
	if !n.lastAt.IsZero() && total >= n.lastEv {
		rate = float64(total-n.lastEv) / now.Sub(n.lastAt).Seconds()
	}
	n.lastEv, n.lastAt = total, now
	n.history = append(n.history, rate)
	if len(n.history) > historySeconds {
		n.history = n.history[len(n.history)-historySeconds:]
	}
	snap.History = append([]float64(nil), n.history...)
	snap.EventsPerSecond = rate
	snap.Commands = append([]commandDone(nil), n.commands...)
	n.mu.Unlock()
	n.cells = snap.Shards
	snap.RedisOK = d.sampler.last().Redis.OK
	snap.Published, snap.Filtered = int64(published), int64(filtered)
	return snap
}

// remove deletes the snapshot when the node stops, so the fleet view
// drops it at once.
func (n *nodeStatus) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c := n.c
	c.DoMulti(ctx,
		c.B().Del().Key(n.keys.NodeStatus(n.id)).Build(),
		c.B().Zrem().Key(n.keys.NodeIndex()).Member(n.id).Build(),
	)
}

// forward queues cmd for node id.
func (n *nodeStatus) forward(ctx context.Context, id string, cmd nodeCommand) error {
	cmd.From, cmd.At = n.id, time.Now()
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("encode command: %w", err)
	}
	c := n.c
	for _, r := range c.DoMulti(ctx,
		c.B().Rpush().Key(n.keys.NodeCommands(id)).Element(string(b)).Build(),
		c.B().Expire().Key(n.keys.NodeCommands(id)).Seconds(60).Build(),
	) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("forward %s to node %s: %w", cmd.Op, id, err)
		}
	}
	return nil
}

// runCommand runs a forwarded action and keeps its outcome for the
// dashboard. Whoever can write to Redis can already do far more than this,
// so a command carries no token.
func (n *nodeStatus) runCommand(ctx context.Context, raw string) {
	var cmd nodeCommand
	done := commandDone{Done: time.Now()}
	if err := json.Unmarshal([]byte(raw), &cmd); err != nil {
		done.Code, done.Answer = http.StatusBadRequest, "unreadable command: "+err.Error()
	} else {
		done.nodeCommand = cmd
		switch cmd.Op {
		case "reconnect":
			done.Code, done.Answer = http.StatusAccepted, "reconnecting"
			if err := n.d.Reconnect(ctx, cmd.Bot, cmd.Shard); err != nil {
				done.Code, done.Answer = http.StatusNotFound, err.Error()
				if !errors.Is(err, errNotFound) {
					done.Code = http.StatusInternalServerError
				}
			}
		case "drain":
			done.Code, done.Answer = n.selfRequest(http.MethodPost, "/api/node/drain")
		default:
			done.Code, done.Answer = http.StatusBadRequest, "unknown command "+strconv.Quote(cmd.Op)
		}
	}
	n.log.Info("ran forwarded admin action", "op", done.Op, "bot", done.Bot, "shard", done.Shard, "from", done.From, "code", done.Code)
	n.mu.Lock()
	n.commands = append(n.commands, done)
	if len(n.commands) > maxCommandsKept {
		n.commands = n.commands[len(n.commands)-maxCommandsKept:]
	}
	n.mu.Unlock()
}

// selfRequest sends a request through this node's own admin API (with its
// token) and returns the status and body.
func (n *nodeStatus) selfRequest(method, path string) (int, string) {
	a := n.d.admin
	if a == nil {
		return http.StatusNotImplemented, "the admin API is off on this node"
	}
	req := httptest.NewRequest(method, path, nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	rec := httptest.NewRecorder()
	a.srv.Handler.ServeHTTP(rec, req)
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

// fleet reads every live node's snapshot, at most once a second.
func (n *nodeStatus) fleetView(ctx context.Context) fleetView {
	n.fleetMu.Lock()
	defer n.fleetMu.Unlock()
	if time.Since(n.fleetAt) < time.Second {
		return n.fleetLast
	}
	v := fleetView{At: time.Now(), Unowned: map[string]int{}}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c := n.c
	min := strconv.FormatInt(time.Now().Add(-nodeStatusTTL).UnixMilli(), 10)
	ids, err := c.Do(ctx, c.B().Zrangebyscore().Key(n.keys.NodeIndex()).Min(min).Max("+inf").Build()).AsStrSlice()
	if err != nil {
		v.Errors = append(v.Errors, "read node index: "+err.Error())
	}
	if len(ids) > 0 {
		cmds := make(rueidis.Commands, 0, len(ids))
		for _, id := range ids {
			cmds = append(cmds, c.B().Get().Key(n.keys.NodeStatus(id)).Build())
		}
		for i, r := range c.DoMulti(ctx, cmds...) {
			b, err := r.AsBytes()
			if rueidis.IsRedisNil(err) {
				continue // expired since the index was read
			}
			if err != nil {
				v.Errors = append(v.Errors, fmt.Sprintf("read status of node %s: %v", ids[i], err))
				continue
			}
			var s nodeSnapshot
			if err := json.Unmarshal(b, &s); err != nil {
				v.Errors = append(v.Errors, fmt.Sprintf("status of node %s is not a snapshot: %v", ids[i], err))
				continue
			}
			v.Nodes = append(v.Nodes, s)
		}
	}
	sort.Slice(v.Nodes, func(i, j int) bool { return v.Nodes[i].Node < v.Nodes[j].Node })
	// A shard is owned when a live node holds it in a state other than
	// stopped (a failed shard is held, and reported as failed).
	counts := map[string]int{}
	owned := map[shardKey]bool{}
	for _, s := range v.Nodes {
		for bot, c := range s.ShardCounts {
			counts[bot] = max(counts[bot], c)
		}
		for _, c := range s.Shards {
			if c.State != "stopped" {
				owned[shardKey{c.Bot, c.Shard}] = true
			}
		}
	}
	for _, b := range n.d.cfg.Bots {
		if _, ok := counts[b.Name]; !ok {
			counts[b.Name] = 0
		}
	}
	for bot, total := range counts {
		have := 0
		for k := range owned {
			if k.bot == bot && k.shard < total {
				have++
			}
		}
		v.Unowned[bot] = max(total-have, 0)
	}
	if err == nil || len(v.Nodes) > 0 {
		n.fleetAt, n.fleetLast = v.At, v
	}
	return v
}

// fleet is the metrics' summary of the fleet view.
func (n *nodeStatus) fleet() fleetSummary {
	v := n.fleetView(context.Background())
	return fleetSummary{Nodes: len(v.Nodes), Unowned: v.Unowned}
}
