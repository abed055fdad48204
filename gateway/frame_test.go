package gateway

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
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
		fr := newFrameReader(bufio.NewReaderSize(bytes.NewReader(data), 16), 4096)
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
