package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/redis/rueidis"
)

func newPublisher(t *testing.T, c rueidis.Client, cfg broker.PublisherConfig) *broker.Publisher {
	t.Helper()
	p, err := broker.NewPublisher(c, cfg)
	if err != nil {
		t.Fatalf("new publisher: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return p
}

// ev builds an event of bot "b", shard 0, session "s1".
func ev(seq int64, t string, d string) *broker.Event {
	return &broker.Event{
		Bot: "b", Shard: 0, ShardCount: 1, Intents: 513, Session: "s1", ResumeURL: "wss://resume.example",
		Seq: seq, Type: t, Data: []byte(d), Received: time.UnixMilli(1700000000000 + seq),
	}
}

func mustPublish(t *testing.T, p *broker.Publisher, e *broker.Event) {
	t.Helper()
	// Data is only valid during the call: scribble over it afterwards to
	// prove the Publisher copied it.
	if err := p.Publish(t.Context(), e); err != nil {
		t.Fatalf("publish seq %d: %v", e.Seq, err)
	}
	for i := range e.Data {
		e.Data[i] = 'X'
	}
}

func flush(t *testing.T, p *broker.Publisher, bot string, shard int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := p.Flush(ctx, bot, shard); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// entry is one stream entry's fields in order.
type entry struct {
	id     string
	fields []string // field, value, field, value...
}

func (e entry) get(f string) (string, bool) {
	for i := 0; i+1 < len(e.fields); i += 2 {
		if e.fields[i] == f {
			return e.fields[i+1], true
		}
	}
	return "", false
}

func (e entry) seq(t *testing.T) int64 {
	t.Helper()
	v, _ := e.get("seq")
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("entry %s: seq %q: %v", e.id, v, err)
	}
	return n
}

// readStream returns every entry of key with field order kept.
func readStream(t *testing.T, c rueidis.Client, key string) []entry {
	t.Helper()
	out, err := tryReadStream(t.Context(), c, key)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryReadStream(ctx context.Context, c rueidis.Client, key string) ([]entry, error) {
	arr, err := c.Do(ctx, c.B().Xrange().Key(key).Start("-").End("+").Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("xrange %s: %w", key, err)
	}
	var out []entry
	for _, m := range arr {
		pair, err := m.ToArray()
		if err != nil || len(pair) != 2 {
			return nil, fmt.Errorf("xrange %s: bad entry %v", key, err)
		}
		id, _ := pair[0].ToString()
		fv, err := pair[1].AsStrSlice()
		if err != nil {
			return nil, fmt.Errorf("xrange %s: fields: %w", key, err)
		}
		out = append(out, entry{id: id, fields: fv})
	}
	return out, nil
}

func seqs(t *testing.T, es []entry) []int64 {
	t.Helper()
	out := make([]int64, len(es))
	for i, e := range es {
		out[i] = e.seq(t)
	}
	return out
}

func wantSeqs(t *testing.T, what string, got []int64, from, to int64) {
	t.Helper()
	if int64(len(got)) != to-from+1 {
		t.Fatalf("%s: got %d entries, want %d (seqs %d..%d); got %v", what, len(got), to-from+1, from, to, short(got))
	}
	for i, s := range got {
		if s != from+int64(i) {
			t.Fatalf("%s: entry %d has seq %d, want %d", what, i, s, from+int64(i))
		}
	}
}

func short(s []int64) string {
	if len(s) > 20 {
		return fmt.Sprint(s[:10], "...", s[len(s)-10:])
	}
	return fmt.Sprint(s)
}

func hgetall(t *testing.T, c rueidis.Client, key string) map[string]string {
	t.Helper()
	m, err := c.Do(t.Context(), c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		t.Fatalf("hgetall %s: %v", key, err)
	}
	return m
}

func shardStats(p *broker.Publisher, bot string, shard int) broker.ShardStats {
	for _, s := range p.Stats().Shards {
		if s.Bot == bot && s.Shard == shard {
			return s
		}
	}
	return broker.ShardStats{}
}
