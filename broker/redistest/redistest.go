// Package redistest starts real redis-server processes for tests, on free
// loopback ports, each in its own temporary directory.
//
//	srv := redistest.Start(t, redistest.Options{})
//	client := srv.Client(t)
//
// Outside tests (benchmark harnesses, tools), Launch starts the same
// Process and reports failures as errors.
package redistest

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// Options tune a started server.
type Options struct {
	// AppendOnly turns on AOF persistence (appendfsync always), so a
	// restarted (or killed) server keeps what it acknowledged.
	AppendOnly bool
	// Password sets requirepass.
	Password string
	// Args are extra redis-server arguments, e.g. "--cluster-enabled", "yes".
	Args []string
	// Binary is the redis-server executable; default "redis-server" from PATH.
	Binary string
	// Port is the loopback port; 0 picks a free one (and another when
	// redis-server finds it taken, a few times).
	Port int
	// Dir is the server's working directory (AOF, log); "" = a new
	// temporary directory (Start: the test's; Launch: one Close removes).
	Dir string
	// StartTimeout bounds the wait for the first PONG; default 10s.
	StartTimeout time.Duration

	// pickPort picks the port when Port is 0; default FindFreePort.
	pickPort func() (int, error)
}

// Server is one running redis-server bound to a test: a Process whose
// failures fail the test.
type Server struct {
	*Process
	tb testing.TB
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
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	p, err := Launch(opts)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Server{Process: p, tb: tb}
	tb.Cleanup(s.Stop)
	return s
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := FindFreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// Stop shuts the server down (SHUTDOWN semantics: with AppendOnly, what was
// acknowledged is on disk). Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.tb.Helper()
	if err := s.Process.Stop(); err != nil {
		s.tb.Error(err)
	}
}

// Kill stops the server with SIGKILL.
func (s *Server) Kill() {
	s.tb.Helper()
	if err := s.Process.Kill(); err != nil {
		s.tb.Error(err)
	}
}

// Restart starts the server again on the same port and directory, stopping
// it first if it runs.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.Process.Restart(); err != nil {
		s.tb.Fatal(err)
	}
}

// Client returns a rueidis client closed at the end of the test.
func (s *Server) Client(tb testing.TB) rueidis.Client {
	tb.Helper()
	c, err := s.Process.Client()
	if err != nil {
		tb.Fatal(err)
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
