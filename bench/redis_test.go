package bench_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

func TestRedisServer_KillRestartKeepsAcknowledgedWrites(t *testing.T) {
	rs, err := bench.StartRedis(bench.RedisOptions{AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	c, err := rs.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	if err := c.Do(ctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	pid := rs.PID()
	if err := rs.Kill(); err != nil {
		t.Fatal(err)
	}
	if rs.Running() || rs.PID() != 0 {
		t.Fatal("server still running after Kill")
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	if rs.PID() == pid || !rs.Running() {
		t.Fatalf("Restart: pid %d (was %d), running %v", rs.PID(), pid, rs.Running())
	}
	got, err := c.Do(ctx, c.B().Get().Key("k").Build()).ToString()
	if err != nil || got != "v" {
		t.Fatalf("after kill and restart: got %q, %v; want v", got, err)
	}
	// The client's other pooled connections may still hold the killed
	// server's sockets: the first command on one of them fails once.
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if used, err := bench.UsedMemory(ctx, c); err != nil || used <= 0 {
			return fmt.Sprintf("used_memory: got %d, %v", used, err)
		}
		return ""
	})
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := rs.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestRecordStream(t *testing.T) {
	rs, err := bench.StartRedis(bench.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	c, err := rs.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	const n = 2500 // more than one XRANGE page
	for i := 1; i <= n; i++ {
		seq := strconv.Itoa(i)
		cmd := c.B().Xadd().Key("s").Id("*").FieldValue().
			FieldValue("v", "1").FieldValue("t", "MESSAGE_CREATE").FieldValue("d", `{"id":"`+seq+`"}`).
			FieldValue("bot", "b").FieldValue("shard", "0").FieldValue("session", "a").FieldValue("seq", seq).
			FieldValue("at", "1700000000000").Build()
		if err := c.Do(ctx, cmd).Error(); err != nil {
			t.Fatal(err)
		}
	}
	v := bench.NewVerifier(true)
	got, err := bench.RecordStream(ctx, c, "s", v)
	if err != nil || got != n {
		t.Fatalf("RecordStream: got %d, %v; want %d", got, err, n)
	}
	fake := ledgerFake{ledger: map[int][]discordtest.LedgerSession{0: {{Session: "a", Entries: sentEntries(n+1, time.Now())}}}}
	d, err := v.Check(fake, []int{0})
	if err != nil {
		t.Fatal(err)
	}
	if d.Verified != n || d.Lost != 1 || d.Duplicated != 0 || d.OutOfOrder != 0 || d.Mismatched != 0 {
		t.Errorf("got %+v, want %d verified and the last one lost", d, n)
	}
}
