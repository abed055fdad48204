package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
)

// demoToken is the fake Discord's token in the demo; it is no secret.
const demoToken = "demo-token-not-a-secret"

func (m *Main) runDemo(ctx context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("demo", "[flags]", &g)
	shards := fs.Int("shards", 4, "shards of the demo bot (the fake recommends this many)")
	guilds := fs.Int("guilds", 20, "guilds in the fake world")
	rate := fs.Float64("rate", 50, "live events per second sent by the fake")
	seed := fs.Int64("seed", 1, "seed of the fake world")
	redisAddr := fs.String("redis-addr", defaultDemoRedisAddr, "embedded Redis listen address (falls back to a free port when taken; :0 = a free port)")
	adminAddr := fs.String("admin-addr", defaultAdminAddr, "dashboard address (falls back to a free port when taken; off disables)")
	duration := fs.Duration("duration", 0, "stop after this long (0 = run until Ctrl-C)")
	quiet := fs.Bool("quiet", false, "no once-a-second status line")
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}
	if *shards < 1 {
		return fmt.Errorf("--shards: must be at least 1")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	log, err := m.newLogger(m.Stderr, logOptions{Level: firstNonEmpty(g.logLevel, "warn"), Format: g.logFormat})
	if err != nil {
		return err
	}

	const window = time.Second
	yes := true
	fake, err := discordtest.Start(discordtest.Config{
		Token:             demoToken,
		Shards:            *shards,
		MaxConcurrency:    *shards,
		IdentifyWindow:    window,
		HeartbeatInterval: 5 * time.Second,
		Guilds:            *guilds,
		Seed:              *seed,
		Rate:              *rate,
		Logger:            log.With("component", "fakediscord"),
	})
	if err != nil {
		return fmt.Errorf("start fake Discord: %w", err)
	}
	defer fake.Close()

	if *adminAddr != "off" {
		*adminAddr = freeOr(*adminAddr)
	}
	if *redisAddr == defaultDemoRedisAddr {
		*redisAddr = freeOr(*redisAddr)
	}
	cfg := &Config{
		Redis:          RedisConfig{Embedded: true, EmbeddedAddr: *redisAddr},
		Admin:          AdminConfig{Addr: *adminAddr},
		Discord:        DiscordConfig{RESTURL: fake.URL() + "/api/v10"},
		IdentifyWindow: Duration(window),
		Bots: []BotConfig{{
			Name:        "demo",
			Token:       demoToken,
			Intents:     Intents{Value: intentsAll, Set: true},
			Compression: "zlib-stream",
			Filters:     FiltersConfig{Ignore: []string{"TYPING_START"}, DropBots: &yes},
			Routes: []RouteConfig{{
				Events: []string{"MESSAGE_*", "INTERACTION_CREATE"},
				Stream: "commands",
				MaxLen: 100000,
				Groups: []string{"demo-workers"},
			}},
			DefaultStream: StreamConfig{MaxLen: 100000, Groups: []string{"demo-workers"}},
		}},
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	d, err := runDaemon(ctx, cfg, daemonDeps{Logger: log})
	if err != nil {
		return err
	}
	keys := broker.NewKeys(cfg.Redis.Prefix)
	port := portOf(d.RedisAddr())
	out := m.Stdout
	fmt.Fprintf(out, "feathery demo: fake Discord → feathery → embedded Redis\n")
	fmt.Fprintf(out, "  fake Discord:    %s (%d shards, %d guilds, %.0f events/s)\n", fake.URL(), *shards, *guilds, *rate)
	fmt.Fprintf(out, "  embedded Redis:  %s (in memory)\n", d.RedisAddr())
	if u := d.AdminURL(); u != "" {
		fmt.Fprintf(out, "  dashboard:       %s\n", u)
	}
	fmt.Fprintf(out, "  streams:         %s (messages, interactions), %s (everything else)\n", keys.Stream("demo", "commands"), keys.Events("demo"))
	self := selfCommand()
	fmt.Fprintf(out, "read the events:\n  redis-cli -p %s XREAD COUNT 5 STREAMS '%s' 0\n", port, keys.Events("demo"))
	fmt.Fprintf(out, "  redis-cli -p %s XREADGROUP GROUP demo-workers me COUNT 5 STREAMS '%s' '>'\n", port, keys.Events("demo"))
	fmt.Fprintf(out, "  %s tail --redis redis://%s --bot demo\n", self, d.RedisAddr())
	fmt.Fprintf(out, "write a consumer of these streams (or --lang node, --lang python):\n  %s new consumer --lang go my-consumer\n", self)
	if port != "6379" {
		fmt.Fprintf(out, "  (then run it with REDIS_URL=redis://%s: port 6379 was taken)\n", d.RedisAddr())
	}
	fmt.Fprintf(out, "Ctrl-C stops.\n")

	t := time.NewTicker(time.Second)
	defer t.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
			if !*quiet {
				fmt.Fprintln(out, demoLine(d.Status(ctx)))
			}
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := d.Close(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	fmt.Fprintln(out, "demo stopped")
	return nil
}

// defaultDemoRedisAddr is where the demo's Redis listens unless taken: the
// port consumers try first.
const defaultDemoRedisAddr = "127.0.0.1:6379"

// freeOr returns addr when it can be listened on, else a free port on
// 127.0.0.1.
func freeOr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	ln.Close()
	return addr
}

// selfCommand is how to run this binary again from the current directory,
// as printed for pasting: "feathery" when it was found on PATH, the path it
// was started with otherwise, "go run ./cmd/feathery" under go run.
func selfCommand() string {
	arg0 := os.Args[0]
	if !strings.ContainsRune(arg0, os.PathSeparator) {
		if p, err := exec.LookPath(arg0); err == nil && filepath.Base(p) == arg0 {
			return arg0
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return "feathery"
	}
	if strings.Contains(exe, string(os.PathSeparator)+"go-build") {
		return "go run ./cmd/feathery"
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			if !strings.ContainsRune(rel, os.PathSeparator) {
				rel = "." + string(os.PathSeparator) + rel
			}
			return shellQuote(rel)
		}
	}
	return shellQuote(exe)
}

// demoLine is the once-a-second status line of the demo.
func demoLine(st statusReport) string {
	var b strings.Builder
	ready := 0
	for _, s := range st.Shards {
		if s.State == "ready" {
			ready++
		}
	}
	fmt.Fprintf(&b, "%s  shards %d/%d ready [", time.Now().Format(time.TimeOnly), ready, len(st.Shards))
	if len(st.Shards) <= 8 {
		for i, s := range st.Shards {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%d:%s", s.Shard, s.State)
		}
	} else {
		// Many shards: how many are in each state.
		counts := map[string]int{}
		var states []string
		for _, s := range st.Shards {
			if counts[s.State] == 0 {
				states = append(states, s.State)
			}
			counts[s.State]++
		}
		sort.Strings(states)
		for i, s := range states {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s:%d", s, counts[s])
		}
	}
	fmt.Fprintf(&b, "]  %.0f ev/s  published %d  filtered %d", st.EventsPerSecond, st.Published, st.Filtered)
	if !st.Redis.OK {
		b.WriteString("  redis DOWN")
	}
	return b.String()
}
