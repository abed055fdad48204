package gateway

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// BenchmarkIdleInflater reports the heap one connection's decompression
// context keeps while the connection is idle (after a few messages): what an
// idle shard costs for its compression. For zstd-stream it depends on the
// window the server declares, so it runs with several.
func BenchmarkIdleInflater(b *testing.B) {
	type variant struct {
		comp   Compression
		window int // zstd encoder window; 0 = not zstd
	}
	variants := []variant{{CompressionNone, 0}, {CompressionZlibStream, 0},
		{CompressionZstdStream, 128 << 10}, {CompressionZstdStream, 1 << 20}, {CompressionZstdStream, 8 << 20}}
	for _, v := range variants {
		name := "compress=" + v.comp.String()
		if v.window > 0 {
			name += fmt.Sprintf("/window=%dKiB", v.window>>10)
		}
		b.Run(name, func(b *testing.B) {
			const conns = 64
			r := rand.New(rand.NewPCG(3, 3))
			msgs := make([][]byte, 4)
			for i := range msgs {
				msgs[i] = dispatchJSON(int64(i+1), "MESSAGE_CREATE", 41771983444115456, 300+r.IntN(900), r)
			}
			stream := idleStream(b, v.comp, v.window, msgs)
			var perConn float64
			b.ReportAllocs()
			for range b.N {
				infs := make([]*inflater, conns)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range infs {
					f := newInflater(v.comp, 1<<20)
					for _, m := range stream {
						if err := f.feed(m, func([]byte) error { return nil }); err != nil {
							b.Fatal(err)
						}
					}
					// Idle between messages: the shard releases.
					if err := f.release(); err != nil {
						b.Fatal(err)
					}
					infs[i] = f
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perConn = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / conns
				for _, f := range infs {
					f.close()
				}
			}
			b.ReportMetric(perConn, "heap-B/conn")
		})
	}
}

// idleStream compresses msgs as one connection's websocket messages.
func idleStream(b *testing.B, comp Compression, window int, msgs [][]byte) [][]byte {
	var buf bytes.Buffer
	out := make([][]byte, 0, len(msgs))
	var w interface {
		Write([]byte) (int, error)
		Flush() error
	}
	switch comp {
	case CompressionNone:
		return msgs
	case CompressionZlibStream:
		w = zlib.NewWriter(&buf)
	case CompressionZstdStream:
		e, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(window))
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		w = e
	}
	for _, m := range msgs {
		buf.Reset()
		if _, err := w.Write(m); err != nil {
			b.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		out = append(out, bytes.Clone(buf.Bytes()))
	}
	return out
}
