package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
)

// Help asked for goes to standard output with exit 0; usage after a
// mistake goes to standard error; --version prints the version.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		m, out, errOut := testMain(nil)
		if err := m.Run(t.Context(), args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Commands:") || !strings.Contains(out.String(), "new ") || errOut.String() != "" {
			t.Errorf("%v: stdout %q stderr %q, want the command list on stdout only", args, out, errOut)
		}
	}
	for _, args := range [][]string{{"run", "-h"}, {"help", "tail"}, {"new", "--help"}, {"new", "consumer", "-h"}} {
		m, out, errOut := testMain(nil)
		if err := m.Run(t.Context(), args); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "Usage") || errOut.String() != "" {
			t.Errorf("%v: stdout %q stderr %q, want usage on stdout only", args, out, errOut)
		}
	}
	m, out, errOut := testMain(nil)
	if err := m.Run(t.Context(), []string{"run", "--no-such-flag"}); err == nil || out.String() != "" || !strings.Contains(errOut.String(), "Usage") {
		t.Errorf("bad flag: %v, stdout %q stderr %q; want usage on stderr", err, out, errOut)
	}
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		m, out, _ := testMain(nil)
		if err := m.Run(t.Context(), args); err != nil || !regexp.MustCompile(`^feathery \S+\n$`).MatchString(out.String()) {
			t.Errorf("%v: %v, stdout %q", args, err, out)
		}
	}
}

// The commands the demo prints run as printed, from where it was started:
// the binary by the path it was started with (bin/feathery, as "make run"
// starts it), redis-cli XREAD and XREADGROUP on a group the demo created,
// and the generator.
func TestDemo_PrintedCommandsRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not on PATH (.ci/run installs redis-tools)")
	}
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(buildBinary(t), filepath.Join(work, "bin", "feathery")); err != nil {
		t.Fatal(err)
	}
	demo := exec.Command("bin/feathery", "demo", "--redis-addr", "127.0.0.1:0", "--admin-addr", "off", "--quiet", "--rate", "100")
	demo.Dir = work
	var out, errOut testkit.SyncBuffer
	demo.Stdout, demo.Stderr = &out, &errOut
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- demo.Wait() }()
	defer func() {
		_ = demo.Process.Signal(syscall.SIGTERM)
		if err := <-done; err != nil {
			t.Errorf("demo: %v\n%s", err, errOut.String())
		}
	}()
	testkit.Eventually(t, 60*time.Second, "the demo to start", func() bool { return strings.Contains(out.String(), "Ctrl-C stops") })
	var cmds []string
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "  ") && !strings.Contains(line, ":  ") && !strings.HasPrefix(strings.TrimSpace(line), "(") {
			cmds = append(cmds, strings.TrimSpace(line))
		}
	}
	want := []string{"redis-cli ", "redis-cli ", "bin/feathery tail ", "bin/feathery new consumer "}
	if len(cmds) != len(want) {
		t.Fatalf("printed commands %q, want %d of them\n%s", cmds, len(want), out.String())
	}
	for i, c := range cmds {
		if !strings.HasPrefix(c, want[i]) {
			t.Fatalf("command %d is %q, want it to start with %q", i, c, want[i])
		}
	}
	// Wait for entries on the events stream, then run each command.
	testkit.Eventually(t, 60*time.Second, "events on the stream", func() bool {
		o, _ := exec.Command("sh", "-c", cmds[0]).Output()
		return bytes.Count(o, []byte("\n")) > 5
	})
	for _, c := range cmds {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "sh", "-c", "exec "+c) // exec: a signal reaches the command itself
		cmd.Dir = work
		cmd.WaitDelay = 10 * time.Second
		var o, e testkit.SyncBuffer
		cmd.Stdout, cmd.Stderr = &o, &e
		if strings.Contains(c, " tail ") {
			// tail runs until stopped: it must print entries first.
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			testkit.Eventually(t, 30*time.Second, "tail to print entries", func() bool { return strings.Count(o.String(), "\n") >= 3 })
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			cancel()
			continue
		}
		err := cmd.Run()
		cancel()
		if err != nil || strings.Contains(o.String(), "ERR") || strings.Contains(o.String(), "NOGROUP") || strings.TrimSpace(o.String()) == "" {
			t.Fatalf("%s: %v\nstdout %q\nstderr %q", c, err, o.String(), e.String())
		}
	}
	if _, err := os.Stat(filepath.Join(work, "my-consumer", "main.go")); err != nil {
		t.Fatalf("the printed generator command wrote no consumer: %v", err)
	}
}

// "make run" builds bin/feathery, saying so on a cold build, before it
// starts the demo from it.
func TestMakeRun_BuildsFirst(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	out, err := exec.Command("make", "-n", "-C", repoRoot(t), "run").Output()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	say, build, run := strings.Index(s, "compiling bin/feathery"), strings.Index(s, "build -o bin/feathery ./cmd/feathery"), strings.Index(s, "bin/feathery demo")
	if say < 0 || build < 0 || run < 0 || !(say < build && build < run) {
		t.Fatalf("make -n run:\n%s\nwant a compiling message, then go build -o bin/feathery, then bin/feathery demo", s)
	}
}

// The README says which Go version builds feathery (go.mod's), every
// relative link in the top-level docs resolves, and every stream key in
// the docs and examples has the bot hash tag feathery writes.
func TestDocs_FirstRun(t *testing.T) {
	root := repoRoot(t)
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(read("go.mod"))
	if goLine == nil || !strings.Contains(read("README.md"), "Go "+goLine[1]) {
		t.Errorf("README.md does not say Go %v (go.mod)", goLine)
	}
	link := regexp.MustCompile(`\]\(([^)#:]+)(#[^)]*)?\)`)
	for _, doc := range []string{"README.md", "bench/RESULTS.md", "bench/README.md", "consumers/README.md",
		"consumers/node/README.md", "consumers/python/README.md", "consumers/KEYS.md", "cmd/feathery/CONFIG.md"} {
		text := read(doc)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			if _, err := os.Stat(filepath.Join(root, filepath.Dir(doc), m[1])); err != nil {
				t.Errorf("%s links to %s, which does not exist", doc, m[1])
			}
		}
		if doc != "cmd/feathery/CONFIG.md" && regexp.MustCompile(`\bDESIGN\.md\b[^\]]`).MatchString(strings.ReplaceAll(text, "](", "")) &&
			!strings.Contains(text, "DESIGN.md](") {
			t.Errorf("%s names DESIGN.md without linking it", doc)
		}
	}
	key := regexp.MustCompile(`feathery:\{([^}]*)\}:(events|commands)`)
	for _, f := range []string{"README.md", "consumers/README.md", "consumers/doc.go", "consumers/node/consumer.js",
		"consumers/node/README.md", "consumers/python/consumer.py", "consumers/python/README.md"} {
		for _, m := range key.FindAllStringSubmatch(read(f), -1) {
			if !strings.HasPrefix(m[1], "bot:") {
				t.Errorf("%s shows the stream key %s; feathery writes feathery:{bot:<bot>}:%s", f, m[0], m[2])
			}
		}
	}
}
