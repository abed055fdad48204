package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestControlKinds: the gateway's control kinds are the broker's (cmd
// converts one to the other without a table).
func TestControlKinds(t *testing.T) {
	for _, k := range gateway.ControlKinds() {
		if !slices.Contains(broker.ControlKinds(), broker.ControlKind(k)) {
			t.Errorf("gateway control kind %q is not a broker control kind", k)
		}
	}
}

// TestPersistenceCheck: at start feathery reads the server's persistence
// and says what the delivery promise does not cover; with
// redis.require_persistence it refuses a server without AOF; a server that
// refuses CONFIG is checked through INFO.
func TestPersistenceCheck(t *testing.T) {
	cases := []struct {
		name    string
		opts    redistest.Options
		require bool
		err     bool
		log     string
	}{
		{name: "no persistence", log: "redis keeps nothing across a restart"},
		{name: "no persistence, required", require: true, err: true},
		{name: "rdb only", opts: redistest.Options{Args: []string{"--save", "60 1"}}, log: "redis runs without AOF"},
		{name: "aof always, required", opts: redistest.Options{AppendOnly: true}, require: true, log: "appendfsync always"},
		{name: "aof everysec", opts: redistest.Options{Args: []string{"--appendonly", "yes", "--appendfsync", "everysec"}}, log: "appendfsync everysec"},
		{name: "config refused, aof, required", opts: redistest.Options{AppendOnly: true, Args: []string{"--rename-command", "CONFIG", ""}},
			require: true, log: "could not read appendfsync and save"},
		{name: "config refused, no aof, required", opts: redistest.Options{Args: []string{"--rename-command", "CONFIG", ""}}, require: true, err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, tc.opts)
			var logs testkit.SyncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			err := checkPersistence(t.Context(), srv.Client(t), tc.require, log)
			if tc.err {
				if !errors.Is(err, errPersistence) || !strings.Contains(err.Error(), "appendonly") || !strings.Contains(err.Error(), srv.Addr) {
					t.Fatalf("got %v, want a persistence error naming %s and appendonly", err, srv.Addr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(logs.String(), tc.log) {
				t.Errorf("log lacks %q:\n%s", tc.log, logs.String())
			}
		})
	}
}

// TestDaemon_RequirePersistence: `redis.require_persistence: true` refuses
// to start on a Redis without AOF, with an error saying so.
func TestDaemon_RequirePersistence(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	fake := startFake(t, 1, 0)
	cfg := e2eConfig(t, fake, `{url: "`+srv.URL()+`", require_persistence: true}`)
	d, err := runDaemon(t.Context(), cfg, daemonDeps{})
	if err == nil {
		d.Close(context.Background())
		t.Fatal("started without AOF")
	}
	if !strings.Contains(err.Error(), "without AOF") || !strings.Contains(err.Error(), "require_persistence") {
		t.Errorf("got %v", err)
	}
}

// TestDaemon_CheckpointIncidentOnHealthz: a checkpoint of the wrong type
// (WRONGTYPE on every retry before, /healthz 200) makes /healthz answer 503
// naming the shard and the key while the shard has not resumed from the
// rewritten checkpoint; the next event makes it resume, Discord replays,
// /healthz is 200 again, and every dispatch is on the streams once.
func TestDaemon_CheckpointIncidentOnHealthz(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{AppendOnly: true})
	fake := startFake(t, 1, 0)
	cfg := e2eConfig(t, fake, `{url: "`+srv.URL()+`"}`)
	d, err := runDaemon(t.Context(), cfg, daemonDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		d.Close(cctx)
	}()
	rc := srv.Client(t)
	keys := broker.NewKeys("")
	key := keys.Session("e2e", 0)
	base := strings.TrimSuffix(d.AdminURL(), "/")
	health := func() (int, healthReport) {
		code, _, body := httpDo(t, "GET", base+"/healthz", "")
		var h healthReport
		if err := json.Unmarshal([]byte(body), &h); err != nil {
			t.Fatalf("healthz body %q: %v", body, err)
		}
		return code, h
	}
	testkit.Eventually(t, 20*time.Second, "healthy", func() bool { c, _ := health(); return c == 200 })
	// Wait for the checkpoint of the start (READY, GUILD_CREATEs).
	testkit.Eventually(t, 20*time.Second, "a checkpoint", func() bool {
		m, _ := rc.Do(t.Context(), rc.B().Hgetall().Key(key).Build()).AsStrMap()
		return m["seq"] != "" && d.pub.Stats().Shards[0].QueueDepth == 0
	})
	if err := rc.Do(t.Context(), rc.B().Del().Key(key).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Do(t.Context(), rc.B().Set().Key(key).Value("not a checkpoint").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	msg := func(n string) []byte {
		return []byte(`{"id":"` + n + `","channel_id":"1","content":"x","author":{"id":"2"}}`)
	}
	if err := fake.Dispatch(0, "MESSAGE_CREATE", msg("1")); err != nil {
		t.Fatal(err)
	}
	var h healthReport
	testkit.Eventually(t, 20*time.Second, "503 naming the shard and the key", func() bool {
		var c int
		c, h = health()
		return c == http.StatusServiceUnavailable && len(h.Checkpoints) == 1 && h.Checkpoints[0].Key == key &&
			h.Checkpoints[0].Shard == 0 && h.Checkpoints[0].Status == "wrongtype" && strings.Contains(h.Detail, key)
	})
	if err := fake.Dispatch(0, "MESSAGE_CREATE", msg("2")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "healthy again", func() bool { c, _ := health(); return c == 200 })
	if m, _ := rc.Do(t.Context(), rc.B().Hgetall().Key(key).Build()).AsStrMap(); m["session"] == "" {
		t.Errorf("checkpoint after the repair: %v", m)
	}
	ctl := xrangeAll(t, rc, keys.Control())
	found := false
	for _, e := range ctl {
		if e.FieldValues["kind"] == string(broker.ControlCheckpoint) && e.FieldValues["key"] == key && e.FieldValues["status"] == "wrongtype" {
			found = true
		}
	}
	if !found {
		t.Error("no checkpoint control event names the key")
	}
	// Every dispatch the fake sent is on the streams once.
	ledger := fake.Ledger(0)
	last := ledger[len(ledger)-1].Entries[len(ledger[len(ledger)-1].Entries)-1].Seq
	testkit.Eventually(t, 20*time.Second, "the shard at the ledger's last seq", func() bool { return d.mgr.Status()[0].Seq == last })
	if err := d.pub.Flush(t.Context(), "e2e", 0); err != nil {
		t.Fatal(err)
	}
	type ref struct {
		session string
		seq     int64
	}
	onStream := map[ref]int{}
	for _, e := range readEntries(t, rc, []string{keys.Events("e2e"), keys.Stream("e2e", "msgs")}) {
		onStream[ref{e.Session, e.Seq}]++
	}
	for _, ls := range ledger {
		for _, e := range ls.Entries {
			if n := onStream[ref{ls.Session, e.Seq}]; e.T != "TYPING_START" && n != 1 { // TYPING_START is filtered by the config
				t.Errorf("%s seq %d %s stands %d times on the streams, want once", ls.Session, e.Seq, e.T, n)
			}
		}
	}
}
