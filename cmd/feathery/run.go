package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

func (m *Main) runRun(ctx context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("run", "-c feathery.yaml", &g)
	path := fs.String("c", "feathery.yaml", "config file")
	fs.StringVar(path, "config", "feathery.yaml", "config file (same as -c)")
	check := fs.Bool("check", false, "only check the config file and exit")
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}
	cfg, err := loadConfigFile(*path, m.LookupEnv)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(m.Stdout, "%s: ok (%d bot(s))\n", *path, len(cfg.Bots))
		return nil
	}
	level := new(slog.LevelVar)
	log, err := m.configLogger(g, cfg, level)
	if err != nil {
		return err
	}
	log.Info("starting feathery", "version", version(), "config", *path, "bots", len(cfg.Bots))
	deps := daemonDeps{Logger: log, ConfigPath: *path, LookupEnv: m.LookupEnv}
	if g.logLevel == "" {
		deps.LevelVar = level // --log-level on the command line wins over reloads
	}
	d, err := runDaemon(ctx, cfg, deps)
	if err != nil {
		return err
	}
	if addr := d.RedisAddr(); addr != "" {
		log.Info("embedded redis listening (in memory, lost on exit)", "addr", addr)
		fmt.Fprintf(m.Stdout, "embedded Redis: %s (redis-cli -p %s)\n", addr, portOf(addr))
	}
	if d.admin != nil {
		log.Info("admin API listening", "url", d.admin.URL())
		fmt.Fprintf(m.Stdout, "dashboard: %s\n", d.admin.URL())
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-m.Hangup:
			// SIGHUP (systemd's reload) re-reads the config; it never stops
			// the daemon.
			log.Info("SIGHUP received: reloading the config", "config", *path)
			rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			if err := d.Reload(rctx); err != nil {
				log.Error("config reload refused; the running config stays", "err", oneLine(err.Error()))
			}
			cancel()
		}
	}
	cfg = d.config()
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.D().String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout.D())
	defer cancel()
	start := time.Now()
	if err := d.Close(sctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown did not finish within %s: %w", cfg.ShutdownTimeout.D(), err)
		}
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// configLogger is the logger of a command run from cfg: the command line's
// --log-level and --log-format over the config's, the config's secrets
// redacted; level, when set, is the handler's level (changed by reloads).
func (m *Main) configLogger(g globalFlags, cfg *Config, level *slog.LevelVar) (*slog.Logger, error) {
	return m.newLogger(m.Stderr, logOptions{
		Level:    firstNonEmpty(g.logLevel, cfg.Log.Level),
		Format:   firstNonEmpty(g.logFormat, cfg.Log.Format),
		Secrets:  cfg.secrets(),
		LevelVar: level,
	})
}
