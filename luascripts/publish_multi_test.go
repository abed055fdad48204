package luascripts_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// TestPublishMulti: one call carries the batches of several shards; each
// section is checked on its own (its checkpoint expectation, its fence), a
// refused section writes nothing and does not stop the others, and
// sections of one shard in one call apply in order.
func TestPublishMulti(t *testing.T) {
	servers(t, func(t *testing.T, c rueidis.Client) {
		ctx := context.Background()
		stream, routed := "p:{bot:m}:events", "p:{bot:m}:msgs"
		ck := func(shard string) string { return "p:{bot:m}:session:" + shard }
		one := []luascripts.PublishStream{{Key: stream}}
		entry := func(seq int64, typ string) luascripts.PublishEntry {
			return luascripts.PublishEntry{Seq: seq, Type: typ, Data: []byte(`{}`), At: 100 + seq}
		}
		// Shard 1's checkpoint went back (Redis lost writes): seq 5 while
		// this process wrote 9.
		c.Do(ctx, c.B().Hset().Key(ck("1")).FieldValue().FieldValue("session", "s1").FieldValue("seq", "5").Build())
		calls := []luascripts.PublishCall{
			{Checkpoint: ck("0"), Streams: one, Session: "s0", Seq: 2, ShardCount: 4, Bot: "m", Shard: 0,
				Entries: []luascripts.PublishEntry{entry(1, "A0"), entry(2, "B0")}},
			{Checkpoint: ck("1"), Streams: one, Session: "s1", Seq: 10, ShardCount: 4, Bot: "m", Shard: 1,
				Entries: []luascripts.PublishEntry{entry(10, "A1")},
				Expect:  luascripts.Expectation{Session: "s1", Seq: 9, Written: true}},
			{Checkpoint: ck("3"), Streams: []luascripts.PublishStream{{Key: stream}, {Key: routed, TrimKind: "MAXLEN", Threshold: "100"}},
				Session: "s3", Seq: 2, ShardCount: 4, Bot: "m", Shard: 3,
				Entries: []luascripts.PublishEntry{entry(1, "A3"), {Stream: 1, Seq: 2, Type: "M3", Data: []byte(`{}`), At: 102}}},
			// Shard 0 again: its next batch, expecting what the first
			// section wrote.
			{Checkpoint: ck("0"), Streams: one, Session: "s0", Seq: 3, ShardCount: 4, Bot: "m", Shard: 0,
				Entries: []luascripts.PublishEntry{entry(3, "C0")},
				Expect:  luascripts.Expectation{Session: "s0", Seq: 2, Written: true}},
		}
		args := make([]luascripts.PublishArgs, len(calls))
		var b luascripts.PublishBatch
		for i := range calls {
			args[i].Build(&calls[i])
			b.Add(&args[i])
		}
		if b.Len() != 4 {
			t.Fatalf("Len %d, want 4", b.Len())
		}
		out, err := luascripts.PublishMulti(ctx, c, &b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != 4 {
			t.Fatalf("%d outcomes, want 4", len(out))
		}
		if out[0].Err != nil || out[0].Result != (luascripts.PublishResult{Added: 2, Seq: 2}) {
			t.Errorf("shard 0: %+v", out[0])
		}
		var re *luascripts.RefusedError
		if !errors.As(out[1].Err, &re) || re.Status != luascripts.StatusBehind || re.Key != ck("1") || re.StoredSeq != "5" {
			t.Errorf("shard 1: %v, want refused as behind (stored seq 5)", out[1].Err)
		}
		if out[2].Err != nil || out[2].Result != (luascripts.PublishResult{Added: 2, Seq: 2}) {
			t.Errorf("shard 3: %+v", out[2])
		}
		if out[3].Err != nil || out[3].Result != (luascripts.PublishResult{Added: 1, Seq: 3}) {
			t.Errorf("shard 0, second batch: %+v", out[3])
		}
		var types []string
		for _, f := range fields(t, c, stream) {
			types = append(types, f[3])
		}
		if want := []string{"A0", "B0", "A3", "C0"}; !reflect.DeepEqual(types, want) {
			t.Errorf("stream holds %q, want %q (the refused shard's entry left out)", types, want)
		}
		if got := fields(t, c, routed); len(got) != 1 || got[0][3] != "M3" {
			t.Errorf("routed stream %q, want shard 3's M3", got)
		}
		if s, _ := c.Do(ctx, c.B().Hget().Key(ck("1")).Field("seq").Build()).ToString(); s != "5" {
			t.Errorf("refused shard's checkpoint seq %q, want 5 (untouched)", s)
		}
		if s, _ := c.Do(ctx, c.B().Hget().Key(ck("0")).Field("seq").Build()).ToString(); s != "3" {
			t.Errorf("shard 0's checkpoint seq %q, want 3", s)
		}
		// The whole call again (its reply lost): every entry is skipped,
		// the refusal stands.
		out, err = luascripts.PublishMulti(ctx, c, &b, out[:0])
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Result != (luascripts.PublishResult{Skipped: 2, Seq: 3}) || out[2].Result != (luascripts.PublishResult{Skipped: 2, Seq: 2}) ||
			out[3].Result != (luascripts.PublishResult{Skipped: 1, Seq: 3}) || !errors.As(out[1].Err, &re) {
			t.Errorf("replayed call: %+v", out)
		}
		if n, _ := c.Do(ctx, c.B().Xlen().Key(stream).Build()).AsInt64(); n != 4 {
			t.Errorf("%d entries after the replay, want 4", n)
		}
		// An empty batch makes no call.
		b.Reset()
		if out, err := luascripts.PublishMulti(ctx, c, &b, nil); err != nil || len(out) != 0 {
			t.Errorf("empty batch: %v %v", out, err)
		}
	})
}

// TestPublishMultiFenced: a fenced section is refused alone; the sections
// around it, fenced with their own leases, go.
func TestPublishMultiFenced(t *testing.T) {
	c := redistest.Start(t, redistest.Options{}).Client(t)
	ctx := context.Background()
	stream := "p:{bot:f}:events"
	var fences [3]int64
	for i := range fences {
		lease := "p:{bot:f}:lease:" + string(rune('0'+i))
		r, err := luascripts.LeaseAcquire(ctx, c, lease, "a", time.Minute)
		if err != nil || !r.Taken {
			t.Fatalf("acquire %s: %+v %v", lease, r, err)
		}
		fences[i] = r.Fence
	}
	var b luascripts.PublishBatch
	args := make([]luascripts.PublishArgs, 3)
	for i := range args {
		fence := fences[i]
		if i == 1 {
			fence++ // a fence the lease does not hold: another node took it
		}
		args[i].Build(&luascripts.PublishCall{
			Checkpoint: "p:{bot:f}:session:" + string(rune('0'+i)), Streams: []luascripts.PublishStream{{Key: stream}},
			Session: "s", Seq: 1, ShardCount: 3, Bot: "f", Shard: i,
			Entries: []luascripts.PublishEntry{{Seq: 1, Type: "T" + string(rune('0'+i)), Data: []byte(`1`), At: 10}},
			Lease:   "p:{bot:f}:lease:" + string(rune('0'+i)), Fence: fence,
		})
		b.Add(&args[i])
	}
	out, err := luascripts.PublishMulti(ctx, c, &b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fe *luascripts.FencedError
	if out[0].Err != nil || out[2].Err != nil || !errors.As(out[1].Err, &fe) || fe.Node != "a" {
		t.Fatalf("outcomes %+v, want shards 0 and 2 written, 1 fenced", out)
	}
	var types []string
	for _, f := range fields(t, c, stream) {
		types = append(types, f[3])
	}
	if want := []string{"T0", "T2"}; !reflect.DeepEqual(types, want) {
		t.Fatalf("stream holds %q, want %q", types, want)
	}
	if n, _ := c.Do(ctx, c.B().Exists().Key("p:{bot:f}:session:1").Build()).AsInt64(); n != 0 {
		t.Fatal("the fenced shard's checkpoint was written")
	}
}
