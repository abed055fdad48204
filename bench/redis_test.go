package bench_test

import (
	"testing"

	"github.com/feathery/feathery/bench"
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
	used, err := bench.UsedMemory(ctx, c)
	if err != nil || used <= 0 {
		t.Fatalf("used_memory: got %d, %v", used, err)
	}
	if err := rs.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := rs.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}
