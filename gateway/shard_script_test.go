package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// scriptServer is a tiny gateway for transport tests: REST /gateway/bot and
// a websocket endpoint that runs script for each connection in turn.
type scriptServer struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	conns  int
	script func(n int, c *scriptConn)
}

type scriptConn struct {
	beats atomic.Int64 // heartbeats received
	path  string
	nc    net.Conn
	wmu   sync.Mutex
	msgs  chan map[string]json.RawMessage
}

func (c *scriptConn) send(p string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = wsutil.WriteServerText(c.nc, []byte(p))
}

func (c *scriptConn) raw(b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, _ = c.nc.Write(b)
}

// next returns the next client payload that is not a heartbeat.
func (c *scriptConn) next(t *testing.T) map[string]json.RawMessage {
	select {
	case m := <-c.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Error("timed out waiting for a client payload")
		return nil
	}
}

func newScriptServer(t *testing.T, script func(n int, c *scriptConn)) *scriptServer {
	s := &scriptServer{t: t, script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/gateway/bot") {
			fmt.Fprintf(w, `{"url":"ws://%s/","shards":1,"session_start_limit":{"total":1000,"remaining":1000,"reset_after":1000,"max_concurrency":1}}`, r.Host)
			return
		}
		nc, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		s.mu.Lock()
		n := s.conns
		s.conns++
		s.mu.Unlock()
		c := &scriptConn{path: r.URL.Path, nc: nc, msgs: make(chan map[string]json.RawMessage, 16)}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				p, err := wsutil.ReadClientText(nc)
				if err != nil {
					close(c.msgs)
					return
				}
				var m map[string]json.RawMessage
				if json.Unmarshal(p, &m) != nil {
					continue
				}
				if string(m["op"]) == "1" {
					c.beats.Add(1)
					c.send(`{"op":11,"d":null}`)
					continue
				}
				c.msgs <- m
			}
		}()
		script(n, c)
		<-done
		nc.Close()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestShard_BadInputRecovers: a malformed or oversized frame or payload
// closes that connection with a clear log line, and the shard resumes
// without losing or repeating an event.
func TestShard_BadInputRecovers(t *testing.T) {
	cases := []struct {
		name, log string
		bad       func(c *scriptConn)
	}{
		{"reserved bits", "closing connection after bad frame", func(c *scriptConn) { c.raw([]byte{0xc1, 0x01, '{'}) }},
		{"oversized message", "closing connection after bad frame", func(c *scriptConn) {
			c.send(`{"op":0,"s":3,"t":"X","d":"` + strings.Repeat("a", 5000) + `"}`)
		}},
		{"malformed payload", "closing connection after bad payload", func(c *scriptConn) { c.send(`{"op":0,"s":3,"t":"X","d":{"a":}}`) }},
		{"long control frame", "closing connection after bad frame", func(c *scriptConn) {
			c.raw(append([]byte{0x89, 126, 0, 200}, make([]byte, 200)...))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			var lmu sync.Mutex
			var gotResume map[string]json.RawMessage
			srv := newScriptServer(t, func(n int, c *scriptConn) {
				c.send(`{"op":10,"d":{"heartbeat_interval":1000}}`)
				first := c.next(t)
				switch n {
				case 0:
					if string(first["op"]) != "2" {
						t.Errorf("first connection: got op %s, want IDENTIFY", first["op"])
					}
					c.send(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s1","resume_gateway_url":"ws://` + c.nc.LocalAddr().String() + `/"}}`)
					c.send(`{"op":0,"s":2,"t":"MESSAGE_CREATE","d":{"guild_id":"5"}}`)
					tc.bad(c)
				case 1:
					gotResume = first
					c.send(`{"op":0,"s":3,"t":"MESSAGE_CREATE","d":{"guild_id":"6"}}`)
					c.send(`{"op":0,"s":4,"t":"RESUMED","d":null}`)
				}
				for range c.msgs { // until the client closes
				}
			})
			var mu sync.Mutex
			var seqs []int64
			m, err := NewManager(ManagerConfig{
				Bots: []BotConfig{{Name: "b", Token: "tok"}},
				Sink: SinkFunc(func(_ context.Context, ev *Event) error {
					mu.Lock()
					seqs = append(seqs, ev.Seq)
					mu.Unlock()
					return nil
				}),
				RESTURL:    srv.srv.URL + "/api/v10",
				MaxPayload: 4096,
				Logger:     slog.New(slog.NewTextHandler(lockedWriter{&lmu, &logs}, nil)),
			})
			must(t, err)
			must(t, m.Start(t.Context()))
			testkit.EventuallyWhy(t, 15*time.Second, func() string {
				if st := m.Status()[0]; st.Resumes != 1 || st.State != StateReady {
					return fmt.Sprintf("no resume; status %+v", st)
				}
				return ""
			})
			must(t, m.Close(t.Context()))
			mu.Lock()
			defer mu.Unlock()
			if fmt.Sprint(seqs) != "[1 2 3 4]" {
				t.Errorf("sink got seqs %v, want [1 2 3 4]", seqs)
			}
			if string(gotResume["op"]) != "6" || !strings.Contains(string(gotResume["d"]), `"session_id":"s1","seq":2`) {
				t.Errorf("second connection got %s %s, want RESUME of s1 at seq 2", gotResume["op"], gotResume["d"])
			}
			lmu.Lock()
			defer lmu.Unlock()
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("logs lack %q:\n%s", tc.log, logs.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestShard_ResumeFallback: resumes that keep failing move from the resume
// URL to the main URL, then give the session up (session_lost) and identify.
func TestShard_ResumeFallback(t *testing.T) {
	t.Parallel()
	type seen struct {
		path string
		op   string
	}
	var mu sync.Mutex
	var conns []seen
	srv := newScriptServer(t, func(n int, c *scriptConn) {
		c.send(`{"op":10,"d":{"heartbeat_interval":1000}}`)
		first := c.next(t)
		mu.Lock()
		conns = append(conns, seen{c.path, string(first["op"])})
		mu.Unlock()
		switch {
		case n == 0 || string(first["op"]) == "2":
			c.send(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s` + fmt.Sprint(n) + `","resume_gateway_url":"ws://` + c.nc.LocalAddr().String() + `/resume"}}`)
			if n == 0 {
				c.raw(ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "bye"))))
			}
		default: // refuse every resume
			c.raw(ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "no"))))
		}
		for range c.msgs {
		}
	})
	var lost []ControlEvent
	m, err := NewManager(ManagerConfig{
		Bots:    []BotConfig{{Name: "b", Token: "tok"}},
		Sink:    SinkFunc(func(context.Context, *Event) error { return nil }),
		RESTURL: srv.srv.URL + "/api/v10",
		OnControl: func(ev ControlEvent) {
			if ev.Kind == ControlGap {
				mu.Lock()
				lost = append(lost, ev)
				mu.Unlock()
			}
		},
	})
	must(t, err)
	must(t, m.Start(t.Context()))
	defer m.Close(context.Background())
	testkit.EventuallyWhy(t, 20*time.Second, func() string {
		mu.Lock()
		n := len(conns)
		mu.Unlock()
		if n < 7 || m.Status()[0].State != StateReady {
			return fmt.Sprintf("%d connections, want 7 and the shard ready", n)
		}
		return ""
	})
	mu.Lock()
	defer mu.Unlock()
	want := []seen{{"/", "2"}, {"/resume", "6"}, {"/resume", "6"}, {"/", "6"}, {"/", "6"}, {"/", "6"}, {"/", "2"}}
	if fmt.Sprint(conns[:7]) != fmt.Sprint(want) {
		t.Fatalf("got connections (path, first op) %v, want %v", conns[:7], want)
	}
	if len(lost) != 1 || lost[0].Session != "s0" || lost[0].Seq != 1 {
		t.Fatalf("got session_lost events %+v, want one for s0 at seq 1", lost)
	}
}

// TestShard_HeartbeatOnRequest: op 1 from the gateway gets a heartbeat at
// once, not at the next interval (60 s here).
func TestShard_HeartbeatOnRequest(t *testing.T) {
	t.Parallel()
	ok := make(chan bool, 1)
	srv := newScriptServer(t, func(n int, c *scriptConn) {
		c.send(`{"op":10,"d":{"heartbeat_interval":60000}}`)
		c.next(t) // IDENTIFY
		c.send(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s","resume_gateway_url":"ws://x/"}}`)
		before := c.beats.Load()
		c.send(`{"op":1,"d":null}`)
		deadline := time.Now().Add(5 * time.Second)
		for c.beats.Load() == before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		ok <- c.beats.Load() > before
		for range c.msgs {
		}
	})
	m, err := NewManager(ManagerConfig{
		Bots:    []BotConfig{{Name: "b", Token: "tok"}},
		Sink:    SinkFunc(func(context.Context, *Event) error { return nil }),
		RESTURL: srv.srv.URL + "/api/v10",
	})
	must(t, err)
	must(t, m.Start(t.Context()))
	defer m.Close(context.Background())
	if !<-ok {
		t.Fatal("no heartbeat within 5 s of the gateway's op 1")
	}
}

// TestShard_ResumeLoop: a payload that fails right after RESUMED (here one
// that is not JSON) used to loop for ever, RESUMED resetting the retry
// count. After resumeLoopIdentify resumed connections that ended before
// the next event was published, the shard gives the session up with a gap
// control event and identifies.
func TestShard_ResumeLoop(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var ops []string
	srv := newScriptServer(t, func(n int, c *scriptConn) {
		c.send(`{"op":10,"d":{"heartbeat_interval":1000}}`)
		first := c.next(t)
		mu.Lock()
		ops = append(ops, string(first["op"]))
		mu.Unlock()
		switch string(first["op"]) {
		case "2":
			c.send(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s` + fmt.Sprint(n) + `","resume_gateway_url":"ws://` + c.nc.LocalAddr().String() + `/"}}`)
			c.send(`{"op":0,"s":2,"t":"MESSAGE_CREATE","d":{"guild_id":"5"}}`)
			if n == 0 {
				c.raw(ws.MustCompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "bye"))))
			}
		case "6":
			c.send(`{"op":0,"s":3,"t":"RESUMED","d":null}`)
			c.send(`{"op":0,"s":4,"t":"MESSAGE_CREATE","d":{"guild_id":}}`)
		}
		for range c.msgs {
		}
	})
	var lost []ControlEvent
	m, err := NewManager(ManagerConfig{
		Bots:    []BotConfig{{Name: "b", Token: "tok"}},
		Sink:    SinkFunc(func(context.Context, *Event) error { return nil }),
		RESTURL: srv.srv.URL + "/api/v10",
		OnControl: func(ev ControlEvent) {
			if ev.Kind == ControlGap {
				mu.Lock()
				lost = append(lost, ev)
				mu.Unlock()
			}
		},
	})
	must(t, err)
	must(t, m.Start(t.Context()))
	defer m.Close(context.Background())
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(ops)
		mu.Unlock()
		if n >= 5 && m.Status()[0].State == StateReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d connections (%v) by the deadline, want an IDENTIFY after 3 looping resumes", n, ops)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(ops[:5]) != "[2 6 6 6 2]" {
		t.Fatalf("first ops of the connections %v, want [2 6 6 6 2]", ops[:5])
	}
	if len(lost) != 1 || lost[0].Session != "s0" || !strings.Contains(lost[0].Err, "resumes in a row") {
		t.Fatalf("gap events %+v, want one for s0 naming the resume loop", lost)
	}
}

// rewoundErr is a Sink error saying the durable checkpoint went back.
type rewoundErr struct{}

func (rewoundErr) Error() string           { return "checkpoint went back" }
func (rewoundErr) CheckpointRewound() bool { return true }

// TestShard_RewoundSinkResumesFromStore: when the Sink says its checkpoint
// went back, the shard closes, loads the stored checkpoint again and
// RESUMEs from it (not from the last seq the Sink accepted), so the gateway
// replays what the store lost; a stored checkpoint of another session makes
// it resume its own from the start.
func TestShard_RewoundSinkResumesFromStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stored Session
		want   string
	}{
		{"behind", Session{ID: "s1", Seq: 5, ShardCount: 1}, `"session_id":"s1","seq":5`},
		{"other session", Session{ID: "s0", Seq: 77, ShardCount: 1}, `"session_id":"s1","seq":0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resume := make(chan string, 1)
			srv := newScriptServer(t, func(n int, c *scriptConn) {
				c.send(`{"op":10,"d":{"heartbeat_interval":1000}}`)
				first := c.next(t)
				switch n {
				case 0:
					c.send(`{"op":0,"s":1,"t":"READY","d":{"session_id":"s1","resume_gateway_url":"ws://` + c.nc.LocalAddr().String() + `/"}}`)
					for i := 2; i <= 10; i++ {
						c.send(fmt.Sprintf(`{"op":0,"s":%d,"t":"MESSAGE_CREATE","d":{"guild_id":"5"}}`, i))
					}
				case 1:
					resume <- string(first["op"]) + " " + string(first["d"])
					c.send(`{"op":0,"s":11,"t":"RESUMED","d":null}`)
				}
				for range c.msgs {
				}
			})
			store := NewMemorySessionStore()
			var refused atomic.Bool
			m, err := NewManager(ManagerConfig{
				Bots: []BotConfig{{Name: "b", Token: "tok"}},
				Sink: SinkFunc(func(_ context.Context, ev *Event) error {
					if ev.Seq == 10 && !refused.Swap(true) {
						store.Checkpoint("b", 0, tc.stored)
						return fmt.Errorf("publish: %w", rewoundErr{})
					}
					return nil
				}),
				Sessions: store,
				RESTURL:  srv.srv.URL + "/api/v10",
			})
			must(t, err)
			must(t, m.Start(t.Context()))
			defer m.Close(context.Background())
			select {
			case got := <-resume:
				if !strings.HasPrefix(got, "6 ") || !strings.Contains(got, tc.want) {
					t.Fatalf("second connection sent %s, want RESUME with %s", got, tc.want)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no second connection")
			}
		})
	}
}
