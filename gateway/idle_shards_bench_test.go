package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// fakeProcessEnv makes the test binary run a fake Discord instead of the
// tests (see TestMain): its memory then stays out of the measurement.
const fakeProcessEnv = "FEATHERY_TEST_FAKE_SHARDS"

// runFakeProcess serves a fake Discord with the shard count in
// fakeProcessEnv, prints its URL on stdout and serves until stdin closes.
func runFakeProcess() int {
	n, err := strconv.Atoi(os.Getenv(fakeProcessEnv))
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "%s: want a shard count, got %q\n", fakeProcessEnv, os.Getenv(fakeProcessEnv))
		return 2
	}
	fake, err := discordtest.Start(discordtest.Config{
		Token: testToken, Shards: n, MaxConcurrency: idleMaxConcurrency, IdentifyWindow: idleIdentifyWindow,
		SessionStartTotal: 1 << 20, SessionStartRemaining: 1 << 20, Guilds: 1, MembersPerGuild: 2,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start fake:", err)
		return 1
	}
	fmt.Println(fake.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	fake.Close()
	return 0
}

const (
	idleMaxConcurrency = 50
	idleIdentifyWindow = 100 * time.Millisecond
)

// startFakeProcess starts the fake Discord of runFakeProcess in a child
// process and returns its URL; the child ends with the benchmark.
func startFakeProcess(b *testing.B, shards int) string {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fakeProcessEnv+"="+strconv.Itoa(shards))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("read the fake's URL: %v", err)
	}
	return strings.TrimSpace(line)
}

// BenchmarkIdleShards connects shards to a fake Discord (in a child
// process, so only the shards' side is measured), waits until every shard
// is READY and idle, and reports the heap in use plus goroutine stacks per
// connected idle shard (after a GC: what the shards keep, not start-up
// garbage) and goroutines per shard. The Sink does nothing: the broker's
// per-shard cost is not included.
//
//	go test -run '^$' -bench IdleShards -benchtime 1x ./gateway/
//
// FEATHERY_IDLE_SHARDS sets the shard count (default 500);
// FEATHERY_IDLE_HEAPPROFILE=F writes the heap profile of the idle shards to
// F.<compression> (go tool pprof -sample_index=inuse_space).
func BenchmarkIdleShards(b *testing.B) {
	n := 500
	if v := os.Getenv("FEATHERY_IDLE_SHARDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			b.Fatalf("FEATHERY_IDLE_SHARDS=%q: want a shard count", v)
		}
	}
	for _, comp := range []gateway.Compression{gateway.CompressionNone, gateway.CompressionZlibStream} {
		b.Run("compress="+comp.String(), func(b *testing.B) {
			url := startFakeProcess(b, n)
			b.ReportAllocs()
			var perShard, stackPerShard, goPerShard float64
			for range b.N {
				perShard, stackPerShard, goPerShard = idleShardsOnce(b, url, n, comp)
			}
			b.ReportMetric(perShard, "B/idle-shard")
			b.ReportMetric(stackPerShard, "stack-B/idle-shard")
			b.ReportMetric(goPerShard, "goroutines/shard")
		})
	}
}

func idleShardsOnce(b *testing.B, url string, n int, comp gateway.Compression) (perShard, stackPerShard, goPerShard float64) {
	b.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	goBefore := runtime.NumGoroutine()
	m, err := gateway.NewManager(gateway.ManagerConfig{
		Bots: []gateway.BotConfig{{Name: "idle", Token: testToken, Shards: n, Compression: comp,
			Intents: 1 | 2 | 512}},
		Sink:           gateway.SinkFunc(func(context.Context, *gateway.Event) error { return nil }),
		RESTURL:        url + "/api/v10",
		IdentifyWindow: idleIdentifyWindow,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			b.Errorf("close manager: %v", err)
		}
	}()
	// Every shard READY, and the one guild's GUILD_CREATE read: the
	// start-up traffic is over.
	testkit.Eventually(b, 120*time.Second, fmt.Sprintf("%d shards ready", n), func() bool {
		var events uint64
		for _, st := range m.Status() {
			if st.State != gateway.StateReady {
				return false
			}
			events += st.Events
		}
		return events >= uint64(n)+1
	})
	runtime.GC()
	runtime.ReadMemStats(&after)
	goAfter := runtime.NumGoroutine()
	if f := os.Getenv("FEATHERY_IDLE_HEAPPROFILE"); f != "" {
		writeHeapProfile(b, f+"."+comp.String())
	}
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	stack := int64(after.StackInuse) - int64(before.StackInuse)
	return float64(heap+stack) / float64(n), float64(stack) / float64(n), float64(goAfter-goBefore) / float64(n)
}

func writeHeapProfile(b *testing.B, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}
