package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

// ErrPayloadTooLarge is wrapped by read errors for a websocket message or a
// decompressed gateway payload larger than ManagerConfig.MaxPayload.
var ErrPayloadTooLarge = errors.New("payload too large")

// maxZstdWindow bounds the zstd window a server may declare. The decoder
// keeps a window of history (plus two blocks) per connection, so this bounds
// a connection's decompression memory. 8 MiB is the most the zstd format
// (RFC 8878) recommends every decoder to support and what its non-ultra
// levels use at most; a stream declaring more fails with a read error. What
// a connection really costs is the window the server declares: see
// BenchmarkIdleInflater (the fake Discord declares 128 KiB).
const maxZstdWindow = 8 << 20

// zlibSuffix ends every complete zlib-stream message (Z_SYNC_FLUSH).
var zlibSuffix = []byte{0x00, 0x00, 0xff, 0xff}

// inflater turns websocket messages into gateway payloads for one
// connection. It keeps one decompression context for the connection's life
// and reuses every buffer, so steady-state decoding allocates nothing.
//
// The decompressor reads from a bytes.Reader over the compressed input that
// has arrived. It is asked for output only while the JSON object being
// assembled is incomplete, so it never reaches the end of the input and never
// sees EOF in a healthy stream; a payload that ends early surfaces as an
// error that closes the connection.
type inflater struct {
	comp Compression
	max  int

	in  []byte        // compressed bytes not yet handed to the decompressor
	src bytes.Reader  // what the decompressor reads
	zr  io.ReadCloser // deflate context of zlib-stream; nil until the first message
	zd  *zstd.Decoder // zstd context; nil until first needed

	out     []byte // decompressed bytes; from outPool, back to it while idle
	scanned int    // bytes of out already fed to scan
	scan    objScanner
	zrReady bool // zr has read this connection's zlib header

	// hist is zlib-stream's recent output (the last deflateWindow bytes at
	// least, grown on demand): the window a deflate context restarts from
	// after release gave the context back to flatePool.
	hist []byte
}

// deflateWindow is the deflate back-reference window (RFC 1951).
const deflateWindow = 32 << 10

// flatePool holds deflate contexts (each ~40 KiB: window and Huffman
// tables) released by idle zlib-stream connections; outPool the output
// buffers released by idle connections. A connection between messages
// keeps only its recent output (hist), so 1,000 idle shards do not hold
// 1,000 decompressors. Both are bounded: a start-up burst leaves a few
// behind, not one per connection that was busy at once.
var (
	flatePool = newFreeList[io.ReadCloser](0) // implementing flate.Resetter
	outPool   = newFreeList[[]byte](0)        // of cap outBufSize
)

// outBufSize is the size of a pooled output buffer.
const outBufSize = 32 << 10

func getOut() []byte {
	if b, ok := outPool.get(); ok {
		return b[:0]
	}
	return make([]byte, 0, outBufSize)
}

// getFlate returns a deflate context reading r, starting from the window
// dict.
func getFlate(r io.Reader, dict []byte) (io.ReadCloser, error) {
	if zr, ok := flatePool.get(); ok {
		if err := zr.(flate.Resetter).Reset(r, dict); err != nil {
			return nil, fmt.Errorf("reset deflate: %w", err)
		}
		return zr, nil
	}
	return flate.NewReaderDict(r, dict), nil
}

func newInflater(comp Compression, maxPayload int) *inflater {
	return &inflater{comp: comp, max: maxPayload}
}

// reset starts a new connection: a fresh decompression context, the same
// buffers.
func (f *inflater) reset() {
	f.in = f.in[:0]
	f.out = f.out[:0]
	f.hist = f.hist[:0]
	f.scanned = 0
	f.src.Reset(nil)
	f.scan.reset()
	// The zlib header is read again with the next connection's first message.
	f.zrReady = false
	if f.zd != nil {
		f.zd.Reset(&f.src)
	}
}

// close releases the decompression contexts.
func (f *inflater) close() {
	if f.zd != nil {
		f.zd.Close()
		f.zd = nil
	}
	if f.zr != nil {
		flatePool.put(f.zr)
		f.zr = nil
	}
	f.putOut()
	f.hist = nil
	f.in = nil
}

func (f *inflater) putOut() {
	if f.out != nil && len(f.out) == 0 && cap(f.out) == outBufSize {
		outPool.put(f.out)
	}
	f.out = nil
	f.scanned = 0
}

// release is called between messages when no more input is waiting on the
// connection. With zlib-stream it drives the deflate context over the end
// of the last sync flush (the empty stored block readPayloads leaves
// unread), then gives the context and the output buffer back to their
// pools, keeping only the recent output as the window to restart from. A
// busy connection (input waiting) keeps its context: release is not called.
// An error means the stream is broken.
func (f *inflater) release() error {
	if f.comp != CompressionZlibStream || f.zr == nil || len(f.out) > 0 {
		return nil
	}
	if len(f.in) > 0 {
		if !bytes.HasSuffix(f.in, zlibSuffix) {
			return nil // a message continues in the next websocket message
		}
		f.src.Reset(f.in)
		var one [1]byte
		n, err := f.zr.Read(one[:])
		rest := f.src.Len()
		f.src.Reset(nil)
		switch {
		case n > 0:
			// Output beyond the payloads read: keep it for the next feed.
			if f.out == nil {
				f.out = getOut()
			}
			f.out = append(f.out, one[:n]...)
			f.remember(one[:n])
			f.in = f.in[:copy(f.in, f.in[len(f.in)-rest:])]
			return nil
		case err == nil:
			f.in = f.in[:copy(f.in, f.in[len(f.in)-rest:])]
			return nil
		case rest > 0 || !(errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)):
			return fmt.Errorf("inflate sync flush: %w", err)
		}
		// The context read to the end of the flush and wants the next
		// block: a clean boundary.
		f.in = f.in[:0]
	}
	if cap(f.in) > idleReadSize {
		f.in = nil // a message split over websocket messages was assembled here
	}
	flatePool.put(f.zr)
	f.zr = nil
	f.putOut()
	// hist stays as it is (at most twice the window): trimming or
	// reallocating it here would cost a copy per message at low rates.
	return nil
}

// remember appends decompressed bytes to hist, keeping at least the last
// deflateWindow bytes (the buffer grows to twice the window at most).
func (f *inflater) remember(b []byte) {
	if len(b) >= deflateWindow {
		f.hist = append(f.hist[:0], b[len(b)-deflateWindow:]...)
		return
	}
	if len(f.hist)+len(b) > 2*deflateWindow {
		keep := deflateWindow - len(b)
		f.hist = f.hist[:copy(f.hist, f.hist[len(f.hist)-keep:])]
	}
	if need := len(f.hist) + len(b); need > cap(f.hist) {
		// Grown on demand, by doubling, to twice the window at most.
		f.hist = growBytes(f.hist, min(max(2*cap(f.hist), need, 1<<10), 2*deflateWindow))
	}
	f.hist = append(f.hist, b...)
}

// feed hands one complete websocket message to the inflater and calls fn for
// every gateway payload it completes. The payload passed to fn is valid only
// during the call.
func (f *inflater) feed(msg []byte, fn func(payload []byte) error) error {
	switch f.comp {
	case CompressionNone:
		if len(msg) > f.max {
			return fmt.Errorf("read message of %d bytes (limit %d): %w", len(msg), f.max, ErrPayloadTooLarge)
		}
		return fn(msg)
	case CompressionZlibStream:
		if len(f.in)+len(msg) > f.max {
			return fmt.Errorf("buffer zlib-stream input of %d bytes (limit %d): %w", len(f.in)+len(msg), f.max, ErrPayloadTooLarge)
		}
		if len(f.in) == 0 && bytes.HasSuffix(msg, zlibSuffix) {
			return f.inflate(msg, fn)
		}
		f.in = append(f.in, msg...)
		if !bytes.HasSuffix(f.in, zlibSuffix) {
			return nil // the message continues in the next websocket message
		}
		return f.inflate(f.in, fn)
	case CompressionZstdStream:
		if len(f.in) == 0 {
			return f.inflate(msg, fn)
		}
		f.in = append(f.in, msg...)
		return f.inflate(f.in, fn)
	}
	return fmt.Errorf("inflate: unknown compression %d", f.comp)
}

// inflate decompresses the complete input in and emits the payloads it
// holds. Unread input (the tail of a sync flush the decompressor has not
// pulled yet) is kept in f.in for the next message.
func (f *inflater) inflate(in []byte, fn func(payload []byte) error) error {
	f.src.Reset(in)
	var dec io.Reader
	switch f.comp {
	case CompressionZlibStream:
		switch {
		case !f.zrReady:
			if err := f.openZlib(); err != nil {
				return err
			}
		case f.zr == nil:
			// Released while idle: restart from the window.
			zr, err := getFlate(&f.src, f.hist)
			if err != nil {
				return err
			}
			f.zr = zr
		}
		dec = f.zr
	case CompressionZstdStream:
		if f.zd == nil {
			zd, err := zstd.NewReader(&f.src, zstd.WithDecoderConcurrency(1),
				// Low memory: buffers sized to the blocks seen, not to the
				// largest block possible (klauspost's default today; set
				// here so a change of default cannot grow idle shards).
				zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxZstdWindow))
			if err != nil {
				return fmt.Errorf("open zstd decoder: %w", err)
			}
			f.zd = zd
		}
		dec = f.zd
	}
	err := f.readPayloads(dec, fn)
	// Keep what the decompressor has not consumed, at the front of f.in.
	rest := f.src.Len()
	if rest == 0 {
		f.in = f.in[:0]
		if cap(f.in) > shrinkAbove {
			f.in = nil
		}
	} else {
		tail := in[len(in)-rest:]
		if len(f.in) > 0 && &tail[0] != &f.in[0] {
			n := copy(f.in, tail)
			f.in = f.in[:n]
		} else if len(f.in) == 0 {
			f.in = append(f.in, tail...)
		}
	}
	f.src.Reset(nil)
	return err
}

// openZlib reads the 2-byte zlib header of a connection's stream and starts
// a raw deflate context after it. The stream never ends, so its Adler-32
// trailer never comes: reading deflate directly spares computing a checksum
// nobody checks.
func (f *inflater) openZlib() error {
	cmf, err1 := f.src.ReadByte()
	flg, err2 := f.src.ReadByte()
	switch {
	case err1 != nil || err2 != nil:
		return fmt.Errorf("read zlib header: %w", io.ErrUnexpectedEOF)
	case cmf&0x0f != 8 || cmf>>4 > 7:
		return fmt.Errorf("read zlib header: not deflate (CMF %#02x)", cmf)
	case (uint16(cmf)<<8|uint16(flg))%31 != 0:
		return fmt.Errorf("read zlib header: bad check bits (%#02x %#02x)", cmf, flg)
	case flg&0x20 != 0:
		return fmt.Errorf("read zlib header: preset dictionary not supported")
	}
	if f.zr == nil {
		zr, err := getFlate(&f.src, nil)
		if err != nil {
			return err
		}
		f.zr = zr
	} else if err := f.zr.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return fmt.Errorf("reset deflate: %w", err)
	}
	f.hist = f.hist[:0]
	f.zrReady = true
	return nil
}

// readPayloads reads decompressed bytes until the JSON object in progress is
// complete and emits it, then emits any further complete objects already
// read. It stops as soon as nothing is left over, so the decompressor is
// never asked for output the input cannot hold.
func (f *inflater) readPayloads(dec io.Reader, fn func(payload []byte) error) error {
	for {
		if f.scanned < len(f.out) {
			end, err := f.scan.feed(f.out[f.scanned:])
			if err != nil {
				return fmt.Errorf("inflate payload: %w", err)
			}
			if end >= 0 {
				end += f.scanned
				perr := fn(f.out[:end])
				rest := f.out[end:]
				i := skipWS(rest, 0)
				n := copy(f.out, rest[i:])
				f.out = f.out[:n]
				f.scanned = 0
				f.scan.reset()
				if perr != nil {
					return perr
				}
				if n == 0 {
					if cap(f.out) > shrinkAbove {
						f.out = nil
					}
					return nil
				}
				continue
			}
			f.scanned = len(f.out)
		}
		if f.out == nil && f.max >= outBufSize {
			f.out = getOut()
		}
		if len(f.out) == cap(f.out) {
			if len(f.out) >= f.max {
				return fmt.Errorf("inflate payload over %d bytes: %w", f.max, ErrPayloadTooLarge)
			}
			f.out = growBytes(f.out, min(max(2*cap(f.out), outBufSize), f.max))
		}
		n, err := dec.Read(f.out[len(f.out):cap(f.out)])
		if f.comp == CompressionZlibStream {
			f.remember(f.out[len(f.out) : len(f.out)+n])
		}
		f.out = f.out[:len(f.out)+n]
		if n == 0 && err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("inflate payload: input ended inside a payload: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("inflate payload: %w", err)
		}
	}
}

// growBytes returns b with its contents and a capacity of at least n.
func growBytes(b []byte, n int) []byte {
	if cap(b) >= n {
		return b
	}
	nb := make([]byte, len(b), n)
	copy(nb, b)
	return nb
}
