package discordtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

const (
	compressNone = iota
	compressZlib
	compressZstd
)

// closeGrace bounds how long the fake waits for the client's close frame
// after it sent its own.
const closeGrace = 2 * time.Second

// gwConn is one websocket connection to the gateway. readLoop owns it; the
// writeLoop writes what is queued.
type gwConn struct {
	s        *Server
	id       uint64
	nc       net.Conn
	br       *bufio.Reader
	path     string
	compress int
	version  int
	opened   time.Time

	mu         sync.Mutex
	queue      [][]byte
	spare      [][]byte
	ctrl       [][]byte
	closeCode  int // close frame to send after the queue; 0 = none
	closeMsg   string
	closing    bool // no more messages are queued
	closeAfter *time.Timer

	wake          chan struct{}
	done          chan struct{} // closed when readLoop ends
	writerDone    chan struct{}
	aborted       atomic.Bool
	zombie        atomic.Bool
	beatRequested atomic.Bool
	// closeStarted is set before the fake's close frame is written: a
	// close frame the client sends from then on answers it (the client
	// cannot have seen the frame before it is written, so it is set
	// before the client can echo it). closeSent is set once the frame is
	// flushed.
	closeStarted atomic.Bool
	closeSent    atomic.Bool

	// readLoop only.
	sess       *session // guarded by s.mu
	identified bool
	lastBeat   time.Time
	sendTimes  []time.Time
	shard      int
}

func newConn(s *Server, nc net.Conn, br *bufio.Reader, path string) *gwConn {
	return &gwConn{s: s, id: s.connSeq.Add(1), nc: nc, br: br, path: path, opened: time.Now(),
		wake: make(chan struct{}, 1), done: make(chan struct{}), writerDone: make(chan struct{}), shard: -1}
}

// enqueue queues one gateway message; it reports false when the connection
// is closing (the message is dropped: the session's ledger keeps it).
func (c *gwConn) enqueue(msg []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.queue = append(c.queue, msg)
	c.mu.Unlock()
	c.s.pending.Add(1)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// closeWith queues a close frame after what is already queued; later
// messages are dropped.
func (c *gwConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.closeCode, c.closeMsg = true, code, reason
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// abort closes the TCP connection without a close frame.
func (c *gwConn) abort() {
	c.aborted.Store(true)
	_ = c.nc.Close()
}

func (c *gwConn) writeLoop() {
	defer c.s.connWG.Done()
	defer close(c.writerDone)
	defer func() {
		c.mu.Lock()
		n := len(c.queue)
		c.queue, c.closing = nil, true
		c.mu.Unlock()
		c.s.pending.Add(-int64(n))
	}()
	bw := bufio.NewWriterSize(c.nc, 32<<10)
	var (
		cbuf bytes.Buffer
		zw   *zlib.Writer
		zs   *zstd.Encoder
	)
	switch c.compress {
	case compressZlib:
		// BestSpeed: the fake drives benchmarks; any level inflates the same.
		zw, _ = zlib.NewWriterLevel(&cbuf, zlib.BestSpeed)
	case compressZstd:
		var err error
		zs, err = zstd.NewWriter(&cbuf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<17),
			zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
		if err != nil {
			c.s.log.Warn("zstd encoder", "err", err)
			_ = c.nc.Close()
			<-c.done
			return
		}
		defer zs.Close()
	}
	maxFrame := c.s.cfg.MaxFrameSize
	failed := false
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		q, ctrl := c.queue, c.ctrl
		c.queue, c.ctrl = c.spare[:0], nil
		code, msg := c.closeCode, c.closeMsg
		c.closeCode = 0
		c.mu.Unlock()
		var err error
		if failed {
			err = net.ErrClosed
		}
		for _, f := range ctrl {
			if err == nil {
				_, err = bw.Write(f)
			}
		}
		for i, m := range q {
			if err == nil {
				switch c.compress {
				case compressNone:
					err = writeMessage(bw, ws.OpText, m, maxFrame, false)
				case compressZlib:
					cbuf.Reset()
					_, _ = zw.Write(m)
					_ = zw.Flush()
					err = writeMessage(bw, ws.OpBinary, cbuf.Bytes(), maxFrame, true)
				case compressZstd:
					cbuf.Reset()
					_, _ = zs.Write(m)
					_ = zs.Flush()
					err = writeMessage(bw, ws.OpBinary, cbuf.Bytes(), maxFrame, false)
				}
			}
			q[i] = nil
		}
		if err == nil {
			err = bw.Flush()
		}
		c.s.pending.Add(-int64(len(q)))
		c.mu.Lock()
		c.spare = q[:0]
		c.mu.Unlock()
		if err == nil && code != 0 {
			c.closeStarted.Store(true)
			err = ws.WriteFrame(bw, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), msg)))
			if err == nil {
				err = bw.Flush()
			}
			c.closeSent.Store(true)
			if tc, ok := c.nc.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
		}
		if err != nil && !failed {
			// The reader ends on the closed socket; what is queued later is
			// dropped (the session's ledger keeps it for a RESUME).
			failed = true
			_ = c.nc.Close()
		}
	}
}

// writeMessage writes one websocket message, split over frames of at most
// maxFrame bytes: as continuation frames, or (separate) as whole messages.
func writeMessage(w io.Writer, op ws.OpCode, p []byte, maxFrame int, separate bool) error {
	if maxFrame <= 0 || len(p) <= maxFrame {
		if err := ws.WriteHeader(w, ws.Header{Fin: true, OpCode: op, Length: int64(len(p))}); err != nil {
			return fmt.Errorf("write frame header: %w", err)
		}
		_, err := w.Write(p)
		return err
	}
	first := true
	for len(p) > 0 {
		n := min(maxFrame, len(p))
		h := ws.Header{Fin: n == len(p), OpCode: op, Length: int64(n)}
		if separate {
			h.Fin = true
		} else if !first {
			h.OpCode = ws.OpContinuation
		}
		if err := ws.WriteHeader(w, h); err != nil {
			return fmt.Errorf("write frame header: %w", err)
		}
		if _, err := w.Write(p[:n]); err != nil {
			return fmt.Errorf("write frame: %w", err)
		}
		p, first = p[n:], false
	}
	return nil
}

// readLoop reads the client's frames until the connection ends, then
// detaches the connection from its session.
func (c *gwConn) readLoop(q url.Values) {
	defer c.s.connWG.Done()
	defer c.finish()

	// Parameters are checked after the upgrade so a close code can be sent.
	badCompress := false
	switch q.Get("compress") {
	case "":
	case "zlib-stream":
		c.compress = compressZlib
	case "zstd-stream":
		c.compress = compressZstd
	default:
		badCompress = true
	}
	go c.writeLoop()
	v := q.Get("v")
	switch {
	case badCompress:
		c.s.violation(-1, "decode_error", "unknown compress "+strconv.Quote(q.Get("compress")))
		c.closeWith(4002, "Decode error.")
		c.drain()
		return
	case v != "10" && v != "9":
		c.s.violation(-1, "invalid_api_version", "v="+strconv.Quote(v))
		c.closeWith(4012, "Invalid API version.")
		c.drain()
		return
	case q.Get("encoding") != "" && q.Get("encoding") != "json":
		c.s.violation(-1, "decode_error", "encoding "+strconv.Quote(q.Get("encoding"))+" is not served (json only)")
		c.closeWith(4002, "Decode error.")
		c.drain()
		return
	}
	c.version, _ = strconv.Atoi(v)
	c.lastBeat = time.Now()
	c.enqueue(fmt.Appendf(nil, `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":%d,"_trace":["[\"fake-discord\",{}]"]}}`,
		c.s.cfg.HeartbeatInterval.Milliseconds()))

	var msg []byte
	for {
		if !c.closeSent.Load() {
			_ = c.nc.SetReadDeadline(c.lastBeat.Add(c.s.cfg.HeartbeatInterval * 3 / 2))
			if c.closeSent.Load() {
				// The writer's closeGrace deadline may just have been
				// overwritten.
				_ = c.nc.SetReadDeadline(time.Now().Add(closeGrace))
			}
		}
		op, p, err := c.readMessage(msg[:0])
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !c.closeSent.Load() && !c.isClosing() {
				c.s.violation(c.currentShard(), "late_heartbeat", fmt.Sprintf("no heartbeat for %v", time.Since(c.lastBeat).Round(time.Millisecond)))
			}
			var ce closeFrameError
			if errors.As(err, &ce) {
				c.clientClosed(int(ce))
			}
			if errors.Is(err, errFrameTooLarge) && !c.isClosing() {
				// Close with 4002 without reading the frame; give the
				// writer a moment to send the close frame.
				c.refuse(4002, fmt.Sprintf("frame over %d bytes", maxClientFrame))
				deadline := time.Now().Add(closeGrace)
				for !c.closeSent.Load() && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
			}
			return
		}
		msg = p
		if c.isClosing() {
			continue // discard until the client closes
		}
		if op == ws.OpBinary {
			c.s.violation(c.currentShard(), "decode_error", "binary frame from client")
			c.closeWith(4002, "Decode error.")
			continue
		}
		c.handlePayload(p)
	}
}

func (c *gwConn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// drain reads until the client goes after a close frame.
func (c *gwConn) drain() {
	var buf []byte
	for {
		_, p, err := c.readMessage(buf[:0])
		if err != nil {
			return
		}
		buf = p
	}
}

var errFrameTooLarge = errors.New("read frame: too large")

type closeFrameError int

func (e closeFrameError) Error() string { return "close frame " + strconv.Itoa(int(e)) }

// maxClientFrame bounds a client frame read into memory; bigger payloads
// close with 4002 without being read.
const maxClientFrame = 1 << 20

// readMessage reads one text/binary message (joining continuation frames),
// answering pings.
func (c *gwConn) readMessage(buf []byte) (ws.OpCode, []byte, error) {
	var op ws.OpCode
	for {
		h, err := ws.ReadHeader(c.br)
		if err != nil {
			return 0, buf, fmt.Errorf("read frame header: %w", err)
		}
		if h.Length > maxClientFrame || int64(len(buf))+h.Length > maxClientFrame {
			return 0, buf, errFrameTooLarge
		}
		start := len(buf)
		buf = append(buf, make([]byte, h.Length)...)
		if _, err := io.ReadFull(c.br, buf[start:]); err != nil {
			return 0, buf, fmt.Errorf("read frame: %w", err)
		}
		if h.Masked {
			ws.Cipher(buf[start:], h.Mask, 0)
		}
		switch h.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameData(buf[start:])
			buf = buf[:start]
			return 0, buf, closeFrameError(code)
		case ws.OpPing:
			// Pongs go through the writer so frames never interleave.
			pong := append([]byte(nil), buf[start:]...)
			buf = buf[:start]
			c.enqueueControl(ws.NewPongFrame(pong))
			continue
		case ws.OpPong:
			buf = buf[:start]
			continue
		case ws.OpText, ws.OpBinary:
			op = h.OpCode
		case ws.OpContinuation:
		}
		if h.Fin {
			return op, buf, nil
		}
	}
}

// enqueueControl queues a raw control frame, written before the queued
// messages and never compressed.
func (c *gwConn) enqueueControl(f ws.Frame) {
	var b bytes.Buffer
	_ = ws.WriteFrame(&b, f)
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.ctrl = append(c.ctrl, b.Bytes())
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// clientClosed handles the client's close frame: 1000/1001 end the session.
//
// A close frame that answers the fake's own close frame only completes the
// closing handshake: whatever code it echoes, the session's fate was decided
// by the fake's code. closeStarted (not closeSent) decides: the writer marks
// closeSent only after the flush, by which time the client may already have
// read the frame and echoed it.
func (c *gwConn) clientClosed(code int) {
	if (code != 1000 && code != 1001) || c.closeStarted.Load() {
		return
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.sess != nil && c.sess.conn == c {
		c.sess.dead = true
		c.s.violationLocked(c.shard, "session_ended_by_client",
			fmt.Sprintf("client closed with %d: session %s can no longer be resumed", code, c.sess.id))
	}
}

// finish ends the connection: stops the writer and detaches the session.
func (c *gwConn) finish() {
	c.mu.Lock()
	c.closing = true
	if c.closeAfter != nil {
		c.closeAfter.Stop()
	}
	c.mu.Unlock()
	close(c.done)
	_ = c.nc.Close()
	c.s.mu.Lock()
	delete(c.s.conns, c)
	if c.sess != nil && c.sess.conn == c {
		c.sess.conn = nil
		c.sess.disconnectedAt = time.Now()
	}
	c.s.mu.Unlock()
}
