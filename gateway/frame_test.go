package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gobwas/ws"
)

func TestFrameReader_Messages(t *testing.T) {
	var b bytes.Buffer
	payload := bytes.Repeat([]byte("0123456789"), 7000) // needs the 64-bit length
	appendFrames(t, &b, ws.OpText, []byte(`{"op":11}`), 0, false)
	// A fragmented message with a ping in the middle.
	must(t, ws.WriteFrame(&b, ws.NewFrame(ws.OpBinary, false, payload[:3])))
	must(t, ws.WriteFrame(&b, ws.NewPingFrame([]byte("hi"))))
	must(t, ws.WriteFrame(&b, ws.NewFrame(ws.OpContinuation, false, payload[3:300])))
	must(t, ws.WriteFrame(&b, ws.NewFrame(ws.OpContinuation, true, payload[300:])))
	// A masked server frame is unmasked.
	masked := ws.NewTextFrame([]byte(`{"op":1}`))
	masked = ws.MaskFrameInPlace(masked)
	must(t, ws.WriteFrame(&b, masked))
	must(t, ws.WriteFrame(&b, ws.NewCloseFrame(ws.NewCloseFrameBody(4004, "Authentication failed."))))

	fr := newFrameReader(bufio.NewReaderSize(&b, 16), 1<<20)
	want := []struct {
		kind frameKind
		p    []byte
	}{
		{frameData, []byte(`{"op":11}`)},
		{framePing, []byte("hi")},
		{frameData, payload},
		{frameData, []byte(`{"op":1}`)},
	}
	for i, w := range want {
		kind, _, p, err := fr.next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if kind != w.kind || !bytes.Equal(p, w.p) {
			t.Fatalf("frame %d: got kind %d (%d bytes), want kind %d (%d bytes)", i, kind, len(p), w.kind, len(w.p))
		}
	}
	kind, _, p, err := fr.next()
	if err != nil || kind != frameClose {
		t.Fatalf("got kind %d err %v, want a close frame", kind, err)
	}
	if code, reason := parseClose(p); code != 4004 || reason != "Authentication failed." {
		t.Fatalf("got close %d %q, want 4004", code, reason)
	}
	if _, _, _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v at the end, want EOF", err)
	}
}

func TestFrameReader_Bad(t *testing.T) {
	cases := map[string]func(b *bytes.Buffer){
		"reserved bits": func(b *bytes.Buffer) {
			f := ws.NewTextFrame([]byte("x"))
			f.Header.Rsv = 4
			must(t, ws.WriteFrame(b, f))
		},
		"unknown opcode": func(b *bytes.Buffer) { must(t, ws.WriteFrame(b, ws.NewFrame(ws.OpCode(5), true, nil))) },
		"long ping": func(b *bytes.Buffer) {
			b.Write([]byte{0x89, 126, 0, 200})
			b.Write(make([]byte, 200))
		},
		"fragmented ping":    func(b *bytes.Buffer) { must(t, ws.WriteFrame(b, ws.NewFrame(ws.OpPing, false, nil))) },
		"stray continuation": func(b *bytes.Buffer) { must(t, ws.WriteFrame(b, ws.NewFrame(ws.OpContinuation, true, []byte("x")))) },
		"data inside fragments": func(b *bytes.Buffer) {
			must(t, ws.WriteFrame(b, ws.NewFrame(ws.OpText, false, []byte("x"))))
			must(t, ws.WriteFrame(b, ws.NewTextFrame([]byte("y"))))
		},
		"huge length": func(b *bytes.Buffer) {
			b.Write([]byte{0x82, 127})
			_ = binary.Write(b, binary.BigEndian, uint64(1<<63))
		},
		"oversized": func(b *bytes.Buffer) { must(t, ws.WriteFrame(b, ws.NewBinaryFrame(make([]byte, 2000)))) },
		"oversized fragments": func(b *bytes.Buffer) {
			must(t, ws.WriteFrame(b, ws.NewFrame(ws.OpText, false, make([]byte, 600))))
			must(t, ws.WriteFrame(b, ws.NewFrame(ws.OpContinuation, true, make([]byte, 600))))
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			build(&b)
			fr := newFrameReader(bufio.NewReader(&b), 1000)
			_, _, _, err := fr.next()
			if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("got %v, want ErrBadFrame or ErrPayloadTooLarge", err)
			}
		})
	}
}

func TestFrameWriter_Masked(t *testing.T) {
	var b bytes.Buffer
	w := frameWriter{w: nopDeadline{&b}}
	big := bytes.Repeat([]byte("a"), 70000)
	for _, p := range [][]byte{[]byte(`{"op":1,"d":null}`), big[:300], big} {
		b.Reset()
		must(t, w.write(ws.OpText, p))
		var f ws.Frame
		h, err := ws.ReadHeader(&b)
		must(t, err)
		f.Header, f.Payload = h, make([]byte, h.Length)
		_, err = io.ReadFull(&b, f.Payload)
		must(t, err)
		if !f.Header.Masked || !f.Header.Fin || f.Header.OpCode != ws.OpText {
			t.Fatalf("got header %+v, want a final masked text frame", f.Header)
		}
		ws.Cipher(f.Payload, f.Header.Mask, 0)
		if !bytes.Equal(f.Payload, p) {
			t.Fatalf("payload of %d bytes changed", len(p))
		}
	}
}

type nopDeadline struct{ io.Writer }

func (nopDeadline) SetWriteDeadline(time.Time) error { return nil }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func FuzzFrameReader(f *testing.F) {
	var b bytes.Buffer
	appendFrames(f, &b, ws.OpText, []byte(`{"op":11}`), 0, false)
	appendFrames(f, &b, ws.OpBinary, bytes.Repeat([]byte("z"), 300), 100, false)
	must(f, ws.WriteFrame(&b, ws.NewPingFrame([]byte("p"))))
	must(f, ws.WriteFrame(&b, ws.NewCloseFrame(ws.NewCloseFrameBody(4000, "x"))))
	f.Add(b.Bytes())
	f.Add([]byte{0x81, 0xfe, 0x00, 0x05, 1, 2, 3, 4, 'a', 'b', 'c', 'd', 'e'})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(iotest.HalfReader(bytes.NewReader(data)), 4096)
		for range 1000 {
			kind, _, p, err := fr.next()
			if err != nil {
				return
			}
			if len(p) > 4096 {
				t.Fatalf("payload of %d bytes over the limit", len(p))
			}
			if kind == frameClose {
				parseClose(p)
			}
		}
	})
}

// TestFrameReader_ShortReads reads messages of every size class (in place,
// larger than the read buffer, fragmented, masked, with a handshake
// prefix) through readers that return a few bytes at a time.
func TestFrameReader_ShortReads(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	var b bytes.Buffer
	var want [][]byte
	for _, n := range []int{0, 1, 9, 125, 126, 300, idleReadSize - 2, idleReadSize, idleReadSize + 1, 2000,
		readBufferSize - 4, readBufferSize, readBufferSize + 1, 70000} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.Uint32())
		}
		want = append(want, p)
		f := ws.NewFrame(ws.OpBinary, true, p)
		if n%2 == 1 {
			f = ws.MaskFrameInPlace(ws.NewFrame(ws.OpBinary, true, bytes.Clone(p)))
		}
		must(t, ws.WriteFrame(&b, f))
		must(t, ws.WriteFrame(&b, ws.NewPingFrame([]byte("p"))))
		want = append(want, []byte("p"))
	}
	big := bytes.Repeat([]byte("fragmented "), 900)
	appendFrames(t, &b, ws.OpText, big, 700, false)
	want = append(want, big)
	stream := b.Bytes()
	readers := map[string]func([]byte) io.Reader{
		"one byte": func(s []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(s)) },
		"half":     func(s []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(s)) },
		"chunks":   func(s []byte) io.Reader { return &chunkReader{data: s, r: rand.New(rand.NewPCG(1, 2))} },
		"whole":    func(s []byte) io.Reader { return bytes.NewReader(s) },
		"data+EOF": func(s []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(s)) },
	}
	for name, mk := range readers {
		for _, pre := range []int{0, 3, 700} {
			t.Run(fmt.Sprintf("%s/prefix=%d", name, pre), func(t *testing.T) {
				fr := newFrameReader(nil, 1<<20)
				fr.reset(mk(stream[pre:]), stream[:pre])
				for i, w := range want {
					_, _, p, err := fr.next()
					if err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
					if !bytes.Equal(p, w) {
						t.Fatalf("message %d: got %d bytes, want %d", i, len(p), len(w))
					}
				}
				if _, _, _, err := fr.next(); !errors.Is(err, io.EOF) {
					t.Fatalf("got %v at the end, want EOF", err)
				}
			})
		}
	}
}

// TestFrameReader_IdleWaitsSmall: once everything read was returned, the
// reader waits for the next frame with its small buffer, the pooled one
// given back.
func TestFrameReader_IdleWaitsSmall(t *testing.T) {
	var b bytes.Buffer
	msg := bytes.Repeat([]byte("x"), 3000)
	appendFrames(t, &b, ws.OpBinary, msg, 0, false)
	appendFrames(t, &b, ws.OpBinary, []byte("ack"), 0, false)
	cr := &chunkReader{data: b.Bytes(), r: rand.New(rand.NewPCG(1, 1)), sizes: []int{1500, 1600}}
	fr := newFrameReader(cr, 1<<20)
	_, _, p, err := fr.next()
	if err != nil || !bytes.Equal(p, msg) {
		t.Fatalf("got %d bytes, err %v", len(p), err)
	}
	if len(fr.rb) != readBufferSize {
		t.Fatalf("read on with a %d-byte buffer, want the pooled %d", len(fr.rb), readBufferSize)
	}
	if _, _, p, err := fr.next(); err != nil || string(p) != "ack" {
		t.Fatalf("got %q, err %v", p, err)
	}
	fr.releaseIdle()
	if _, _, _, err := fr.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want EOF", err)
	}
	if last := cr.asked[len(cr.asked)-1]; last != idleReadSize {
		t.Fatalf("waited with a %d-byte buffer, want %d (asked %v)", last, idleReadSize, cr.asked)
	}
	if len(fr.rb) != idleReadSize || fr.buf != nil {
		t.Fatalf("idle reader keeps a %d-byte read buffer and a %d-byte message buffer", len(fr.rb), cap(fr.buf))
	}
}

// chunkReader returns data in chunks of the given sizes (cycled), or of
// random sizes, and records the size of every buffer it was asked to fill.
type chunkReader struct {
	data  []byte
	r     *rand.Rand
	sizes []int
	asked []int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.asked = append(c.asked, len(p))
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1 + c.r.IntN(600)
	if len(c.sizes) > 0 {
		n = c.sizes[(len(c.asked)-1)%len(c.sizes)]
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestFrameReader_ResetDropsUnread: a new connection starts with its own
// bytes, whatever the last one left unread.
func TestFrameReader_ResetDropsUnread(t *testing.T) {
	for _, size := range []int{10, 2000} {
		var old, next bytes.Buffer
		appendFrames(t, &old, ws.OpText, bytes.Repeat([]byte("o"), size), 0, false)
		appendFrames(t, &old, ws.OpText, []byte("left unread"), 0, false)
		appendFrames(t, &next, ws.OpText, []byte("hello"), 0, false)
		appendFrames(t, &next, ws.OpText, []byte("ready"), 0, false)
		fr := newFrameReader(bytes.NewReader(old.Bytes()), 1<<20)
		if _, _, _, err := fr.next(); err != nil {
			t.Fatal(err)
		}
		if fr.buffered() == 0 {
			t.Fatal("nothing left unread: the test proves nothing")
		}
		fr.reset(bytes.NewReader(next.Bytes()[3:]), next.Bytes()[:3])
		for _, want := range []string{"hello", "ready"} {
			if _, _, p, err := fr.next(); err != nil || string(p) != want {
				t.Fatalf("size %d: got %q, err %v; want %q", size, p, err, want)
			}
		}
	}
}
