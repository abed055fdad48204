package discordtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// session is one gateway session. Guarded by Server.mu.
type session struct {
	id             string
	shard, shards  int
	intents        uint64
	seq            int64
	ledger         []LedgerEntry
	conn           *gwConn
	disconnectedAt time.Time
	dead           bool
	guilds         []*guild
	guildsVer      int
}

func (ss *session) alive(now time.Time, window time.Duration) bool {
	if ss.dead {
		return false
	}
	if ss.conn == nil && now.Sub(ss.disconnectedAt) >= window {
		ss.dead = true
		return false
	}
	return true
}

// Intents.
const (
	intentGuilds           = 1 << 0
	intentGuildMembers     = 1 << 1
	intentGuildExpressions = 1 << 3
	intentGuildVoiceStates = 1 << 7
	intentGuildPresences   = 1 << 8
	intentGuildMessages    = 1 << 9
	intentGuildReactions   = 1 << 10
	intentGuildTyping      = 1 << 11
	intentMessageContent   = 1 << 15
	allIntents             = 53608447
	privilegedIntents      = intentGuildMembers | intentGuildPresences | intentMessageContent
)

// payload is a client payload as the fake decodes it.
type payload struct {
	Op *int            `json:"op"`
	D  json.RawMessage `json:"d"`
}

// decodePayload decodes one client payload; errors name what was wrong.
func decodePayload(p []byte, max int) (int, json.RawMessage, error) {
	if len(p) > max {
		return 0, nil, fmt.Errorf("payload of %d bytes is over the %d byte limit", len(p), max)
	}
	var pl payload
	if err := json.Unmarshal(p, &pl); err != nil {
		return 0, nil, fmt.Errorf("decode payload: %w", err)
	}
	if pl.Op == nil {
		return 0, nil, errors.New("decode payload: no op")
	}
	return *pl.Op, pl.D, nil
}

type identifyData struct {
	Token          *string         `json:"token"`
	Properties     json.RawMessage `json:"properties"`
	Intents        json.RawMessage `json:"intents"`
	Shard          []int           `json:"shard"`
	LargeThreshold *int            `json:"large_threshold"`
	Compress       bool            `json:"compress"`
	Presence       json.RawMessage `json:"presence"`
}

// decodeIdentify checks an IDENTIFY's d. It returns the close code and a
// reason when the identify is refused.
func decodeIdentify(d []byte, tokens []string, disallowPrivileged bool) (id identifyData, intents uint64, shard [2]int, code int, reason string) {
	if err := json.Unmarshal(d, &id); err != nil {
		return id, 0, shard, 4002, "identify: " + err.Error()
	}
	if id.Token == nil || !tokenOK(*id.Token, tokens) {
		return id, 0, shard, 4004, "identify: bad token"
	}
	if len(id.Properties) == 0 || id.Properties[0] != '{' {
		return id, 0, shard, 4002, "identify: properties object required"
	}
	if len(id.Intents) == 0 || string(id.Intents) == "null" {
		return id, 0, shard, 4013, "identify: intents required"
	}
	n, err := strconv.ParseUint(string(id.Intents), 10, 64)
	if err != nil || n&^allIntents != 0 {
		return id, 0, shard, 4013, "identify: invalid intents " + truncate(string(id.Intents), 40)
	}
	if disallowPrivileged && n&privilegedIntents != 0 {
		return id, n, shard, 4014, fmt.Sprintf("identify: privileged intents %d not allowed", n&privilegedIntents)
	}
	shard = [2]int{0, 1}
	if id.Shard != nil {
		if len(id.Shard) != 2 || id.Shard[1] < 1 || id.Shard[0] < 0 || id.Shard[0] >= id.Shard[1] {
			return id, n, shard, 4010, fmt.Sprintf("identify: invalid shard %v", id.Shard)
		}
		shard = [2]int{id.Shard[0], id.Shard[1]}
	}
	if id.LargeThreshold != nil && (*id.LargeThreshold < 50 || *id.LargeThreshold > 250) {
		return id, n, shard, 4002, fmt.Sprintf("identify: large_threshold %d not in 50..250", *id.LargeThreshold)
	}
	return id, n, shard, 0, ""
}

// tokenOK accepts one of the tokens as is or with the "Bot " prefix some
// client libraries send in IDENTIFY and RESUME (Discord accepts both).
func tokenOK(got string, tokens []string) bool {
	for _, want := range tokens {
		if got == want || got == "Bot "+want {
			return true
		}
	}
	return false
}

// tokens are the bot's valid tokens.
func (s *Server) tokens() []string {
	return append([]string{s.cfg.Token}, s.cfg.OtherTokens...)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

var closeReasons = map[int]string{
	4000: "Unknown error.", 4001: "Unknown opcode.", 4002: "Decode error.", 4003: "Not authenticated.",
	4004: "Authentication failed.", 4005: "Already authenticated.", 4007: "Invalid seq.", 4008: "Rate limited.",
	4009: "Session timed out.", 4010: "Invalid shard.", 4011: "Sharding required.", 4012: "Invalid API version.",
	4013: "Invalid intent(s).", 4014: "Disallowed intent(s).",
}

// killsSession reports whether a close code sent by the fake ends the
// session (as Discord does for these codes).
func killsSession(code int) bool {
	switch code {
	case 1000, 1001, 4003, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014:
		return true
	}
	return false
}

var violationKinds = map[int]string{
	4001: "unknown_opcode", 4002: "decode_error", 4003: "payload_before_identify", 4004: "bad_token",
	4005: "already_authenticated", 4008: "send_rate", 4010: "invalid_shard", 4013: "invalid_intents",
	4014: "disallowed_intents", 4007: "resume_bad_seq",
}

// refuse records a violation and closes the connection with code.
func (c *gwConn) refuse(code int, detail string) {
	c.refuseKind(code, violationKinds[code], detail)
}

// refuseKind is refuse with a violation kind of its own.
func (c *gwConn) refuseKind(code int, kind, detail string) {
	c.s.violation(c.currentShard(), kind, detail)
	c.s.log.Debug("closing connection", "code", code, "detail", detail)
	c.closeWith(code, closeReasons[code])
}

func (c *gwConn) currentShard() int {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.shard
}

const (
	msgHeartbeatACK     = `{"t":null,"s":null,"op":11,"d":null}`
	msgReconnect        = `{"t":null,"s":null,"op":7,"d":null}`
	msgHeartbeatRequest = `{"t":null,"s":null,"op":1,"d":null}`
)

func invalidSessionMsg(resumable bool) []byte {
	return []byte(`{"t":null,"s":null,"op":9,"d":` + strconv.FormatBool(resumable) + `}`)
}

// handlePayload handles one client text message.
func (c *gwConn) handlePayload(p []byte) {
	now := time.Now()
	// Send rate: every payload counts, heartbeats included.
	lim := c.s.cfg.SendLimit
	if len(c.sendTimes) == lim && now.Sub(c.sendTimes[0]) < c.s.cfg.SendWindow {
		c.refuse(4008, fmt.Sprintf("%d payloads within %v", lim+1, now.Sub(c.sendTimes[0]).Round(time.Millisecond)))
		return
	}
	if len(c.sendTimes) == lim {
		copy(c.sendTimes, c.sendTimes[1:])
		c.sendTimes = c.sendTimes[:lim-1]
	}
	c.sendTimes = append(c.sendTimes, now)

	op, d, err := decodePayload(p, c.s.cfg.MaxPayload)
	if err != nil {
		c.refuse(4002, err.Error())
		return
	}
	switch op {
	case 1:
		if len(d) > 0 && string(d) != "null" {
			if _, err := strconv.ParseInt(string(d), 10, 64); err != nil {
				c.refuse(4002, "heartbeat: d must be a sequence number or null, got "+truncate(string(d), 40))
				return
			}
		}
		c.lastBeat = now
		if c.beatRequested.Swap(false) {
			c.s.mu.Lock()
			c.s.stats.heartbeatRequestsAnswered++
			c.s.mu.Unlock()
		}
		if !c.zombie.Load() {
			c.enqueue([]byte(msgHeartbeatACK))
		}
	case 2:
		c.identify(d, arrivedAt(c.nc, now))
	case 6:
		c.resume(d)
	case 3, 4, 8, 31, 43:
		c.s.mu.Lock()
		ok := c.identified
		c.s.mu.Unlock()
		if !ok {
			c.refuse(4003, fmt.Sprintf("op %d before IDENTIFY", op))
			return
		}
		if op == 8 {
			c.requestMembers(d)
		}
	default:
		c.refuse(4001, fmt.Sprintf("unknown opcode %d", op))
	}
}

func (c *gwConn) identify(d []byte, now time.Time) {
	s := c.s
	s.mu.Lock()
	identified := c.identified
	s.mu.Unlock()
	if identified {
		c.refuse(4005, "second IDENTIFY on one connection")
		return
	}
	_, intents, shard, code, reason := decodeIdentify(d, s.tokens(), s.cfg.DisallowPrivileged)
	if code != 0 {
		c.refuse(code, reason)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := 0; i < s.world.guilds.len(); i++ {
		if s.world.guilds.at(i).shardOf(shard[1]) == shard[0] {
			n++
		}
	}
	if n > s.maxGuildsPerShard {
		s.violationLocked(shard[0], "sharding_required", fmt.Sprintf("shard [%d, %d] would hold %d guilds, at most %d", shard[0], shard[1], n, s.maxGuildsPerShard))
		c.closeWith(4011, closeReasons[4011])
		return
	}
	if s.remaining <= 0 {
		s.violationLocked(shard[0], "session_start_limit", "IDENTIFY with session_start_limit.remaining 0")
		s.stats.invalidSessions++
		c.enqueue(invalidSessionMsg(false))
		return
	}
	bucket := shard[0] % s.cfg.MaxConcurrency
	// now is when the IDENTIFY arrived (arrivedAt: the kernel's receive
	// time, not when this busy process got round to reading it); one
	// arriving earlier may take the lock after a later one: the gap between
	// the two arrivals counts.
	last, ok := s.identifyLast[bucket]
	gap := now.Sub(last)
	if gap < 0 {
		gap = -gap
	}
	if ok && gap < s.cfg.IdentifyWindow-s.cfg.IdentifyTolerance {
		s.violationLocked(shard[0], "identify_rate", fmt.Sprintf("bucket %d identified %v after the previous IDENTIFY (window %v)",
			bucket, gap.Round(time.Millisecond), s.cfg.IdentifyWindow))
		s.stats.invalidSessions++
		c.enqueue(invalidSessionMsg(false))
		return
	}
	if now.After(last) {
		s.identifyLast[bucket] = now
	}
	s.remaining--
	s.stats.identifies++
	ss := &session{id: s.newSessionID(), shard: shard[0], shards: shard[1], intents: intents, conn: c}
	s.sessions[ss.id] = ss
	s.shardSessions[ss.shard] = append(s.shardSessions[ss.shard], ss)
	s.live = append(s.live, ss)
	c.sess, c.identified, c.shard = ss, true, ss.shard
	s.refreshGuildsLocked(ss)
	s.sendReadyLocked(ss, c.version)
	s.log.Debug("identified", "shard", ss.shard, "shards", ss.shards, "session", ss.id)
}

func (s *Server) newSessionID() string {
	s.sessionCounter++
	return fmt.Sprintf("%016x%016x", uint64(s.cfg.Seed)*0x9e3779b97f4a7c15+uint64(s.sessionCounter), s.sessionCounter)
}

// refreshGuildsLocked recomputes the guilds a session sees when the world's
// guild set changed.
func (s *Server) refreshGuildsLocked(ss *session) {
	if ss.guilds != nil && ss.guildsVer == s.guildsVer {
		return
	}
	ss.guilds = ss.guilds[:0]
	for i := 0; i < s.world.guilds.len(); i++ {
		g := s.world.guilds.at(i)
		if g.shardOf(ss.shards) == ss.shard {
			ss.guilds = append(ss.guilds, g)
		}
	}
	ss.guildsVer = s.guildsVer
}

func (s *Server) sendReadyLocked(ss *session, version int) {
	w := s.world
	b := make([]byte, 0, 512+len(ss.guilds)*48)
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, `,"user":`...)
	u := w.bot.json()
	b = append(b, u[:len(u)-1]...)
	b = append(b, `,"verified":true,"mfa_enabled":false,"flags":0,"email":null},"guilds":[`...)
	for i, g := range ss.guilds {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = append(b, g.info.ID...)
		b = append(b, `","unavailable":true}`...)
	}
	b = append(b, `],"session_id":"`...)
	b = append(b, ss.id...)
	b = append(b, `","session_type":"normal","resume_gateway_url":"`...)
	b = append(b, s.ResumeURL()...)
	b = append(b, `","shard":[`...)
	b = strconv.AppendInt(b, int64(ss.shard), 10)
	b = append(b, ',')
	b = strconv.AppendInt(b, int64(ss.shards), 10)
	b = append(b, `],"application":{"id":"`...)
	b = append(b, w.appID...)
	b = append(b, `","flags":565248},"user_settings":{},"relationships":[],"private_channels":[],"presences":[],"guild_join_requests":[],"geo_ordered_rtc_regions":["fake"],"_trace":["[\"fake-discord\",{}]"]}`...)
	s.sendLocked(ss, "READY", b, "", nil)
	for _, g := range ss.guilds {
		s.sendLocked(ss, "GUILD_CREATE", w.guildCreate(g), g.info.ID, nil)
	}
}

// sendLocked appends a dispatch to the session's ledger and queues it on
// its connection, if it has one.
func (s *Server) sendLocked(ss *session, t string, d []byte, guild string, before []byte) {
	ss.seq++
	ev := s.bcast
	if ev == 0 {
		s.events++
		ev = s.events
	}
	msg := make([]byte, 0, len(d)+len(t)+48)
	msg = append(msg, `{"t":"`...)
	msg = append(msg, t...)
	msg = append(msg, `","s":`...)
	msg = strconv.AppendInt(msg, ss.seq, 10)
	msg = append(msg, `,"op":0,"d":`...)
	off := len(msg)
	msg = append(msg, d...)
	end := len(msg)
	msg = append(msg, '}')
	ss.ledger = append(ss.ledger, LedgerEntry{Seq: ss.seq, T: t, D: msg[off:end:end], Guild: guild, SentAt: time.Now(), Before: before, Event: ev})
	if lim := s.cfg.LedgerLimit; lim > 0 && len(ss.ledger) >= 2*lim {
		n := copy(ss.ledger, ss.ledger[len(ss.ledger)-lim:])
		clear(ss.ledger[n:])
		ss.ledger = ss.ledger[:n]
	}
	s.stats.dispatches[ss.shard]++
	if ss.conn != nil {
		ss.conn.enqueue(msg)
	}
}

func encodeDispatch(seq int64, t string, d []byte) []byte {
	msg := make([]byte, 0, len(d)+len(t)+48)
	msg = append(msg, `{"t":"`...)
	msg = append(msg, t...)
	msg = append(msg, `","s":`...)
	msg = strconv.AppendInt(msg, seq, 10)
	msg = append(msg, `,"op":0,"d":`...)
	msg = append(msg, d...)
	return append(msg, '}')
}

type resumeData struct {
	Token     *string `json:"token"`
	SessionID string  `json:"session_id"`
	Seq       *int64  `json:"seq"`
}

func (c *gwConn) resume(d []byte) {
	s := c.s
	var rd resumeData
	if err := json.Unmarshal(d, &rd); err != nil {
		c.refuse(4002, "resume: "+err.Error())
		return
	}
	s.mu.Lock()
	identified := c.identified
	s.mu.Unlock()
	if identified {
		c.refuse(4005, "RESUME on an identified connection")
		return
	}
	if rd.Token == nil || !tokenOK(*rd.Token, s.tokens()) {
		c.refuse(4004, "resume: bad token")
		return
	}
	var seq int64
	if rd.Seq != nil {
		seq = *rd.Seq
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[rd.SessionID]
	now := time.Now()
	if ss == nil || !ss.alive(now, s.cfg.ResumeWindow) {
		s.stats.invalidSessions++
		c.enqueue(invalidSessionMsg(false))
		return
	}
	if seq > ss.seq || seq < 0 {
		s.violationLocked(ss.shard, "resume_bad_seq", fmt.Sprintf("resume of %s from seq %d, last sent %d", ss.id, seq, ss.seq))
		ss.dead = true
		c.closeWith(4007, closeReasons[4007])
		return
	}
	if len(ss.ledger) > 0 && seq < ss.ledger[0].Seq-1 {
		// The events the client misses are no longer kept.
		ss.dead = true
		s.stats.invalidSessions++
		c.enqueue(invalidSessionMsg(false))
		return
	}
	if old := ss.conn; old != nil && old != c {
		old.abort()
	}
	ss.conn, ss.disconnectedAt = c, time.Time{}
	c.sess, c.identified, c.shard = ss, true, ss.shard
	s.stats.resumes++
	if !strings.HasPrefix(c.path, "/resume") {
		s.stats.resumesOffResumeURL++
	}
	i := len(ss.ledger)
	for i > 0 && ss.ledger[i-1].Seq > seq {
		i--
	}
	for _, e := range ss.ledger[i:] {
		c.enqueue(encodeDispatch(e.Seq, e.T, e.D))
	}
	s.sendLocked(ss, "RESUMED", []byte(`{"_trace":["[\"fake-discord\",{}]"]}`), "", nil)
	s.log.Debug("resumed", "shard", ss.shard, "session", ss.id, "from", seq, "replayed", len(ss.ledger)-i)
}

// connectedLocked returns the connections of the live sessions on shard.
func (s *Server) connectedLocked(shard int) []*gwConn {
	var out []*gwConn
	now := time.Now()
	for _, ss := range s.shardSessions[shard] {
		if ss.alive(now, s.cfg.ResumeWindow) && ss.conn != nil {
			out = append(out, ss.conn)
		}
	}
	return out
}

// ErrNoConnection is returned by the test hooks when no connected session
// is on the shard.
var ErrNoConnection = errors.New("no connected session on this shard")

// Reconnect sends op 7 to every connection of shard and closes them (4000)
// after Config.ReconnectDelay unless the client closed first. Sessions stay
// resumable.
func (s *Server) Reconnect(shard int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns, err := s.liveConnsLocked(shard, "reconnect")
	if err != nil {
		return err
	}
	for _, c := range conns {
		c.enqueue([]byte(msgReconnect))
		cc := c
		c.mu.Lock()
		if c.closeAfter == nil {
			c.closeAfter = time.AfterFunc(s.cfg.ReconnectDelay, func() { cc.closeWith(4000, "Reconnect requested.") })
		}
		c.mu.Unlock()
	}
	return nil
}

// Invalidate sends op 9 with d = resumable to every connection of shard.
// When not resumable the session ends; either way the connection must
// identify (or, resumable, reconnect and resume) again.
func (s *Server) Invalidate(shard int, resumable bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns, err := s.liveConnsLocked(shard, "invalidate")
	if err != nil {
		return err
	}
	for _, c := range conns {
		c.enqueue(invalidSessionMsg(resumable))
		s.stats.invalidSessions++
		if !resumable {
			c.sess.dead = true
			c.sess.conn = nil
			c.sess, c.identified = nil, false
		}
	}
	return nil
}

// CloseShard closes every connection of shard with code. Codes Discord
// ends the session with (4003, 4004, 4007, 4009, 4010–4014, 1000, 1001)
// end it here too; any other code leaves it resumable. Code 0 drops the TCP
// connection without a close frame (the session stays resumable).
func (s *Server) CloseShard(shard, code int) error {
	if code != 0 && (code < 1000 || code > 4999) {
		return fmt.Errorf("close shard %d: code %d is not a websocket close code", shard, code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	conns, err := s.liveConnsLocked(shard, "close")
	if err != nil {
		return err
	}
	for _, c := range conns {
		if code == 0 {
			c.abort()
			continue
		}
		if killsSession(code) {
			c.sess.dead = true
		}
		reason := closeReasons[code]
		if reason == "" {
			reason = "Closed by test."
		}
		c.closeWith(code, reason)
	}
	return nil
}

// liveConnsLocked returns the connections of shard, or an error saying
// that what could not be done for lack of one. s.mu must be held.
func (s *Server) liveConnsLocked(shard int, what string) ([]*gwConn, error) {
	conns := s.connectedLocked(shard)
	if len(conns) == 0 {
		return nil, fmt.Errorf("%s shard %d: %w", what, shard, ErrNoConnection)
	}
	return conns, nil
}

// RequestHeartbeat sends op 1 to every connection of shard; a client must
// answer with a heartbeat at once. Stats.HeartbeatRequests counts the
// requests and Stats.HeartbeatRequestsAnswered the heartbeats that followed.
func (s *Server) RequestHeartbeat(shard int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns, err := s.liveConnsLocked(shard, "request heartbeat on")
	if err != nil {
		return err
	}
	for _, c := range conns {
		if c.enqueue([]byte(msgHeartbeatRequest)) {
			c.beatRequested.Store(true)
			s.stats.heartbeatRequests++
		}
	}
	return nil
}

// Zombie makes the current connections of shard stop ACKing heartbeats.
func (s *Server) Zombie(shard int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns, err := s.liveConnsLocked(shard, "zombie")
	if err != nil {
		return err
	}
	for _, c := range conns {
		c.zombie.Store(true)
	}
	return nil
}

// Dispatch injects a dispatch to every live session of shard (queued for a
// disconnected one). When t is an event the model knows, the model is
// updated and the ledger records the before image.
func (s *Server) Dispatch(shard int, t string, d []byte) error {
	if t == "" || strings.ToUpper(t) != t {
		return fmt.Errorf("dispatch: event name %q must be upper case and not empty", t)
	}
	if !json.Valid(d) {
		return fmt.Errorf("dispatch %s: d is not valid JSON", t)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, d); err != nil {
		return fmt.Errorf("dispatch %s: %w", t, err)
	}
	d = compact.Bytes()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var targets []*session
	for _, ss := range s.shardSessions[shard] {
		if ss.alive(now, s.cfg.ResumeWindow) {
			targets = append(targets, ss)
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("dispatch %s to shard %d: no live session", t, shard)
	}
	guild, before, err := s.applyLocked(t, d)
	if err != nil {
		return fmt.Errorf("dispatch %s: %w", t, err)
	}
	s.broadcastLocked(func() {
		for _, ss := range targets {
			s.sendLocked(ss, t, d, guild, before)
		}
	})
	return nil
}

// broadcastLocked runs send with every dispatch it sends counted as one
// event (LedgerEntry.Event): the same event sent to several sessions.
func (s *Server) broadcastLocked(send func()) {
	s.events++
	s.bcast = s.events
	send()
	s.bcast = 0
}

// SetShards changes the shard count /gateway/bot recommends.
func (s *Server) SetShards(n int) error {
	if n < 1 {
		return fmt.Errorf("set shards: %d: want at least 1", n)
	}
	s.mu.Lock()
	s.shards = n
	s.mu.Unlock()
	return nil
}

// SetMaxGuildsPerShard changes the most guilds one session may hold: from
// now on an IDENTIFY whose shard would hold more closes with 4011 (live
// sessions are not touched; close them with CloseShard(id, 4011)).
func (s *Server) SetMaxGuildsPerShard(n int) error {
	if n < 1 {
		return fmt.Errorf("set max guilds per shard: %d: want at least 1", n)
	}
	s.mu.Lock()
	s.maxGuildsPerShard = n
	s.mu.Unlock()
	return nil
}
