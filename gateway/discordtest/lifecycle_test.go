package discordtest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

func TestRequestHeartbeat(t *testing.T) {
	s := startFake(t, Config{})
	c, _, _ := connectIdentify(t, s, "", 0, 1, 0)
	if err := s.RequestHeartbeat(0); err != nil {
		t.Fatal(err)
	}
	if f := c.mustNext(); f.Op != 1 {
		t.Fatalf("want op 1, got %s", f.Raw)
	}
	c.send(1, 1)
	if f := c.mustNext(); f.Op != 11 {
		t.Fatalf("want ACK, got %s", f.Raw)
	}
	if st := s.Stats(); st.HeartbeatRequests != 1 || st.HeartbeatRequestsAnswered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCloseWithoutCodeIsResumable(t *testing.T) {
	s := startFake(t, Config{})
	c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
	if err := s.CloseShard(0, 0); err != nil {
		t.Fatal(err)
	}
	_, err := c.next(5 * time.Second)
	var ce wsutil.ClosedError
	if err == nil || errors.As(err, &ce) {
		t.Fatalf("want a dropped connection without close frame, got %v", err)
	}
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "")
	if f := r.nextDispatch(); *f.T != "RESUMED" {
		t.Fatalf("want RESUMED, got %s", f.Raw)
	}
}

func TestHugeFrameCloses4002(t *testing.T) {
	s := startFake(t, Config{})
	c := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
	c.hello()
	// Announce a 2 MiB frame and send only its header.
	h := ws.Header{Fin: true, OpCode: ws.OpText, Length: 2 << 20, Masked: true, Mask: ws.NewMask()}
	if err := ws.WriteHeader(c.conn, h); err != nil {
		t.Fatal(err)
	}
	if code := c.expectClose(); code != 4002 {
		t.Fatalf("close %d, want 4002", code)
	}
}

// TestCloseLeavesNoGoroutines: Close stops and waits for everything the fake
// started, with clients connected and traffic running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(Config{Rate: 2000, Guilds: 4, IdentifyWindow: time.Nanosecond, ReconnectDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		q := []string{"", "&compress=zlib-stream", "&compress=zstd-stream"}[i]
		c, _, _ := connectIdentify(t, s, q, 0, 1, allIntents)
		conns = append(conns, c.conn)
	}
	_ = s.Reconnect(0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	testkit.Eventually(t, waitTimeout, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Fatal("listener still open after Close")
	}
	if err := s.Restart(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("restart after close: %v", err)
	}
}

// TestEchoed1000KeepsSession: a client that answers the fake's close frame
// with 1000 (as some libraries do) completes the handshake; the session stays
// resumable because the fake's own code (4000) decides.
func TestEchoed1000KeepsSession(t *testing.T) {
	s := startFake(t, Config{})
	c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
	if err := s.CloseShard(0, 4000); err != nil {
		t.Fatal(err)
	}
	if code := c.expectClose(); code != 4000 {
		t.Fatalf("close %d", code)
	}
	if err := sendClose(c, 1000); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitTimeout, "disconnect", func() bool { return s.Stats().Connections == 0 })
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "")
	if f := r.nextDispatch(); f.T == nil || *f.T != "RESUMED" {
		t.Fatalf("want RESUMED, got %s", f.Raw)
	}
	if hasViolation(s, "session_ended_by_client") {
		t.Fatal("echoed close frame ended the session")
	}
}

// TestBotPrefixedToken: IDENTIFY and RESUME accept "Bot <token>" as some
// client libraries send it.
func TestBotPrefixedToken(t *testing.T) {
	s := startFake(t, Config{})
	c := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
	c.hello()
	c.send(2, identifyD("Bot fake-token", 0, 1, 0))
	if f := c.nextDispatch(); f.T == nil || *f.T != "READY" {
		t.Fatalf("want READY, got %s", f.Raw)
	}
}

// TestTokenNeverLeaks: the token appears in no log line, stats, ledger or
// control API reply, whatever the client gets wrong.
func TestTokenNeverLeaks(t *testing.T) {
	const token = "SECRET-TOKEN-d41d8cd98f00b204"
	var logs strings.Builder
	var mu sync.Mutex
	h := slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug})
	s := startFake(t, Config{Token: token, Logger: slog.New(h), IdentifyWindow: time.Hour})
	c, rd, got := connectIdentify(t, s, "", 0, 1, allIntents)
	c.send(2, identifyD(token, 0, 1, 1)) // second identify: 4005
	c.expectClose()
	for _, bad := range []map[string]any{identifyD(token+"x", 0, 1, 1), identifyD(token, 5, 1, 1), identifyD(token, 0, 1, 1<<40)} {
		b := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
		b.hello()
		b.send(2, bad)
		b.expectClose()
	}
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S+9, "") // bad seq
	r.expectClose()
	id := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
	id.hello()
	id.send(2, identifyD(token, 0, 1, 1)) // identify_rate
	id.nextDispatch()
	var replies strings.Builder
	for _, path := range []string{"/_fake/stats", "/_fake/ledger?shard=0&data=true", "/_fake/world", "/api/v10/gateway/bot"} {
		resp, err := http.Get(s.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		replies.Write(b)
	}
	mu.Lock()
	defer mu.Unlock()
	if logs.Len() == 0 || len(s.Stats().Violations) < 4 {
		t.Fatalf("the scenario produced %d bytes of logs and %d violations: it proves nothing", logs.Len(), len(s.Stats().Violations))
	}
	for what, text := range map[string]string{"logs": logs.String(), "replies": replies.String(), "stats": fmt.Sprint(s.Stats())} {
		if strings.Contains(text, "SECRET-TOKEN") {
			t.Fatalf("token found in %s", what)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestLedgerLimit: the ledger keeps at most 2 × LedgerLimit entries, and a
// RESUME from before what is kept gets op 9 false.
func TestLedgerLimit(t *testing.T) {
	s := startFake(t, Config{Guilds: 2, LedgerLimit: 50, ResumeWindow: time.Hour})
	c, rd, _ := connectIdentify(t, s, "", 0, 1, allIntents)
	c.close()
	testkit.Eventually(t, waitTimeout, "disconnect", func() bool { return s.Stats().Connections == 0 })
	s.generate(500)
	l := s.Ledger(0)[0].Entries
	if len(l) < 50 || len(l) >= 100 || l[len(l)-1].Seq < 500 {
		t.Fatalf("ledger of %d entries, last seq %d", len(l), l[len(l)-1].Seq)
	}
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, 1, "")
	if f := r.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("resume from a trimmed seq: %s", f.Raw)
	}
}

func TestDispatchErrors(t *testing.T) {
	s := startFake(t, Config{Guilds: 1})
	if err := s.Dispatch(0, "MESSAGE_CREATE", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "no live session") {
		t.Fatalf("dispatch without session: %v", err)
	}
	c, _, _ := connectIdentify(t, s, "", 0, 1, 0)
	defer c.close()
	for _, tc := range []struct{ t, d, want string }{
		{"message_create", `{}`, "upper case"},
		{"MESSAGE_CREATE", `{`, "not valid JSON"},
		{"GUILD_MEMBER_ADD", `{"guild_id":"1"}`, "guild"},
		{"CHANNEL_UPDATE", `{"guild_id":"` + firstGuild(s) + `"}`, "id"},
	} {
		if err := s.Dispatch(0, tc.t, []byte(tc.d)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Dispatch(%s, %s) = %v, want an error naming %q", tc.t, tc.d, err, tc.want)
		}
	}
	if err := s.Dispatch(0, "CUSTOM_EVENT", []byte(` {"a": 1} `)); err != nil {
		t.Fatal(err)
	}
	if f := c.nextDispatch(); *f.T != "CUSTOM_EVENT" || string(f.D) != `{"a":1}` {
		t.Fatalf("got %s", f.Raw)
	}
}

func firstGuild(s *Server) string {
	for id := range s.Snapshot().Guilds {
		return id
	}
	return ""
}
