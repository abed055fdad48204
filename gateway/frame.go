package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// ErrBadFrame is wrapped by read errors for websocket frames that break
// RFC 6455 (reserved bits, unknown opcodes, bad fragmentation, oversized
// control frames).
var ErrBadFrame = errors.New("bad websocket frame")

// shrinkAbove is the buffer capacity above which a buffer grown for a rare
// huge payload (a big GUILD_CREATE) is released once it is no longer needed,
// so an idle shard does not keep megabytes.
const shrinkAbove = 1 << 20

// frameReader reads server frames from a connection. It buffers what it
// reads in a pooled buffer while data keeps coming and gives it back when it
// has read everything and must wait: an idle connection waits with a small
// buffer of its own (idle). A data message in one frame that fits the
// buffer is returned in place; larger or fragmented messages are assembled
// in buf, which an idle connection lets go (releaseIdle). Control frames
// that arrive between fragments are returned on their own.
type frameReader struct {
	src io.Reader
	max int

	rb     []byte // read buffer: idle[:], a pooled readBufferSize buffer or (rarely) a larger one
	rr, rw int    // rb[rr:rw] is read and not yet consumed
	idle   [idleReadSize]byte

	buf        []byte // payload of a data message assembled from fragments or larger than rb
	ctrl       [125]byte
	assembling bool
	msgOp      ws.OpCode
}

// Read buffer sizes. An idle connection waits with idleReadSize bytes (a
// heartbeat ACK or a small event fits); once data comes it reads on with a
// pooled readBufferSize buffer. Frames larger than that are read straight
// into the message buffer.
const (
	idleReadSize   = 512
	readBufferSize = 4 << 10
)

// readBufs holds the read buffers of connections that are not reading.
var readBufs = newFreeList[[]byte](0)

// frameKind says what frameReader.next returned.
type frameKind uint8

const (
	frameData  frameKind = iota + 1 // a complete text or binary message
	framePing                       // a ping; answer with its payload
	framePong                       // a pong
	frameClose                      // a close frame; payload is code + reason
)

func newFrameReader(r io.Reader, maxPayload int) *frameReader {
	fr := &frameReader{max: maxPayload}
	fr.reset(r, nil)
	return fr
}

// reset starts reading a new connection from r, after prefix (bytes that
// arrived with the handshake; copied).
func (fr *frameReader) reset(r io.Reader, prefix []byte) {
	fr.src = r
	fr.rr, fr.rw = 0, 0 // what the last connection left unread is dropped
	fr.putReadBuf()
	if len(prefix) > len(fr.rb) {
		fr.getReadBuf(len(prefix))
	}
	fr.rw = copy(fr.rb, prefix)
	fr.buf = fr.buf[:0]
	fr.assembling = false
}

// buffered is the number of bytes read from the connection and not yet
// returned.
func (fr *frameReader) buffered() int { return fr.rw - fr.rr }

// releaseIdle lets the message buffer go once nothing is buffered (the
// connection is idle): an idle shard does not keep its largest message.
func (fr *frameReader) releaseIdle() {
	if fr.rr == fr.rw && !fr.assembling {
		fr.buf = nil
	}
}

// getReadBuf moves the unread bytes into a buffer of at least n bytes
// (pooled when n ≤ readBufferSize).
func (fr *frameReader) getReadBuf(n int) {
	var b []byte
	if n <= readBufferSize {
		if pb, ok := readBufs.get(); ok {
			b = pb
		} else {
			b = make([]byte, readBufferSize)
		}
	} else {
		b = make([]byte, n)
	}
	fr.rw = copy(b, fr.rb[fr.rr:fr.rw])
	fr.rr = 0
	fr.rb = b
}

// putReadBuf gives a pooled read buffer back and switches to idle (only
// when nothing is buffered).
func (fr *frameReader) putReadBuf() {
	if fr.rr != fr.rw {
		return
	}
	if len(fr.rb) == readBufferSize {
		readBufs.put(fr.rb)
	}
	fr.rb = fr.idle[:]
	fr.rr, fr.rw = 0, 0
}

// fill reads until at least n bytes are buffered (n ≤ readBufferSize).
// With nothing buffered it gives the pooled buffer back and reads into the
// idle one (the read may wait for a long time); when more data comes than
// that holds, it reads on with a pooled buffer.
func (fr *frameReader) fill(n int) error {
	for fr.rw-fr.rr < n {
		switch {
		case fr.rr == fr.rw:
			fr.putReadBuf()
			if n > len(fr.rb) {
				fr.getReadBuf(n)
			}
		case len(fr.rb) < readBufferSize:
			fr.getReadBuf(readBufferSize)
		case fr.rr+n > len(fr.rb) || fr.rw == len(fr.rb):
			fr.rw = copy(fr.rb, fr.rb[fr.rr:fr.rw])
			fr.rr = 0
		}
		m, err := fr.src.Read(fr.rb[fr.rw:])
		fr.rw += m
		if err != nil && fr.rw-fr.rr < n {
			if err == io.EOF && fr.rw > fr.rr {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// readFull reads len(p) bytes: what is buffered, then straight from the
// connection.
func (fr *frameReader) readFull(p []byte) error {
	n := copy(p, fr.rb[fr.rr:fr.rw])
	fr.rr += n
	if n == len(p) {
		return nil
	}
	_, err := io.ReadFull(fr.src, p[n:])
	return noEOF(err)
}

type frameHeader struct {
	fin    bool
	rsv    byte
	op     ws.OpCode
	masked bool
	mask   [4]byte
	length int64
}

// header parses one frame header without allocating.
func (fr *frameReader) header() (frameHeader, error) {
	var h frameHeader
	if err := fr.fill(2); err != nil {
		return h, err
	}
	b := fr.rb[fr.rr:fr.rw]
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = ws.OpCode(b[0] & 0x0f)
	h.masked = b[1]&0x80 != 0
	l := int64(b[1] & 0x7f)
	need := 2
	switch l {
	case 126:
		need += 2
	case 127:
		need += 8
	}
	if h.masked {
		need += 4
	}
	if err := fr.fill(need); err != nil {
		return h, noEOF(err)
	}
	b = fr.rb[fr.rr:fr.rw]
	i := 2
	switch l {
	case 126:
		l = int64(binary.BigEndian.Uint16(b[2:4]))
		i = 4
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > 1<<62 {
			return h, fmt.Errorf("frame length %d: %w", u, ErrBadFrame)
		}
		l = int64(u)
		i = 10
	}
	if h.masked {
		copy(h.mask[:], b[i:i+4])
	}
	h.length = l
	fr.rr += need
	return h, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// next reads frames until it has a complete data message or a control
// frame. The returned payload is valid until the next call.
func (fr *frameReader) next() (frameKind, ws.OpCode, []byte, error) {
	for {
		h, err := fr.header()
		if err != nil {
			return 0, 0, nil, err
		}
		if h.rsv != 0 {
			return 0, 0, nil, fmt.Errorf("frame with reserved bits %03b: %w", h.rsv, ErrBadFrame)
		}
		switch h.op {
		case ws.OpPing, ws.OpPong, ws.OpClose:
			if !h.fin || h.length > 125 {
				return 0, 0, nil, fmt.Errorf("control frame op %d of %d bytes (fin %v): %w", h.op, h.length, h.fin, ErrBadFrame)
			}
			p := fr.ctrl[:h.length]
			if err := fr.readFull(p); err != nil {
				return 0, 0, nil, err
			}
			if h.masked {
				ws.Cipher(p, h.mask, 0)
			}
			switch h.op {
			case ws.OpPing:
				return framePing, h.op, p, nil
			case ws.OpPong:
				return framePong, h.op, p, nil
			default:
				return frameClose, h.op, p, nil
			}
		case ws.OpText, ws.OpBinary:
			if fr.assembling {
				return 0, 0, nil, fmt.Errorf("data frame inside a fragmented message: %w", ErrBadFrame)
			}
			fr.msgOp = h.op
			fr.buf = fr.buf[:0]
			if cap(fr.buf) > shrinkAbove && h.length < shrinkAbove {
				fr.buf = nil // let a rare huge message's buffer go
			}
			if h.fin && h.length <= readBufferSize {
				// The whole message in one frame that fits the read
				// buffer: return it in place.
				if h.length > int64(fr.max) {
					return 0, 0, nil, fmt.Errorf("websocket message of %d+ bytes (limit %d): %w", h.length, fr.max, ErrPayloadTooLarge)
				}
				n := int(h.length)
				if err := fr.fill(n); err != nil {
					return 0, 0, nil, noEOF(err)
				}
				p := fr.rb[fr.rr : fr.rr+n : fr.rr+n]
				fr.rr += n
				if h.masked {
					ws.Cipher(p, h.mask, 0)
				}
				return frameData, h.op, p, nil
			}
		case ws.OpContinuation:
			if !fr.assembling {
				return 0, 0, nil, fmt.Errorf("continuation frame without a message: %w", ErrBadFrame)
			}
		default:
			return 0, 0, nil, fmt.Errorf("frame opcode %d: %w", h.op, ErrBadFrame)
		}
		total := int64(len(fr.buf)) + h.length
		if total > int64(fr.max) {
			return 0, 0, nil, fmt.Errorf("websocket message of %d+ bytes (limit %d): %w", total, fr.max, ErrPayloadTooLarge)
		}
		start := len(fr.buf)
		fr.buf = growBytes(fr.buf, int(total))[:total]
		p := fr.buf[start:]
		if err := fr.readFull(p); err != nil {
			return 0, 0, nil, err
		}
		if h.masked {
			ws.Cipher(p, h.mask, 0)
		}
		if !h.fin {
			fr.assembling = true
			continue
		}
		fr.assembling = false
		return frameData, fr.msgOp, fr.buf, nil
	}
}

// frameWriter writes masked client frames. It is safe for concurrent use;
// every frame is written whole under its lock.
type frameWriter struct {
	mu  sync.Mutex
	w   deadlineWriter
	buf []byte
}

type deadlineWriter interface {
	io.Writer
	SetWriteDeadline(t time.Time) error
}

// writeTimeout bounds one frame write, so a dead peer cannot block a sender.
const writeTimeout = 10 * time.Second

// write sends p as one frame with opcode op.
func (w *frameWriter) write(op ws.OpCode, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := appendFrameHeader(w.buf[:0], op, len(p))
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32())
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, p...)
	ws.Cipher(b[start:], key, 0)
	w.buf = b
	if err := w.w.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if _, err := w.w.Write(b); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// appendFrameHeader appends a final, masked frame header (without the key).
func appendFrameHeader(b []byte, op ws.OpCode, n int) []byte {
	b = append(b, 0x80|byte(op))
	switch {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

// closeFramePayload returns the body of a close frame with code and reason.
func closeFramePayload(code int, reason string) []byte {
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, reason...)
}

// parseClose reads the code and reason of a close frame body; 1005 (no
// status) when it has none.
func parseClose(p []byte) (int, string) {
	if len(p) < 2 {
		return 1005, ""
	}
	return int(binary.BigEndian.Uint16(p)), string(p[2:])
}
