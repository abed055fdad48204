package consumers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/feathery/feathery/broker/redistest"
)

// python returns a python3 that can import redis (Debian's python3-redis is
// installed for /usr/bin/python3), or skips.
func python(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import redis").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 with the redis package (.ci/run installs python3-redis)")
	return ""
}

// pyEntry is one line of consumer.py --json output.
type pyEntry struct {
	Stream     string          `json:"stream"`
	ID         string          `json:"id"`
	T          string          `json:"t"`
	Bot        string          `json:"bot"`
	Shard      int             `json:"shard"`
	Session    string          `json:"session"`
	Seq        int64           `json:"seq"`
	Guild      string          `json:"guild"`
	At         int64           `json:"at"`
	Deliveries int             `json:"deliveries"`
	D          json.RawMessage `json:"d"`
}

// runPythonConsumer runs the Python example to completion and returns the
// entries it printed.
func runPythonConsumer(t *testing.T, args ...string) []pyEntry {
	t.Helper()
	py := python(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"consumer.py"}, args...)...)
	cmd.Dir = "python"
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python3 consumer.py: %v\nstderr:\n%s", err, stderr.String())
	}
	var out []pyEntry
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e pyEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("python output line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	t.Logf("python stderr: %s", bytes.TrimSpace(stderr.Bytes()))
	return out
}

// The Python example reads every entry of a stream through a group, in
// order, types its envelope and event, and acknowledges each one.
func TestPythonConsumer_ReadsAndAcksAll(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "py-workers"
	ids := xadd(t, c, s, 1, 150)
	got := runPythonConsumer(t, "--url", srv.URL(), "--stream", s, "--group", g, "--consumer", "p1",
		"--max", "150", "--idle-exit", "10000", "--count", "40", "--json")
	gotIDs := make([]string, len(got))
	for i, e := range got {
		gotIDs[i] = e.ID
		var d map[string]string
		if err := json.Unmarshal(e.D, &d); err != nil {
			t.Fatalf("entry %d: d %s: %v", i, e.D, err)
		}
		if e.T != "MESSAGE_CREATE" || e.Bot != "testbot" || e.Shard != 3 || e.Session != "sess-1" || e.Seq != int64(i+1) ||
			e.Guild != "81384788765712384" || e.Stream != s || e.At != 1700000000123 || e.Deliveries != 1 ||
			d["id"] != strconv.Itoa(1001+i) || d["content"] != "m"+strconv.Itoa(i+1) {
			t.Fatalf("entry %d printed as %+v", i, e)
		}
	}
	if !slices.Equal(gotIDs, ids) {
		t.Fatalf("python handled %d entries, want all %d in order", len(gotIDs), len(ids))
	}
	if n := pendingCount(t, c, s, g); n != 0 {
		t.Fatalf("%d entries left pending", n)
	}
}

// The Python example takes over entries left pending by a dead consumer.
func TestPythonConsumer_ReclaimsFromDeadConsumer(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "py-workers"
	ids := xadd(t, c, s, 1, 30)
	ctx := context.Background()
	if err := c.Do(ctx, c.B().XgroupCreate().Key(s).Group(g).Id("0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Xreadgroup().Group(g, "dead").Count(10).Streams().Key(s).Id(">").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	got := runPythonConsumer(t, "--url", srv.URL(), "--stream", s, "--group", g, "--consumer", "p2",
		"--max", "30", "--idle-exit", "10000", "--claim-idle", "200", "--json")
	seen := map[string]int{}
	for _, e := range got {
		seen[e.ID]++
	}
	if len(got) != len(ids) || len(seen) != len(ids) || !allIn(ids, seen) {
		t.Fatalf("python handled %d entries (%d distinct), want each of %d once", len(got), len(seen), len(ids))
	}
	if n := pendingCount(t, c, s, g); n != 0 {
		t.Fatalf("%d entries left pending", n)
	}
}

// An entry whose event data lacks what its type needs fails its handler
// each time and goes to the dead-letter stream after --max-deliveries; an
// entry with a broken envelope goes there at once. The good entries are
// acknowledged, nothing stays pending.
func TestPythonConsumer_DeadLetters(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	const s, g = "{b}:events", "py-workers"
	xadd(t, c, s, 1, 2)
	bad := xaddFields(t, c, s, entryFields("MESSAGE_CREATE", 3, `{"content":"no id"}`))
	broken := entryFields("MESSAGE_CREATE", 4, `{"id":"1","channel_id":"2"}`)
	broken["shard"] = "minus one"
	brokenID := xaddFields(t, c, s, broken)
	got := runPythonConsumer(t, "--url", srv.URL(), "--stream", s, "--group", g, "--consumer", "p3",
		"--idle-exit", "3000", "--claim-idle", "100", "--max-deliveries", "2", "--json")
	if len(got) != 2 {
		t.Fatalf("printed %d entries, want the 2 good ones", len(got))
	}
	ctx := context.Background()
	dead, err := c.Do(ctx, c.B().Xrange().Key(s+":dead").Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	var deadIDs []string
	for _, e := range dead {
		deadIDs = append(deadIDs, e.FieldValues["dead_id"])
		if e.FieldValues["dead_from"] != s || e.FieldValues["error"] == "" {
			t.Errorf("dead entry %v", e.FieldValues)
		}
	}
	slices.Sort(deadIDs)
	want := []string{bad, brokenID}
	slices.Sort(want)
	if !slices.Equal(deadIDs, want) {
		t.Fatalf("dead-lettered %v, want %v", deadIDs, want)
	}
	if n := pendingCount(t, c, s, g); n != 0 {
		t.Fatalf("%d entries left pending", n)
	}
}
