package main

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed dashboard.html
var dashboardHTML []byte

// adminBackend is what the admin API shows and acts on; the daemon
// implements it.
type adminBackend interface {
	// Status is the snapshot behind GET /api/status.
	Status(ctx context.Context) statusReport
	// Health is the snapshot behind GET /healthz.
	Health(ctx context.Context) healthReport
	// Gatherer is what GET /metrics exposes.
	Gatherer() prometheus.Gatherer
	// Reconnect makes one shard reconnect (and resume).
	Reconnect(ctx context.Context, bot string, shard int) error
	// Reload re-reads the config file and puts it in force.
	Reload(ctx context.Context) error
	// Reshard re-shards a bot live to shards.
	Reshard(ctx context.Context, bot string, shards int) error
}

// errNotFound is returned by adminBackend.Reconnect for an unknown shard.
var errNotFound = errors.New("not found")

// healthReport is the body of GET /healthz.
type healthReport struct {
	OK          bool   `json:"ok"`
	Redis       string `json:"redis"` // "ok" or the error
	ShardsReady int    `json:"shards_ready"`
	ShardsTotal int    `json:"shards_total"`
	Detail      string `json:"detail,omitempty"`
	// Checkpoints are the open checkpoint incidents (503 while any).
	Checkpoints []checkpointProblem `json:"checkpoints,omitempty"`
	// Node and Unowned: in a fleet, this node's id and the shards of its
	// bots without an owner for longer than the lease TTL.
	Node    string `json:"node,omitempty"`
	Unowned int    `json:"unowned,omitempty"`
}

// fleetBackend is implemented by backends that can be a fleet's node.
type fleetBackend interface {
	// Fleet is the view behind GET /api/fleet; false when fleet mode is off.
	Fleet(ctx context.Context) (broker.FleetView, bool)
	// Drain hands every shard of the node over, in the background.
	Drain(ctx context.Context) error
}

// adminServer is the HTTP admin API and dashboard.
type adminServer struct {
	backend adminBackend
	token   string
	log     *slog.Logger
	srv     *http.Server
	ln      net.Listener
	wg      sync.WaitGroup
	err     error // from Serve, read after wg.Wait
	pprof   pprofMode
}

// pprofMode is who may read /debug/pprof.
type pprofMode uint8

const (
	pprofOpen  pprofMode = iota // a loopback bind without a token: anyone on this host
	pprofToken                  // the bearer token is needed
	pprofOff                    // beyond loopback without a token: nobody
)

// pprofAccess decides who may profile: profiles show code paths, goroutine
// dumps show what runs, and a CPU profile costs CPU while it runs, so
// beyond loopback they need the token, and without one they are off.
func pprofAccess(addr net.Addr, token string) pprofMode {
	switch {
	case token != "":
		return pprofToken
	case addrIsLoopback(addr):
		return pprofOpen
	}
	return pprofOff
}

// addrIsLoopback reports whether a listener's address is a loopback one
// (an unspecified address such as 0.0.0.0 or [::] is not).
func addrIsLoopback(addr net.Addr) bool {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

// startAdmin listens on addr and serves the admin API until Close.
func startAdmin(addr, token string, b adminBackend, log *slog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen admin API: %w", err)
	}
	a := &adminServer{backend: b, token: token, log: log, ln: ln}
	a.pprof = pprofAccess(ln.Addr(), token)
	switch a.pprof {
	case pprofOff:
		log.Warn("admin API: /debug/pprof is off: it listens beyond loopback without admin.token; set admin.token to profile", "addr", ln.Addr().String())
	case pprofToken:
		if !addrIsLoopback(ln.Addr()) {
			log.Info("admin API: /debug/pprof needs the bearer token (admin.token): it listens beyond loopback", "addr", ln.Addr().String())
		}
	}
	a.srv = &http.Server{
		Handler:           a.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      2 * time.Minute, // above pprof's default 30 s profile
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.err = err
		}
	}()
	return a, nil
}

// Addr is the address the admin API listens on.
func (a *adminServer) Addr() string { return a.ln.Addr().String() }

// URL is the dashboard's URL.
func (a *adminServer) URL() string { return "http://" + a.Addr() + "/" }

// Close shuts the server down, waiting for requests in flight within ctx.
func (a *adminServer) Close(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if err != nil {
		a.srv.Close()
	}
	a.wg.Wait()
	if err == nil {
		err = a.err
	}
	if err != nil {
		return fmt.Errorf("close admin API: %w", err)
	}
	return nil
}

func (a *adminServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.handleDashboard)
	mux.HandleFunc("GET /healthz", a.handleHealthz)
	mux.HandleFunc("GET /api/status", a.handleStatus)
	mux.HandleFunc("GET /metrics", a.handleMetrics)
	mux.HandleFunc("POST /api/bots/{bot}/shards/{id}/reconnect", a.requireToken(a.handleReconnect))
	a.consoleRoutes(mux) // console.go, cacheapi.go
	mux.HandleFunc("POST /api/reload", a.requireToken(a.handleReload))
	mux.HandleFunc("POST /api/bots/{bot}/reshard", a.requireToken(a.handleReshard))
	mux.HandleFunc("GET /api/fleet", a.handleFleet)
	mux.HandleFunc("POST /api/node/drain", a.requireToken(a.handleDrain))
	// Go's profiler, registered on this mux (the package's init also fills
	// http.DefaultServeMux, which feathery never serves); see pprofAccess.
	mux.HandleFunc("GET /debug/pprof/", a.guardPprof(pprof.Index))
	mux.HandleFunc("GET /debug/pprof/cmdline", a.guardPprof(pprof.Cmdline))
	mux.HandleFunc("GET /debug/pprof/profile", a.guardPprof(pprof.Profile))
	mux.HandleFunc("GET /debug/pprof/symbol", a.guardPprof(pprof.Symbol))
	mux.HandleFunc("POST /debug/pprof/symbol", a.guardPprof(pprof.Symbol))
	mux.HandleFunc("GET /debug/pprof/trace", a.guardPprof(pprof.Trace))
	return mux
}

// guardPprof applies a.pprof to a profiler endpoint.
func (a *adminServer) guardPprof(next http.HandlerFunc) http.HandlerFunc {
	switch a.pprof {
	case pprofOpen:
		return next
	case pprofToken:
		return a.requireToken(next)
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusForbidden, apiError{"profiling is off: the admin API listens beyond loopback without admin.token; set admin.token"})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

type apiError struct {
	Error string `json:"error"`
}

func (a *adminServer) handleDashboard(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(dashboardHTML)
}

func (a *adminServer) handleHealthz(w http.ResponseWriter, r *http.Request) {
	h := a.backend.Health(r.Context())
	code := http.StatusOK
	if !h.OK {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}

func (a *adminServer) handleStatus(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.backend.Status(r.Context()))
}

func (a *adminServer) handleMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(a.backend.Gatherer(), promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}).ServeHTTP(w, r)
}

// requireToken guards a state-changing endpoint with the bearer token.
func (a *adminServer) requireToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.token == "" {
			writeJSON(w, http.StatusForbidden, apiError{"state-changing endpoints are disabled: set admin.token in the config"})
			return
		}
		got, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(a.token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="feathery"`)
			writeJSON(w, http.StatusUnauthorized, apiError{"missing or wrong bearer token"})
			return
		}
		next(w, r)
	}
}

// bearerToken returns the credentials of an Authorization header of the
// Bearer scheme; the scheme name is case-insensitive (RFC 9110 11.1).
func bearerToken(h string) (string, bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimLeft(cred, " ")
	return cred, cred != ""
}

func (a *adminServer) handleReconnect(w http.ResponseWriter, r *http.Request) {
	bot := r.PathValue("bot")
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil || id < 0 {
		writeJSON(w, http.StatusBadRequest, apiError{"shard id must be a non-negative integer"})
		return
	}
	if err := a.backend.Reconnect(r.Context(), bot, id); err != nil {
		if errors.Is(err, errNotFound) {
			writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no shard %d of bot %q runs here", id, bot)})
			return
		}
		a.log.Warn("reconnect shard from admin API", "bot", bot, "shard", id, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{"reconnect failed: " + err.Error()})
		return
	}
	a.log.Info("shard reconnect requested", "bot", bot, "shard", id, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, map[string]any{"bot": bot, "shard": id, "reconnecting": true})
}

func (a *adminServer) handleReload(w http.ResponseWriter, r *http.Request) {
	a.log.Info("config reload requested", "remote", r.RemoteAddr)
	if err := a.backend.Reload(r.Context()); err != nil {
		msg := oneLine(err.Error())
		a.log.Error("config reload refused; the running config stays", "err", msg)
		writeJSON(w, http.StatusBadRequest, apiError{msg})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

func (a *adminServer) handleReshard(w http.ResponseWriter, r *http.Request) {
	bot := r.PathValue("bot")
	var req struct {
		Shards *int `json:"shards"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Shards == nil || *req.Shards < 1 || *req.Shards > 1<<20 {
		writeJSON(w, http.StatusBadRequest, apiError{`want a body {"shards": M} with M a positive shard count`})
		return
	}
	err := a.backend.Reshard(r.Context(), bot, *req.Shards)
	switch {
	case errors.Is(err, errNotFound):
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no bot %q runs here", bot)})
		return
	case errors.Is(err, errReshardRefused):
		writeJSON(w, http.StatusConflict, apiError{oneLine(err.Error())})
		return
	case err != nil:
		a.log.Warn("re-shard from admin API", "bot", bot, "err", err)
		writeJSON(w, http.StatusInternalServerError, apiError{"re-shard failed: " + oneLine(err.Error())})
		return
	}
	a.log.Info("re-shard requested", "bot", bot, "shards", *req.Shards, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, map[string]any{"ok": true})
}

func (a *adminServer) handleFleet(w http.ResponseWriter, r *http.Request) {
	fb, ok := a.backend.(fleetBackend)
	var v broker.FleetView
	if ok {
		v, ok = fb.Fleet(r.Context())
	}
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{"fleet mode is off (fleet.enabled, or the embedded Redis)"})
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *adminServer) handleDrain(w http.ResponseWriter, r *http.Request) {
	fb, ok := a.backend.(fleetBackend)
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{"fleet mode is off: nothing to drain to"})
		return
	}
	if err := fb.Drain(r.Context()); err != nil {
		writeJSON(w, http.StatusConflict, apiError{err.Error()})
		return
	}
	a.log.Info("node drain requested", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusAccepted, map[string]any{"draining": true})
}
