package consumers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
)

// nodeEntry is one line of consumer.js --json output.
type nodeEntry struct {
	Stream string          `json:"stream"`
	ID     string          `json:"id"`
	T      string          `json:"t"`
	Bot    string          `json:"bot"`
	Shard  int             `json:"shard"`
	Seq    int64           `json:"seq"`
	Guild  string          `json:"guild"`
	D      json.RawMessage `json:"d"`
}

// runNodeConsumer runs the Node example to completion and returns the
// entries it printed.
func runNodeConsumer(t *testing.T, args ...string) []nodeEntry {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH (.ci/run installs it)")
	}
	if _, err := os.Stat(filepath.Join("node", "node_modules", "redis")); err != nil {
		t.Fatalf("consumers/node/node_modules is missing: run `make node-deps` (npm install in consumers/node): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{"consumer.js"}, args...)...)
	cmd.Dir = "node"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("node consumer.js: %v\nstderr:\n%s", err, stderr.String())
	}
	var out []nodeEntry
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e nodeEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("node output line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	t.Logf("node stderr: %s", bytes.TrimSpace(stderr.Bytes()))
	return out
}

// The Node example reads every entry of a stream through a group, in order,
// and acknowledges each one.
func TestNodeConsumer_ReadsAndAcksAll(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "node-workers"
	ids := xadd(t, c, s, 1, 150)
	got := runNodeConsumer(t, "--url", srv.URL(), "--stream", s, "--group", g, "--consumer", "n1",
		"--max", "150", "--idle-exit", "10000", "--count", "40", "--json")
	gotIDs := make([]string, len(got))
	for i, e := range got {
		gotIDs[i] = e.ID
		if e.T != "MESSAGE_CREATE" || e.Bot != "testbot" || e.Shard != 3 || e.Seq != int64(i+1) ||
			e.Guild != "81384788765712384" || e.Stream != s ||
			string(e.D) != `{"id":"`+strconv.Itoa(1001+i)+`","content":"m`+strconv.Itoa(i+1)+`"}` {
			t.Fatalf("entry %d printed as %+v", i, e)
		}
	}
	if !slices.Equal(gotIDs, ids) {
		t.Fatalf("node handled %d entries, want all %d in order", len(gotIDs), len(ids))
	}
	if n := pendingCount(t, c, s, g); n != 0 {
		t.Fatalf("%d entries left pending", n)
	}
}

// The Node example takes over entries left pending by a dead consumer.
func TestNodeConsumer_ReclaimsFromDeadConsumer(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "node-workers"
	ids := xadd(t, c, s, 1, 30)
	ctx := context.Background()
	if err := c.Do(ctx, c.B().XgroupCreate().Key(s).Group(g).Id("0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Xreadgroup().Group(g, "dead").Count(10).Streams().Key(s).Id(">").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	got := runNodeConsumer(t, "--url", srv.URL(), "--stream", s, "--group", g, "--consumer", "n2",
		"--max", "30", "--idle-exit", "10000", "--claim-idle", "200", "--json")
	seen := map[string]int{}
	for _, e := range got {
		seen[e.ID]++
	}
	if len(got) != len(ids) || len(seen) != len(ids) || !allIn(ids, seen) {
		t.Fatalf("node handled %d entries (%d distinct), want each of %d once", len(got), len(seen), len(ids))
	}
	if n := pendingCount(t, c, s, g); n != 0 {
		t.Fatalf("%d entries left pending", n)
	}
}
