package luascripts_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/luascripts"
	"github.com/redis/rueidis"
)

// servers runs f against a real redis-server and against miniredis.
func servers(t *testing.T, f func(t *testing.T, c rueidis.Client)) {
	t.Run("redis", func(t *testing.T) {
		f(t, redistest.Start(t, redistest.Options{}).Client(t))
	})
	t.Run("miniredis", func(t *testing.T) {
		m := miniredis.RunT(t)
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		f(t, c)
	})
}

func fields(t *testing.T, c rueidis.Client, key string) [][]string {
	t.Helper()
	res, err := c.Do(context.Background(), c.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, e := range res {
		// AsXRange gives a map; read the entry again in order.
		arr, err := c.Do(context.Background(), c.B().Xrange().Key(key).Start(e.ID).End(e.ID).Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		pair, _ := arr[0].ToArray()
		fv, _ := pair[1].AsStrSlice()
		out = append(out, fv)
	}
	return out
}

func TestPublish(t *testing.T) {
	servers(t, func(t *testing.T, c rueidis.Client) {
		ctx := context.Background()
		ck := "p:{bot:x}:session:0"
		streams := []luascripts.PublishStream{
			{Key: "p:{bot:x}:events"},
			{Key: "p:{bot:x}:m", TrimKind: "MAXLEN", Threshold: "1000"},
			{Key: "p:{bot:x}:a", TrimKind: "MINID", Threshold: "1-0"},
		}
		call := luascripts.PublishCall{
			Checkpoint: ck, Streams: streams, Session: "s", Seq: 3, ResumeURL: "wss://r", ShardCount: 2,
			Intents: 1 << 33, Bot: "x", Shard: 0,
			Entries: []luascripts.PublishEntry{
				{Stream: 0, Seq: 1, Type: "A", Data: []byte(`{"a":1}`), Guild: 12345678901234567, At: 10},
				{Stream: 1, Seq: 2, Type: "B", Data: []byte(``), Before: []byte(`{"b":0}`), At: 11},
				{Stream: 2, Seq: 3, Type: "C", Data: []byte(`null`), At: 12},
				{Stream: 2, Seq: 3, Type: "C", Data: []byte(`dup in batch`), At: 12},
			},
		}
		var a luascripts.PublishArgs
		a.Build(&call)
		res, err := luascripts.Publish(ctx, c, &a)
		if err != nil {
			t.Fatal(err)
		}
		if res != (luascripts.PublishResult{Added: 3, Skipped: 1, Seq: 3}) {
			t.Fatalf("result %+v", res)
		}
		want := map[string][][]string{
			"p:{bot:x}:events": {{"v", "1", "t", "A", "d", `{"a":1}`, "bot", "x", "shard", "0", "session", "s", "seq", "1", "guild", "12345678901234567", "at", "10"}},
			"p:{bot:x}:m":      {{"v", "1", "t", "B", "d", ``, "bot", "x", "shard", "0", "session", "s", "seq", "2", "before", `{"b":0}`, "at", "11"}},
			"p:{bot:x}:a":      {{"v", "1", "t", "C", "d", `null`, "bot", "x", "shard", "0", "session", "s", "seq", "3", "at", "12"}},
		}
		for k, w := range want {
			if got := fields(t, c, k); !reflect.DeepEqual(got, w) {
				t.Errorf("%s: got %q, want %q", k, got, w)
			}
		}
		ckv, _ := c.Do(ctx, c.B().Hgetall().Key(ck).Build()).AsStrMap()
		wantCk := map[string]string{"session": "s", "seq": "3", "resume_url": "wss://r", "shards": "2", "intents": "8589934592"}
		if !reflect.DeepEqual(ckv, wantCk) {
			t.Errorf("checkpoint %v, want %v", ckv, wantCk)
		}
		// Replay: nothing added, the checkpoint does not go back.
		call.Seq = 2
		call.Entries = call.Entries[:2]
		a.Build(&call)
		if res, err := luascripts.Publish(ctx, c, &a); err != nil || res != (luascripts.PublishResult{Skipped: 2, Seq: 3}) {
			t.Fatalf("replay: %+v %v", res, err)
		}
		if s, _ := c.Do(ctx, c.B().Hget().Key(ck).Field("seq").Build()).ToString(); s != "3" {
			t.Errorf("checkpoint seq %s after replay, want 3", s)
		}
		// A new session starts over.
		call.Session, call.Seq = "t", 1
		call.Entries = call.Entries[:1]
		a.Build(&call)
		if res, err := luascripts.Publish(ctx, c, &a); err != nil || res != (luascripts.PublishResult{Added: 1, Seq: 1}) {
			t.Fatalf("new session: %+v %v", res, err)
		}
	})
}

func TestIdentify(t *testing.T) {
	servers(t, func(t *testing.T, c rueidis.Client) {
		ctx := context.Background()
		b0, rem := "p:{bot:x}:identify:bucket:0", "p:{bot:x}:identify:remaining"
		r, err := luascripts.Identify(ctx, c, b0, rem, "0", time.Hour, 2, time.Hour)
		if err != nil || r.Outcome != luascripts.IdentifyTaken || r.Remaining != 1 {
			t.Fatalf("first: %+v %v", r, err)
		}
		r, err = luascripts.Identify(ctx, c, b0, rem, "0", time.Hour, 2, time.Hour)
		if err != nil || r.Outcome != luascripts.IdentifyWait || r.Wait <= time.Hour || r.Wait > luascripts.IdentifyHold*time.Hour {
			t.Fatalf("busy bucket: %+v %v", r, err)
		}
		r, err = luascripts.Identify(ctx, c, "p:{bot:x}:identify:bucket:1", rem, "0", time.Hour, 2, time.Hour)
		if err != nil || r.Outcome != luascripts.IdentifyTaken || r.Remaining != 0 {
			t.Fatalf("other bucket: %+v %v", r, err)
		}
		r, err = luascripts.Identify(ctx, c, "p:{bot:x}:identify:bucket:2", rem, "0", time.Hour, 2, time.Hour)
		if err != nil || r.Outcome != luascripts.IdentifyExhausted || r.Wait <= 0 {
			t.Fatalf("exhausted: %+v %v", r, err)
		}
		c.Do(ctx, c.B().Set().Key(rem).Value("lots").Build())
		if _, err := luascripts.Identify(ctx, c, b0, rem, "0", time.Hour, 2, time.Hour); err == nil {
			t.Fatalf("non-integer counter: no error")
		}
	})
}

// TestPublishOneStream: with a single stream (no route index sent) the
// before images, sent after the entries, land on their own entries; an
// ascending batch that overlaps the checkpoint adds only what is new, one
// wholly above it adds everything.
func TestPublishOneStream(t *testing.T) {
	servers(t, func(t *testing.T, c rueidis.Client) {
		ctx := context.Background()
		ck := "p:{bot:y}:session:0"
		stream := "p:{bot:y}:events"
		call := luascripts.PublishCall{
			Checkpoint: ck, Streams: []luascripts.PublishStream{{Key: stream, TrimKind: "MAXLEN", Threshold: "100"}},
			Session: "s", Seq: 3, ResumeURL: "wss://r", ShardCount: 1, Bot: "y", Shard: 0,
			Entries: []luascripts.PublishEntry{
				{Seq: 1, Type: "A", Data: []byte(`1`), Before: []byte(`{"b":1}`), At: 10},
				{Seq: 2, Type: "B", Data: []byte(`2`), Guild: 7, At: 11},
				{Seq: 3, Type: "C", Data: []byte(`3`), Guild: 8, Before: []byte(`{"b":3}`), At: 12},
			},
		}
		var a luascripts.PublishArgs
		a.Build(&call)
		if res, err := luascripts.Publish(ctx, c, &a); err != nil || res != (luascripts.PublishResult{Added: 3, Seq: 3}) {
			t.Fatalf("first batch: %+v %v", res, err)
		}
		// Overlapping: 2 and 3 are at or below the checkpoint.
		call.Seq = 5
		call.Entries = []luascripts.PublishEntry{
			{Seq: 2, Type: "B", Data: []byte(`2`), Guild: 7, At: 11},
			{Seq: 3, Type: "C", Data: []byte(`3`), Before: []byte(`{"b":3}`), At: 12},
			{Seq: 4, Type: "D", Data: []byte(`4`), Before: []byte(`{"b":4}`), At: 13},
			{Seq: 5, Type: "E", Data: []byte(`5`), At: 14},
		}
		a.Build(&call)
		if res, err := luascripts.Publish(ctx, c, &a); err != nil || res != (luascripts.PublishResult{Added: 2, Skipped: 2, Seq: 5}) {
			t.Fatalf("overlapping batch: %+v %v", res, err)
		}
		want := [][]string{
			{"v", "1", "t", "A", "d", `1`, "bot", "y", "shard", "0", "session", "s", "seq", "1", "before", `{"b":1}`, "at", "10"},
			{"v", "1", "t", "B", "d", `2`, "bot", "y", "shard", "0", "session", "s", "seq", "2", "guild", "7", "at", "11"},
			{"v", "1", "t", "C", "d", `3`, "bot", "y", "shard", "0", "session", "s", "seq", "3", "guild", "8", "before", `{"b":3}`, "at", "12"},
			{"v", "1", "t", "D", "d", `4`, "bot", "y", "shard", "0", "session", "s", "seq", "4", "before", `{"b":4}`, "at", "13"},
			{"v", "1", "t", "E", "d", `5`, "bot", "y", "shard", "0", "session", "s", "seq", "5", "at", "14"},
		}
		if got := fields(t, c, stream); !reflect.DeepEqual(got, want) {
			t.Errorf("stream:\ngot  %q\nwant %q", got, want)
		}
		if s, _ := c.Do(ctx, c.B().Hget().Key(ck).Field("seq").Build()).ToString(); s != "5" {
			t.Errorf("checkpoint seq %s, want 5", s)
		}
	})
}

// TestPublishCheckpointCheck: the script compares the stored checkpoint
// with the caller's expectation before writing anything, refuses the batch
// with a status naming what it found, and a call that repairs that status
// overwrites the checkpoint and appends the entries above the expected seq.
func TestPublishCheckpointCheck(t *testing.T) {
	const ck, stream = "p:{bot:x}:session:0", "p:{bot:x}:events"
	type stored func(ctx context.Context, c rueidis.Client) error
	hset := func(kv ...string) stored {
		return func(ctx context.Context, c rueidis.Client) error {
			cmd := c.B().Hset().Key(ck).FieldValue()
			for i := 0; i < len(kv); i += 2 {
				cmd = cmd.FieldValue(kv[i], kv[i+1])
			}
			return c.Do(ctx, cmd.Build()).Error()
		}
	}
	cases := []struct {
		name     string
		stored   stored // nil: no checkpoint
		expect   luascripts.Expectation
		status   luascripts.CheckpointStatus // "" = accepted
		sess     string
		seq      string
		added    int64 // entries 6 and 7 are sent
		repaired int64 // entries added by the repairing call
	}{
		{name: "as expected", stored: hset("session", "s", "seq", "5"), expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true}, added: 2},
		{name: "no expectation", added: 2},
		{name: "new session over another", stored: hset("session", "old", "seq", "99"), expect: luascripts.Expectation{Session: "s"}, added: 2},
		{name: "wrong type", stored: func(ctx context.Context, c rueidis.Client) error {
			return c.Do(ctx, c.B().Set().Key(ck).Value("x").Build()).Error()
		}, expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true}, status: luascripts.StatusWrongType, repaired: 2},
		{name: "wrong type without expectation", stored: func(ctx context.Context, c rueidis.Client) error {
			return c.Do(ctx, c.B().Rpush().Key(ck).Element("x").Build()).Error()
		}, status: luascripts.StatusWrongType, repaired: 2},
		{name: "seq not a number", stored: hset("session", "s", "seq", "12abc"), expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true},
			status: luascripts.StatusGarbage, sess: "s", seq: "12abc", repaired: 2},
		{name: "no session field", stored: hset("seq", "5", "resume_url", "x"), status: luascripts.StatusGarbage, seq: "5", repaired: 2},
		{name: "empty session", stored: hset("session", "", "seq", "5"), status: luascripts.StatusGarbage, seq: "5", repaired: 2},
		{name: "gone", expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true}, status: luascripts.StatusGone, repaired: 2},
		{name: "gone after a resume point", expect: luascripts.Expectation{Session: "s", Seq: 5}, added: 2},
		{name: "behind", stored: hset("session", "s", "seq", "3"), expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true},
			status: luascripts.StatusBehind, sess: "s", seq: "3", repaired: 2},
		{name: "behind to another session", stored: hset("session", "old", "seq", "40"), expect: luascripts.Expectation{Session: "s", Seq: 5},
			status: luascripts.StatusBehind, sess: "old", seq: "40", repaired: 2},
		{name: "ahead of what was written", stored: hset("session", "s", "seq", "382"), expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true},
			status: luascripts.StatusAhead, sess: "s", seq: "382", repaired: 2},
		{name: "this batch, written before", stored: hset("session", "s", "seq", "6"), expect: luascripts.Expectation{Session: "s", Seq: 5, Written: true}, added: 1},
		{name: "ahead of a resume point", stored: hset("session", "s", "seq", "6"), expect: luascripts.Expectation{Session: "s", Seq: 5}, added: 1},
	}
	servers(t, func(t *testing.T, c rueidis.Client) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ctx := context.Background()
				if err := c.Do(ctx, c.B().Del().Key(ck, stream).Build()).Error(); err != nil {
					t.Fatal(err)
				}
				if tc.stored != nil {
					if err := tc.stored(ctx, c); err != nil {
						t.Fatal(err)
					}
				}
				call := luascripts.PublishCall{
					Checkpoint: ck, Streams: []luascripts.PublishStream{{Key: stream}}, Session: "s", Seq: 7,
					ResumeURL: "wss://r", ShardCount: 1, Intents: 1, Bot: "x", Shard: 0, Expect: tc.expect,
					Entries: []luascripts.PublishEntry{{Seq: 6, Type: "A", Data: []byte(`6`), At: 1}, {Seq: 7, Type: "A", Data: []byte(`7`), At: 2}},
				}
				var a luascripts.PublishArgs
				a.Build(&call)
				res, err := luascripts.Publish(ctx, c, &a)
				if tc.status == "" {
					if err != nil || res.Added != tc.added {
						t.Fatalf("got %+v %v, want %d added", res, err, tc.added)
					}
				} else {
					var re *luascripts.RefusedError
					if !errors.As(err, &re) {
						t.Fatalf("got %+v %v, want refused as %s", res, err, tc.status)
					}
					if re.Status != tc.status || re.StoredSession != tc.sess || re.StoredSeq != tc.seq || re.Key != ck {
						t.Fatalf("refusal %+v, want %s with stored %q/%q", re, tc.status, tc.sess, tc.seq)
					}
					if n, _ := c.Do(ctx, c.B().Xlen().Key(stream).Build()).AsInt64(); n != 0 {
						t.Fatalf("a refused batch appended %d entries", n)
					}
					// Repairing another status refuses all the same.
					call.Repair = luascripts.StatusOK
					a.Build(&call)
					if _, err := luascripts.Publish(ctx, c, &a); !errors.As(err, &re) || re.Status != tc.status {
						t.Fatalf("repairing the wrong status: %v, want refused as %s", err, tc.status)
					}
					call.Repair = tc.status
					a.Build(&call)
					res, err = luascripts.Publish(ctx, c, &a)
					if err != nil || res.Added != tc.repaired {
						t.Fatalf("repair: %+v %v, want %d added", res, err, tc.repaired)
					}
				}
				got, err := c.Do(ctx, c.B().Hgetall().Key(ck).Build()).AsStrMap()
				if err != nil || got["session"] != "s" || got["seq"] != "7" {
					t.Fatalf("checkpoint after the batch: %v %v, want s/7", got, err)
				}
			})
		}
	})
}
