package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Report is everything one Run measured. Sections of phases that were
// skipped are nil.
type Report struct {
	StartedAt time.Time `json:"started_at"`
	// Machine describes where it ran.
	Machine Machine `json:"machine"`
	// Params are the options the run used (after defaults).
	Params Params `json:"params"`

	Throughput     *Throughput           `json:"throughput,omitempty"`
	RedisBenchmark *RedisBenchmarkResult `json:"redis_benchmark,omitempty"`
	// Ratio is Throughput.EventsPerSecond / RedisBenchmark.OpsPerSecond.
	Ratio     float64    `json:"ratio_to_redis_benchmark,omitempty"`
	IdleShard *IdleShard `json:"idle_shards,omitempty"`
	Cache     *CacheMem  `json:"cache_memory,omitempty"`
	// Floor is the receive-only run after the traffic phase (Options.Floor).
	Floor *Floor `json:"floor,omitempty"`
}

// Floor is `feathery receive` on the traffic phase's fake at the traffic
// phase's rate: the gateway alone, every dispatch dropped.
type Floor struct {
	Seconds float64 `json:"seconds"`
	// Events are the dispatches the receiving process got in the window.
	Events int64 `json:"events"`
	// CPUSecondsPerMillion is the receiving process's user+system CPU in
	// the window per million dispatches.
	CPUSecondsPerMillion float64 `json:"cpu_seconds_per_million"`
	RSS                  int64   `json:"rss_bytes"`
}

// RedisCommands splits redis-server's time over the traffic window (INFO
// commandstats, after minus before) per event: feathery's scripts
// (EVALSHA, EVAL, FCALL, with the commands they run) and the verifying
// readers' XREADGROUP, XREAD and XACK. The rest of redis-server's CPU is
// feathery's other calls, the network and the event loop.
type RedisCommands struct {
	ScriptCalls          int64   `json:"script_calls"`
	EventsPerScriptCall  float64 `json:"events_per_script_call"`
	ScriptMicrosPerEvent float64 `json:"script_us_per_event"`
	ReaderCalls          int64   `json:"reader_calls"`
	ReaderMicrosPerEvent float64 `json:"reader_us_per_event"`
}

var (
	scriptCommands = []string{"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"}
	readerCommands = []string{"xreadgroup", "xread", "xack"}
)

// splitCommands is RedisCommands from two INFO commandstats readings.
func splitCommands(before, after map[string]CommandStat, events int64) *RedisCommands {
	sum := func(names []string) (calls, usec int64) {
		for _, n := range names {
			calls += after[n].Calls - before[n].Calls
			usec += after[n].Usec - before[n].Usec
		}
		return calls, usec
	}
	rc := &RedisCommands{}
	var su, ru int64
	rc.ScriptCalls, su = sum(scriptCommands)
	rc.ReaderCalls, ru = sum(readerCommands)
	if events > 0 {
		rc.ScriptMicrosPerEvent = float64(su) / float64(events)
		rc.ReaderMicrosPerEvent = float64(ru) / float64(events)
	}
	if rc.ScriptCalls > 0 {
		rc.EventsPerScriptCall = float64(events) / float64(rc.ScriptCalls)
	}
	return rc
}

// Machine describes the host.
type Machine struct {
	CPUs         int    `json:"cpus"`
	GoVersion    string `json:"go_version"`
	RedisVersion string `json:"redis_version"`
	Feathery     string `json:"feathery_binary"`
}

// Params are a run's settings.
type Params struct {
	Shards         int                `json:"shards"`
	Guilds         int                `json:"guilds"`
	Members        int                `json:"members_per_guild"`
	Rate           float64            `json:"rate"` // 0 = as fast as possible
	Mix            map[string]float64 `json:"mix,omitempty"`
	Compression    string             `json:"compression"`
	Cache          bool               `json:"cache"`
	Duration       string             `json:"duration"`
	Redis          string             `json:"redis"` // "own redis-server" or "external"
	Fake           string             `json:"fake"`  // "in-process" or the address
	Consumers      int                `json:"consumers"`
	Reader         string             `json:"reader"` // "consumer group" or "xread"
	MaxConcurrency int                `json:"max_concurrency"`
	IdentifyWindow string             `json:"identify_window"`
	IdleShards     int                `json:"idle_shards"`
	CacheGuilds    int                `json:"cache_guilds"`
	CacheMembers   int                `json:"cache_members_per_guild"`
}

// Throughput is the traffic phase: live events from the fake through
// feathery to Redis to a consumer group.
type Throughput struct {
	// Seconds is the length of the measured window (traffic on).
	Seconds float64 `json:"seconds"`
	// Events are the verified events read in the window; EventsPerSecond is
	// Events / Seconds. Lost or damaged events never count.
	Events          int64   `json:"events"`
	EventsPerSecond float64 `json:"events_per_second"`
	// Sent is what the fake sent in the whole run (start-up included).
	Sent int64 `json:"sent"`
	// Verdict checks every entry read against the fake's ledger.
	Verdict Verdict `json:"verdict"`
	// Latency from the fake's send (ledger SentAt) to the consumer's read,
	// over the window's events.
	Latency Latency `json:"latency"`
	// ReceiveLatency is the part from the fake's send to feathery's receive
	// (entry field at, millisecond precision).
	ReceiveLatency Latency `json:"receive_latency"`
	// CPUSecondsPerMillion is feathery's user+system CPU in the window per
	// million events; RedisCPUSecondsPerMillion the same for redis-server
	// (0 with an external Redis).
	CPUSecondsPerMillion      float64 `json:"cpu_seconds_per_million"`
	RedisCPUSecondsPerMillion float64 `json:"redis_cpu_seconds_per_million,omitempty"`
	// BenchCPUSecondsPerMillion is the benchmark process itself (the
	// in-process fake and the verifying readers), which shares the machine.
	BenchCPUSecondsPerMillion float64 `json:"bench_cpu_seconds_per_million"`
	// RedisCommands splits redis-server's time in commands (nil when INFO
	// commandstats could not be read).
	RedisCommands *RedisCommands `json:"redis_commands,omitempty"`
	// RSS is feathery's resident memory at the end of the window.
	RSS int64 `json:"rss_bytes"`
	// PayloadBytes is the mean size of the window's events' d.
	PayloadBytes int `json:"payload_bytes"`
	// Startup is the time to READY of the traffic phase's shards.
	Startup Startup `json:"startup"`
}

// Startup compares the time for N shards to be ready with the identify
// bound.
type Startup struct {
	Shards         int     `json:"shards"`
	MaxConcurrency int     `json:"max_concurrency"`
	Window         float64 `json:"identify_window_seconds"`
	// Seconds from launching feathery to every shard ready.
	Seconds float64 `json:"seconds"`
	// BoundWindows is ceil(Shards / MaxConcurrency); BoundSeconds that many
	// windows. The last bucket's IDENTIFY can go at (BoundWindows-1)
	// windows, so a start-up inside BoundSeconds keeps to the bound.
	BoundWindows int     `json:"bound_windows"`
	BoundSeconds float64 `json:"bound_seconds"`
	// Identifies counts the IDENTIFYs the fake accepted in the phase (the
	// idle-shard phase runs two processes: 1 + Shards expected);
	// Violations the protocol breaches it saw, FirstViolation the first.
	Identifies     int64  `json:"identifies,omitempty"`
	Violations     int    `json:"violations"`
	FirstViolation string `json:"first_violation,omitempty"`
}

// IdleShard is the memory of connected idle shards.
type IdleShard struct {
	Shards int `json:"shards"`
	// BaselineRSS is feathery's RSS with one connected shard, RSS with
	// Shards shards; BytesPerShard = (RSS - BaselineRSS) / (Shards - 1).
	BaselineRSS   int64   `json:"baseline_rss_bytes"`
	RSS           int64   `json:"rss_bytes"`
	BytesPerShard float64 `json:"bytes_per_shard"`
	// HeapBytesPerShard and StackBytesPerShard split it on the Go side
	// (runtime.MemStats HeapInuse and Stack, N shards minus 1, per shard);
	// the rest of the RSS is heap the runtime keeps for the next GC cycle
	// and pages not yet returned.
	HeapBytesPerShard  float64 `json:"heap_bytes_per_shard"`
	StackBytesPerShard float64 `json:"stack_bytes_per_shard"`
	Startup            Startup `json:"startup"`
}

// CacheMem is Redis memory per cached member.
type CacheMem struct {
	Guilds  int `json:"guilds"`
	Members int `json:"members"`
	Users   int `json:"users"`
	// Entities are the cache entities kept.
	Entities []string `json:"entities"`
	// UsedMemoryDelta is INFO used_memory after minus before; OtherBytes the
	// MEMORY USAGE of feathery's keys outside the cache (streams,
	// checkpoints), taken off; BytesPerMember = (delta - other) / Members.
	UsedMemoryDelta int64   `json:"used_memory_delta"`
	OtherBytes      int64   `json:"other_bytes"`
	BytesPerMember  float64 `json:"bytes_per_member"`
	Seconds         float64 `json:"seconds"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	p := r.Params
	rate := "as fast as possible"
	if p.Rate > 0 {
		rate = fmt.Sprintf("%.0f/s", p.Rate)
	}
	cache := "off"
	if p.Cache {
		cache = "on"
	}
	world := fmt.Sprintf("%d guilds x %d members", p.Guilds, p.Members)
	if p.Guilds == 0 {
		world = "the external fake's world"
	}
	fmt.Fprintf(&b, "feathery bench: %d shards, %s, rate %s, %s, cache %s, %s; redis %s, fake %s, reader %s x%d; %d CPUs, redis %s\n",
		p.Shards, world, rate, p.Compression, cache, p.Duration, p.Redis, p.Fake, p.Reader, p.Consumers, r.Machine.CPUs, r.Machine.RedisVersion)
	if t := r.Throughput; t != nil {
		v := t.Verdict
		fmt.Fprintf(&b, "  throughput       %.0f events/s end to end (%d verified events read in %.1fs)\n", t.EventsPerSecond, t.Events, t.Seconds)
		fmt.Fprintf(&b, "  delivery         %d sent, %d verified, lost %d, duplicated %d, out of order %d, mismatched %d, unexpected %d\n",
			v.Expected, v.Verified, v.Lost, v.Duplicated, v.OutOfOrder, v.Mismatched, v.Unexpected)
		for _, pr := range v.Problems {
			fmt.Fprintf(&b, "                   ! %s\n", pr)
		}
		fmt.Fprintf(&b, "  latency          p50 %.2f ms, p99 %.2f ms, max %.2f ms (fake send -> consumer read)\n", t.Latency.P50, t.Latency.P99, t.Latency.Max)
		fmt.Fprintf(&b, "                   of which fake send -> feathery receive: p50 %.0f ms, p99 %.0f ms (ms precision)\n", t.ReceiveLatency.P50, t.ReceiveLatency.P99)
		fmt.Fprintf(&b, "  cpu              %.2f s per million events (feathery)", t.CPUSecondsPerMillion)
		if t.RedisCPUSecondsPerMillion > 0 {
			fmt.Fprintf(&b, ", %.2f s (redis-server)", t.RedisCPUSecondsPerMillion)
		}
		fmt.Fprintf(&b, ", %.2f s (bench: fake + readers); feathery RSS %s\n", t.BenchCPUSecondsPerMillion, mib(t.RSS))
		fmt.Fprintf(&b, "  cpu per event    feathery %.1f µs, redis-server %.1f µs", t.CPUSecondsPerMillion, t.RedisCPUSecondsPerMillion)
		if rb := r.RedisBenchmark; rb != nil && rb.RedisCPUMicrosPerOp > 0 {
			fmt.Fprintf(&b, " (%.1f × redis-benchmark's pipelined XADD", t.RedisCPUSecondsPerMillion/rb.RedisCPUMicrosPerOp)
			if rb.Serial != nil && rb.Serial.RedisCPUMicrosPerOp > 0 {
				fmt.Fprintf(&b, ", %.1f × one at a time", t.RedisCPUSecondsPerMillion/rb.Serial.RedisCPUMicrosPerOp)
			}
			b.WriteString(")")
		}
		b.WriteString("\n")
		if rc := t.RedisCommands; rc != nil {
			fmt.Fprintf(&b, "  redis commands   per event: feathery's scripts %.1f µs (%d calls, %.1f events per call), readers' XREADGROUP/XACK %.1f µs (%d calls)",
				rc.ScriptMicrosPerEvent, rc.ScriptCalls, rc.EventsPerScriptCall, rc.ReaderMicrosPerEvent, rc.ReaderCalls)
			if t.RedisCPUSecondsPerMillion > 0 {
				fmt.Fprintf(&b, ", the rest %.1f µs (feathery's other calls, network, event loop)",
					t.RedisCPUSecondsPerMillion-rc.ScriptMicrosPerEvent-rc.ReaderMicrosPerEvent)
			}
			b.WriteString("\n")
		}
		if f := r.Floor; f != nil && f.CPUSecondsPerMillion > 0 {
			fmt.Fprintf(&b, "  floor            %.1f µs per event: `feathery receive` (the gateway alone, every dispatch dropped), same fake and rate, %d dispatches received in %.1fs; feathery = %.1f × the floor\n",
				f.CPUSecondsPerMillion, f.Events, f.Seconds, t.CPUSecondsPerMillion/f.CPUSecondsPerMillion)
		}
		fmt.Fprintf(&b, "  payload          mean d %d bytes\n", t.PayloadBytes)
		fmt.Fprintf(&b, "  start-up         %s\n", t.Startup.text())
	}
	if rb := r.RedisBenchmark; rb != nil {
		fmt.Fprintf(&b, "  redis-benchmark  %.0f XADD/s (p50 %.2f ms; median of %.0f): %s\n", rb.OpsPerSecond, rb.P50, rb.Runs, rb.Command)
		if rb.RedisCPUMicrosPerOp > 0 {
			fmt.Fprintf(&b, "                   redis-server CPU per XADD: %.2f µs pipelined (-P 16)", rb.RedisCPUMicrosPerOp)
			if rb.Serial != nil {
				fmt.Fprintf(&b, ", %.2f µs one at a time (-P 1, %.0f XADD/s)", rb.Serial.RedisCPUMicrosPerOp, rb.Serial.OpsPerSecond)
			}
			b.WriteString("\n")
		}
		if r.Ratio > 0 {
			fmt.Fprintf(&b, "  ratio            %.3f (feathery end to end / redis-benchmark XADD)\n", r.Ratio)
		}
	}
	if is := r.IdleShard; is != nil {
		fmt.Fprintf(&b, "  idle shards      %.1f KiB per connected idle shard (%d shards: RSS %s, 1 shard: %s); Go heap in use %.1f KiB, stacks %.1f KiB of it\n",
			is.BytesPerShard/1024, is.Shards, mib(is.RSS), mib(is.BaselineRSS), is.HeapBytesPerShard/1024, is.StackBytesPerShard/1024)
		fmt.Fprintf(&b, "  start-up         %s\n", is.Startup.text())
	}
	if c := r.Cache; c != nil {
		fmt.Fprintf(&b, "  cache memory     %.0f bytes per cached member (%d members, %d users, %d guilds; used_memory +%s, %s of it outside the cache; entities %s)\n",
			c.BytesPerMember, c.Members, c.Users, c.Guilds, mib(c.UsedMemoryDelta), mib(c.OtherBytes), strings.Join(c.Entities, ","))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (s Startup) text() string {
	t := fmt.Sprintf("%d shards ready in %.2fs; identify bound ceil(%d/%d) = %d windows x %gs = %gs",
		s.Shards, s.Seconds, s.Shards, s.MaxConcurrency, s.BoundWindows, s.Window, s.BoundSeconds)
	if s.Violations > 0 {
		t += fmt.Sprintf("; the fake saw %d violations (%d IDENTIFYs), first: %s", s.Violations, s.Identifies, s.FirstViolation)
	}
	return t
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
