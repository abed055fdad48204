package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
)

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// TestMain removes the feathery binary built by the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// buildFeathery builds cmd/feathery once for the package's tests.
func buildFeathery(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		gomod, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = err
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(gomod)))
		dir, err := os.MkdirTemp("", "feathery-bench-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "feathery")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/feathery")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/feathery: %v", buildErr)
	}
	return builtBin
}

// lineWriter sends progress lines to the test log.
type lineWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRun_Short runs every phase of the benchmark briefly against a freshly
// built feathery and checks that the report is complete and sane and that
// every event the fake sent was read once, intact and in order.
func TestRun_Short(t *testing.T) {
	bin := buildFeathery(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	rep, err := bench.Run(ctx, bench.Options{
		Binary:         bin,
		Shards:         2,
		Guilds:         10,
		Members:        10,
		Rate:           2000,
		Cache:          true,
		Duration:       3 * time.Second,
		IdleShards:     50,
		MaxConcurrency: 64,
		CacheGuilds:    4,
		CacheMembers:   50,
		BenchRequests:  20000,
		Floor:          true,
		WorkDir:        t.TempDir(),
		Progress:       &lineWriter{t: t},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", text.String())

	tp := rep.Throughput
	if tp == nil {
		t.Fatal("no throughput section")
	}
	v := tp.Verdict
	if !v.OK() || v.Lost != 0 || v.Duplicated != 0 {
		t.Errorf("delivery: got %+v, want every event once, intact and in order", v)
	}
	if v.Expected == 0 || v.Verified != v.Expected || tp.Sent != v.Expected {
		t.Errorf("verified %d of %d ledger entries, fake sent %d: want all equal and > 0", v.Verified, v.Expected, tp.Sent)
	}
	// 2000/s for 3s: well over 1000 verified events in the window.
	if tp.Events < 1000 || tp.EventsPerSecond <= 0 || tp.Seconds < 2.9 {
		t.Errorf("window: got %d events, %.0f/s over %.2fs; want >= 1000 events over ~3s", tp.Events, tp.EventsPerSecond, tp.Seconds)
	}
	if l := tp.Latency; !(l.P50 > 0 && l.P50 <= l.P99 && l.P99 <= l.Max) {
		t.Errorf("latency: got %+v, want 0 < p50 <= p99 <= max", l)
	}
	if tp.CPUSecondsPerMillion <= 0 || tp.RedisCPUSecondsPerMillion <= 0 || tp.RSS <= 0 {
		t.Errorf("cost: got cpu %.2f s/M, redis %.2f s/M, rss %d; want all > 0", tp.CPUSecondsPerMillion, tp.RedisCPUSecondsPerMillion, tp.RSS)
	}
	if tp.PayloadBytes <= 0 {
		t.Errorf("payload bytes: got %d, want > 0", tp.PayloadBytes)
	}
	if s := tp.Startup; s.Shards != 2 || s.Seconds <= 0 || s.BoundWindows != 1 {
		t.Errorf("traffic start-up: got %+v, want 2 shards, 1 window, seconds > 0", s)
	}

	// The commandstats split: every event went through feathery's publish
	// script, and the group readers read and acknowledged.
	if rc := tp.RedisCommands; rc == nil || rc.ScriptCalls <= 0 || rc.ScriptMicrosPerEvent <= 0 || rc.EventsPerScriptCall <= 0 || rc.ReaderCalls <= 0 || rc.ReaderMicrosPerEvent <= 0 {
		t.Errorf("redis commands: got %+v, want script and reader calls and time > 0", rc)
	}
	// The floor: `feathery receive` got the same traffic (2000/s for 3s)
	// and dropped it.
	if f := rep.Floor; f == nil || f.Events < 1000 || f.CPUSecondsPerMillion <= 0 || f.RSS <= 0 || f.Seconds < 2.9 {
		t.Errorf("floor: got %+v, want >= 1000 dispatches received over ~3s with CPU and RSS > 0", f)
	}
	if !strings.Contains(text.String(), "floor ") {
		t.Errorf("the text report lacks the floor line")
	}

	rb := rep.RedisBenchmark
	if rb == nil || rb.OpsPerSecond <= 0 || !strings.Contains(rb.Command, "XADD") {
		t.Fatalf("redis-benchmark: got %+v, want an XADD rate", rb)
	}
	if want := tp.EventsPerSecond / rb.OpsPerSecond; rep.Ratio <= 0 || rep.Ratio != want {
		t.Errorf("ratio: got %v, want %v", rep.Ratio, want)
	}

	is := rep.IdleShard
	if is == nil {
		t.Fatal("no idle-shard section")
	}
	if is.Shards != 50 || is.BaselineRSS <= 0 || is.RSS <= is.BaselineRSS || is.BytesPerShard <= 0 || is.BytesPerShard > 10<<20 {
		t.Errorf("idle shards: got %+v, want 50 shards costing between 0 and 10 MiB each", is)
	}
	// Every shard adds at least its connection's goroutine.
	if is.StackBytesPerShard < 2048 || is.HeapBytesPerShard == 0 {
		t.Errorf("idle shards, Go side: got heap %.0f, stacks %.0f bytes per shard; want stacks >= 2 KiB and a heap reading", is.HeapBytesPerShard, is.StackBytesPerShard)
	}
	if s := is.Startup; s.Shards != 50 || s.Seconds <= 0 || s.BoundWindows != 1 {
		t.Errorf("idle start-up: got %+v", s)
	}

	c := rep.Cache
	if c == nil {
		t.Fatal("no cache section")
	}
	if c.Members != 4*50 || c.Users <= 0 || c.BytesPerMember <= 0 || c.BytesPerMember > 100<<10 {
		t.Errorf("cache: got %+v, want 200 members costing between 0 and 100 KiB each", c)
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"floor"`, `"script_us_per_event"`, `"events_per_second"`, `"p99_ms"`, `"cpu_seconds_per_million"`, `"bytes_per_shard"`, `"bytes_per_member"`, `"bound_seconds"`, `"ops_per_second"`, `"ratio_to_redis_benchmark"`} {
		if !strings.Contains(js.String(), key) {
			t.Errorf("JSON report lacks %s", key)
		}
	}
	if strings.Contains(js.String()+text.String(), "fake-token") {
		t.Error("the report shows the bot token")
	}
}

func TestReadProcUsage(t *testing.T) {
	u, err := bench.ReadProcUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 || u.CPU < 0 {
		t.Errorf("got %+v, want RSS > 0", u)
	}
	if _, err := bench.ReadProcUsage(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestConfig_YAML(t *testing.T) {
	b, err := bench.Config{
		RedisURL: "redis://127.0.0.1:1", RESTURL: "http://127.0.0.1:2/api/v10", AdminAddr: "127.0.0.1:3",
		IdentifyWindow: time.Second,
		Bots: []bench.Bot{{Name: "b", Token: "t", Shards: 3, Compression: "zstd-stream", Cache: false,
			CacheOnly: []string{"GUILD_CREATE"}, Routes: []bench.Route{{Events: []string{"MESSAGE_*"}, Stream: "m", MaxLen: 10}}}},
	}.YAML()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"url: redis://127.0.0.1:1", "rest_url: http://127.0.0.1:2/api/v10", "addr: 127.0.0.1:3",
		"identify_window: 1s", "shards: 3", "compression: zstd-stream", "enabled: false", "- GUILD_CREATE", "maxlen: 10"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
	if _, err := (bench.Config{}).YAML(); err == nil {
		t.Error("no error for a config without bots")
	}
}
