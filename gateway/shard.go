package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Reasons a connection ends, besides CloseError and read errors.
var (
	errStopping        = errors.New("shard stopping")
	errReconnect       = errors.New("gateway asked to reconnect (op 7)")
	errAskedReconnect  = errors.New("reconnect requested")
	errZombie          = errors.New("no heartbeat ACK between two heartbeats (zombie connection)")
	errSink            = errors.New("sink refused event")
	errResumeExhausted = errors.New("resume failed repeatedly")
	errBadPayload      = errors.New("bad gateway payload")
	errSecondHello     = errors.New("second HELLO on one connection")
	// errShardingRequired: close code 4011; the bot re-shards.
	errShardingRequired = errors.New("sharding required")
)

// closeShardingRequired is the close code of "sharding required".
const closeShardingRequired = 4011

// invalidSessionError is INVALID_SESSION (op 9).
type invalidSessionError struct{ resumable bool }

func (e *invalidSessionError) Error() string {
	return "gateway invalidated the session (op 9, resumable " + strconv.FormatBool(e.resumable) + ")"
}

// Reconnect policy.
const (
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
	// After this many connections in a row that failed to resume, the shard
	// resumes through the main gateway URL instead of resume_gateway_url...
	resumeFailsMainURL = 2
	// ...and after this many it gives the session up and identifies.
	resumeFailsIdentify = 5
	// After this many connections in a row that got RESUMED and ended
	// before the next event was published, the shard gives the session up
	// and identifies (a payload that fails right after RESUMED would
	// otherwise loop for ever).
	resumeLoopIdentify = 3
	// helloTimeout bounds the wait for HELLO after the handshake.
	helloTimeout = 20 * time.Second
	dialTimeout  = 15 * time.Second
)

// shard owns one gateway connection at a time for (bot, id).
type shard struct {
	m   *Manager
	bot *botRun
	id  int
	log *slog.Logger

	// Owner-goroutine state.
	session   string
	resumeURL string
	resumeTry int // connections in a row that did not get a resume accepted
	attempt   int // consecutive failed connections, for backoff
	resumed   bool
	// gotResumed: this connection got RESUMED; pubAfter: and an event was
	// published after it. resumeLoop counts connections in a row that got
	// RESUMED without publishing another event.
	gotResumed, pubAfter bool
	resumeLoop           int
	// reload: the Sink's checkpoint went back; load it before the next
	// connection and resume from it.
	reload bool
	// badResumeURL is the resume URL last refused (warned about once).
	badResumeURL string
	ev           Event
	fr           *frameReader
	inf          *inflater
	onPayload    func([]byte) error
	cur          *conn
	connCtx      context.Context

	seq atomic.Int64 // last seq the Sink accepted

	mu       sync.Mutex
	state    State
	lastErr  string
	latency  time.Duration
	closeCtx context.Context // set by stop: bounds Flush and the close frame
	// pubSession mirrors session for status readers.
	pubSession string

	events, bytes, reconnects, resumes, identifies atomic.Uint64
	// guilds counts the session's guilds (autoscale).
	guilds guildCount

	members memberQueue
	// live is the beater of the connection past HELLO (nil between
	// connections); reconnectAsked: Reconnect was called while none was
	// live.
	liveMu         sync.Mutex
	live           *beater
	reconnectAsked bool

	// cancel stops the shard; done is closed once run returned (set by
	// Manager.launchLocked).
	cancel context.CancelFunc
	done   chan struct{}
}

func newShard(m *Manager, b *botRun, id int) *shard {
	s := &shard{
		m:   m,
		bot: b,
		id:  id,
		log: m.log.With("bot", b.cfg.Name, "shard", id),
		fr:  newFrameReader(nil, m.maxPayload),
		inf: newInflater(b.cfg.Compression, m.maxPayload),
	}
	s.members.wake = s.kickMembers
	s.onPayload = s.handlePayload
	return s
}

// setState records st and reports it.
func (s *shard) setState(st State) {
	s.mu.Lock()
	changed := s.state != st
	s.state = st
	s.mu.Unlock()
	if changed {
		s.control(ControlEvent{Kind: ControlState, State: st, Session: s.session, Seq: s.seq.Load()})
	}
}

func (s *shard) control(ev ControlEvent) {
	if s.m.cfg.OnControl == nil {
		return
	}
	ev.Bot, ev.Shard = s.bot.cfg.Name, s.id
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	if ev.Kind != ControlState {
		s.mu.Lock()
		ev.State = s.state
		s.mu.Unlock()
	}
	s.m.cfg.OnControl(ev)
}

// setSession changes the session (owner goroutine only).
func (s *shard) setSession(id, resumeURL string) {
	s.session, s.resumeURL = id, resumeURL
	s.mu.Lock()
	s.pubSession = id
	s.mu.Unlock()
}

func (s *shard) setErr(err error) {
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// run is the shard's owner loop: connect, read until the connection ends,
// decide what to do next, repeat until ctx ends or a fatal error.
func (s *shard) run(ctx context.Context) {
	defer s.inf.close()
	if !s.bot.fresh {
		s.loadSession(ctx)
	}
	for {
		if s.reload {
			s.reloadSession(ctx)
		}
		if err := s.admit(ctx); err != nil {
			s.revoked(err)
			return
		}
		err := s.connectOnce(ctx)
		if errors.Is(err, ErrShardRevoked) && ctx.Err() == nil {
			s.revoked(err)
			return
		}
		if ctx.Err() != nil {
			if !errors.Is(err, errStopping) {
				// Stopped with no connection open: flush all the same.
				s.flush(s.stopCtx())
			}
			s.setState(StateStopped)
			return
		}
		delay, fatal := s.decide(ctx, err)
		if errors.Is(fatal, errShardingRequired) {
			s.setErr(fatal)
			s.log.Warn("shard stopped: Discord requires more shards; the bot re-shards", "err", fatal)
			s.setState(StateFailed)
			s.control(ControlEvent{Kind: ControlShardingRequired, Err: fatal.Error()})
			return
		}
		if fatal != nil {
			s.setErr(fatal)
			s.log.Error("shard stopped", "err", fatal)
			s.setState(StateFailed)
			s.control(ControlEvent{Kind: ControlFatal, Err: fatal.Error(), Session: s.session, Seq: s.seq.Load()})
			return
		}
		s.reconnects.Add(1)
		s.setState(StateReconnecting)
		if !sleepCtx(ctx, delay) {
			s.flush(s.stopCtx())
			s.setState(StateStopped)
			return
		}
	}
}

// admit asks ManagerConfig.Admit whether the shard may connect; it returns
// an error only when the shard was revoked.
func (s *shard) admit(ctx context.Context) error {
	if s.m.cfg.Admit == nil {
		return nil
	}
	err := s.m.cfg.Admit(ctx, s.bot.cfg.Name, s.id)
	switch {
	case err == nil || ctx.Err() != nil:
		return nil
	case errors.Is(err, ErrShardRevoked):
		return err
	}
	s.log.Warn("could not check that this process still owns the shard; connecting", "err", err)
	return nil
}

// revoked stops the shard for good: another process owns it.
func (s *shard) revoked(err error) {
	s.setErr(err)
	s.log.Warn("another process owns this shard now; stopping it here", "err", err)
	s.setState(StateStopped)
	s.control(ControlEvent{Kind: ControlRevoked, Err: err.Error(), Session: s.session, Seq: s.seq.Load()})
}

// loadSession resumes a checkpoint the Sink saved in an earlier process, if
// it was made with this shard count and these intents.
func (s *shard) loadSession(ctx context.Context) {
	if s.m.sessions == nil {
		return
	}
	var sess Session
	var err error
	for try := 1; ; try++ {
		sess, err = s.m.sessions.Load(ctx, s.bot.cfg.Name, s.id)
		if err == nil || errors.Is(err, ErrNoSession) || try == 3 || !sleepCtx(ctx, backoff(try+2)) {
			break
		}
	}
	switch {
	case errors.Is(err, ErrNoSession):
		return
	case err != nil:
		// Identifying starts a new session: the events the saved one
		// still held are lost, so say so loudly.
		s.log.Error("load saved session failed; identifying instead", "err", err)
		s.control(ControlEvent{Kind: ControlGap, Session: sess.ID, Seq: sess.Seq, Err: "saved session unusable: " + err.Error()})
		return
	}
	if sess.ID == "" || sess.ShardCount != s.bot.count || sess.Intents != s.bot.cfg.Intents {
		s.log.Warn("discarding saved session made with other shard count or intents; its events not yet received are lost",
			"session", sess.ID, "seq", sess.Seq, "saved_shards", sess.ShardCount, "saved_intents", sess.Intents)
		if err := s.m.sessions.Delete(ctx, s.bot.cfg.Name, s.id); err != nil {
			s.log.Warn("delete saved session", "err", err)
		}
		s.control(ControlEvent{Kind: ControlGap, Session: sess.ID, Seq: sess.Seq,
			Err: fmt.Sprintf("saved session made with %d shards and intents %d, now %d and %d", sess.ShardCount, sess.Intents, s.bot.count, s.bot.cfg.Intents)})
		return
	}
	s.setSession(sess.ID, sess.ResumeURL)
	s.seq.Store(sess.Seq)
	s.log.Info("resuming saved session", "session", sess.ID, "seq", sess.Seq)
}

// reloadSession loads the stored checkpoint again after the Sink said its
// checkpoint went back, and makes the next RESUME start from it: Discord
// replays what the store lost. A checkpoint of another session (or none)
// holds nothing of this session: it resumes from the start. When the store
// cannot be read, the session resumes from the start too (the Sink skips
// what it already holds).
func (s *shard) reloadSession(ctx context.Context) {
	s.reload = false
	if s.session == "" {
		return
	}
	var sess Session
	var err error
	for try := 1; ; try++ {
		sess, err = s.m.sessions.Load(ctx, s.bot.cfg.Name, s.id)
		if err == nil || errors.Is(err, ErrNoSession) || try == 5 || !sleepCtx(ctx, backoff(try+2)) {
			break
		}
	}
	accepted := s.seq.Load()
	from := int64(0)
	switch {
	case err == nil && sess.ID == s.session:
		from = min(sess.Seq, accepted)
	case err != nil && !errors.Is(err, ErrNoSession):
		s.log.Warn("load the stored checkpoint failed; resuming the session from its start", "err", err)
	}
	s.seq.Store(from)
	s.log.Warn("resuming from the stored checkpoint", "session", s.session, "seq", from, "accepted", accepted)
}

// decide classifies why a connection ended and returns how long to wait
// before the next one, or a fatal error.
func (s *shard) decide(ctx context.Context, err error) (time.Duration, error) {
	s.reportEnd(err)
	var rw RewoundError
	rewound := errors.As(err, &rw) && rw.CheckpointRewound()
	if s.session != "" && !s.resumed {
		s.resumeTry++
	}
	switch {
	case rewound:
	case s.gotResumed && !s.pubAfter:
		s.resumeLoop++
	case s.pubAfter:
		s.resumeLoop = 0
	}
	s.attempt++
	delay := backoff(s.attempt)
	var ce *CloseError
	var inv *invalidSessionError
	switch {
	case rewound:
		s.log.Warn("the sink's checkpoint went back; resuming from the stored checkpoint", "err", err)
		s.reload = true
		if s.attempt <= 1 {
			delay = 0
		}
	case errors.As(err, &ce):
		switch ce.action() {
		case actionFatal:
			// A fleet (OnDemand) runs its shards by leases the nodes agree
			// on: 4011 re-shards only through it (ReshardVia).
			if ce.Code == closeShardingRequired && s.bot.cfg.ShardIDs == nil && (!s.m.cfg.OnDemand || s.m.cfg.ReshardVia != nil) {
				s.loseSession(ctx, err.Error())
				s.m.shardingRequired(s)
				return 0, fmt.Errorf("shard %d: %w: %w", s.id, errShardingRequired, ce)
			}
			return 0, fmt.Errorf("shard %d: %w: %w", s.id, ErrFatal, ce)
		case actionNewSession:
			s.log.Warn("session ended by gateway; identifying", "err", err)
			s.loseSession(ctx, err.Error())
			delay = backoff(1)
		default:
			s.log.Warn("connection closed; resuming", "err", err)
		}
	case errors.As(err, &inv):
		if inv.resumable && s.session != "" {
			s.log.Info("session invalidated as resumable; resuming")
			if s.attempt <= 1 {
				delay = 0
			}
		} else {
			s.log.Warn("session invalidated; identifying after a pause")
			s.loseSession(ctx, err.Error())
			delay = time.Second + rand.N(4*time.Second)
		}
	case errors.Is(err, errReconnect) || errors.Is(err, errAskedReconnect):
		s.log.Info("reconnecting and resuming", "why", err)
		if s.attempt <= 1 {
			delay = 0
		}
	case errors.Is(err, ErrStartLimitExhausted):
		s.log.Error("session start limit exhausted; waiting for its reset", "err", err)
		delay = max(s.bot.limits.ResetAfter, time.Minute)
	case errors.Is(err, errSink):
		s.log.Warn("sink refused an event; resuming from the last accepted seq", "err", err, "seq", s.seq.Load(), "retry_in", delay)
	case errors.Is(err, errZombie):
		s.log.Warn("closed zombie connection; resuming", "err", err, "retry_in", delay)
	case errors.Is(err, ErrBadFrame) || errors.Is(err, ErrPayloadTooLarge):
		s.log.Error("closing connection after bad frame; resuming", "err", err, "retry_in", delay)
	case errors.Is(err, errBadPayload):
		s.log.Error("closing connection after bad payload; resuming", "err", err, "retry_in", delay)
	default:
		s.log.Warn("connection lost; reconnecting", "err", err, "retry_in", delay)
	}
	if err != nil {
		s.setErr(err)
	}
	if s.session != "" && s.resumeTry >= resumeFailsIdentify {
		s.log.Warn("resume failed repeatedly; giving the session up and identifying", "session", s.session, "tries", s.resumeTry)
		s.loseSession(ctx, errResumeExhausted.Error())
	}
	if s.session != "" && s.resumeLoop >= resumeLoopIdentify {
		s.log.Warn("resumed connections keep ending before the next event; giving the session up and identifying",
			"session", s.session, "resumes", s.resumeLoop, "err", err)
		s.loseSession(ctx, fmt.Sprintf("%d resumes in a row ended before the next event (%v)", s.resumeLoop, err))
	}
	return delay, nil
}

// loseSession forgets the current session, deletes the saved checkpoint and
// reports the gap.
func (s *shard) loseSession(ctx context.Context, reason string) {
	old, seq := s.session, s.seq.Load()
	s.setSession("", "")
	s.resumeTry, s.resumeLoop = 0, 0
	s.reload = false
	s.seq.Store(0)
	// In a re-shard's new set, the saved checkpoint of this id is the old
	// set's shard's (the new set's is staged): it stays.
	h := s.bot.ho.Load()
	if s.m.sessions != nil && (h == nil || h.newBot != s.bot) {
		if err := s.m.sessions.Delete(ctx, s.bot.cfg.Name, s.id); err != nil {
			s.log.Warn("delete saved session", "err", err)
		}
	}
	if old != "" {
		s.control(ControlEvent{Kind: ControlGap, Session: old, Seq: seq, Err: reason})
	}
}

// backoff returns the delay before connection attempt n (1-based): capped
// exponential with jitter in [d/2, d].
func backoff(n int) time.Duration {
	d := backoffMin << min(n-1, 10)
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// gatewayURL returns the URL to dial: the session's resume URL while
// resuming (unless resuming through it failed repeatedly), else the main one,
// with the query parameters for JSON and the compression.
func (s *shard) gatewayURL() string {
	base := s.bot.url
	if s.session != "" && s.resumeURL != "" && s.resumeTry < resumeFailsMainURL {
		if resumeURLAllowed(s.resumeURL, s.bot.url) {
			base = s.resumeURL
		} else if s.badResumeURL != s.resumeURL {
			s.badResumeURL = s.resumeURL
			s.log.Warn("refusing resume URL that is not a Discord gateway over wss (nor the gateway URL's host); resuming on the main gateway URL",
				"resume_host", urlHost(s.resumeURL))
		}
	}
	return withGatewayQuery(base, s.bot.cfg.Compression)
}

// resumeURLAllowed reports whether a resume URL (from READY, or a saved
// checkpoint anyone with Redis access can write) may receive the token:
// wss to discord.gg or a subdomain of it, or the scheme and host (with
// port) of the gateway URL that GET /gateway/bot returned.
func resumeURLAllowed(resume, gatewayURL string) bool {
	u, err := url.Parse(resume)
	if err != nil || u.User != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if u.Scheme == "wss" && (host == "discord.gg" || strings.HasSuffix(host, ".discord.gg")) {
		return true
	}
	g, err := url.Parse(gatewayURL)
	return err == nil && g.Host != "" && strings.EqualFold(u.Scheme, g.Scheme) && strings.EqualFold(u.Host, g.Host)
}

// urlHost is the host of a URL for logs ("?" when it does not parse).
func urlHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}

// withGatewayQuery sets v=10, encoding=json and the compression on a gateway
// URL, keeping its path ("/" when it has none).
func withGatewayQuery(base string, c Compression) string {
	q := url.Values{"v": {"10"}, "encoding": {"json"}}
	if c != CompressionNone {
		q.Set("compress", c.String())
	}
	u, err := url.Parse(base)
	if err != nil {
		// Dial reports the bad URL.
		return base
	}
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// conn is one websocket connection's shared state between the reader (the
// owner goroutine) and its beater's timer callbacks.
type conn struct {
	nc    net.Conn
	w     frameWriter
	limit sendLimiter
	hb    *beater

	interval  atomic.Int64 // heartbeat interval, ns
	acked     atomic.Bool  // ACK received since the last heartbeat
	lastBeat  atomic.Int64 // unix ns of the last heartbeat sent
	busySince atomic.Int64 // unix ns since the reader is blocked (sink, limiter); 0 = reading
	busyNanos atomic.Int64 // time spent blocked since the last heartbeat
	// blocked is the total time the reader spent blocked; beatBlocked is
	// blocked as of the last heartbeat sent, so an ACK's round trip leaves
	// out the time the reader could not read it (the identify wait).
	blocked, beatBlocked atomic.Int64
	ready                atomic.Bool // READY or RESUMED seen: member requests may go

	mu    sync.Mutex
	cause error       // why the beater (or Reconnect) ended the connection
	ended atomic.Bool // cause is set
}

// end ends the connection for err (the first cause wins): it unblocks the
// reader, which returns err.
func (c *conn) end(err error) {
	c.mu.Lock()
	if c.cause == nil {
		c.cause = err
		c.ended.Store(true)
	}
	c.mu.Unlock()
	c.unblock()
}

// unblock makes the reader's read in progress (or next) return.
func (c *conn) unblock() {
	_ = c.nc.SetReadDeadline(time.Now())
}

func (c *conn) getCause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// busyStart marks the reader blocked (not reading the socket) until
// busyEnd, so zombie detection does not count ACKs it cannot read.
func (c *conn) busyStart() int64 {
	start := time.Now().UnixNano()
	c.busySince.Store(start)
	return start
}

func (c *conn) busyEnd(start int64) {
	c.busySince.Store(0)
	d := time.Now().UnixNano() - start
	c.busyNanos.Add(d)
	c.blocked.Add(d)
}

// markBeat records when a heartbeat is sent and how long the reader had
// been blocked by then.
func (c *conn) markBeat() {
	now := time.Now().UnixNano()
	b := c.blocked.Load()
	if since := c.busySince.Load(); since != 0 && since < now {
		b += now - since
	}
	c.beatBlocked.Store(b)
	c.lastBeat.Store(now)
}

// ackRTT is the heartbeat round trip of an ACK read now: the time since the
// heartbeat less the time the reader spent blocked meanwhile.
func (c *conn) ackRTT(sent int64) time.Duration {
	rtt := time.Now().UnixNano() - sent - (c.blocked.Load() - c.beatBlocked.Load())
	return time.Duration(max(rtt, 0))
}

// dial opens the websocket and returns the connection and a copy of what
// the server sent along with the handshake (often HELLO).
func (s *shard) dial(ctx context.Context, u string) (net.Conn, []byte, error) {
	if s.m.cfg.Dial != nil {
		nc, br, err := s.m.cfg.Dial(ctx, u)
		if err != nil || br == nil {
			return nc, nil, err
		}
		return nc, buffered(br), nil
	}
	d := ws.Dialer{Timeout: dialTimeout}
	nc, br, _, err := d.Dial(ctx, u)
	if err != nil {
		return nil, nil, err
	}
	if br == nil {
		return nc, nil, nil
	}
	// br is the dialer's pooled reader: copy what it holds and give it
	// back, rather than keep its buffer for the connection's life.
	pre := buffered(br)
	ws.PutReader(br)
	return nc, pre, nil
}

// buffered copies what br holds.
func buffered(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// connectOnce runs one connection from dial to close.
func (s *shard) connectOnce(ctx context.Context) error {
	s.setState(StateConnecting)
	s.resumed = false
	s.gotResumed, s.pubAfter = false, false
	u := s.gatewayURL()
	nc, pre, err := s.dial(ctx, u)
	if err != nil {
		return fmt.Errorf("dial gateway %s: %w", redactURL(u), err)
	}
	c := &conn{nc: nc}
	c.w.w = nc
	c.acked.Store(true)
	s.fr.reset(nc, pre)
	s.inf.reset()

	connCtx, cancel := context.WithCancel(ctx)
	s.cur, s.connCtx = c, connCtx
	c.hb = s.startBeater(ctx, connCtx, c)

	rerr := s.readLoop(ctx, c)
	if cause := c.getCause(); cause != nil {
		rerr = cause
	}
	cancel()
	c.hb.stop()
	s.liveConn(nil)
	s.cur, s.connCtx = nil, nil

	if ctx.Err() != nil {
		s.shutdownConn(c)
		return errStopping
	}
	// End (or answer the server's close of) the connection with a resumable
	// code: never 1000/1001, which would end the session.
	_ = c.w.write(ws.OpClose, closeFramePayload(clientCloseCode, "reconnecting"))
	nc.Close()
	return rerr
}

// shutdownConn ends a connection gracefully: flush what the Sink holds, then
// close with a resumable code so the next process resumes the session.
func (s *shard) shutdownConn(c *conn) {
	s.flush(s.stopCtx())
	if err := c.w.write(ws.OpClose, closeFramePayload(clientCloseCode, "shutting down")); err != nil {
		s.log.Debug("write close frame", "err", err)
	}
	c.nc.Close()
}

// stopCtx is the context Close was called with.
func (s *shard) stopCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeCtx == nil {
		return context.Background()
	}
	return s.closeCtx
}

func (s *shard) flush(ctx context.Context) {
	f, ok := s.m.cfg.Sink.(Flusher)
	if !ok {
		return
	}
	if err := f.Flush(ctx, s.bot.cfg.Name, s.id); err != nil {
		s.log.Warn("flush sink on shutdown", "err", err)
	}
}

// readLoop reads frames until the connection ends and returns why.
func (s *shard) readLoop(ctx context.Context, c *conn) error {
	for {
		if ctx.Err() != nil {
			return errStopping
		}
		timeout := helloTimeout
		if iv := time.Duration(c.interval.Load()); iv > 0 {
			timeout = 2*iv + 5*time.Second
		}
		if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		if c.ended.Load() {
			// Ended while the deadline was being moved on.
			return c.getCause()
		}
		kind, _, p, err := s.fr.next()
		if err != nil {
			if ctx.Err() != nil {
				return errStopping
			}
			return fmt.Errorf("read frame: %w", err)
		}
		switch kind {
		case framePing:
			if err := c.w.write(ws.OpPong, p); err != nil {
				return fmt.Errorf("answer ping: %w", err)
			}
		case framePong:
		case frameClose:
			code, reason := parseClose(p)
			return &CloseError{Code: code, Reason: reason}
		case frameData:
			if err := s.inf.feed(p, s.onPayload); err != nil {
				if ctx.Err() != nil {
					return errStopping
				}
				if !errors.Is(err, errSink) && !isFlowError(err) && !errors.Is(err, ErrPayloadTooLarge) {
					err = fmt.Errorf("%w: %w", errBadPayload, err)
				}
				return err
			}
			// Nothing more waiting: let an idle connection's
			// decompression context and buffers go back to the pools.
			if s.fr.buffered() == 0 {
				if err := s.inf.release(); err != nil {
					return fmt.Errorf("%w: %w", errBadPayload, err)
				}
				s.fr.releaseIdle()
			}
		}
	}
}

// isFlowError reports errors that end a connection on purpose (not bad
// input).
func isFlowError(err error) bool {
	var inv *invalidSessionError
	return errors.Is(err, errReconnect) || errors.Is(err, errAskedReconnect) || errors.As(err, &inv) || errors.Is(err, ErrStartLimitExhausted) ||
		errors.Is(err, errStopping) || errors.Is(err, context.Canceled)
}

// handlePayload handles one gateway payload. p is valid only during the call.
func (s *shard) handlePayload(p []byte) error {
	env, err := peekEnvelope(p)
	if err != nil {
		return fmt.Errorf("peek payload of %d bytes: %w", len(p), err)
	}
	c := s.cur
	s.bytes.Add(uint64(len(p)))
	switch env.Op {
	case opDispatch:
		return s.dispatch(c, &env)
	case opHeartbeat:
		c.hb.beatNow()
	case opHeartbeatACK:
		c.acked.Store(true)
		if sent := c.lastBeat.Load(); sent > 0 {
			rtt := c.ackRTT(sent)
			s.mu.Lock()
			s.latency = rtt
			s.mu.Unlock()
		}
	case opHello:
		v, _ := topLevelValue(env.D, "heartbeat_interval")
		ms, ok := parseInt(v)
		if !ok || ms <= 0 {
			return fmt.Errorf("read HELLO: bad heartbeat_interval %q", truncate(v))
		}
		if c.interval.Load() != 0 {
			return fmt.Errorf("read HELLO: %w", errSecondHello)
		}
		iv := time.Duration(ms) * time.Millisecond
		c.interval.Store(int64(iv))
		c.limit.setHeartbeat(iv)
		c.hb.hello(iv)
		if c.ended.Load() {
			// A reconnect asked before HELLO took this connection: no
			// IDENTIFY (it would spend a session start) nor RESUME.
			return c.getCause()
		}
		return s.authenticate(c)
	case opReconnect:
		return errReconnect
	case opInvalidSession:
		return &invalidSessionError{resumable: string(env.D) == "true"}
	default:
		s.log.Debug("ignoring unknown opcode", "op", env.Op)
	}
	return nil
}

func truncate(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// authenticate sends RESUME when the shard has a session, else IDENTIFY
// once the identify limiter grants a slot.
func (s *shard) authenticate(c *conn) error {
	ctx := s.connCtx
	if s.session != "" {
		s.setState(StateResuming)
		p, err := resumePayload(s.bot.cfg.Token, s.session, s.seq.Load())
		if err != nil {
			return err
		}
		if err := s.send(ctx, c, p); err != nil {
			return fmt.Errorf("send resume: %w", err)
		}
		s.log.Debug("resume sent", "session", s.session, "seq", s.seq.Load())
		return nil
	}
	s.setState(StateIdentifying)
	p, err := identifyPayload(&s.bot.cfg, s.id, s.bot.count)
	if err != nil {
		return err
	}
	start := c.busyStart()
	err = s.m.limiter.Wait(ctx, s.bot.cfg.Name, s.id, s.bot.limits)
	c.busyEnd(start)
	if err != nil {
		return fmt.Errorf("wait for identify slot: %w", err)
	}
	err = s.send(ctx, c, p)
	// Right after the write, failed or not (part of it may have left): the
	// bucket's next IDENTIFY is spaced from here.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), identifySentTimeout)
	start = c.busyStart()
	serr := s.m.limiter.Sent(sctx, s.bot.cfg.Name, s.id, s.bot.limits)
	c.busyEnd(start)
	cancel()
	if serr != nil {
		s.log.Warn("record identify send failed; the bucket frees when its hold expires", "err", serr)
	}
	if err != nil {
		return fmt.Errorf("send identify: %w", err)
	}
	s.identifies.Add(1)
	s.log.Debug("identify sent")
	return nil
}

// identifySentTimeout bounds recording an IDENTIFY's send with the limiter
// (a Redis round trip), even when the shard is stopping.
const identifySentTimeout = 5 * time.Second

func (s *shard) send(ctx context.Context, c *conn, p []byte) error {
	start := c.busyStart()
	err := c.limit.wait(ctx, false)
	c.busyEnd(start)
	if err != nil {
		return err
	}
	return c.w.write(ws.OpText, p)
}

// dispatch hands one op 0 to the Sink and advances the seq once accepted.
func (s *shard) dispatch(c *conn, env *envelope) error {
	t := eventName(env.T)
	switch t {
	case "READY":
		id, _ := topLevelString(env.D, "session_id")
		ru, _ := topLevelString(env.D, "resume_gateway_url")
		if id == "" {
			return fmt.Errorf("read READY: no session_id")
		}
		if s.session != "" && s.session != id {
			s.loseSession(s.connCtx, "new session identified")
		}
		s.setSession(id, ru)
		s.resumeTry, s.attempt, s.resumeLoop = 0, 0, 0
		s.seq.Store(0)
		c.ready.Store(true)
		s.setState(StateReady)
		s.log.Info("identified", "session", id)
		s.control(ControlEvent{Kind: ControlIdentified, Session: id})
	case "RESUMED":
		s.attempt = 0
		s.gotResumed = true
		s.resumes.Add(1)
		c.ready.Store(true)
		s.setState(StateReady)
		s.log.Info("resumed", "session", s.session, "seq", s.seq.Load())
		s.control(ControlEvent{Kind: ControlResumed, Session: s.session, Seq: s.seq.Load()})
	}
	if !s.resumed {
		// The gateway accepted our RESUME (or IDENTIFY): it is sending dispatches.
		s.resumed = true
		s.resumeTry = 0
	}
	if env.HasSeq && env.Seq <= s.seq.Load() {
		s.log.Warn("skipping dispatch already accepted", "type", t, "seq", env.Seq, "accepted", s.seq.Load())
		return nil
	}
	ev := &s.ev
	ev.Bot = s.bot.cfg.Name
	ev.Shard = s.id
	ev.ShardCount = s.bot.count
	ev.Intents = s.bot.cfg.Intents
	ev.Session = s.session
	ev.ResumeURL = s.resumeURL
	ev.Seq = env.Seq
	ev.Type = t
	ev.GuildID = env.guildID(t)
	ev.Data = env.D
	ev.Received = time.Now()
	start := c.busyStart()
	var err error
	if ho := s.bot.ho.Load(); ho != nil {
		if ho.newBot == s.bot {
			err = ho.fromNew(s.connCtx, s, ev)
		} else {
			err = ho.fromOld(s.connCtx, s, ev)
		}
	} else {
		err = s.m.cfg.Sink.Publish(s.connCtx, ev)
	}
	c.busyEnd(start)
	ev.Data = nil
	if err != nil {
		if s.connCtx.Err() != nil {
			return errStopping
		}
		return fmt.Errorf("publish %s seq %d: %w: %w", t, env.Seq, errSink, err)
	}
	if env.HasSeq {
		s.seq.Store(env.Seq)
	}
	if s.gotResumed && t != "RESUMED" {
		s.pubAfter = true
	}
	s.events.Add(1)
	s.guilds.observe(t, env.D, ev.GuildID)
	switch t {
	case "GUILD_CREATE":
		if s.bot.cfg.RequestMembers && ev.GuildID != 0 {
			if v, ok := topLevelValue(env.D, "unavailable"); !ok || string(v) != "true" {
				s.members.push(ev.GuildID, time.Time{})
			}
		}
	case "RATE_LIMITED":
		s.rateLimited(env.D)
	}
	return nil
}

// rateLimited re-queues a Request Guild Members the gateway refused.
func (s *shard) rateLimited(d []byte) {
	op, _ := topLevelValue(d, "opcode")
	if n, ok := parseInt(op); !ok || n != opRequestMembers {
		return
	}
	ra, _ := topLevelValue(d, "retry_after")
	secs, err := strconv.ParseFloat(string(ra), 64)
	if err != nil || secs < 0 || secs > 3600 {
		secs = 30
	}
	meta, _ := topLevelValue(d, "meta")
	g := guildIDOf("", meta)
	if g == 0 {
		return
	}
	s.log.Debug("request guild members rate limited", "guild", g, "retry_after", secs)
	s.members.push(g, time.Now().Add(time.Duration(secs*float64(time.Second))))
}

// redactURL drops the query string of a URL for logs.
func redactURL(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// status returns a snapshot of the shard.
func (s *shard) status() ShardStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ShardStatus{
		Bot:        s.bot.cfg.Name,
		Shard:      s.id,
		ShardCount: s.bot.count,
		State:      s.state,
		Session:    s.pubSession,
		Seq:        s.seq.Load(),
		Latency:    s.latency,
		Events:     s.events.Load(),
		Bytes:      s.bytes.Load(),
		Reconnects: s.reconnects.Load(),
		Resumes:    s.resumes.Load(),
		Identifies: s.identifies.Load(),
		Guilds:     int(max(s.guilds.n.Load(), 0)),
		LastError:  s.lastErr,
	}
}
