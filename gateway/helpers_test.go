package gateway

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// streamEncoder compresses gateway messages the way Discord does: one
// context per connection, a flush after every message.
type streamEncoder struct {
	comp Compression
	buf  bytes.Buffer
	zw   *zlib.Writer
	ze   *zstd.Encoder
}

func newStreamEncoder(t testing.TB, comp Compression) *streamEncoder {
	t.Helper()
	e := &streamEncoder{comp: comp}
	switch comp {
	case CompressionZlibStream:
		e.zw = zlib.NewWriter(&e.buf)
	case CompressionZstdStream:
		ze, err := zstd.NewWriter(&e.buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		e.ze = ze
	}
	return e
}

// reset starts a new stream (a new connection) on the same encoder.
func (e *streamEncoder) reset() {
	e.buf.Reset()
	switch e.comp {
	case CompressionZlibStream:
		e.zw.Reset(&e.buf)
	case CompressionZstdStream:
		e.ze.Reset(&e.buf)
	}
}

// encode returns the bytes of one gateway message on the wire.
func (e *streamEncoder) encode(t testing.TB, msg []byte) []byte {
	t.Helper()
	e.buf.Reset()
	var err error
	switch e.comp {
	case CompressionNone:
		return append([]byte(nil), msg...)
	case CompressionZlibStream:
		if _, err = e.zw.Write(msg); err == nil {
			err = e.zw.Flush()
		}
	case CompressionZstdStream:
		if _, err = e.ze.Write(msg); err == nil {
			err = e.ze.Flush()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), e.buf.Bytes()...)
}

// appendFrames appends p as server frames of at most maxFrame bytes (0 =
// one frame): continuation frames of one message, or separate messages when
// separate is set.
func appendFrames(t testing.TB, dst *bytes.Buffer, op ws.OpCode, p []byte, maxFrame int, separate bool) {
	t.Helper()
	if maxFrame <= 0 || len(p) <= maxFrame {
		if err := ws.WriteFrame(dst, ws.NewFrame(op, true, p)); err != nil {
			t.Fatal(err)
		}
		return
	}
	first := true
	for len(p) > 0 {
		n := min(maxFrame, len(p))
		chunk := p[:n]
		p = p[n:]
		fop := op
		fin := len(p) == 0
		if !separate && !first {
			fop = ws.OpContinuation
		}
		if separate {
			fin = true
		}
		if err := ws.WriteFrame(dst, ws.NewFrame(fop, fin, chunk)); err != nil {
			t.Fatal(err)
		}
		first = false
	}
}

// dispatchJSON returns a dispatch payload with a d of about size bytes.
func dispatchJSON(seq int64, t string, guild uint64, size int, r *rand.Rand) []byte {
	var d strings.Builder
	fmt.Fprintf(&d, `{"id":"%d","channel_id":"123","guild_id":"%d","content":"`, r.Uint64()>>1, guild)
	for d.Len() < size {
		d.WriteString(`héllo \"world\" \\ 🎉 `)
	}
	d.WriteString(`","nested":{"guild_id":"1","list":[1,2.5,-3e2,true,false,null,{}]}}`)
	return fmt.Appendf(nil, `{"t":%q,"s":%d,"op":0,"d":%s}`, t, seq, d.String())
}
