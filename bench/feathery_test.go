package bench_test

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway/discordtest"
)

// TestFeathery_RestartLosesNothing drives the harness the way an end-to-end
// test does: traffic through a feathery process that is restarted (SIGTERM,
// then launched again) while the fake keeps sending; afterwards every
// dispatch is on the stream exactly once, in order, and the shards resumed.
func TestFeathery_RestartLosesNothing(t *testing.T) {
	bin := buildFeathery(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	rs, err := bench.StartRedis(bench.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	fake, err := bench.StartFake(discordtest.Config{Shards: 2, MaxConcurrency: 2, IdentifyWindow: 200 * time.Millisecond, Guilds: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	admin, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "feathery.yaml")
	err = bench.WriteConfig(path, bench.Config{
		RedisURL: rs.URL(), RESTURL: fake.RESTURL(), AdminAddr: admin, IdentifyWindow: 200 * time.Millisecond,
		Bots: []bench.Bot{{Name: "b", Token: "fake-token", Shards: 2, Cache: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := bench.StartFeathery(bench.FeatheryOptions{Binary: bin, Config: path, AdminAddr: admin})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Kill()
	if _, err := f.WaitReady(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if u, err := f.Usage(); err != nil || u.RSS <= 0 {
		t.Fatalf("usage: %+v, %v", u, err)
	}
	fake.SetRate(300)
	client, err := rs.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	stream := broker.NewKeys("").Events("b")
	waitLen := func(n int64) {
		t.Helper()
		for {
			l, _ := client.Do(ctx, client.B().Xlen().Key(stream).Build()).AsInt64()
			if l >= n {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("stream has %d entries, want %d", l, n)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitLen(100)
	pid := f.PID()
	if err := f.Restart(ctx); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if f.PID() == pid {
		t.Fatal("restart kept the old process")
	}
	if _, err := f.WaitReady(ctx, 2); err != nil {
		t.Fatal(err)
	}
	l, _ := client.Do(ctx, client.B().Xlen().Key(stream).Build()).AsInt64()
	waitLen(l + 100)
	fake.SetRate(0)
	if err := fake.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var sent int64
	for _, n := range fake.Server.Stats().DispatchesPerShard {
		sent += n
	}
	waitLen(sent)
	if err := f.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := f.Wait(ctx); err != nil {
		t.Fatalf("exit after SIGTERM: %v; log: %s", err, f.StderrTail(1000))
	}
	if done, _ := f.Exited(); !done {
		t.Fatal("Exited: false after Wait")
	}

	v := bench.NewVerifier(fake.ExactData())
	if _, err := bench.RecordStream(ctx, client, stream, v); err != nil {
		t.Fatal(err)
	}
	d, err := v.Check(fake, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	if !d.OK() || d.Verified != sent || d.Expected != sent {
		t.Errorf("got %+v, want all %d dispatches once, intact and in order", d, sent)
	}
	if st := fake.Server.Stats(); st.Resumes < 2 || st.Identifies != 2 {
		t.Errorf("fake saw %d identifies and %d resumes, want 2 identifies (first start) and the restart resuming both shards", st.Identifies, st.Resumes)
	}
}
