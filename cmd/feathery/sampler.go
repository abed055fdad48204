package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
)

// The sampler reads, every few seconds and off the publish path, what the
// console and the metrics show of Redis: each configured stream's length,
// its consumer groups' lag and pending (XINFO GROUPS), and the server's
// health (INFO).

// streamSample is one sampling round.
type streamSample struct {
	At      time.Time    `json:"at"`
	Error   string       `json:"error,omitempty"`
	Streams []streamInfo `json:"streams"`
	Redis   redisHealth  `json:"redis"`
}

// streamInfo is one stream; Bot is "" for the control stream.
type streamInfo struct {
	Bot    string      `json:"bot"`
	Stream string      `json:"stream"`
	Key    string      `json:"key"`
	Length int64       `json:"length"`
	Groups []groupInfo `json:"groups"`
	Error  string      `json:"error,omitempty"`
}

// groupInfo is one consumer group of a stream.
type groupInfo struct {
	Name string `json:"name"`
	// Lag is nil when Redis cannot tell (entries deleted or trimmed past
	// the group's position, or Redis before 7.0).
	Lag           *int64 `json:"lag"`
	Pending       int64  `json:"pending"`
	Consumers     int64  `json:"consumers"`
	LastDelivered string `json:"last_delivered"`
	// LagPerSecond is how fast the lag grew since the previous sample
	// (negative: the group catches up).
	LagPerSecond float64 `json:"lag_per_second"`
}

// redisHealth is what INFO says of the server.
type redisHealth struct {
	OK          bool     `json:"ok"`
	Error       string   `json:"error,omitempty"`
	Version     string   `json:"version,omitempty"`
	Mode        string   `json:"mode,omitempty"` // standalone or cluster (INFO's redis_mode)
	Role        string   `json:"role,omitempty"`
	Replicas    []string `json:"replicas,omitempty"` // "ip:port state=online lag=0"
	MasterLink  string   `json:"master_link,omitempty"`
	UsedMemory  int64    `json:"used_memory"`
	MaxMemory   int64    `json:"max_memory"`
	Policy      string   `json:"maxmemory_policy,omitempty"`
	AOF         bool     `json:"aof"`
	AOFStatus   string   `json:"aof_status,omitempty"`
	RDBStatus   string   `json:"rdb_status,omitempty"`
	RDBChanges  int64    `json:"rdb_changes_since_save"`
	LastSave    int64    `json:"rdb_last_save"` // unix seconds
	Problems    []string `json:"problems,omitempty"`
	Unsupported bool     `json:"unsupported,omitempty"` // the server has no INFO (the embedded Redis)
}

// sampler keeps the last sample; run refreshes it.
type sampler struct {
	c       rueidis.Client
	streams []streamInfo // the streams to read, without figures
	every   time.Duration

	mu  sync.Mutex
	cur streamSample
}

// newSampler lists cfg's streams: each bot's default and route streams with
// their groups, then the control stream.
func newSampler(c rueidis.Client, cfg *Config, every time.Duration) *sampler {
	keys := broker.NewKeys(cfg.Redis.Prefix)
	s := &sampler{c: c, every: every}
	for i := range cfg.Bots {
		b := &cfg.Bots[i]
		name := b.DefaultStream.Stream
		if name == "" {
			name = broker.DefaultStream
		}
		s.streams = append(s.streams, streamInfo{Bot: b.Name, Stream: name, Key: keys.Stream(b.Name, name)})
		for _, r := range b.Routes {
			s.streams = append(s.streams, streamInfo{Bot: b.Name, Stream: r.Stream, Key: keys.Stream(b.Name, r.Stream)})
		}
	}
	s.streams = append(s.streams, streamInfo{Stream: "control", Key: keys.Control()})
	return s
}

// run samples every s.every until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) last() streamSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// sample reads every stream and the server once.
func (s *sampler) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := streamSample{At: time.Now(), Streams: make([]streamInfo, len(s.streams))}
	cmds := make(rueidis.Commands, 0, 2*len(s.streams))
	for _, st := range s.streams {
		cmds = append(cmds, s.c.B().Xlen().Key(st.Key).Build(), s.c.B().XinfoGroups().Key(st.Key).Build())
	}
	res := s.c.DoMulti(ctx, cmds...)
	var errs []string
	for i, st := range s.streams {
		st.Groups = nil
		n, err := res[2*i].AsInt64()
		if err != nil {
			st.Error = err.Error()
			errs = append(errs, fmt.Sprintf("XLEN %s: %v", st.Key, err))
		}
		st.Length = n
		groups, err := parseGroups(res[2*i+1])
		if err != nil && !isNoSuchKey(err) {
			st.Error = err.Error()
			errs = append(errs, fmt.Sprintf("XINFO GROUPS %s: %v", st.Key, err))
		}
		st.Groups = groups
		out.Streams[i] = st
	}
	if len(errs) > 0 {
		out.Error = strings.Join(errs, "; ")
	}
	out.Redis = s.health(ctx)
	s.mu.Lock()
	lagTrend(&out, &s.cur)
	s.cur = out
	s.mu.Unlock()
}

func isNoSuchKey(err error) bool {
	var re *rueidis.RedisError
	return errors.As(err, &re) && strings.Contains(re.Error(), "no such key")
}

// parseGroups reads an XINFO GROUPS reply.
func parseGroups(r rueidis.RedisResult) ([]groupInfo, error) {
	arr, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]groupInfo, 0, len(arr))
	for _, g := range arr {
		m, err := g.AsMap()
		if err != nil {
			return nil, fmt.Errorf("read group: %w", err)
		}
		gi := groupInfo{}
		if v, ok := m["name"]; ok {
			gi.Name, _ = v.ToString()
		}
		if v, ok := m["pending"]; ok {
			gi.Pending, _ = v.AsInt64()
		}
		if v, ok := m["consumers"]; ok {
			gi.Consumers, _ = v.AsInt64()
		}
		if v, ok := m["last-delivered-id"]; ok {
			gi.LastDelivered, _ = v.ToString()
		}
		if v, ok := m["lag"]; ok {
			if n, err := v.AsInt64(); err == nil {
				gi.Lag = &n
			}
		}
		out = append(out, gi)
	}
	return out, nil
}

// health reads INFO: memory, persistence, replication and the problems an
// operator should see.
func (s *sampler) health(ctx context.Context) redisHealth {
	h := redisHealth{}
	if err := s.c.Do(ctx, s.c.B().Ping().Build()).Error(); err != nil {
		h.Error = err.Error()
		h.Problems = append(h.Problems, "Redis does not answer: "+err.Error())
		return h
	}
	h.OK = true
	txt, err := s.c.Do(ctx, s.c.B().Info().Section("server", "memory", "persistence", "replication").Build()).ToString()
	if err != nil {
		h.Unsupported = true
		return h
	}
	info := parseInfo(txt)
	if info["redis_version"] == "" && info["used_memory"] == "" {
		h.Unsupported = true
		return h
	}
	h.Version = info["redis_version"]
	h.Mode = info["redis_mode"]
	h.Role = info["role"]
	h.MasterLink = info["master_link_status"]
	h.UsedMemory, _ = strconv.ParseInt(info["used_memory"], 10, 64)
	h.MaxMemory, _ = strconv.ParseInt(info["maxmemory"], 10, 64)
	h.Policy = info["maxmemory_policy"]
	h.AOF = info["aof_enabled"] == "1"
	h.AOFStatus = info["aof_last_write_status"]
	h.RDBStatus = info["rdb_last_bgsave_status"]
	h.RDBChanges, _ = strconv.ParseInt(info["rdb_changes_since_last_save"], 10, 64)
	h.LastSave, _ = strconv.ParseInt(info["rdb_last_save_time"], 10, 64)
	n, _ := strconv.Atoi(info["connected_slaves"])
	for i := range n {
		if v := info["slave"+strconv.Itoa(i)]; v != "" {
			h.Replicas = append(h.Replicas, replicaLine(v))
		}
	}
	if !h.AOF {
		h.Problems = append(h.Problems, "AOF is off: a Redis restart loses what the last RDB save did not hold (appendonly yes, appendfsync everysec is the production setting)")
	}
	if h.AOF && h.AOFStatus != "" && h.AOFStatus != "ok" {
		h.Problems = append(h.Problems, "the last AOF write failed: "+h.AOFStatus)
	}
	if h.RDBStatus != "" && h.RDBStatus != "ok" {
		h.Problems = append(h.Problems, "the last RDB save failed: "+h.RDBStatus)
	}
	if h.MaxMemory > 0 && h.UsedMemory > h.MaxMemory*9/10 {
		h.Problems = append(h.Problems, fmt.Sprintf("memory at %d%% of maxmemory", h.UsedMemory*100/h.MaxMemory))
	}
	if h.Role == "slave" && h.MasterLink != "up" {
		h.Problems = append(h.Problems, "replica's link to its master is "+h.MasterLink)
	}
	return h
}

// parseInfo reads INFO's "key:value" lines.
func parseInfo(txt string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(txt))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// replicaLine turns "ip=1.2.3.4,port=6380,state=online,offset=1,lag=0" into
// "1.2.3.4:6380 state=online lag=0".
func replicaLine(v string) string {
	f := map[string]string{}
	for _, kv := range strings.Split(v, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok {
			f[k] = val
		}
	}
	return fmt.Sprintf("%s:%s state=%s lag=%s", f["ip"], f["port"], f["state"], f["lag"])
}

// lagTrend sets each group's LagPerSecond from the previous sample.
func lagTrend(cur, prev *streamSample) {
	if prev.At.IsZero() {
		return
	}
	secs := cur.At.Sub(prev.At).Seconds()
	if secs <= 0 {
		return
	}
	before := map[[2]string]int64{}
	for _, st := range prev.Streams {
		for _, g := range st.Groups {
			if g.Lag != nil {
				before[[2]string{st.Key, g.Name}] = *g.Lag
			}
		}
	}
	for i := range cur.Streams {
		st := &cur.Streams[i]
		for j := range st.Groups {
			g := &st.Groups[j]
			if b, ok := before[[2]string{st.Key, g.Name}]; ok && g.Lag != nil {
				g.LagPerSecond = float64(*g.Lag-b) / secs
			}
		}
	}
}
