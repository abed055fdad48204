package gateway

import (
	"bytes"
	"compress/zlib"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestInflater_ReleaseBetweenMessages decodes one zlib-stream connection
// whose messages refer back to earlier ones (the same fields, users and
// text repeat, across more than a deflate window), releasing the deflate
// context after some messages as an idle connection does: every payload
// comes out byte for byte, and a released connection holds no context and
// no output buffer.
func TestInflater_ReleaseBetweenMessages(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	var msgs, wire [][]byte
	for i := range 400 {
		m := dispatchJSON(int64(i+1), "MESSAGE_CREATE", 41771983444115456, 100+r.IntN(2000), r)
		buf.Reset()
		if _, err := w.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
		wire = append(wire, bytes.Clone(buf.Bytes()))
	}
	for _, every := range []int{1, 2, 7, 1000} {
		t.Run(fmt.Sprintf("release_every=%d", every), func(t *testing.T) {
			f := newInflater(CompressionZlibStream, 1<<20)
			defer f.close()
			var got [][]byte
			for i, m := range wire {
				// Split some messages over two websocket messages.
				parts := [][]byte{m}
				if i%5 == 3 && len(m) > 8 {
					parts = [][]byte{m[:len(m)/2], m[len(m)/2:]}
				}
				for _, p := range parts {
					if err := f.feed(p, func(p []byte) error { got = append(got, bytes.Clone(p)); return nil }); err != nil {
						t.Fatalf("message %d: %v", i, err)
					}
				}
				if i%every == 0 {
					if err := f.release(); err != nil {
						t.Fatalf("release after message %d: %v", i, err)
					}
					if f.zr != nil || f.out != nil {
						t.Fatalf("after release at message %d: context held %v, output buffer %d bytes", i, f.zr != nil, cap(f.out))
					}
					if cap(f.hist) > 2*deflateWindow {
						t.Fatalf("after release: window buffer %d bytes, want at most %d", cap(f.hist), 2*deflateWindow)
					}
				}
			}
			if len(got) != len(msgs) {
				t.Fatalf("got %d payloads, want %d", len(got), len(msgs))
			}
			for i := range msgs {
				if !bytes.Equal(got[i], msgs[i]) {
					t.Fatalf("payload %d differs:\n got %.120q\nwant %.120q", i, got[i], msgs[i])
				}
			}
		})
	}
}

// TestInflater_ReleaseBrokenFlush: a corrupt tail where release expects the
// end of a sync flush is an error, not a silently wrong window.
func TestInflater_ReleaseBrokenFlush(t *testing.T) {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	_, _ = w.Write([]byte(`{"op":11}`))
	_ = w.Flush()
	f := newInflater(CompressionZlibStream, 1<<20)
	defer f.close()
	msg := bytes.Clone(buf.Bytes())
	if err := f.feed(msg, func([]byte) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(f.in) == 0 {
		t.Skip("the deflate context consumed the whole flush; nothing to corrupt")
	}
	f.in = append([]byte{0xff, 0xff, 0xff}, zlibSuffix...)
	if err := f.release(); err == nil {
		t.Fatal("release over a corrupt flush tail: no error")
	}
}
