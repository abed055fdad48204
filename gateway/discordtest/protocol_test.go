package discordtest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
)

func hasViolation(s *Server, kind string) bool {
	for _, v := range s.Stats().Violations {
		if v.Kind == kind {
			return true
		}
	}
	return false
}

func TestRESTGatewayBot(t *testing.T) {
	s := startFake(t, Config{Shards: 4, MaxConcurrency: 2, SessionStartTotal: 10, SessionStartRemaining: 5, RESTRateLimit: 8})
	get := func(path, auth string) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("%s: body %q: %v", path, b, err)
		}
		return resp.StatusCode, body, resp.Header
	}
	code, body, _ := get("/api/v10/gateway/bot", "Bot fake-token")
	if code != 200 || body["url"] != s.GatewayURL() || body["shards"].(float64) != 4 {
		t.Fatalf("gateway/bot: %d %v", code, body)
	}
	lim := body["session_start_limit"].(map[string]any)
	if lim["total"].(float64) != 10 || lim["remaining"].(float64) != 5 || lim["max_concurrency"].(float64) != 2 || lim["reset_after"].(float64) <= 0 {
		t.Fatalf("session_start_limit %v", lim)
	}
	if code, _, _ := get("/api/v9/gateway/bot", "Bot wrong"); code != 401 {
		t.Fatalf("bad token: %d, want 401", code)
	}
	if code, body, _ := get("/api/v10/gateway", ""); code != 200 || body["url"] != s.GatewayURL() {
		t.Fatalf("gateway: %d %v", code, body)
	}
	if code, body, _ := get("/api/v10/users/@me", "Bot fake-token"); code != 200 || body["id"] != s.BotUserID() || body["bot"] != true {
		t.Fatalf("users/@me: %d %v", code, body)
	}
	if code, body, _ := get("/api/v10/oauth2/applications/@me", "Bot fake-token"); code != 200 || body["id"] == nil {
		t.Fatalf("applications/@me: %d %v", code, body)
	}
	if code, body, _ := get("/api/v10/channels/1", "Bot fake-token"); code != 404 || !strings.Contains(body["message"].(string), "/channels/1") {
		t.Fatalf("unknown route: %d %v", code, body)
	}
	// An IDENTIFY takes one from remaining.
	c, _, _ := connectIdentify(t, s, "", 0, 4, 0)
	c.close()
	// Over the global limit (8/s here): 429 with Retry-After and a body.
	var saw429 bool
	for i := 0; i < 40 && !saw429; i++ {
		code, body, h := get("/api/v10/gateway/bot", "Bot fake-token")
		switch code {
		case 200:
			if rem := body["session_start_limit"].(map[string]any)["remaining"].(float64); rem != 4 {
				t.Fatalf("remaining after one IDENTIFY = %v, want 4", rem)
			}
		case 429:
			saw429 = true
			if h.Get("Retry-After") == "" || body["retry_after"] == nil || body["global"] != true {
				t.Fatalf("429 without Retry-After/body: %v %v", h, body)
			}
		default:
			t.Fatalf("status %d", code)
		}
	}
	if !saw429 {
		t.Fatal("no 429 over the REST rate limit")
	}
}

func TestCloseCodes(t *testing.T) {
	s := startFake(t, Config{Shards: 2, DisallowPrivileged: true, SendLimit: 5, SendWindow: time.Minute})
	props := map[string]string{"os": "linux", "browser": "t", "device": "t"}
	cases := []struct {
		name  string
		query string
		send  func(c *rawClient)
		code  int
		kind  string
	}{
		{"bad version", "?v=8&encoding=json", nil, 4012, "invalid_api_version"},
		{"etf", "?v=10&encoding=etf", nil, 4002, "decode_error"},
		{"bad compress", "?v=10&encoding=json&compress=gzip", nil, 4002, "decode_error"},
		{"bad token", "", func(c *rawClient) { c.send(2, identifyD("nope", 0, 1, 1)) }, 4004, "bad_token"},
		{"payload before identify", "", func(c *rawClient) { c.send(8, map[string]any{"guild_id": "1", "query": "", "limit": 0}) }, 4003, "payload_before_identify"},
		{"too big", "", func(c *rawClient) { c.sendRaw([]byte(`{"op":1,"d":null,"x":"` + strings.Repeat("a", 4100) + `"}`)) }, 4002, "decode_error"},
		{"bad json", "", func(c *rawClient) { c.sendRaw([]byte(`{"op":1,`)) }, 4002, "decode_error"},
		{"no op", "", func(c *rawClient) { c.sendRaw([]byte(`{"d":1}`)) }, 4002, "decode_error"},
		{"bad heartbeat", "", func(c *rawClient) { c.sendRaw([]byte(`{"op":1,"d":"x"}`)) }, 4002, "decode_error"},
		{"unknown op", "", func(c *rawClient) { c.send(5, nil) }, 4001, "unknown_opcode"},
		{"bad intents", "", func(c *rawClient) { c.send(2, identifyD("fake-token", 0, 1, 1<<40)) }, 4013, "invalid_intents"},
		{"missing intents", "", func(c *rawClient) {
			c.send(2, map[string]any{"token": "fake-token", "properties": props})
		}, 4013, "invalid_intents"},
		{"privileged", "", func(c *rawClient) { c.send(2, identifyD("fake-token", 0, 1, intentGuildMembers)) }, 4014, "disallowed_intents"},
		{"shard out of range", "", func(c *rawClient) { c.send(2, identifyD("fake-token", 2, 2, 1)) }, 4010, "invalid_shard"},
		{"zero shards", "", func(c *rawClient) { c.send(2, identifyD("fake-token", 0, 0, 1)) }, 4010, "invalid_shard"},
		{"send rate", "", func(c *rawClient) {
			for i := 0; i < 6; i++ {
				c.send(1, nil)
			}
		}, 4008, "send_rate"},
		{"second identify", "", func(c *rawClient) {
			c.send(2, identifyD("fake-token", 1, 2, 1))
			c.send(2, identifyD("fake-token", 1, 2, 1))
		}, 4005, "already_authenticated"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.query
			if q == "" {
				q = "?v=10&encoding=json"
			}
			c := dialRaw(t, s.GatewayURL()+q)
			if tc.send != nil {
				c.hello()
				tc.send(c)
			}
			if got := c.expectClose(); got != tc.code {
				t.Fatalf("close code %d, want %d", got, tc.code)
			}
			testkit.Eventually(t, waitTimeout, "violation "+tc.kind, func() bool { return hasViolation(s, tc.kind) })
		})
	}
}

func TestShardingRequired(t *testing.T) {
	s := startFake(t, Config{Guilds: 5, MaxGuildsPerShard: 2, IdentifyWindow: time.Nanosecond})
	c := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
	c.hello()
	c.send(2, identifyD("fake-token", 0, 1, 0))
	if code := c.expectClose(); code != 4011 {
		t.Fatalf("close %d, want 4011", code)
	}
	if !hasViolation(s, "sharding_required") {
		t.Fatal("no sharding_required violation")
	}
	// With enough shards every shard is small enough.
	n := 2
	for ; ; n++ {
		per := map[int]int{}
		worst := 0
		for id := range s.Snapshot().Guilds {
			per[shardOf(id, n)]++
			worst = max(worst, per[shardOf(id, n)])
		}
		if worst <= 2 {
			break
		}
	}
	for shard := 0; shard < n; shard++ {
		connectIdentify(t, s, "", shard, n, 0)
	}
}

func TestHeartbeatACKAndZombie(t *testing.T) {
	s := startFake(t, Config{})
	c, _, _ := connectIdentify(t, s, "", 0, 1, 0)
	c.send(1, 2)
	if f := c.mustNext(); f.Op != 11 {
		t.Fatalf("want ACK, got %s", f.Raw)
	}
	if err := s.Zombie(0); err != nil {
		t.Fatal(err)
	}
	c.send(1, 2)
	if f, err := c.next(300 * time.Millisecond); err == nil {
		t.Fatalf("zombie connection answered %s", f.Raw)
	}
}

func TestLateHeartbeatDropsConnectionSessionResumable(t *testing.T) {
	s := startFake(t, Config{HeartbeatInterval: 100 * time.Millisecond})
	c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
	if _, err := c.next(5 * time.Second); err == nil {
		t.Fatal("connection without heartbeats stayed open")
	}
	testkit.Eventually(t, waitTimeout, "late_heartbeat", func() bool { return hasViolation(s, "late_heartbeat") })
	// The session is still resumable.
	r := dialRaw(t, rd.ResumeGatewayURL+"?v=10&encoding=json")
	r.hello()
	r.send(6, map[string]any{"token": "fake-token", "session_id": rd.SessionID, "seq": *got[len(got)-1].S})
	if f := r.nextDispatch(); f.T == nil || *f.T != "RESUMED" {
		t.Fatalf("want RESUMED, got %s", f.Raw)
	}
}

func TestIdentifyBucketsAndSessionStartLimit(t *testing.T) {
	s := startFake(t, Config{Shards: 4, MaxConcurrency: 2, IdentifyWindow: time.Hour, SessionStartRemaining: 3, SessionStartTotal: 3})
	// Shards 0 and 1 are different buckets: both fine.
	connectIdentify(t, s, "", 0, 4, 0)
	connectIdentify(t, s, "", 1, 4, 0)
	if v := s.Stats().Violations; len(v) != 0 {
		t.Fatalf("violations after two buckets: %+v", v)
	}
	// Shard 2 is bucket 0 again, inside the window: op 9 false.
	c := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
	c.hello()
	c.send(2, identifyD("fake-token", 2, 4, 0))
	if f := c.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("want op 9 false, got %s", f.Raw)
	}
	testkit.Eventually(t, waitTimeout, "identify_rate", func() bool { return hasViolation(s, "identify_rate") })
	if st := s.Stats(); st.Identifies != 2 || st.SessionStartRemaining != 1 {
		t.Fatalf("stats %+v", st)
	}

	// Session start limit: a fresh fake with remaining 1.
	s2 := startFake(t, Config{SessionStartRemaining: 1, SessionStartTotal: 1, IdentifyWindow: time.Nanosecond})
	connectIdentify(t, s2, "", 0, 1, 0)
	c2 := dialRaw(t, s2.GatewayURL()+"?v=10&encoding=json")
	c2.hello()
	c2.send(2, identifyD("fake-token", 0, 1, 0))
	if f := c2.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("want op 9 false, got %s", f.Raw)
	}
	testkit.Eventually(t, waitTimeout, "session_start_limit", func() bool { return hasViolation(s2, "session_start_limit") })
}

// resumeClient dials the resume URL and resumes from seq.
func resumeClient(t *testing.T, url, session string, seq int64, query string) *rawClient {
	t.Helper()
	r := dialRaw(t, url+"?v=10&encoding=json"+query)
	r.hello()
	r.send(6, map[string]any{"token": "fake-token", "session_id": session, "seq": seq})
	return r
}

func TestResumeReplaysMissedDispatches(t *testing.T) {
	for _, comp := range []string{"", "zlib-stream", "zstd-stream"} {
		t.Run("compress="+comp, func(t *testing.T) {
			q := ""
			if comp != "" {
				q = "&compress=" + comp
			}
			s := startFake(t, Config{Guilds: 6, Seed: 3})
			c, rd, got := connectIdentify(t, s, q, 0, 1, allIntents)
			// Read a while, then stop reading mid-stream: what was sent but
			// not read is lost with the connection.
			rec := record(c)
			s.SetRate(3000)
			testkit.Eventually(t, waitTimeout, "200 dispatches", func() bool { return rec.count() >= 200 })
			c.close()
			<-rec.done
			got = append(got, rec.snapshot()...)
			// Events keep coming while disconnected: they are queued.
			testkit.Eventually(t, waitTimeout, "disconnect", func() bool { return s.Stats().Connections == 0 })
			n := len(s.Ledger(0)[0].Entries)
			testkit.Eventually(t, waitTimeout, "queued events", func() bool { return len(s.Ledger(0)[0].Entries) > n+100 })
			last := *got[len(got)-1].S
			r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, last, q)
			rec2 := record(r)
			testkit.Eventually(t, waitTimeout, "RESUMED", func() bool {
				for _, f := range rec2.snapshot() {
					if *f.T == "RESUMED" {
						return true
					}
				}
				return false
			})
			s.SetRate(0)
			if err := s.WaitIdle(t.Context()); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, waitTimeout, "all read", func() bool { return len(got)+rec2.count() == len(s.Ledger(0)[0].Entries) })
			matchLedger(t, append(got, rec2.snapshot()...), s.Ledger(0)[0].Entries)
			if st := s.Stats(); st.Resumes != 1 || st.ResumesOffResumeURL != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestResumeFailures(t *testing.T) {
	s := startFake(t, Config{ResumeWindow: 200 * time.Millisecond, IdentifyWindow: time.Nanosecond})
	c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
	last := *got[len(got)-1].S
	// A seq beyond what was sent: 4007 and the session is gone.
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, last+5, "")
	if code := r.expectClose(); code != 4007 {
		t.Fatalf("close %d, want 4007", code)
	}
	if !hasViolation(s, "resume_bad_seq") {
		t.Fatal("no resume_bad_seq violation")
	}
	r2 := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, last, "")
	if f := r2.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("resume of a killed session: %s", f.Raw)
	}
	c.close()
	// Unknown session: op 9 false.
	r3 := resumeClient(t, s.GatewayURL(), "nope", 1, "")
	if f := r3.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("unknown session: %s", f.Raw)
	}
	// Expired session: op 9 false after ResumeWindow.
	c2, rd2, got2 := connectIdentify(t, s, "", 0, 1, 0)
	c2.close()
	testkit.Eventually(t, waitTimeout, "disconnect", func() bool { return s.Stats().Connections <= 3 && s.Stats().Sessions == 0 })
	r4 := resumeClient(t, rd2.ResumeGatewayURL, rd2.SessionID, *got2[len(got2)-1].S, "")
	if f := r4.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
		t.Fatalf("expired session: %s", f.Raw)
	}
}

func TestClientClose1000EndsSession(t *testing.T) {
	s := startFake(t, Config{})
	c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
	_ = c.conn.Close() // plain TCP close: resumable
	testkit.Eventually(t, waitTimeout, "disconnect", func() bool { return s.Stats().Connections == 0 })
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "")
	if f := r.nextDispatch(); *f.T != "RESUMED" {
		t.Fatalf("want RESUMED, got %s", f.Raw)
	}
	if err := sendClose(r, 1000); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitTimeout, "session ended", func() bool { return hasViolation(s, "session_ended_by_client") })
	r2 := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S+1, "")
	if f := r2.nextDispatch(); f.Op != 9 {
		t.Fatalf("want op 9, got %s", f.Raw)
	}
}

func TestHooks(t *testing.T) {
	s := startFake(t, Config{ReconnectDelay: 50 * time.Millisecond, IdentifyWindow: time.Nanosecond})
	if err := s.Reconnect(0); err == nil {
		t.Fatal("reconnect without a session succeeded")
	}
	t.Run("reconnect", func(t *testing.T) {
		c, _, _ := connectIdentify(t, s, "", 0, 1, 0)
		if err := s.Reconnect(0); err != nil {
			t.Fatal(err)
		}
		if f := c.nextDispatch(); f.Op != 7 {
			t.Fatalf("want op 7, got %s", f.Raw)
		}
		if code := c.expectClose(); code != 4000 {
			t.Fatalf("close %d after op 7, want 4000", code)
		}
	})
	t.Run("invalidate resumable", func(t *testing.T) {
		c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
		if err := s.Invalidate(0, true); err != nil {
			t.Fatal(err)
		}
		if f := c.nextDispatch(); f.Op != 9 || string(f.D) != "true" {
			t.Fatalf("want op 9 true, got %s", f.Raw)
		}
		c.close()
		r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "")
		if f := r.nextDispatch(); *f.T != "RESUMED" {
			t.Fatalf("want RESUMED, got %s", f.Raw)
		}
		r.close()
	})
	t.Run("invalidate not resumable", func(t *testing.T) {
		c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
		if err := s.Invalidate(0, false); err != nil {
			t.Fatal(err)
		}
		if f := c.nextDispatch(); f.Op != 9 || string(f.D) != "false" {
			t.Fatalf("want op 9 false, got %s", f.Raw)
		}
		// The same connection may identify again.
		c.send(2, identifyD("fake-token", 0, 1, 0))
		if f := c.nextDispatch(); *f.T != "READY" {
			t.Fatalf("want READY, got %s", f.Raw)
		}
		c.close()
		r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "")
		if f := r.nextDispatch(); f.Op != 9 {
			t.Fatalf("resume of an invalidated session: %s", f.Raw)
		}
		r.close()
	})
	for _, tc := range []struct {
		code      int
		resumable bool
	}{{4000, true}, {4008, true}, {4009, false}, {4007, false}} {
		t.Run("close "+itoa(tc.code), func(t *testing.T) {
			c, rd, got := connectIdentify(t, s, "", 0, 1, 0)
			if err := s.CloseShard(0, tc.code); err != nil {
				t.Fatal(err)
			}
			if code := c.expectClose(); code != tc.code {
				t.Fatalf("close %d, want %d", code, tc.code)
			}
			r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "")
			f := r.nextDispatch()
			if tc.resumable != (f.T != nil && *f.T == "RESUMED") {
				t.Fatalf("after close %d resume got %s", tc.code, f.Raw)
			}
			r.close()
		})
	}
}

func TestRestartKeepsSessions(t *testing.T) {
	s := startFake(t, Config{Guilds: 4})
	c, rd, got := connectIdentify(t, s, "&compress=zlib-stream", 0, 1, allIntents)
	rec := record(c)
	s.SetRate(1000)
	testkit.Eventually(t, waitTimeout, "traffic", func() bool { return rec.count() > 50 })
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	<-rec.done
	got = append(got, rec.snapshot()...)
	r := resumeClient(t, rd.ResumeGatewayURL, rd.SessionID, *got[len(got)-1].S, "&compress=zlib-stream")
	rec2 := record(r)
	testkit.Eventually(t, waitTimeout, "traffic after restart", func() bool { return rec2.count() > 50 })
	s.SetRate(0)
	if err := s.WaitIdle(t.Context()); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, waitTimeout, "all read", func() bool { return len(got)+rec2.count() == len(s.Ledger(0)[0].Entries) })
	matchLedger(t, append(got, rec2.snapshot()...), s.Ledger(0)[0].Entries)
}

func TestFrameSplitting(t *testing.T) {
	for _, comp := range []string{"", "zlib-stream", "zstd-stream"} {
		t.Run("compress="+comp, func(t *testing.T) {
			q := ""
			if comp != "" {
				q = "&compress=" + comp
			}
			s := startFake(t, Config{Guilds: 3, MembersPerGuild: 200, MaxFrameSize: 64})
			c, _, got := connectIdentify(t, s, q, 0, 1, allIntents)
			if c.wsFrames <= len(got)+1 {
				t.Fatalf("%d websocket frames for %d gateway messages: nothing was split", c.wsFrames, len(got)+1)
			}
			// zlib-stream splits into whole websocket messages, the others
			// into continuation frames of one message.
			if split := c.frames > len(got)+1; split != (comp == "zlib-stream") {
				t.Fatalf("%d websocket messages for %d gateway messages", c.frames, len(got)+1)
			}
			matchLedger(t, got, s.Ledger(0)[0].Entries)
		})
	}
}

func TestIdentifyAfterWindowIsAccepted(t *testing.T) {
	s := startFake(t, Config{IdentifyWindow: 300 * time.Millisecond, IdentifyTolerance: -1})
	first := time.Now()
	c, _, _ := connectIdentify(t, s, "", 0, 1, 0)
	c.close()
	time.Sleep(time.Until(first.Add(350 * time.Millisecond))) // the bucket's window has passed
	connectIdentify(t, s, "", 0, 1, 0)
	if v := s.Stats().Violations; len(v) != 0 {
		t.Fatalf("violations: %+v", v)
	}
}
