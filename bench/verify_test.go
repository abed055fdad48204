package bench_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/gateway/discordtest"
)

// ledgerFake is a Fake whose ledger is given.
type ledgerFake struct {
	bench.Fake
	ledger map[int][]discordtest.LedgerSession
}

func (f ledgerFake) Ledger(shard int) ([]discordtest.LedgerSession, error) {
	return f.ledger[shard], nil
}

func sentEntries(n int, at time.Time) []discordtest.LedgerEntry {
	out := make([]discordtest.LedgerEntry, n)
	for i := range out {
		out[i] = discordtest.LedgerEntry{Seq: int64(i + 1), T: "MESSAGE_CREATE", D: []byte(`{"id":"` + strconv.Itoa(i+1) + `"}`), SentAt: at}
	}
	return out
}

func msg(shard int, session string, seq int64, id string, d string) consumers.Message {
	return consumers.Message{ID: id, Stream: "s", T: "MESSAGE_CREATE", D: []byte(d), Shard: shard, Session: session, Seq: seq}
}

func TestVerifier_Check(t *testing.T) {
	sent := time.Now().Add(-10 * time.Millisecond)
	fake := ledgerFake{ledger: map[int][]discordtest.LedgerSession{
		0: {{Session: "a", Entries: sentEntries(5, sent)}},
		1: {{Session: "b", Entries: sentEntries(3, sent)}},
	}}

	t.Run("all arrived", func(t *testing.T) {
		v := bench.NewVerifier(true)
		now := time.Now()
		for i := 1; i <= 5; i++ {
			v.Record(msg(0, "a", int64(i), "100-"+strconv.Itoa(i), `{"id":"`+strconv.Itoa(i)+`"}`), now)
		}
		for i := 1; i <= 3; i++ {
			v.Record(msg(1, "b", int64(i), "100-"+strconv.Itoa(10+i), `{"id":"`+strconv.Itoa(i)+`"}`), now)
		}
		d, err := v.Check(fake, []int{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		if !d.OK() || d.Expected != 8 || d.Verified != 8 {
			t.Fatalf("got %+v, want 8 of 8 verified and nothing wrong", d)
		}
		w := d.Window(now.Add(-time.Second), now.Add(time.Second))
		if w.Events != 8 || w.Latency.P50 < 10 || w.Latency.Max < w.Latency.P50 {
			t.Errorf("window: got %+v, want 8 events with latency >= 10ms", w)
		}
		if w := d.Window(now.Add(time.Second), now.Add(2*time.Second)); w.Events != 0 {
			t.Errorf("window after the reads: got %d events, want 0", w.Events)
		}
	})

	t.Run("faults", func(t *testing.T) {
		v := bench.NewVerifier(true)
		now := time.Now()
		v.Record(msg(0, "a", 1, "100-1", `{"id":"1"}`), now)
		v.Record(msg(0, "a", 1, "100-2", `{"id":"1"}`), now)   // duplicate
		v.Record(msg(0, "a", 3, "100-3", `{"id":"3"}`), now)   // seq 2 lost
		v.Record(msg(0, "a", 5, "100-4", `{"id":"5"}`), now)   // stands before seq 4
		v.Record(msg(0, "a", 4, "100-5", `{"id":"4"}`), now)   // out of order
		v.Record(msg(1, "b", 1, "100-6", `{"id":"x"}`), now)   // mismatched d
		v.Record(msg(1, "b", 2, "100-7", `{"id":"2"}`), now)   //
		v.Record(msg(1, "b", 3, "100-8", `{"id":"3"}`), now)   //
		v.Record(msg(1, "b", 9, "100-9", `{"id":"9"}`), now)   // never sent
		v.Record(msg(1, "zz", 1, "100-10", `{"id":"1"}`), now) // unknown session
		v.Record(msg(7, "c", 1, "100-11", `{"id":"1"}`), now)  // shard not benchmarked
		d, err := v.Check(fake, []int{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		want := bench.Verdict{Expected: 8, Verified: 6, Lost: 1, Duplicated: 1, OutOfOrder: 1, Mismatched: 1, Unexpected: 3}
		if d.Expected != want.Expected || d.Verified != want.Verified || d.Lost != want.Lost || d.Duplicated != want.Duplicated ||
			d.OutOfOrder != want.OutOfOrder || d.Mismatched != want.Mismatched || d.Unexpected != want.Unexpected {
			t.Errorf("got %+v,\nwant %+v", d, want)
		}
		if d.OK() || len(d.Problems) == 0 {
			t.Error("faults not reported")
		}
	})

	t.Run("normalised d from a remote ledger", func(t *testing.T) {
		remote := ledgerFake{ledger: map[int][]discordtest.LedgerSession{0: {{Session: "a", Entries: []discordtest.LedgerEntry{
			{Seq: 1, T: "MESSAGE_CREATE", D: []byte(`{"c":"\u003cb\u003e"}`), SentAt: sent},
		}}}}}
		v := bench.NewVerifier(false)
		v.Record(msg(0, "a", 1, "100-1", `{ "c": "<b>" }`), time.Now())
		d, err := v.Check(remote, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		if !d.OK() || d.Verified != 1 {
			t.Errorf("got %+v, want the re-encoded d to match", d)
		}
	})
}
