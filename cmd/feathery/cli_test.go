package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
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

// badConfigs are config files that must each stop "feathery run" with one
// line naming the field.
var badConfigs = []struct {
	name, doc, want string
}{
	{"unknown field", "bots:\n  - name: main\n    token: ${TOKEN}\n    colour: red\n", "bots[0].colour: unknown field"},
	{"wrong type", "bots:\n  - name: main\n    token: ${TOKEN}\n    shards: [1]\n", "bots[0].shards: want auto or a number, got a list"},
	{"missing token", "bots:\n  - name: main\n", "bots[0].token: missing"},
	{"bad redis url", "redis:\n  url: \"redis://user:${TOKEN}@host:x/0\"\nbots:\n  - name: main\n    token: ${TOKEN}\n", "redis.url: not a valid URL"},
	{"bad intents", "bots:\n  - name: main\n    token: ${TOKEN}\n    intents: [GUILDS, NOT_AN_INTENT]\n", `bots[0].intents: item 1: unknown intent "NOT_AN_INTENT"`},
	{"bad shard range", "bots:\n  - name: main\n    token: ${TOKEN}\n    shard_ids: 7-3\n", `bots[0].shard_ids: bad shard range "7-3": end before start`},
	{"missing env var", "bots:\n  - name: main\n    token: ${NOT_SET_ANYWHERE}\n", "bots[0].token: environment variable NOT_SET_ANYWHERE is not set"},
}

func checkOneLine(t *testing.T, msg, want string) {
	t.Helper()
	if !strings.Contains(msg, want) {
		t.Errorf("got %q, want it to contain %q", msg, want)
	}
	if strings.Count(strings.TrimRight(msg, "\n"), "\n") != 0 {
		t.Errorf("message spans several lines: %q", msg)
	}
	for _, bad := range []string{testToken, "goroutine ", "panic", ".go:"} {
		if strings.Contains(msg, bad) {
			t.Errorf("message contains %q: %q", bad, msg)
		}
	}
}

func TestRun_BadConfig(t *testing.T) {
	for _, c := range badConfigs {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "feathery.yaml", c.doc)
			m, out, errOut := testMain(map[string]string{"TOKEN": testToken})
			err := m.Run(t.Context(), []string{"run", "-c", path})
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, errUsage) {
				t.Fatalf("usage error: %v", err)
			}
			checkOneLine(t, err.Error(), c.want)
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if out.String() != "" || errOut.String() != "" {
				t.Errorf("printed output besides the error: stdout %q stderr %q", out, errOut)
			}
		})
	}
}

func TestRun_MissingFile(t *testing.T) {
	m, _, _ := testMain(nil)
	err := m.Run(t.Context(), []string{"run", "-c", filepath.Join(t.TempDir(), "nope.yaml")})
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: no such file or directory") {
		t.Fatalf("got %v", err)
	}
}

func TestRun_Check(t *testing.T) {
	path := writeFile(t, "feathery.yaml", "bots:\n  - name: main\n    token: ${TOKEN}\n")
	m, out, _ := testMain(map[string]string{"TOKEN": testToken})
	if err := m.Run(t.Context(), []string{"run", "--check", "-c", path}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ok (1 bot(s))") {
		t.Errorf("got %q", out)
	}
}

// buildBinary builds feathery once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "feathery")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestBinary_ExitCodes runs the built binary: a bad config exits 1 with one
// line on stderr; an unknown command exits 2; version exits 0.
func TestBinary_ExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	run := func(env []string, args ...string) (string, string, int) {
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errOut testkit.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errOut.String(), code
	}
	for _, c := range badConfigs {
		path := writeFile(t, "feathery.yaml", c.doc)
		out, errOut, code := run([]string{"TOKEN=" + testToken}, "run", "-c", path)
		if code != 1 {
			t.Errorf("%s: exit code %d, want 1 (stderr %q)", c.name, code, errOut)
		}
		if !strings.HasPrefix(errOut, "feathery: config ") {
			t.Errorf("%s: stderr %q, want it to start with %q", c.name, errOut, "feathery: config ")
		}
		checkOneLine(t, errOut, c.want)
		if out != "" {
			t.Errorf("%s: stdout %q, want nothing", c.name, out)
		}
	}
	if _, errOut, code := run(nil, "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	if out, _, code := run(nil, "version"); code != 0 || !strings.HasPrefix(out, "feathery ") {
		t.Errorf("version: exit %d, stdout %q", code, out)
	}

	t.Run("SIGTERM shuts down gracefully", func(t *testing.T) {
		cmd := exec.CommandContext(t.Context(), bin, "demo", "--admin-addr", "off", "--quiet", "--shards", "1", "--rate", "20")
		var out, errOut testkit.SyncBuffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 20*time.Second, "the demo to start", func() bool { return strings.Contains(out.String(), "Ctrl-C stops") })
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit: %v\n%s", err, errOut.String())
		}
		if !strings.Contains(errOut.String(), "shutting down") || !strings.Contains(out.String(), "demo stopped") {
			t.Errorf("stdout %q\nstderr %q", out.String(), errOut.String())
		}
	})

	t.Run("second signal exits at once", func(t *testing.T) {
		// A Redis that accepts connections and never answers keeps the
		// command busy connecting, so the first signal cannot finish it.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		accepted := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}
		}()
		defer func() {
			ln.Close()
			for c := range accepted {
				c.Close()
			}
		}()
		cmd := exec.CommandContext(t.Context(), bin, "tail", "--redis", "redis://"+ln.Addr().String(), "--bot", "b")
		var errOut testkit.SyncBuffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-accepted:
		case <-time.After(20 * time.Second):
			t.Fatal("tail did not connect")
		}
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, 10*time.Second, "the first signal to be seen", func() bool { return strings.Contains(errOut.String(), "again to exit at once") })
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Fatalf("exit: %v, want code 130\n%s", err, errOut.String())
		}
		if !strings.Contains(errOut.String(), "second signal") {
			t.Errorf("stderr %q", errOut.String())
		}
	})
}

func TestInit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "feathery.yaml")
	m, out, _ := testMain(nil)
	if err := m.Run(t.Context(), []string{"init", "-o", path}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "wrote "+path) {
		t.Errorf("stdout %q", out)
	}
	// What init wrote parses, validates and passes "run --check".
	m2, out2, _ := testMain(map[string]string{"DISCORD_TOKEN": testToken})
	if err := m2.Run(t.Context(), []string{"run", "--check", "-c", path}); err != nil {
		t.Fatalf("the written config does not validate: %v", err)
	}
	if !strings.Contains(out2.String(), "ok") {
		t.Errorf("check said %q", out2)
	}
	// It refuses to overwrite, unless --force.
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := m.Run(t.Context(), []string{"init", "-o", path})
	if err == nil || !strings.Contains(err.Error(), "already exists (use --force") {
		t.Fatalf("overwrite without --force: got %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "mine" {
		t.Fatalf("file was changed: %q", b)
	}
	if err := m.Run(t.Context(), []string{"init", "-o", path, "--force"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != string(exampleConfig) {
		t.Fatal("--force did not write the example")
	}
}

func TestUsage(t *testing.T) {
	m, _, errOut := testMain(nil)
	if err := m.Run(context.Background(), nil); !errors.Is(err, errUsage) {
		t.Fatalf("no command: got %v, want errUsage", err)
	}
	for _, c := range commands() {
		if !strings.Contains(errOut.String(), c.name) {
			t.Errorf("usage does not list %s", c.name)
		}
	}
	// Global flags are accepted before and after the command.
	m, _, _ = testMain(nil)
	if err := m.Run(context.Background(), []string{"--log-level", "debug", "version", "--log-format", "json"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background(), []string{"run", "--log-level"}); !errors.Is(err, errUsage) {
		t.Errorf("flag without value: got %v, want errUsage", err)
	}
}

func TestFakeDiscordCommand(t *testing.T) {
	m, out, errOut := testMain(nil)
	stop, _ := runAsync(t, m, "fakediscord", "--addr", "127.0.0.1:0", "--shards", "3", "--guilds", "2")
	re := regexp.MustCompile(`REST:\s+(http://\S+)`)
	var rest string
	testkit.Eventually(t, 10*time.Second, "the REST URL", func() bool {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			rest = m[1]
			return true
		}
		return false
	})
	req, _ := http.NewRequestWithContext(t.Context(), "GET", rest, nil)
	req.Header.Set("Authorization", "Bot fake-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var gb struct {
		URL    string `json:"url"`
		Shards int    `json:"shards"`
	}
	err = json.NewDecoder(resp.Body).Decode(&gb)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || gb.Shards != 3 || !strings.HasPrefix(gb.URL, "ws://") {
		t.Errorf("GET %s: %d %+v %v", rest, resp.StatusCode, gb, err)
	}
	if err := stop(); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
}

func TestDemoLine(t *testing.T) {
	st := statusReport{EventsPerSecond: 49.6, Published: 120, Filtered: 7, Redis: redisStatus{OK: true}}
	for i := 0; i < 3; i++ {
		st.Shards = append(st.Shards, shardRow{Shard: i, State: "ready"})
	}
	got := demoLine(st)
	if !strings.HasSuffix(got, "shards 3/3 ready [0:ready 1:ready 2:ready]  50 ev/s  published 120  filtered 7") {
		t.Errorf("got %q", got)
	}
	st.Shards = nil
	for i := 0; i < 16; i++ {
		state := "ready"
		if i%4 == 0 {
			state = "resuming"
		}
		st.Shards = append(st.Shards, shardRow{Shard: i, State: state})
	}
	st.Redis.OK = false
	got = demoLine(st)
	if !strings.Contains(got, "shards 12/16 ready [ready:12 resuming:4]") || !strings.HasSuffix(got, "redis DOWN") {
		t.Errorf("got %q", got)
	}
}

// TestRun_CheckRunsRunsChecks: "run --check" refuses what "run" would
// refuse at start (each rule has one validator, run by both), every size
// is bounded, and what one accepts the other accepts.
func TestRun_CheckRunsRunsChecks(t *testing.T) {
	bot := "bots:\n  - name: main\n    token: ${TOKEN}\n"
	cases := []struct{ name, doc, want string }{
		{"queue size", "publisher: {queue_size: 2000000000}\n" + bot, "publisher.queue_size: 2000000000 is above the maximum, 65536"},
		{"max batch", "publisher: {max_batch: 100000}\n" + bot, "publisher.max_batch: 100000 is above the maximum"},
		{"max batch bytes", "publisher: {max_batch_bytes: 1000000000}\n" + bot, "publisher.max_batch_bytes: 1000000000 is above the maximum"},
		{"control max len", "publisher: {control_max_len: 10000000000}\n" + bot, "publisher.control_max_len: 10000000000 is above the maximum"},
		{"stream maxlen", bot + "    routes: [{events: [X], stream: s, maxlen: 10000000000000}]\n", "bots[0].routes[0].maxlen: 10000000000000 is above the maximum"},
		{"identify window", "identify_window: 2h\n" + bot, "identify_window: 2h0m0s is above 1m0s"},
		{"dial timeout", "redis: {url: \"redis://h\", dial_timeout: 1h}\n" + bot, "redis.dial_timeout: 1h0m0s is not between 0 and 1m0s"},
		{"reserved route stream", bot + "    routes: [{events: [X], stream: \"session:x\"}]\n", `bots[0].routes[0].stream: "session:x" starts with "session:"`},
		{"reserved default stream", bot + "    default_stream: {stream: \"identify:x\"}\n", `bots[0].default_stream.stream: "identify:x" starts with "identify:"`},
		{"route group brace", bot + "    routes: [{events: [X], stream: s, groups: [\"g{x}\"]}]\n", `bots[0].routes[0].groups[0]: "g{x}" contains a brace`},
		{"route on the default stream", bot + "    default_stream: {stream: all}\n    routes: [{events: [X], stream: all}]\n", `bots[0].routes[0].stream: "all" is the default stream`},
		{"tls ca file", "redis: {url: \"rediss://h\", tls_ca_file: /nonexistent/ca.pem}\n" + bot, "redis.tls_ca_file: read /nonexistent/ca.pem: no such file or directory"},
		{"tls over unix", "redis: {url: \"unix:///tmp/r.sock\", tls: true}\n" + bot, "redis.tls: not supported over a unix socket"},
		{"large threshold", bot + "    large_threshold: 300\n", "bots[0].large_threshold: must be between 50 and 250, got 300"},
		{"users without members", bot + "    cache: {entities: [guilds, users]}\n", "bots[0].cache.entities: users come from member objects"},
		{"bad bot name", "bots:\n  - name: \"a b\"\n    token: ${TOKEN}\n", `bots[0].name: "a b": use 1-64 letters`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "feathery.yaml", c.doc)
			for _, args := range [][]string{{"run", "--check", "-c", path}, {"run", "-c", path}} {
				m, out, _ := testMain(map[string]string{"TOKEN": testToken})
				err := m.Run(t.Context(), args)
				if err == nil {
					t.Fatalf("%v: no error (stdout %q), want %q", args, out, c.want)
				}
				checkOneLine(t, err.Error(), c.want)
			}
		})
	}
	// Accepted by one, accepted by the other: compression names the
	// gateway parses.
	path := writeFile(t, "feathery.yaml", bot+"    compression: ZSTD\n")
	m, _, _ := testMain(map[string]string{"TOKEN": testToken})
	if err := m.Run(t.Context(), []string{"run", "--check", "-c", path}); err != nil {
		t.Fatalf("compression ZSTD: %v", err)
	}
}
