package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feathery/feathery/gateway"
)

// runReceive connects the config's shards and drops every dispatch: the
// gateway alone (read, inflate, frame and peek), with no Redis, no filter,
// no cache and no stream. `feathery bench` runs it to measure the floor
// under feathery's CPU per event: what receiving the same traffic costs a
// process that does nothing with it. With admin.addr set it answers GET
// /healthz with its ready shards, as `feathery run` does, and GET
// /api/received with the dispatches received so far ({"events": N}).
func (m *Main) runReceive(ctx context.Context, g globalFlags, args []string) error {
	fs := m.newFlagSet("receive", "-c feathery.yaml", &g)
	path := fs.String("c", "feathery.yaml", "config file")
	fs.StringVar(path, "config", "feathery.yaml", "config file (same as -c)")
	if err := parseFlags(fs, args); err != nil {
		return helpOK(err)
	}
	cfg, err := loadConfigFile(*path, m.LookupEnv)
	if err != nil {
		return err
	}
	log, err := m.configLogger(g, cfg, nil)
	if err != nil {
		return err
	}
	var events atomic.Int64
	mgr, err := gateway.NewManager(gateway.ManagerConfig{
		Bots: gatewayBots(cfg),
		Sink: gateway.SinkFunc(func(context.Context, *gateway.Event) error {
			events.Add(1)
			return nil
		}),
		RESTURL:        cfg.Discord.RESTURL,
		IdentifyWindow: cfg.IdentifyWindow.D(),
		Logger:         log.With("component", "gateway"),
	})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	var srv *http.Server
	var wg sync.WaitGroup
	if addr := cfg.Admin.Addr; addr != "" && addr != "off" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen on admin.addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
			h := healthReport{OK: true, Redis: "unused"}
			for _, st := range mgr.Status() {
				h.ShardsTotal++
				if st.State == gateway.StateReady {
					h.ShardsReady++
				}
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(h)
		})
		mux.HandleFunc("GET /api/received", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(struct {
				Events int64 `json:"events"`
			}{events.Load()})
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("health endpoint stopped", "err", err)
			}
		})
	}
	if err := mgr.Start(ctx); err != nil {
		if srv != nil {
			_ = srv.Close()
			wg.Wait()
		}
		return fmt.Errorf("start gateway: %w", err)
	}
	log.Info("receiving: every dispatch is dropped", "config", *path, "bots", len(cfg.Bots))
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout.D())
	defer cancel()
	err = mgr.Close(sctx)
	if srv != nil {
		_ = srv.Close()
		wg.Wait()
	}
	fmt.Fprintf(m.Stdout, "received %d dispatches\n", events.Load())
	if err != nil {
		return fmt.Errorf("stop gateway: %w", err)
	}
	return nil
}
