package main

import (
	"context"
	"fmt"
	"time"

	"github.com/feathery/feathery/gateway/discordtest"
)

func (m *Main) runFakeDiscord(ctx context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("fakediscord", "[flags]", &g)
	var cfg discordtest.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "listen address (REST, gateway and control API)")
	fs.StringVar(&cfg.Token, "token", "fake-token", "the one valid bot token")
	fs.IntVar(&cfg.Guilds, "guilds", 10, "guilds in the generated world")
	fs.IntVar(&cfg.MembersPerGuild, "members", 20, "members per guild")
	fs.IntVar(&cfg.Shards, "shards", 1, "recommended shard count reported by /gateway/bot")
	fs.IntVar(&cfg.MaxConcurrency, "max-concurrency", 1, "session_start_limit.max_concurrency")
	fs.DurationVar(&cfg.IdentifyWindow, "identify-window", 5*time.Second, "time between two IDENTIFYs of one bucket")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat-interval", 41250*time.Millisecond, "heartbeat interval sent in HELLO")
	fs.Float64Var(&cfg.Rate, "rate", 0, "live dispatches per second over all connected shards")
	fs.Int64Var(&cfg.Seed, "seed", 1, "seed of the world and the traffic")
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}
	log, err := m.newLogger(m.Stderr, logOptions{Level: g.logLevel, Format: g.logFormat, Secrets: []string{cfg.Token}})
	if err != nil {
		return err
	}
	cfg.Logger = log
	srv, err := discordtest.Start(cfg)
	if err != nil {
		return fmt.Errorf("start fake Discord: %w", err)
	}
	fmt.Fprintf(m.Stdout, "fake Discord listening on %s\n", srv.Addr())
	fmt.Fprintf(m.Stdout, "  REST:     %s/api/v10/gateway/bot\n", srv.URL())
	fmt.Fprintf(m.Stdout, "  gateway:  %s\n", srv.GatewayURL())
	fmt.Fprintf(m.Stdout, "  control:  %s/_fake/stats\n", srv.URL())
	fmt.Fprintf(m.Stdout, "point feathery at it with discord.rest_url: %s/api/v10\n", srv.URL())
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return fmt.Errorf("close fake Discord: %w", err)
	}
	return nil
}
