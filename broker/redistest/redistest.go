// Package redistest starts real redis-server processes for tests, on free
// loopback ports, each in its own temporary directory.
//
//	srv := redistest.Start(t, redistest.Options{})
//	client := srv.Client(t)
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Options tune a started server.
type Options struct {
	// AppendOnly turns on AOF persistence (appendfsync always), so a
	// restarted server keeps what it acknowledged.
	AppendOnly bool
	// Password sets requirepass.
	Password string
	// Args are extra redis-server arguments, e.g. "--cluster-enabled", "yes".
	Args []string
}

// Server is one running redis-server.
type Server struct {
	Addr string
	Dir  string
	opts Options
	cmd  *exec.Cmd
	tb   testing.TB
}

// Available reports whether redis-server is on PATH.
func Available() bool {
	_, err := exec.LookPath("redis-server")
	return err == nil
}

// Start starts redis-server and stops it when the test ends. The test fails
// (it is not skipped) when redis-server is missing: .ci/run installs it.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s := &Server{Dir: tb.TempDir(), opts: opts, tb: tb}
	s.Addr = "127.0.0.1:" + strconv.Itoa(FreePort(tb))
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) start() {
	tb := s.tb
	tb.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := []string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir,
		"--save", "", "--daemonize", "no", "--loglevel", "warning",
		"--logfile", filepath.Join(s.Dir, "redis.log"),
	}
	if s.opts.AppendOnly {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start redis-server (is it installed? .ci/run installs it): %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s.ping() == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			tb.Fatalf("redis-server on %s did not answer PING within 10s; log:\n%s", s.Addr, log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends one PING over a raw connection.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if s.opts.Password != "" {
		fmt.Fprintf(c, "AUTH %s\r\n", s.opts.Password)
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return err
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") && !strings.HasPrefix(line, "-NOAUTH") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// Stop shuts the server down (SHUTDOWN semantics: with AppendOnly, what was
// acknowledged is on disk). Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// Kill stops the server with SIGKILL.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a stopped server again on the same port and directory.
func (s *Server) Restart() {
	s.tb.Helper()
	if s.cmd != nil {
		s.Stop()
	}
	s.start()
}

// URL is a redis:// URL for the server.
func (s *Server) URL() string {
	if s.opts.Password != "" {
		return "redis://:" + s.opts.Password + "@" + s.Addr
	}
	return "redis://" + s.Addr
}

// Client returns a rueidis client closed at the end of the test.
func (s *Server) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{s.Addr}, Password: s.opts.Password,
		DisableCache: true, ForceSingleClient: true,
	})
	if err != nil {
		tb.Fatalf("connect to redis %s: %v", s.Addr, err)
	}
	tb.Cleanup(c.Close)
	return c
}

// FlushAll empties the server.
func (s *Server) FlushAll(tb testing.TB) {
	tb.Helper()
	c := s.Client(tb)
	if err := c.Do(context.Background(), c.B().Flushall().Build()).Error(); err != nil {
		tb.Fatalf("flushall: %v", err)
	}
}
