package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FeatheryOptions say how to launch `feathery run`.
type FeatheryOptions struct {
	// Binary is the feathery executable; "" = os.Executable() (right when
	// the caller is `feathery bench`).
	Binary string
	// Config is the path of the config file (see WriteConfig).
	Config string
	// AdminAddr is the config's admin.addr, for Health and WaitReady;
	// "" when the admin API is off.
	AdminAddr string
	// LogDir receives stdout.log and stderr.log (appended to across
	// restarts); "" = the config file's directory.
	LogDir string
	// Args are extra arguments placed before "run" (global flags such as
	// "--log-level", "debug").
	Args []string
	// Env is added to the process's environment.
	Env []string
	// Command is the subcommand run with the config: "run" (default) or
	// "receive" (the gateway alone, every dispatch dropped).
	Command string
}

// Feathery is a `feathery run` child process. Its methods are safe for
// concurrent use.
type Feathery struct {
	opts FeatheryOptions
	http *http.Client

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd has been waited for
	exitErr error         // cmd.Wait's error, valid after done
	started time.Time
}

// StartFeathery launches `feathery [Args] run -c Config` with its output
// going to LogDir/stdout.log and LogDir/stderr.log.
func StartFeathery(opts FeatheryOptions) (*Feathery, error) {
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("start feathery: find own executable: %w", err)
		}
		opts.Binary = exe
	}
	if opts.Config == "" {
		return nil, errors.New("start feathery: no config file")
	}
	if opts.LogDir == "" {
		opts.LogDir = filepath.Dir(opts.Config)
	}
	f := &Feathery{opts: opts, http: &http.Client{Timeout: 5 * time.Second}}
	if err := f.start(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Feathery) start() error {
	stdout, err := os.OpenFile(filepath.Join(f.opts.LogDir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start feathery: %w", err)
	}
	stderr, err := os.OpenFile(f.StderrPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stdout.Close()
		return fmt.Errorf("start feathery: %w", err)
	}
	command := f.opts.Command
	if command == "" {
		command = "run"
	}
	args := append(append([]string{}, f.opts.Args...), command, "-c", f.opts.Config)
	cmd := exec.Command(f.opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), f.opts.Env...)
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		return fmt.Errorf("start feathery %s: %w", f.opts.Binary, err)
	}
	done := make(chan struct{})
	f.mu.Lock()
	f.cmd, f.done, f.exitErr, f.started = cmd, done, nil, time.Now()
	f.mu.Unlock()
	go func() {
		err := cmd.Wait()
		stdout.Close()
		stderr.Close()
		f.mu.Lock()
		f.exitErr = err
		f.mu.Unlock()
		close(done)
	}()
	return nil
}

// PID is the process id of the current process.
func (f *Feathery) PID() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cmd.Process.Pid
}

// Started is when the current process was launched.
func (f *Feathery) Started() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.started
}

// StderrPath is the file the process's stderr (its log) goes to.
func (f *Feathery) StderrPath() string { return filepath.Join(f.opts.LogDir, "stderr.log") }

// StderrTail is the last n bytes of the stderr file.
func (f *Feathery) StderrTail(n int) string {
	b, _ := os.ReadFile(f.StderrPath())
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Usage reads the process's CPU time and resident memory.
func (f *Feathery) Usage() (ProcUsage, error) { return ReadProcUsage(f.PID()) }

// Exited reports whether the current process has exited, and its Wait
// error (nil for exit status 0).
func (f *Feathery) Exited() (bool, error) {
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	select {
	case <-done:
		f.mu.Lock()
		defer f.mu.Unlock()
		return true, f.exitErr
	default:
		return false, nil
	}
}

// Signal sends sig to the current process.
func (f *Feathery) Signal(sig os.Signal) error {
	f.mu.Lock()
	cmd := f.cmd
	f.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal feathery: %w", err)
	}
	return nil
}

// Wait waits until the current process exits and returns its Wait error
// (nil for exit status 0), or ctx's error.
func (f *Feathery) Wait(ctx context.Context) error {
	f.mu.Lock()
	done := f.done
	f.mu.Unlock()
	select {
	case <-done:
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.exitErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop asks the process to shut down gracefully (SIGTERM) and waits for
// it; when ctx ends first, it is killed and ctx's error returned. A
// non-zero exit status is returned as an error naming the log's tail.
func (f *Feathery) Stop(ctx context.Context) error {
	if done, _ := f.Exited(); !done {
		if err := f.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return err
		}
	}
	err := f.Wait(ctx)
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		_ = f.Kill()
		return fmt.Errorf("stop feathery: %w", err)
	}
	if err != nil {
		return fmt.Errorf("feathery exited: %w; log: %s", err, f.StderrTail(1500))
	}
	return nil
}

// Kill stops the process with SIGKILL and waits for it.
func (f *Feathery) Kill() error {
	if done, _ := f.Exited(); done {
		return nil
	}
	if err := f.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	_ = f.Wait(context.Background())
	return nil
}

// Restart stops the process gracefully (within ctx; killed after) and
// launches it again with the same options.
func (f *Feathery) Restart(ctx context.Context) error {
	if err := f.Stop(ctx); err != nil && ctx.Err() != nil {
		return err
	}
	return f.start()
}

// Health is the body of feathery's GET /healthz.
type Health struct {
	OK          bool   `json:"ok"`
	Redis       string `json:"redis"`
	ShardsReady int    `json:"shards_ready"`
	ShardsTotal int    `json:"shards_total"`
	Detail      string `json:"detail,omitempty"`
}

// Health asks the admin API for /healthz (503 is a valid answer).
func (f *Feathery) Health(ctx context.Context) (Health, error) {
	var h Health
	resp, b, err := f.getAdmin(ctx, "health", "/healthz", 1<<20)
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return h, fmt.Errorf("health: decode body (status %d): %w", resp.StatusCode, err)
	}
	return h, nil
}

// getAdmin GETs path from the admin API and returns the response (its body
// closed) and up to limit bytes of that body. Errors start with what.
func (f *Feathery) getAdmin(ctx context.Context, what, path string, limit int64) (*http.Response, []byte, error) {
	if f.opts.AdminAddr == "" || f.opts.AdminAddr == "off" {
		return nil, nil, fmt.Errorf("%s: the admin API is off", what)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+f.opts.AdminAddr+path, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read body: %w", what, err)
	}
	return resp, b, nil
}

// WaitReady polls /healthz until shards shards are ready (and Redis
// answers) and returns how long after launch that was. It fails at once
// when the process exits, naming the tail of its log.
func (f *Feathery) WaitReady(ctx context.Context, shards int) (time.Duration, error) {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var last Health
	var lastErr error
	for {
		if done, err := f.Exited(); done {
			return 0, fmt.Errorf("feathery exited before its shards were ready (%v); log: %s", err, f.StderrTail(1500))
		}
		h, err := f.Health(ctx)
		if err == nil && h.OK && h.ShardsReady >= shards {
			return time.Since(f.Started()), nil
		}
		if err == nil {
			last = h
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("wait for %d ready shards: %w (last health %+v, last error %v); log: %s",
				shards, ctx.Err(), last, lastErr, f.StderrTail(1500))
		case <-t.C:
		}
	}
}

// GoMem is the Go runtime's memory of a feathery process, as
// /debug/pprof/heap?debug=1 reports it (runtime.MemStats).
type GoMem struct {
	// HeapInuse is the bytes in in-use heap spans (live objects and the
	// garbage not yet collected); Stack the goroutine stacks.
	HeapInuse int64
	Stack     int64
}

// GoMem reads the process's runtime memory statistics from the admin API;
// gc first runs a garbage collection.
func (f *Feathery) GoMem(ctx context.Context, gc bool) (GoMem, error) {
	path := "/debug/pprof/heap?debug=1"
	if gc {
		path += "&gc=1"
	}
	resp, b, err := f.getAdmin(ctx, "memstats", path, 64<<20)
	if err != nil {
		return GoMem{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return GoMem{}, fmt.Errorf("memstats: %s", resp.Status)
	}
	return parseGoMem(b)
}

// parseGoMem reads "# HeapInuse = N" and "# Stack = N / M" from the text
// heap profile.
func parseGoMem(b []byte) (GoMem, error) {
	var m GoMem
	var heap, stack bool
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok {
			continue
		}
		val, _, _ = strings.Cut(val, " ")
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "HeapInuse":
			m.HeapInuse, heap = n, true
		case "Stack":
			m.Stack, stack = n, true
		}
	}
	if !heap || !stack {
		return m, errors.New("memstats: no HeapInuse or Stack line in /debug/pprof/heap?debug=1")
	}
	return m, nil
}

// Received asks `feathery receive` for the dispatches it received so far
// (GET /api/received).
func (f *Feathery) Received(ctx context.Context) (int64, error) {
	resp, b, err := f.getAdmin(ctx, "received", "/api/received", 1<<10)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("received: %s", resp.Status)
	}
	var v struct {
		Events *int64 `json:"events"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Events == nil {
		return 0, fmt.Errorf("received: want {\"events\": N}, got %.100q", b)
	}
	return *v.Events, nil
}

// Status fetches GET /api/status as raw JSON.
func (f *Feathery) Status(ctx context.Context) (json.RawMessage, error) {
	resp, b, err := f.getAdmin(ctx, "status", "/api/status", 64<<20)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status: %s", resp.Status)
	}
	return b, nil
}
