package discordtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Server is a running fake Discord: REST, the websocket gateway and the
// control API share one listener.
type Server struct {
	cfg  Config
	log  *slog.Logger
	addr string

	// mu guards everything below it: the world, the sessions and their
	// ledgers, the stats and the connection set.
	mu             sync.Mutex
	ln             net.Listener
	hs             *http.Server
	accepting      bool
	closed         bool
	conns          map[*gwConn]struct{}
	sessions       map[string]*session
	shardSessions  map[int][]*session
	live           []*session // sessions that may still receive events
	liveCounts     []int      // shard counts of the live sessions
	world          *world
	identifyLast   map[int]time.Time
	remaining      int
	stats          statsCounters
	violations     []Violation
	rate           float64
	rateEpoch      int64 // counts SetRate calls; the traffic loop stops a stale batch on a change
	mix            mixTable
	restWindow     time.Time
	restCount      int
	guildsVer      int
	sessionCounter uint64
	// events counts the dispatches made (LedgerEntry.Event); bcast is the
	// event being sent to several sessions, 0 when none.
	events, bcast int64
	// shards and maxGuildsPerShard start as the config's and change with
	// SetShards and SetMaxGuildsPerShard.
	shards, maxGuildsPerShard int

	rateChanged chan struct{}
	quit        chan struct{}
	wg          sync.WaitGroup // serve and traffic goroutines
	connWG      sync.WaitGroup // connection goroutines
	pending     atomic.Int64   // messages queued on connections, not yet written
	connSeq     atomic.Uint64
}

type statsCounters struct {
	identifies, resumes, invalidSessions, connections int64
	resumesOffResumeURL                               int64
	heartbeatRequests, heartbeatRequestsAnswered      int64
	violationsDropped                                 int64
	dispatches                                        map[int]int64
}

// Stats is a JSON-able summary of what the fake saw.
type Stats struct {
	// Sessions is the number of sessions that are connected or still
	// resumable.
	Sessions int `json:"sessions"`
	// Connections is the number of open gateway connections.
	Connections int `json:"connections"`
	// Identifies counts accepted IDENTIFYs, Resumes accepted RESUMEs.
	Identifies int64 `json:"identifies"`
	Resumes    int64 `json:"resumes"`
	// ResumesOffResumeURL counts accepted RESUMEs that did not come through
	// the resume_gateway_url path.
	ResumesOffResumeURL int64 `json:"resumes_off_resume_url"`
	// InvalidSessions counts op 9 sent.
	InvalidSessions int64 `json:"invalid_sessions"`
	// HeartbeatRequests counts op 1 sent by RequestHeartbeat and
	// HeartbeatRequestsAnswered the heartbeats that came back.
	HeartbeatRequests         int64 `json:"heartbeat_requests"`
	HeartbeatRequestsAnswered int64 `json:"heartbeat_requests_answered"`
	// TotalConnections counts accepted websocket connections.
	TotalConnections int64 `json:"total_connections"`
	// DispatchesPerShard counts dispatches sent or queued, per shard id.
	DispatchesPerShard map[int]int64 `json:"dispatches_per_shard"`
	// SessionStartRemaining is what /gateway/bot reports as remaining.
	SessionStartRemaining int `json:"session_start_remaining"`
	// Violations lists every protocol breach seen, in order (the first
	// 10000; ViolationsDropped counts the rest).
	Violations        []Violation `json:"violations"`
	ViolationsDropped int64       `json:"violations_dropped"`
}

// Violation is one protocol breach by a client. Shard is -1 when the
// connection had not identified. Kinds: "late_heartbeat",
// "identify_rate", "session_start_limit", "send_rate", "payload_before_identify",
// "resume_bad_seq", "already_authenticated", "bad_token", "decode_error",
// "unknown_opcode", "invalid_payload" (bad op 8), "invalid_intents",
// "disallowed_intents", "invalid_shard", "invalid_api_version",
// "sharding_required", "request_members_unknown_guild", "session_ended_by_client" (a client
// closed with 1000/1001, which ends its session).
type Violation struct {
	Shard  int       `json:"shard"`
	Kind   string    `json:"kind"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("configure fake discord: %w", err)
	}
	mix, err := newMixTable(cfg.Mix)
	if err != nil {
		return nil, fmt.Errorf("configure fake discord: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	s := &Server{
		cfg:               cfg,
		log:               cfg.Logger,
		addr:              ln.Addr().String(),
		conns:             map[*gwConn]struct{}{},
		sessions:          map[string]*session{},
		shardSessions:     map[int][]*session{},
		world:             newWorld(cfg),
		identifyLast:      map[int]time.Time{},
		remaining:         cfg.SessionStartRemaining,
		rate:              cfg.Rate,
		shards:            cfg.Shards,
		maxGuildsPerShard: cfg.MaxGuildsPerShard,
		mix:               mix,
		rateChanged:       make(chan struct{}, 1),
		quit:              make(chan struct{}),
	}
	s.stats.dispatches = map[int]int64{}
	s.serve(ln)
	s.wg.Add(1)
	go s.trafficLoop()
	s.log.Info("fake discord listening", "addr", s.addr, "guilds", cfg.Guilds, "rate", cfg.Rate)
	return s, nil
}

func (s *Server) serve(ln net.Listener) {
	hs := &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return
	}
	s.ln, s.hs, s.accepting = ln, hs, true
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("serve", "err", err)
		}
	}()
}

// Addr is the host:port the fake listens on.
func (s *Server) Addr() string { return s.addr }

// URL is "http://host:port"; REST is at URL()+"/api/v10/gateway/bot".
func (s *Server) URL() string { return "http://" + s.addr }

// GatewayURL is the url /gateway/bot reports: "ws://host:port/".
func (s *Server) GatewayURL() string { return "ws://" + s.addr + "/" }

// ResumeURL is the resume_gateway_url READY reports: "ws://host:port/resume".
func (s *Server) ResumeURL() string { return "ws://" + s.addr + "/resume" }

// stopServing closes the listener and every connection abruptly and waits
// for their goroutines.
func (s *Server) stopServing() {
	s.mu.Lock()
	hs := s.hs
	s.accepting = false
	conns := make([]*gwConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if hs != nil {
		_ = hs.Close()
	}
	for _, c := range conns {
		c.abort()
	}
	s.connWG.Wait()
}

// Close stops the fake: listener, connections, traffic. It waits for every
// goroutine it started.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.quit)
	s.stopServing()
	s.wg.Wait()
	return nil
}

// Restart drops every connection abruptly (TCP close, no close frame),
// refuses connections briefly, then accepts again on the same address.
// Sessions survive and stay resumable.
func (s *Server) Restart() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("restart: server closed")
	}
	s.mu.Unlock()
	s.stopServing()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err = net.Listen("tcp", s.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("restart: listen %s: %w", s.addr, err)
	}
	s.serve(ln)
	s.log.Info("fake discord restarted", "addr", s.addr)
	return nil
}

func (s *Server) violation(shard int, kind, detail string) {
	s.mu.Lock()
	s.violationLocked(shard, kind, detail)
	s.mu.Unlock()
}

// maxViolations bounds the violations kept; later ones are only counted.
const maxViolations = 10000

func (s *Server) violationLocked(shard int, kind, detail string) {
	if len(s.violations) >= maxViolations {
		s.stats.violationsDropped++
		return
	}
	s.violations = append(s.violations, Violation{Shard: shard, Kind: kind, Detail: detail, At: time.Now()})
	s.log.Debug("violation", "shard", shard, "kind", kind, "detail", detail)
}

// Stats returns a copy of the counters and violations.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	st := Stats{
		Connections:               len(s.conns),
		Identifies:                s.stats.identifies,
		Resumes:                   s.stats.resumes,
		ResumesOffResumeURL:       s.stats.resumesOffResumeURL,
		InvalidSessions:           s.stats.invalidSessions,
		TotalConnections:          s.stats.connections,
		HeartbeatRequests:         s.stats.heartbeatRequests,
		HeartbeatRequestsAnswered: s.stats.heartbeatRequestsAnswered,
		DispatchesPerShard:        make(map[int]int64, len(s.stats.dispatches)),
		SessionStartRemaining:     s.remaining,
		Violations:                append([]Violation{}, s.violations...),
	}
	for k, v := range s.stats.dispatches {
		st.DispatchesPerShard[k] = v
	}
	for _, ss := range s.live {
		if ss.alive(now, s.cfg.ResumeWindow) {
			st.Sessions++
		}
	}
	return st
}

// LedgerSession is the ledger of one session.
type LedgerSession struct {
	Session string        `json:"session"`
	Shard   int           `json:"shard"`
	Shards  int           `json:"shards"`
	Entries []LedgerEntry `json:"entries"`
}

// LedgerEntry is one dispatch sent (or queued for a disconnected session).
type LedgerEntry struct {
	Seq   int64  `json:"seq"`
	T     string `json:"t"`
	D     []byte `json:"-"`
	Guild string `json:"guild,omitempty"`
	// SentAt is when the dispatch was queued to the connection (or to the
	// disconnected session).
	SentAt time.Time `json:"sent_at"`
	// Before is the model's object before an UPDATE/DELETE/REMOVE, in the
	// shape of the World snapshot; nil otherwise.
	Before []byte `json:"-"`
	// Event identifies the event: the entries of several sessions that
	// carry the same Event are one event Discord sent to each (while shard
	// counts overlap, during a re-shard). Events are numbered in the order
	// they were made.
	Event int64 `json:"event"`
}

// Ledger returns every session ever identified on shard, oldest first, with
// copies of their entry slices (D and Before share bytes with the fake and
// must not be modified).
func (s *Server) Ledger(shard int) []LedgerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []LedgerSession
	for _, ss := range s.shardSessions[shard] {
		out = append(out, LedgerSession{Session: ss.id, Shard: ss.shard, Shards: ss.shards,
			Entries: append([]LedgerEntry(nil), ss.ledger...)})
	}
	return out
}

// Snapshot returns the model as raw JSON.
func (s *Server) Snapshot() World {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.world.snapshot()
}

// BotUserID is the bot's user id.
func (s *Server) BotUserID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.world.bot.ID
}

// SetRate changes the live traffic rate (dispatches per second). Once it
// returns, no live event is made at the previous rate: after SetRate(0) the
// ledgers only grow by what the test injects.
func (s *Server) SetRate(r float64) {
	if r < 0 {
		r = 0
	}
	s.mu.Lock()
	s.rate = r
	s.rateEpoch++
	s.mu.Unlock()
	select {
	case s.rateChanged <- struct{}{}:
	default:
	}
}

// WaitIdle waits until every dispatch queued on a connection has been
// written to its socket.
func (s *Server) WaitIdle(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait idle: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// handle routes a request: websocket upgrades to the gateway, the rest to
// REST and the control API.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		s.handleGateway(w, r)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/_fake/"):
		s.handleControl(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/"):
		s.handleREST(w, r)
	default:
		writeError(w, http.StatusNotFound, "no route "+r.URL.Path)
	}
}

// writeJSON replies with v as JSON. HTML characters are not escaped, so raw
// JSON (ledger d and before) goes out byte for byte.
func writeJSON(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		code = http.StatusInternalServerError
		buf.Reset()
		buf.WriteString(`{"message":"encode reply"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"message": msg, "code": 0})
}

func (s *Server) handleREST(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	now := time.Now()
	if now.Sub(s.restWindow) >= time.Second {
		s.restWindow, s.restCount = now, 0
	}
	s.restCount++
	over := s.restCount > s.cfg.RESTRateLimit
	left := max(0, s.cfg.RESTRateLimit-s.restCount)
	retry := time.Second - now.Sub(s.restWindow)
	s.mu.Unlock()
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.cfg.RESTRateLimit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(left))
	w.Header().Set("X-RateLimit-Reset-After", strconv.FormatFloat(retry.Seconds(), 'f', 3, 64))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatFloat(float64(now.Add(retry).UnixMilli())/1000, 'f', 3, 64))
	w.Header().Set("X-RateLimit-Bucket", "global")
	if over {
		secs := retry.Seconds()
		w.Header().Set("Retry-After", strconv.Itoa(int(secs)+1))
		w.Header().Set("X-RateLimit-Global", "true")
		w.Header().Set("X-RateLimit-Scope", "global")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"message": "You are being rate limited.", "retry_after": secs, "global": true})
		return
	}
	path := r.URL.Path
	version := ""
	for _, v := range []string{"/api/v10/", "/api/v9/"} {
		if strings.HasPrefix(path, v) {
			version, path = v, "/"+strings.TrimPrefix(path, v)
		}
	}
	if version == "" {
		writeError(w, http.StatusNotFound, "unsupported API version in "+r.URL.Path+" (use /api/v10 or /api/v9)")
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, r.Method+" "+path+": only GET is served")
		return
	}
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bot "); path != "/gateway" && (!ok || !slices.Contains(s.tokens(), auth)) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "401: Unauthorized", "code": 0})
		return
	}
	switch path {
	case "/gateway":
		writeJSON(w, http.StatusOK, map[string]string{"url": s.GatewayURL()})
	case "/gateway/bot":
		s.mu.Lock()
		rem, shards := s.remaining, s.shards
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{
			"url":    s.GatewayURL(),
			"shards": shards,
			"session_start_limit": map[string]int64{
				"total": int64(s.cfg.SessionStartTotal), "remaining": int64(rem),
				"reset_after": 14400000, "max_concurrency": int64(s.cfg.MaxConcurrency)},
		})
	case "/users/@me":
		s.mu.Lock()
		u := s.world.bot.json()
		s.mu.Unlock()
		b := append(append([]byte(nil), u[:len(u)-1]...), `,"verified":true,"mfa_enabled":false,"flags":0,"email":null,"locale":"en-US"}`...)
		writeJSON(w, http.StatusOK, json.RawMessage(b))
	case "/oauth2/applications/@me", "/applications/@me":
		s.mu.Lock()
		owner := json.RawMessage(s.world.bot.json())
		if s.world.users.len() > 1 {
			owner = s.world.users.at(1).json()
		}
		app := map[string]any{"id": s.world.appID, "name": s.world.bot.Username, "icon": nil, "description": "",
			"bot_public": true, "bot_require_code_grant": false, "verify_key": "0000000000000000000000000000000000000000000000000000000000000000",
			"flags": 565248, "team": nil, "owner": owner, "bot": json.RawMessage(s.world.bot.json())}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, app)
	default:
		writeError(w, http.StatusNotFound, "no REST route "+path+" (served: /gateway, /gateway/bot, /users/@me, /oauth2/applications/@me)")
	}
}

// handleGateway upgrades the request and runs the connection.
func (s *Server) handleGateway(w http.ResponseWriter, r *http.Request) {
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		s.log.Debug("upgrade", "err", err)
		return
	}
	c := newConn(s, nc, rw.Reader, r.URL.Path)
	s.mu.Lock()
	if !s.accepting {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.stats.connections++
	s.connWG.Add(2)
	s.mu.Unlock()
	go c.readLoop(r.URL.Query())
}
