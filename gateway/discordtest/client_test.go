package discordtest

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/klauspost/compress/zstd"
)

// frame is one gateway message as the raw test client reads it.
type frame struct {
	Op  int             `json:"op"`
	S   *int64          `json:"s"`
	T   *string         `json:"t"`
	D   json.RawMessage `json:"d"`
	Raw []byte          `json:"-"`
}

// noEOF is a buffer whose Read never reports io.EOF, so a streaming
// decompressor waits for more input instead of failing.
type noEOF struct{ b []byte }

func (n *noEOF) Read(p []byte) (int, error) {
	if len(n.b) == 0 {
		return 0, nil
	}
	k := copy(p, n.b)
	n.b = n.b[k:]
	return k, nil
}

// rawClient is a minimal gateway client driven step by step by the tests.
type rawClient struct {
	t        testing.TB
	conn     net.Conn
	rw       io.ReadWriter
	compress string
	in       *noEOF
	zr       io.ReadCloser
	zd       *zstd.Decoder
	dec      *json.Decoder
	pend     []byte // zlib bytes not yet ending with the sync flush suffix
	frames   int    // websocket messages read
	wsFrames int    // websocket frames read
}

type rwPair struct {
	io.Reader
	io.Writer
}

func dialRaw(t testing.TB, url string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, br, _, err := ws.Dialer{}.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c := &rawClient{t: t, conn: conn, in: &noEOF{}}
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	c.rw = rwPair{r, conn}
	if i := strings.Index(url, "compress="); i >= 0 {
		c.compress = strings.SplitN(url[i+len("compress="):], "&", 2)[0]
	}
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

// next returns the next gateway message, or the close error.
func (c *rawClient) next(timeout time.Duration) (frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		data, op, err := c.readWS()
		if err != nil {
			return frame{}, err
		}
		var raw []byte
		switch c.compress {
		case "":
			if op != ws.OpText {
				return frame{}, fmt.Errorf("uncompressed message in a %v frame", op)
			}
			raw = data
		case "zlib-stream":
			if op != ws.OpBinary {
				return frame{}, fmt.Errorf("zlib message in a %v frame", op)
			}
			c.pend = append(c.pend, data...)
			if !bytes.HasSuffix(c.pend, []byte{0, 0, 0xff, 0xff}) {
				continue
			}
			c.in.b = append(c.in.b, c.pend...)
			c.pend = c.pend[:0]
			if c.zr == nil {
				if c.zr, err = zlib.NewReader(c.in); err != nil {
					return frame{}, fmt.Errorf("zlib reader: %w", err)
				}
				c.dec = json.NewDecoder(c.zr)
			}
			var m json.RawMessage
			if err := c.dec.Decode(&m); err != nil {
				return frame{}, fmt.Errorf("inflate: %w", err)
			}
			raw = m
		case "zstd-stream":
			c.in.b = append(c.in.b, data...)
			if c.zd == nil {
				if c.zd, err = zstd.NewReader(c.in, zstd.WithDecoderConcurrency(1)); err != nil {
					return frame{}, fmt.Errorf("zstd reader: %w", err)
				}
				c.dec = json.NewDecoder(c.zd)
			}
			var m json.RawMessage
			if err := c.dec.Decode(&m); err != nil {
				return frame{}, fmt.Errorf("zstd: %w", err)
			}
			raw = m
		}
		var f frame
		if err := json.Unmarshal(raw, &f); err != nil {
			return frame{}, fmt.Errorf("decode %q: %w", raw, err)
		}
		f.Raw = append([]byte(nil), raw...)
		return f, nil
	}
}

// readWS reads one websocket message frame by frame, counting frames.
func (c *rawClient) readWS() ([]byte, ws.OpCode, error) {
	var (
		data []byte
		op   ws.OpCode
	)
	for {
		h, err := ws.ReadHeader(c.rw)
		if err != nil {
			return nil, 0, err
		}
		if h.Masked {
			return nil, 0, fmt.Errorf("server frame is masked")
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c.rw, p); err != nil {
			return nil, 0, err
		}
		c.wsFrames++
		switch h.OpCode {
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(p)
			return nil, 0, wsutil.ClosedError{Code: code, Reason: reason}
		case ws.OpPing, ws.OpPong:
			continue
		case ws.OpContinuation:
			if op == 0 {
				return nil, 0, fmt.Errorf("continuation frame without a first frame")
			}
		default:
			if op != 0 {
				return nil, 0, fmt.Errorf("%v frame inside a fragmented message", h.OpCode)
			}
			op = h.OpCode
		}
		data = append(data, p...)
		if h.Fin {
			c.frames++
			return data, op, nil
		}
	}
}

func (c *rawClient) mustNext() frame {
	c.t.Helper()
	f, err := c.next(10 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

// nextDispatch skips heartbeat ACKs.
func (c *rawClient) nextDispatch() frame {
	c.t.Helper()
	for {
		f := c.mustNext()
		if f.Op != 11 {
			return f
		}
	}
}

func (c *rawClient) sendRaw(p []byte) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, p); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *rawClient) send(op int, d any) {
	c.t.Helper()
	b, err := json.Marshal(map[string]any{"op": op, "d": d})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(b)
}

func identifyD(token string, shard, shards int, intents uint64) map[string]any {
	return map[string]any{"token": token, "intents": intents, "shard": []int{shard, shards},
		"properties": map[string]string{"os": "linux", "browser": "test", "device": "test"}}
}

// expectClose reads until the connection closes and returns the close code.
func (c *rawClient) expectClose() int {
	c.t.Helper()
	for {
		_, err := c.next(10 * time.Second)
		if err == nil {
			continue
		}
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return int(ce.Code)
		}
		c.t.Fatalf("want a close frame, got %v", err)
	}
}

func (c *rawClient) close() {
	_ = ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "bye"))))
	_ = c.conn.Close()
}

// hello reads HELLO and returns its interval.
func (c *rawClient) hello() time.Duration {
	c.t.Helper()
	f := c.mustNext()
	if f.Op != 10 {
		c.t.Fatalf("want HELLO, got %s", f.Raw)
	}
	var d struct {
		HeartbeatInterval int64 `json:"heartbeat_interval"`
	}
	if err := json.Unmarshal(f.D, &d); err != nil || d.HeartbeatInterval <= 0 {
		c.t.Fatalf("bad HELLO %s: %v", f.Raw, err)
	}
	return time.Duration(d.HeartbeatInterval) * time.Millisecond
}

type readyD struct {
	SessionID        string `json:"session_id"`
	ResumeGatewayURL string `json:"resume_gateway_url"`
	Shard            []int  `json:"shard"`
	User             struct {
		ID  string `json:"id"`
		Bot bool   `json:"bot"`
	} `json:"user"`
	Guilds []struct {
		ID          string `json:"id"`
		Unavailable bool   `json:"unavailable"`
	} `json:"guilds"`
	Application struct {
		ID string `json:"id"`
	} `json:"application"`
}

// connectIdentify dials, reads HELLO, identifies and reads READY and the
// GUILD_CREATEs; it returns the client, READY and every dispatch read.
func connectIdentify(t testing.TB, s *Server, query string, shard, shards int, intents uint64) (*rawClient, readyD, []frame) {
	t.Helper()
	c := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json"+query)
	c.hello()
	c.send(2, identifyD(s.cfg.Token, shard, shards, intents))
	f := c.nextDispatch()
	if f.T == nil || *f.T != "READY" || f.S == nil || *f.S != 1 {
		t.Fatalf("want READY s=1, got %s", f.Raw)
	}
	var rd readyD
	if err := json.Unmarshal(f.D, &rd); err != nil {
		t.Fatal(err)
	}
	got := []frame{f}
	for range rd.Guilds {
		g := c.nextDispatch()
		if g.T == nil || *g.T != "GUILD_CREATE" {
			t.Fatalf("want GUILD_CREATE, got %s", g.Raw)
		}
		got = append(got, g)
	}
	return c, rd, got
}

// recorder reads dispatches in the background until the connection ends.
type recorder struct {
	mu     sync.Mutex
	frames []frame
	ops    []int // every op read other than 0 and 11
	err    error
	done   chan struct{}
}

func record(c *rawClient) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			f, err := c.next(30 * time.Second)
			if err != nil {
				r.mu.Lock()
				r.err = err
				r.mu.Unlock()
				return
			}
			r.mu.Lock()
			switch f.Op {
			case 0:
				r.frames = append(r.frames, f)
			case 11:
			default:
				r.ops = append(r.ops, f.Op)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.frames)
}

func (r *recorder) snapshot() []frame {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]frame(nil), r.frames...)
}

// waitTimeout bounds every testkit.Eventually of this package's tests.
const waitTimeout = 15 * time.Second

func startFake(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// matchLedger checks the dispatches a client read equal the ledger entries
// of its session, seq for seq and byte for byte.
func matchLedger(t testing.TB, got []frame, entries []LedgerEntry) {
	t.Helper()
	if len(got) != len(entries) {
		t.Fatalf("client read %d dispatches, ledger has %d", len(got), len(entries))
	}
	for i, f := range got {
		e := entries[i]
		if f.S == nil || *f.S != e.Seq || f.T == nil || *f.T != e.T || !bytes.Equal(f.D, e.D) {
			t.Fatalf("dispatch %d: client read %s, ledger has seq %d %s %s", i, truncate(string(f.Raw), 200), e.Seq, e.T, truncate(string(e.D), 200))
		}
	}
}

func sendClose(c *rawClient, code int) error {
	return ws.WriteFrame(c.conn, ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), ""))))
}

func itoa(n int) string { return fmt.Sprint(n) }
