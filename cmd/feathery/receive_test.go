package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/bench"
	"github.com/feathery/feathery/gateway/testkit"
)

// TestReceive runs `feathery receive`: the shards connect, /healthz counts
// them ready, every dispatch the fake sends is received and counted on
// /api/received, and the token shows nowhere.
func TestReceive(t *testing.T) {
	fake := startFake(t, 2, 0)
	admin, err := bench.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "feathery.yaml")
	doc := `
redis: {url: "redis://127.0.0.1:1"}
admin: {addr: "` + admin + `"}
discord: {rest_url: "` + fake.URL() + `/api/v10"}
identify_window: 200ms
shutdown_timeout: 10s
bots:
  - {name: floor, token: "` + testToken + `", shards: 2, compression: zlib-stream}
`
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, LookupEnv: envOf(nil)}
	stop, done := runAsync(t, m, "receive", "-c", path)

	get := func(p string, v any) bool {
		resp, err := http.Get("http://" + admin + p)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
	}
	testkit.Eventually(t, 30*time.Second, "2 shards ready on /healthz", func() bool {
		select {
		case <-done:
			t.Fatalf("receive stopped early: %s", stderr.String())
		default:
		}
		var h healthReport
		return get("/healthz", &h) && h.OK && h.ShardsReady == 2 && h.ShardsTotal == 2
	})
	sent := func() int64 {
		var n int64
		for _, v := range fake.Stats().DispatchesPerShard {
			n += v
		}
		return n
	}
	fake.SetRate(400)
	var got struct{ Events int64 }
	testkit.Eventually(t, 30*time.Second, "300 live dispatches received", func() bool {
		return get("/api/received", &got) && got.Events >= 300
	})
	fake.SetRate(0)
	// Every dispatch the fake sent reaches the process (the fake counts
	// the start-up ones too).
	testkit.Eventually(t, 30*time.Second, "received = sent", func() bool {
		return get("/api/received", &got) && got.Events == sent()
	})
	if err := stop(); err != nil {
		t.Fatalf("receive: %v", err)
	}
	mm := regexp.MustCompile(`received (\d+) dispatches`).FindStringSubmatch(stdout.String())
	if mm == nil {
		t.Fatalf("stdout: got %q, want the dispatch count", stdout.String())
	}
	if n, _ := strconv.ParseInt(mm[1], 10, 64); n < got.Events {
		t.Errorf("final count %d, want at least the %d seen live", n, got.Events)
	}
	if strings.Contains(stdout.String()+stderr.String(), testToken) {
		t.Error("the token shows in the output")
	}
}
