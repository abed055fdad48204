package gateway

import (
	"bufio"
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

// frameReader reads server frames from a buffered connection into one reused
// buffer. Data messages split over continuation frames are assembled in that
// buffer; control frames that arrive in between are returned on their own.
type frameReader struct {
	r   *bufio.Reader
	max int

	buf        []byte // payload of the data message being read
	ctrl       [125]byte
	assembling bool
	msgOp      ws.OpCode
}

// frameKind says what frameReader.next returned.
type frameKind uint8

const (
	frameData  frameKind = iota + 1 // a complete text or binary message
	framePing                       // a ping; answer with its payload
	framePong                       // a pong
	frameClose                      // a close frame; payload is code + reason
)

func newFrameReader(r *bufio.Reader, maxPayload int) *frameReader {
	return &frameReader{r: r, max: maxPayload}
}

func (fr *frameReader) reset(r *bufio.Reader) {
	fr.r = r
	fr.buf = fr.buf[:0]
	fr.assembling = false
}

type frameHeader struct {
	fin    bool
	rsv    byte
	op     ws.OpCode
	masked bool
	mask   [4]byte
	length int64
}

// readFrameHeader parses one frame header from r without allocating.
func readFrameHeader(r *bufio.Reader) (frameHeader, error) {
	var h frameHeader
	b, err := r.Peek(2)
	if err != nil {
		return h, err
	}
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
	b, err = r.Peek(need)
	if err != nil {
		return h, noEOF(err)
	}
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
	if _, err := r.Discard(need); err != nil {
		return h, noEOF(err)
	}
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
		h, err := readFrameHeader(fr.r)
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
			if _, err := io.ReadFull(fr.r, p); err != nil {
				return 0, 0, nil, noEOF(err)
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
		if _, err := io.ReadFull(fr.r, p); err != nil {
			return 0, 0, nil, noEOF(err)
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
