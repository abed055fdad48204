package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"go.yaml.in/yaml/v3"

	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/discordtest"
	"github.com/feathery/feathery/gateway/testkit"
)

// repoRoot is the checkout this test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil || !isCheckout(root) {
		t.Fatalf("no feathery checkout at ../..: %v", err)
	}
	return root
}

// runIn runs a command in dir with extra environment and fails the test on
// error, showing its output.
func runIn(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// genNew runs "feathery new ..." in-process and returns its stdout.
func genNew(t *testing.T, args ...string) string {
	t.Helper()
	m, out, errOut := testMain(nil)
	if err := m.Run(t.Context(), append([]string{"new"}, args...)); err != nil {
		t.Fatalf("feathery new %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out.String()
}

// pythonWithRedis is a python3 that can import redis, or "".
func pythonWithRedis() string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import redis").Run() == nil {
			return path
		}
	}
	return ""
}

// handledLine is one line a generated consumer prints with LOG_FORMAT=json.
type handledLine struct {
	Event  string `json:"event"`
	Entry  string `json:"entry"`
	Stream string `json:"stream"`
	Guild  string `json:"guild"`
	Shard  int    `json:"shard"`
	Seq    int64  `json:"seq"`
	Key    string `json:"key"`
}

// consumerProc is a generated consumer running as a process.
type consumerProc struct {
	cmd         *exec.Cmd
	out, errOut *testkit.SyncBuffer
	done        chan struct{} // closed when the process has exited
	err         error         // Wait's error, once done
}

func startConsumer(t *testing.T, dir string, env []string, name string, args ...string) *consumerProc {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	p := &consumerProc{cmd: cmd, out: &testkit.SyncBuffer{}, errOut: &testkit.SyncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *consumerProc) lines(t *testing.T) []handledLine {
	t.Helper()
	var out []handledLine
	sc := bufio.NewScanner(strings.NewReader(p.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l handledLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("consumer printed %q: %v\nstderr:\n%s", sc.Text(), err, p.errOut.String())
		}
		out = append(out, l)
	}
	return out
}

// stop sends SIGTERM and waits for a clean exit.
func (p *consumerProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("consumer exit after SIGTERM: %v\nstderr:\n%s", p.err, p.errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("consumer did not stop within 60s of SIGTERM\nstderr:\n%s", p.errOut.String())
	}
}

// judgeConsumer waits until the consumer handled each of events at least
// twice, checks every handled line against the entry in Redis (the id the
// handler read through its typed model equals the one in the raw JSON),
// stops it with SIGTERM and checks that its group has nothing pending.
func judgeConsumer(t *testing.T, p *consumerProc, c rueidis.Client, group string, streams, events []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		count := map[string]int{}
		for _, l := range p.lines(t) {
			count[l.Event]++
		}
		done := true
		for _, e := range events {
			if count[e] < 2 {
				done = false
			}
		}
		if done {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("consumer exited: %v\nstderr:\n%s", p.err, p.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90s the consumer handled %v, want each of %v at least twice\nstderr:\n%s", count, events, p.errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop(t)
	ctx := context.Background()
	lines := p.lines(t)
	for _, l := range lines {
		if !slices.Contains(events, l.Event) {
			t.Fatalf("handled %s, which has no handler: %+v", l.Event, l)
		}
		if !slices.Contains(streams, l.Stream) {
			t.Fatalf("read stream %s, want one of %v", l.Stream, streams)
		}
		rows, err := c.Do(ctx, c.B().Xrange().Key(l.Stream).Start(l.Entry).End(l.Entry).Build()).AsXRange()
		if err != nil || len(rows) != 1 {
			t.Fatalf("entry %s of %s: %v %v", l.Entry, l.Stream, rows, err)
		}
		f := rows[0].FieldValues
		m, _ := eventModelOf(l.Event)
		if want := jsonPath(t, f["d"], m.KeyPath); l.Key != want || want == "" {
			t.Fatalf("%s entry %s: handler read %s = %q, the entry has %q", l.Event, l.Entry, m.KeyPath, l.Key, want)
		}
		if f["t"] != l.Event || f["seq"] != fmt.Sprint(l.Seq) || f["shard"] != fmt.Sprint(l.Shard) || f["guild"] != l.Guild {
			t.Fatalf("envelope printed as %+v, entry has t=%s seq=%s shard=%s guild=%s", l, f["t"], f["seq"], f["shard"], f["guild"])
		}
	}
	for _, s := range streams {
		arr, err := c.Do(ctx, c.B().Xpending().Key(s).Group(group).Build()).ToArray()
		if err != nil {
			t.Fatalf("xpending %s %s: %v", s, group, err)
		}
		if n, _ := arr[0].AsInt64(); n != 0 {
			t.Fatalf("%d entries of %s left pending in %s after SIGTERM", n, s, group)
		}
		info, err := c.Do(ctx, c.B().XinfoGroups().Key(s).Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, g := range info {
			kv, _ := g.AsStrMap()
			if kv["name"] == group && kv["last-delivered-id"] != "0-0" {
				found = true
			}
		}
		if !found {
			t.Fatalf("group %s read nothing of %s", group, s)
		}
	}
	t.Logf("handled %d events; stderr tail: %s", len(lines), lastLines(p.errOut.String(), 2))
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(ls[max(0, len(ls)-n):], " | ")
}

// jsonPath reads a dotted path of a JSON object as a string.
func jsonPath(t *testing.T, raw, path string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("entry d: %v", err)
	}
	for _, p := range strings.Split(path, ".") {
		obj, _ := v.(map[string]any)
		v = obj[p]
	}
	s, _ := v.(string)
	return s
}

var chosenEvents = []string{"MESSAGE_CREATE", "GUILD_MEMBER_ADD", "INTERACTION_CREATE"}

// prepare builds a generated consumer and returns the command that runs it.
// It also generates the same consumer with every event that has a typed
// handler and compiles it, so each language's type names and key reads are
// checked against the library.
func prepare(t *testing.T, lang, dir, work string) (name string, args []string) {
	t.Helper()
	root := repoRoot(t)
	all := filepath.Join(work, "all-"+lang)
	genNew(t, "consumer", "--lang", lang, "--events", strings.Join(eventNames(), ","), "--module-path", root, all)
	switch lang {
	case "go":
		for _, d := range []string{dir, all} {
			runIn(t, d, []string{"GOFLAGS=-mod=mod"}, "go", "mod", "tidy")
			runIn(t, d, nil, "go", "vet", ".")
		}
		runIn(t, dir, nil, "go", "build", "-o", "consumer", ".")
		return filepath.Join(dir, "consumer"), nil
	case "node":
		if _, err := exec.LookPath("npm"); err != nil {
			t.Skip("npm is not on PATH (.ci/run installs it)")
		}
		runIn(t, dir, nil, "npm", "install", "--no-audit", "--no-fund", "--cache", filepath.Join(work, "npm-cache"))
		runIn(t, dir, nil, "npx", "tsc")
		if err := os.Symlink(filepath.Join(dir, "node_modules"), filepath.Join(all, "node_modules")); err != nil {
			t.Fatal(err)
		}
		runIn(t, all, nil, "npx", "tsc", "--noEmit")
		return "node", []string{"dist/main.js"}
	default:
		py := pythonWithRedis()
		if py == "" {
			t.Skip("no python3 with the redis package (.ci/run installs python3-redis)")
		}
		// Importing main checks every handler's TypedDict exists.
		runIn(t, all, nil, py, "-c", "import main, feathery_events; assert set(main.HANDLERS) <= set(feathery_events.EVENTS)")
		return py, []string{"main.py"}
	}
}

// Each generated consumer (Go, Node, Python) builds, reads the demo's
// streams out of the box, handles only the chosen events through their
// typed models, acknowledges, and stops on SIGTERM with nothing pending.
func TestNewConsumer_AgainstDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs consumers in three languages")
	}
	bin := buildBinary(t)
	demo := exec.Command(bin, "demo", "--redis-addr", "127.0.0.1:0", "--admin-addr", "off", "--quiet", "--rate", "150")
	var out, errOut testkit.SyncBuffer
	demo.Stdout, demo.Stderr = &out, &errOut
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	demoDone := make(chan error, 1)
	go func() { demoDone <- demo.Wait() }()
	t.Cleanup(func() {
		_ = demo.Process.Signal(syscall.SIGTERM)
		select {
		case <-demoDone:
		case <-time.After(30 * time.Second):
			_ = demo.Process.Kill()
			<-demoDone
		}
	})
	re := regexp.MustCompile(`embedded Redis:\s+(\S+)`)
	var addr string
	testkit.Eventually(t, 60*time.Second, "the demo's Redis address", func() bool {
		if m := re.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "Ctrl-C stops") {
			addr = m[1]
			return true
		}
		return false
	})
	c := redisClient(t, addr)
	streams := []string{"feathery:{bot:demo}:events", "feathery:{bot:demo}:commands"}
	work := t.TempDir()
	for _, lang := range []string{"go", "node", "python"} {
		t.Run(lang, func(t *testing.T) {
			dir := filepath.Join(work, lang+"-consumer")
			said := genNew(t, "consumer", "--lang", lang, "--events", strings.Join(chosenEvents, ","), "--module-path", repoRoot(t), dir)
			if !strings.HasPrefix(said, "wrote a "+lang+" consumer in "+dir) {
				t.Fatalf("generator said %q", said)
			}
			for _, f := range []string{"README.md", "Dockerfile"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Fatal(err)
				}
			}
			name, args := prepare(t, lang, dir, work)
			p := startConsumer(t, dir, []string{"REDIS_URL=redis://" + addr, "LOG_FORMAT=json"}, name, args...)
			judgeConsumer(t, p, c, lang+"-consumer", streams, chosenEvents)
		})
	}
}

// "feathery new project" writes a config that passes "run --check" and runs
// against a real Redis and the fake Discord, a consumer that handles what
// that feathery publishes and stops clean, and a compose file with Redis
// (AOF on a volume), feathery and the consumer; its output starts with the
// commands that start it.
func TestNewProject(t *testing.T) {
	py := pythonWithRedis()
	if py == "" {
		t.Skip("no python3 with the redis package (.ci/run installs python3-redis)")
	}
	dir := filepath.Join(t.TempDir(), "mybot")
	said := genNew(t, "project", "--lang", "python", dir)
	wantStart := "wrote a feathery project in " + dir + "; start it:\n\n  cd " + dir + "\n  DISCORD_TOKEN=your-bot-token docker compose up --build\n"
	if !strings.HasPrefix(said, wantStart) {
		t.Fatalf("output starts %q, want %q", said, wantStart)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil || !strings.Contains(string(readme), "docker compose up --build") {
		t.Fatalf("README: %v\n%s", err, readme)
	}

	// The config: the same check as "run --check".
	cfgPath := filepath.Join(dir, "feathery.yaml")
	m, out, _ := testMain(map[string]string{"DISCORD_TOKEN": testToken})
	if err := m.Run(t.Context(), []string{"run", "--check", "-c", cfgPath}); err != nil || !strings.Contains(out.String(), "ok (1 bot(s))") {
		t.Fatalf("run --check: %v %q", err, out)
	}

	// The compose file's structure.
	b, err := os.ReadFile(filepath.Join(dir, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Build       map[string]string `yaml:"build"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []string          `yaml:"volumes"`
			DependsOn   map[string]any    `yaml:"depends_on"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	redis, feathery, consumer := compose.Services["redis"], compose.Services["feathery"], compose.Services["consumer"]
	if len(compose.Services) != 3 || redis.Image == "" || feathery.Build == nil || consumer.Build == nil {
		t.Fatalf("services: %+v", compose.Services)
	}
	if cmd := strings.Join(redis.Command, " "); !strings.Contains(cmd, "--appendonly yes") || !slices.Contains(redis.Volumes, "redis-data:/data") {
		t.Fatalf("redis: command %q volumes %v, want AOF on a volume", cmd, redis.Volumes)
	}
	if _, ok := compose.Volumes["redis-data"]; !ok {
		t.Fatal("volume redis-data not declared")
	}
	if feathery.Environment["REDIS_URL"] != "redis://redis:6379" || feathery.Environment["DISCORD_TOKEN"] == "" ||
		!slices.Contains(feathery.Volumes, "./feathery.yaml:/etc/feathery/feathery.yaml:ro") ||
		!slices.Equal(feathery.Command, []string{"run", "-c", "/etc/feathery/feathery.yaml"}) || feathery.DependsOn["redis"] == nil {
		t.Fatalf("feathery service: %+v", feathery)
	}
	if !strings.Contains(feathery.Build["dockerfile_inline"], "go build") || feathery.Build["context"] == "" {
		t.Fatalf("feathery build: %v", feathery.Build)
	}
	if consumer.Build["context"] != "./consumer" || consumer.Environment["REDIS_URL"] != "redis://redis:6379" ||
		consumer.Environment["GROUP"] != "mybot" || consumer.DependsOn["redis"] == nil {
		t.Fatalf("consumer service: %+v", consumer)
	}
	if _, err := os.Stat(filepath.Join(dir, "consumer", "Dockerfile")); err != nil {
		t.Fatalf("consumer build context: %v", err)
	}

	// Run the config against a real Redis and the fake Discord, and the
	// consumer against what it publishes.
	srv := redistest.Start(t, redistest.Options{})
	fake, err := discordtest.Start(discordtest.Config{Token: testToken, Shards: 2, Guilds: 6, Rate: 150,
		IdentifyWindow: 200 * time.Millisecond, MaxConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	env := map[string]string{"DISCORD_TOKEN": testToken, "REDIS_URL": srv.URL(), "FEATHERY_ADMIN_ADDR": "127.0.0.1:0",
		"DISCORD_REST_URL": fake.URL() + "/api/v10"}
	fm, _, ferr := testMain(env)
	stop, _ := runAsync(t, fm, "run", "-c", cfgPath)
	c := srv.Client(t)
	p := startConsumer(t, filepath.Join(dir, "consumer"), []string{"REDIS_URL=" + srv.URL(), "LOG_FORMAT=json"}, py, "main.py")
	judgeConsumer(t, p, c, "mybot", []string{"feathery:{bot:main}:events", "feathery:{bot:main}:commands"}, chosenEvents)
	if err := stop(); err != nil {
		t.Fatalf("feathery run: %v\n%s", err, ferr)
	}
}

// Wrong input to "feathery new" is one clear error, and nothing is written.
func TestNew_Errors(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"consumer", filepath.Join(dir, "a")}, "--lang: missing"},
		{[]string{"consumer", "--lang", "rust", filepath.Join(dir, "a")}, `--lang: "rust" is not go, node or python`},
		{[]string{"consumer", "--lang", "go", "--events", "MESSAGE_CREATE,NOPE", filepath.Join(dir, "a")}, `--events: no typed handler for "NOPE"`},
		{[]string{"consumer", "--lang", "go", "--bot", "a{b}", filepath.Join(dir, "a")}, "--bot:"},
		{[]string{"consumer", "--lang", "go", full}, "is not empty (use --force"},
		{[]string{"consumer", "--lang", "go", "--module-path", dir, filepath.Join(dir, "a")}, "has no go.mod of github.com/feathery/feathery"},
	} {
		m, _, _ := testMain(nil)
		err := m.Run(t.Context(), append([]string{"new"}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("new %v: got %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed run wrote %s", filepath.Join(dir, "a"))
	}
	for _, args := range [][]string{{"new"}, {"new", "thing"}, {"new", "consumer"}, {"new", "consumer", "--lang", "go", "a", "b"}} {
		m, _, errOut := testMain(nil)
		if err := m.Run(t.Context(), args); !errors.Is(err, errUsage) || errOut.String() == "" {
			t.Errorf("%v: got %v, stderr %q; want a usage error", args, err, errOut)
		}
	}
	// Flags after the directory are taken too; --force writes into a
	// directory that is not empty.
	genNew(t, "consumer", full, "--lang", "python", "--force")
	if _, err := os.Stat(filepath.Join(full, "main.py")); err != nil {
		t.Fatal(err)
	}
}

// The Python project ships the example's modules unchanged, and the Go
// versions written into generated go.mod files are the ones this module
// builds with.
func TestNew_TemplatesMatchTheLibraries(t *testing.T) {
	root := repoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^go ` + regexp.QuoteMeta(goVersion) + `(\.\d+)?$`).Match(gomod) {
		t.Errorf("go.mod's go line is not %s[.N]: update goVersion in new.go", goVersion)
	}
	for _, want := range []string{"github.com/disgoorg/disgo " + disgoVersion, "github.com/redis/rueidis " + rueidisVersion} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("go.mod has no %q: update the versions in new.go", strings.TrimSpace(want))
		}
	}
	pkg, err := os.ReadFile(filepath.Join(root, "consumers", "node", "package.json"))
	if err != nil || !strings.Contains(string(pkg), `"redis": "`+nodeRedisVersion+`"`) {
		t.Errorf("consumers/node/package.json does not pin redis %s: %v", nodeRedisVersion, err)
	}
}
