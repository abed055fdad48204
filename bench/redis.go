package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

// RedisOptions tune a redis-server started by StartRedis.
type RedisOptions struct {
	// Binary is the redis-server executable; default "redis-server" from PATH.
	Binary string
	// Port is the loopback port; 0 picks a free one.
	Port int
	// Dir is the server's working directory (AOF, log); "" = a new
	// temporary directory, removed by Close.
	Dir string
	// AppendOnly turns on AOF persistence with appendfsync always, so a
	// restarted (or killed) server keeps what it acknowledged.
	AppendOnly bool
	// Password sets requirepass.
	Password string
	// Args are extra redis-server arguments.
	Args []string
	// StartTimeout bounds the wait for the first PONG; default 10s.
	StartTimeout time.Duration
}

// RedisServer is a redis-server child process on a loopback port. Its
// methods are safe for concurrent use.
type RedisServer struct {
	// Addr is host:port; Dir the working directory.
	Addr string
	Dir  string

	opts   RedisOptions
	ownDir bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has been waited for
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr() (string, error) {
	p, err := FreePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// StartRedis starts redis-server and waits until it answers PING.
func StartRedis(opts RedisOptions) (*RedisServer, error) {
	if opts.Binary == "" {
		opts.Binary = "redis-server"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 10 * time.Second
	}
	r := &RedisServer{opts: opts, Dir: opts.Dir}
	if r.Dir == "" {
		d, err := os.MkdirTemp("", "feathery-bench-redis-")
		if err != nil {
			return nil, fmt.Errorf("start redis: %w", err)
		}
		r.Dir, r.ownDir = d, true
	}
	port := opts.Port
	if port == 0 {
		var err error
		if port, err = FreePort(); err != nil {
			r.cleanup()
			return nil, err
		}
	}
	r.Addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := r.start(); err != nil {
		r.cleanup()
		return nil, err
	}
	return r, nil
}

func (r *RedisServer) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	args := []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", r.Dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(r.Dir, "redis.log"),
	}
	if r.opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if r.opts.Password != "" {
		args = append(args, "--requirepass", r.opts.Password)
	}
	args = append(args, r.opts.Args...)
	cmd := exec.Command(r.opts.Binary, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server (is it installed?): %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done = cmd, done
	r.mu.Unlock()
	deadline := time.Now().Add(r.opts.StartTimeout)
	for {
		err := r.ping()
		if err == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("redis-server on %s exited at start: %s", r.Addr, r.logTail())
		default:
		}
		if time.Now().After(deadline) {
			r.kill()
			return fmt.Errorf("redis-server on %s did not answer PING within %s (%v): %s", r.Addr, r.opts.StartTimeout, err, r.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *RedisServer) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "no log"
	}
	return "log: " + s
}

// ping sends PING over a raw connection.
func (r *RedisServer) ping() error {
	c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	br := bufio.NewReader(c)
	if r.opts.Password != "" {
		fmt.Fprintf(c, "AUTH %s\r\n", r.opts.Password)
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
	return nil
}

// URL is a redis:// URL for the server (with the password, if any).
func (r *RedisServer) URL() string {
	if r.opts.Password != "" {
		return "redis://:" + r.opts.Password + "@" + r.Addr
	}
	return "redis://" + r.Addr
}

// PID is the server's process id, 0 while it is stopped.
func (r *RedisServer) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

// Running reports whether the process is alive.
func (r *RedisServer) Running() bool {
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
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

// Client connects a rueidis client to the server (client-side caching
// off). The caller closes it.
func (r *RedisServer) Client() (rueidis.Client, error) {
	return NewRedisClient(r.URL())
}

// Stop shuts the server down with SIGTERM (with AppendOnly, what it
// acknowledged is on disk) and waits; after 10s it is killed. Stopping a
// stopped server does nothing.
func (r *RedisServer) Stop() error {
	return r.stop(syscall.SIGTERM, 10*time.Second)
}

// Kill stops the server with SIGKILL and waits for it.
func (r *RedisServer) Kill() error {
	return r.stop(syscall.SIGKILL, 0)
}

func (r *RedisServer) kill() { _ = r.Kill() }

func (r *RedisServer) stop(sig syscall.Signal, grace time.Duration) error {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd, r.done = nil, nil
	r.mu.Unlock()
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
func (r *RedisServer) Restart() error {
	if err := r.Stop(); err != nil {
		return err
	}
	return r.start()
}

// Close stops the server and removes its directory if StartRedis made it.
func (r *RedisServer) Close() error {
	err := r.Stop()
	r.cleanup()
	return err
}

func (r *RedisServer) cleanup() {
	if r.ownDir {
		_ = os.RemoveAll(r.Dir)
	}
}

// NewRedisClient connects a rueidis client to a redis:// URL with
// client-side caching off.
func NewRedisClient(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	opt.DisableCache = true
	opt.ForceSingleClient = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	return c, nil
}

// RedisInfo reads one INFO section as field → value.
func RedisInfo(ctx context.Context, c rueidis.Client, section string) (map[string]string, error) {
	s, err := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	if err != nil {
		return nil, fmt.Errorf("redis info %s: %w", section, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// UsedMemory is INFO memory's used_memory in bytes.
func UsedMemory(ctx context.Context, c rueidis.Client) (int64, error) {
	info, err := RedisInfo(ctx, c, "memory")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(info["used_memory"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("redis info memory: bad used_memory %q", info["used_memory"])
	}
	return n, nil
}
