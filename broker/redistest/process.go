package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/rueidis"
)

// Process is a redis-server child process on a loopback port, started by
// Launch. Its methods report failures as errors (no testing.TB), so
// benchmarks and tools can use it; tests use Start, which wraps it. Its
// methods are safe for concurrent use.
type Process struct {
	// Addr is host:port; Dir the working directory.
	Addr string
	Dir  string

	opts   Options
	ownDir bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// FindFreePort returns a loopback TCP port that was free a moment ago.
func FindFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAttempts is how many ports Launch tries when it picks the port
// itself: a port free when picked may be taken by the time redis-server
// binds it (tests start many servers at once).
const startAttempts = 5

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("address already in use")

// Launch starts redis-server and waits until it answers PING. With
// Options.Port 0 it picks a free port, and picks another (up to
// startAttempts in all) when redis-server finds the port taken.
func Launch(opts Options) (*Process, error) {
	if opts.Binary == "" {
		opts.Binary = "redis-server"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	p := &Process{opts: opts, Dir: opts.Dir}
	if p.Dir == "" {
		d, err := os.MkdirTemp("", "feathery-redis-")
		if err != nil {
			return nil, fmt.Errorf("start redis: %w", err)
		}
		p.Dir, p.ownDir = d, true
	}
	pick := opts.pickPort
	if pick == nil {
		pick = FindFreePort
	}
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			var err error
			if port, err = pick(); err != nil {
				p.cleanup()
				return nil, err
			}
		}
		p.Addr = "127.0.0.1:" + strconv.Itoa(port)
		err := p.start()
		if err == nil {
			return p, nil
		}
		if opts.Port != 0 || !errors.Is(err, errPortInUse) || attempt == startAttempts {
			p.cleanup()
			if errors.Is(err, errPortInUse) && opts.Port == 0 {
				return nil, fmt.Errorf("start redis: %d picked ports taken, last: %w", attempt, err)
			}
			return nil, err
		}
		// The next attempt's log starts empty, so its failure is its own.
		_ = os.Remove(filepath.Join(p.Dir, "redis.log"))
	}
}

func (p *Process) start() error {
	_, port, _ := net.SplitHostPort(p.Addr)
	args := []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", p.Dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(p.Dir, "redis.log"),
	}
	if p.opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if p.opts.Password != "" {
		args = append(args, "--requirepass", p.opts.Password)
	}
	args = append(args, p.opts.Args...)
	cmd := exec.Command(p.opts.Binary, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server (is it installed? .ci/run installs it): %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	deadline := time.Now().Add(p.opts.StartTimeout)
	for {
		err := p.ping(cmd.Process.Pid)
		if err == nil {
			return nil
		}
		select {
		case <-done:
			p.mu.Lock()
			if p.cmd == cmd {
				p.cmd, p.done = nil, nil
			}
			p.mu.Unlock()
			tail := p.logTail()
			if strings.Contains(tail, "Address already in use") {
				return fmt.Errorf("redis-server on %s exited at start: %w: %s", p.Addr, errPortInUse, tail)
			}
			return fmt.Errorf("redis-server on %s exited at start: %s", p.Addr, tail)
		default:
		}
		if time.Now().After(deadline) {
			_ = p.Kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %s (%v): %s", p.Addr, p.opts.StartTimeout, err, p.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *Process) logTail() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "redis.log"))
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "no log"
	}
	return "log: " + s
}

// ping sends PING over a raw connection and wants PONG, then asks INFO
// which process answered: while a server whose port turns out to be taken
// has not exited yet, another server on that port may answer the PING.
func (p *Process) ping(pid int) error {
	c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	br := bufio.NewReader(c)
	if p.opts.Password != "" {
		fmt.Fprintf(c, "AUTH %s\r\n", p.opts.Password)
		if _, err := br.ReadString('\n'); err != nil {
			return err
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
	}
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return err
	}
	if line, err = br.ReadString('\n'); err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return fmt.Errorf("INFO: unexpected reply %q", strings.TrimSpace(line))
	}
	info := make([]byte, n+2)
	if _, err := io.ReadFull(br, info); err != nil {
		return fmt.Errorf("INFO: %w", err)
	}
	want := "process_id:" + strconv.Itoa(pid) + "\r\n"
	if !strings.Contains(string(info), want) {
		return fmt.Errorf("another process answers on %s (not pid %d)", p.Addr, pid)
	}
	return nil
}

// URL is a redis:// URL for the server (with the password, if any).
func (p *Process) URL() string {
	if p.opts.Password != "" {
		return "redis://:" + p.opts.Password + "@" + p.Addr
	}
	return "redis://" + p.Addr
}

// PID is the server's process id, 0 while it is stopped.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Client connects a single-node rueidis client to the server (client-side
// caching off). The caller closes it.
func (p *Process) Client() (rueidis.Client, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{p.Addr}, Password: p.opts.Password,
		DisableCache: true, ForceSingleClient: true,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to redis %s: %w", p.Addr, err)
	}
	return c, nil
}

// Stop shuts the server down with SIGTERM (with AppendOnly, what it
// acknowledged is on disk) and waits; after 10s it is killed. Stopping a
// stopped server does nothing.
func (p *Process) Stop() error {
	return p.stop(syscall.SIGTERM, 10*time.Second)
}

// Kill stops the server with SIGKILL and waits for it.
func (p *Process) Kill() error {
	return p.stop(syscall.SIGKILL, 0)
}

func (p *Process) stop(sig syscall.Signal, grace time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal redis-server: %w", err)
	}
	if sig == syscall.SIGKILL {
		<-done
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("stop redis-server: no exit within %s, killed", grace)
	}
}

// Restart stops the server if it runs and starts it again on the same port
// and directory.
func (p *Process) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.start()
}

// Close stops the server and removes its directory if Launch made it.
func (p *Process) Close() error {
	err := p.Stop()
	p.cleanup()
	return err
}

func (p *Process) cleanup() {
	if p.ownDir {
		_ = os.RemoveAll(p.Dir)
	}
}
