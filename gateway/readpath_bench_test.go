package gateway

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/gobwas/ws"
)

// readPath is a shard wired to an in-memory stream of server frames: the
// read path frame → inflate → peek → Sink without a network.
type readPath struct {
	s      *shard
	stream []byte
	src    *bytes.Reader
	n      int // messages in the stream
	left   int
	events int
	bytes  int
}

func newReadPath(t testing.TB, comp Compression, msgs int) *readPath {
	t.Helper()
	rp := &readPath{n: msgs}
	m, err := NewManager(ManagerConfig{
		Bots: []BotConfig{{Name: "bench", Token: "x"}},
		Sink: SinkFunc(func(_ context.Context, ev *Event) error {
			rp.events++
			return nil
		}),
	})
	must(t, err)
	br := &botRun{cfg: BotConfig{Name: "bench", Compression: comp}, count: 1, shards: map[int]*shard{}}
	rp.s = newShard(m, br, 0)
	rp.s.cur = &conn{}
	rp.s.connCtx = context.Background()
	rp.s.setSession("session", "ws://resume")

	r := rand.New(rand.NewPCG(9, 9))
	enc := newStreamEncoder(t, comp)
	var b bytes.Buffer
	types := []string{"MESSAGE_CREATE", "TYPING_START", "PRESENCE_UPDATE", "GUILD_MEMBER_UPDATE"}
	op := ws.OpText
	if comp != CompressionNone {
		op = ws.OpBinary
	}
	for i := range msgs {
		msg := dispatchJSON(int64(i+1), types[i%len(types)], 41771983444115456, 200+r.IntN(1200), r)
		rp.bytes += len(msg)
		appendFrames(t, &b, op, enc.encode(t, msg), 0, false)
	}
	rp.stream = b.Bytes()
	rp.src = bytes.NewReader(rp.stream)
	rp.rewind()
	return rp
}

// rewind starts the stream again as a new connection.
func (rp *readPath) rewind() {
	rp.src.Reset(rp.stream)
	rp.s.fr.reset(rp.src, nil)
	rp.s.inf.reset()
	rp.s.seq.Store(0)
	rp.left = rp.n
}

// step reads one message through the whole path.
func (rp *readPath) step(t testing.TB) {
	kind, _, p, err := rp.s.fr.next()
	if err != nil || kind != frameData {
		t.Fatalf("read frame: kind %d err %v", kind, err)
	}
	if err := rp.s.inf.feed(p, rp.s.onPayload); err != nil {
		t.Fatalf("feed: %v", err)
	}
	rp.left--
}

func TestReadPath_NoAllocs(t *testing.T) {
	for _, comp := range compressions {
		t.Run(comp.String(), func(t *testing.T) {
			rp := newReadPath(t, comp, 400)
			defer rp.s.inf.close()
			for range 100 {
				rp.step(t)
			}
			allocs := testing.AllocsPerRun(200, func() { rp.step(t) })
			if allocs != 0 {
				t.Fatalf("got %v allocs per event, want 0", allocs)
			}
			if rp.events != 301 {
				t.Fatalf("sink got %d events, want 301", rp.events)
			}
		})
	}
}

// BenchmarkReadPath measures frame read → inflate → peek → Sink per event.
func BenchmarkReadPath(b *testing.B) {
	for _, comp := range compressions {
		b.Run("compress="+comp.String(), func(b *testing.B) {
			rp := newReadPath(b, comp, 4000)
			defer rp.s.inf.close()
			for rp.left > 0 { // warm the buffers up on one pass
				rp.step(b)
			}
			rp.rewind()
			b.SetBytes(int64(rp.bytes / rp.n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if rp.left == 0 {
					b.StopTimer()
					rp.rewind()
					b.StartTimer()
				}
				rp.step(b)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
