package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var compressions = []Compression{CompressionNone, CompressionZlibStream, CompressionZstdStream}

func TestInflater_RoundTrip(t *testing.T) {
	for _, comp := range compressions {
		for _, split := range []int{0, 7, 1000} {
			t.Run(fmt.Sprintf("%s/split=%d", comp, split), func(t *testing.T) {
				t.Parallel()
				r := rand.New(rand.NewPCG(1, uint64(split)))
				var enc *streamEncoder
				inf := newInflater(comp, 1<<20)
				defer inf.close()
				for conn := 0; conn < 2; conn++ { // a second connection gets a fresh context
					inf.reset()
					enc = newStreamEncoder(t, comp)
					for i := 0; i < 200; i++ {
						size := r.IntN(300)
						if i%50 == 0 {
							size = 200 << 10 // spans several deflate blocks and output reads
						}
						msg := dispatchJSON(int64(i+1), "MESSAGE_CREATE", 7, size, r)
						wire := enc.encode(t, msg)
						var got [][]byte
						collect := func(p []byte) error {
							got = append(got, bytes.Clone(p))
							return nil
						}
						// zlib-stream: a message may come as several websocket messages.
						if comp == CompressionZlibStream && split > 0 {
							for len(wire) > 0 {
								n := min(split, len(wire))
								if err := inf.feed(wire[:n], collect); err != nil {
									t.Fatalf("message %d: %v", i, err)
								}
								wire = wire[n:]
							}
						} else if err := inf.feed(wire, collect); err != nil {
							t.Fatalf("message %d: %v", i, err)
						}
						if len(got) != 1 || !bytes.Equal(got[0], msg) {
							t.Fatalf("message %d: got %d payloads, want the message back", i, len(got))
						}
					}
				}
			})
		}
	}
}

func TestInflater_TooLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, comp := range compressions {
		t.Run(comp.String(), func(t *testing.T) {
			enc := newStreamEncoder(t, comp)
			inf := newInflater(comp, 64<<10)
			defer inf.close()
			msg := dispatchJSON(1, "MESSAGE_CREATE", 7, 100<<10, r)
			err := inf.feed(enc.encode(t, msg), func([]byte) error { return nil })
			if !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("got %v, want ErrPayloadTooLarge", err)
			}
		})
	}
}

func TestInflater_Garbage(t *testing.T) {
	for _, comp := range []Compression{CompressionZlibStream, CompressionZstdStream} {
		t.Run(comp.String(), func(t *testing.T) {
			inf := newInflater(comp, 1<<20)
			defer inf.close()
			err := inf.feed([]byte("this is not compressed\x00\x00\xff\xff"), func([]byte) error { return nil })
			if err == nil {
				t.Fatal("got no error for garbage input")
			}
		})
	}
}

func TestInflater_NoAllocs(t *testing.T) {
	for _, comp := range compressions {
		t.Run(comp.String(), func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 3))
			enc := newStreamEncoder(t, comp)
			inf := newInflater(comp, 1<<20)
			defer inf.close()
			var wires [][]byte
			for i := range 300 {
				wires = append(wires, enc.encode(t, dispatchJSON(int64(i+1), "TYPING_START", 1, 200+r.IntN(800), r)))
			}
			fn := func([]byte) error { return nil }
			for _, w := range wires[:100] { // warm up buffers
				if err := inf.feed(w, fn); err != nil {
					t.Fatal(err)
				}
			}
			i := 100
			allocs := testing.AllocsPerRun(150, func() {
				if err := inf.feed(wires[i], fn); err != nil {
					t.Fatal(err)
				}
				i++
			})
			if allocs != 0 {
				t.Fatalf("got %v allocs per message, want 0", allocs)
			}
		})
	}
}

func fuzzInflate(f *testing.F, comp Compression) {
	r := rand.New(rand.NewPCG(4, 4))
	enc := newStreamEncoder(f, comp)
	var seed []byte
	for i := range 3 {
		seed = append(seed, enc.encode(f, dispatchJSON(int64(i+1), "MESSAGE_CREATE", 1, 50, r))...)
	}
	f.Add(seed, uint16(0), true)
	f.Add(seed, uint16(5), true)
	f.Add([]byte{0x78, 0x9c, 0, 0, 0xff, 0xff}, uint16(1), true)
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0}, uint16(1), true)
	f.Add(dispatchJSON(1, "TYPING_START", 2, 100, r), uint16(9), false)
	f.Add([]byte(`{"op":0,"d":"}\"{"}`), uint16(3), false)
	// One inflater and one encoder for the whole run, reset for every input
	// as for every new connection (fuzz inputs run one at a time per process).
	inf := newInflater(comp, 1<<20)
	fenc := newStreamEncoder(f, comp)
	f.Fuzz(func(t *testing.T, data []byte, cut uint16, compressed bool) {
		inf.reset()
		var got [][]byte
		fn := func(p []byte) error {
			_, _ = peekEnvelope(p)
			got = append(got, bytes.Clone(p))
			return nil
		}
		if compressed {
			// Arbitrary bytes as one or two websocket messages: an error or
			// payloads, never a panic or a hang.
			c := int(cut) % (len(data) + 1)
			if err := inf.feed(data[:c], fn); err != nil {
				return
			}
			_ = inf.feed(data[c:], fn)
			return
		}
		// data as a gateway message through a real compressor: a single JSON
		// object comes back byte for byte (trailing whitespace aside),
		// whatever the split.
		if !json.Valid(data) || len(bytes.TrimSpace(data)) == 0 || bytes.TrimSpace(data)[0] != '{' {
			return
		}
		fenc.reset()
		wire := fenc.encode(t, data)
		var err error
		if comp == CompressionZlibStream {
			c := int(cut) % (len(wire) + 1)
			if err = inf.feed(wire[:c], fn); err == nil {
				err = inf.feed(wire[c:], fn)
			}
		} else {
			err = inf.feed(wire, fn)
		}
		if err != nil {
			t.Fatalf("inflate %q: %v", data, err)
		}
		if len(got) != 1 || !bytes.Equal(got[0], bytes.TrimRight(data, " \t\r\n")) {
			t.Fatalf("inflate %q: got %q", data, got)
		}
	})
}

func FuzzInflateZlib(f *testing.F) { fuzzInflate(f, CompressionZlibStream) }
func FuzzInflateZstd(f *testing.F) { fuzzInflate(f, CompressionZstdStream) }

// A zstd-stream declaring a window up to maxZstdWindow inflates; one
// declaring more is refused with an error (the connection is dropped), so a
// server cannot make a connection hold more history than that.
func TestInflater_ZstdWindowBound(t *testing.T) {
	msg := []byte(`{"op":0,"s":1,"t":"TYPING_START","d":{}}`)
	for _, tc := range []struct {
		window int
		ok     bool
	}{{128 << 10, true}, {maxZstdWindow, true}, {2 * maxZstdWindow, false}} {
		t.Run(fmt.Sprintf("window=%dKiB", tc.window>>10), func(t *testing.T) {
			var buf bytes.Buffer
			enc, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(tc.window))
			if err != nil {
				t.Fatal(err)
			}
			defer enc.Close()
			if _, err := enc.Write(msg); err != nil {
				t.Fatal(err)
			}
			if err := enc.Flush(); err != nil {
				t.Fatal(err)
			}
			inf := newInflater(CompressionZstdStream, 1<<20)
			defer inf.close()
			var got []byte
			err = inf.feed(buf.Bytes(), func(p []byte) error { got = bytes.Clone(p); return nil })
			switch {
			case tc.ok && (err != nil || !bytes.Equal(got, msg)):
				t.Fatalf("got %q, %v; want the message back", got, err)
			case !tc.ok && err == nil:
				t.Fatalf("a %d-byte window was accepted, want an error (limit %d)", tc.window, maxZstdWindow)
			case !tc.ok && !errors.Is(err, zstd.ErrWindowSizeExceeded):
				t.Fatalf("got %v, want it to wrap zstd.ErrWindowSizeExceeded", err)
			}
		})
	}
}
