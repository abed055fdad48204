package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"

	"github.com/feathery/feathery/bench"
)

func (m *Main) runBench(ctx context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("bench", "[flags]", &g)
	var o bench.Options
	fs.IntVar(&o.Shards, "shards", 4, "shards of the traffic phase (with --fake-addr: 0 = the fake's recommendation)")
	fs.IntVar(&o.Guilds, "guilds", 0, "guilds in the traffic phase's world (0 = max(100, 2 × shards), so that every shard has traffic)")
	fs.IntVar(&o.Members, "members", 20, "members per guild in the traffic phase's world")
	fs.Float64Var(&o.Rate, "rate", 0, "live events per second sent by the fake (0 = as fast as possible)")
	mix := fs.String("mix", "", "event mix as EVENT=weight,... (empty = the fake's default mix)")
	fs.StringVar(&o.Compression, "compression", "zlib-stream", "gateway compression: none, zlib-stream or zstd-stream")
	cache := fs.String("cache", "on", "feathery's Redis cache in the traffic phase: on or off")
	fs.DurationVar(&o.Duration, "duration", 10e9, "how long live traffic runs")
	fs.StringVar(&o.RedisURL, "redis", "", "an external Redis URL (keys go under a fresh prefix, removed after); empty = start redis-server on a free port")
	fs.StringVar(&o.FakeAddr, "fake-addr", "", "a fake Discord in another process (feathery fakediscord) for the traffic phase; empty = in-process")
	fs.StringVar(&o.FakeToken, "fake-token", "fake-token", "the fake Discord's bot token")
	fs.IntVar(&o.IdleShards, "idle-shards", 1000, "connected idle shards for the memory-per-shard figure (negative skips)")
	fs.IntVar(&o.MaxConcurrency, "max-concurrency", 16, "identify buckets (max_concurrency) of the in-process fakes")
	fs.DurationVar(&o.IdentifyWindow, "identify-window", 1e9, "identify window of the fakes and of feathery")
	fs.IntVar(&o.CacheGuilds, "cache-guilds", 100, "guilds of the cache-memory phase (negative skips)")
	fs.IntVar(&o.CacheMembers, "cache-members", 1000, "members per guild of the cache-memory phase")
	fs.IntVar(&o.Consumers, "consumers", 4, "consumer-group readers verifying the streams")
	fs.DurationVar(&o.GatherDelay, "gather-delay", 0, "feathery's publisher.gather_delay in the traffic phase (0 = its default)")
	reader := fs.String("reader", "group", "how the streams are read: group (consumer group, XREADGROUP + XACK) or xread (plain XREAD, nothing acknowledged)")
	fs.BoolVar(&o.Floor, "floor", true, "after the traffic phase, measure `feathery receive` (the gateway alone, every dispatch dropped) on the same fake at the same rate")
	fs.IntVar(&o.BenchRequests, "bench-requests", 200000, "redis-benchmark requests (-n); negative skips")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the fake worlds")
	fs.StringVar(&o.Binary, "binary", "", "feathery binary to benchmark (default: this one)")
	fs.StringVar(&o.WorkDir, "workdir", "", "keep configs and feathery's logs here (default: a temporary directory)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	quiet := fs.Bool("quiet", false, "no progress lines")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the bench process itself (fake Discord and readers) to this file")
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}
	switch *cache {
	case "on", "true":
		o.Cache = true
	case "off", "false":
	default:
		return fmt.Errorf("--cache: want on or off, got %q", *cache)
	}
	switch o.Compression {
	case "none", "zlib-stream", "zstd-stream":
	default:
		return fmt.Errorf("--compression: want none, zlib-stream or zstd-stream, got %q", o.Compression)
	}
	switch *reader {
	case "group":
	case "xread":
		o.PlainReader = true
	default:
		return fmt.Errorf("--reader: want group or xread, got %q", *reader)
	}
	if o.Rate < 0 {
		return fmt.Errorf("--rate: must not be negative")
	}
	if o.Duration <= 0 {
		return fmt.Errorf("--duration: must be positive")
	}
	if o.Shards < 0 || (o.Shards == 0 && o.FakeAddr == "") {
		return fmt.Errorf("--shards: must be at least 1")
	}
	if o.Guilds < 0 || o.Members < 1 {
		return fmt.Errorf("--guilds: must not be negative; --members: must be at least 1")
	}
	if *mix != "" {
		o.Mix = map[string]float64{}
		for _, part := range strings.Split(*mix, ",") {
			name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
			x, err := strconv.ParseFloat(w, 64)
			if !ok || name == "" || err != nil || x < 0 {
				return fmt.Errorf("--mix: want EVENT=weight,..., got %q", part)
			}
			o.Mix[strings.ToUpper(name)] = x
		}
	}
	if o.IdleShards == 0 {
		o.IdleShards = -1
	}
	if o.CacheGuilds == 0 {
		o.CacheGuilds = -1
	}
	if !*quiet {
		o.Progress = m.Stderr
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		if rep != nil && !*asJSON {
			_ = rep.WriteText(m.Stderr)
		}
		return fmt.Errorf("bench: %w", err)
	}
	var out io.Writer = m.Stdout
	if *asJSON {
		return rep.WriteJSON(out)
	}
	return rep.WriteText(out)
}
