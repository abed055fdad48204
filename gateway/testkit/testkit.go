// Package testkit is a leaf test-helper package; it imports only the
// standard library, so every package's tests may use it without taking a
// dependency on the gateway. It holds no gateway logic: a goroutine-safe
// buffer for captured logs and output, polling with a deadline (tests wait
// for a condition, never sleep and hope), and a look at a package's
// dependencies for tests that keep the import graph in shape.
package testkit

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: a logger or a
// command writes to it while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PollInterval is how often Eventually and EventuallyWhy check their
// condition.
const PollInterval = 10 * time.Millisecond

// Eventually polls cond every PollInterval until it holds; if it still
// does not once timeout has passed, the test fails with "timed out after
// <timeout> waiting for <what>".
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return
		}
		time.Sleep(PollInterval)
	}
}

// EventuallyWhy polls cond every PollInterval until it returns ""; cond
// otherwise says what is still missing. If the deadline passes first, the
// test fails with the last thing cond said.
func EventuallyWhy(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %s", timeout, why)
			return
		}
		time.Sleep(PollInterval)
	}
}

// NonStandardDeps lists the packages outside the standard library that pkg
// (an import path or a directory such as ".") links, pkg itself included
// when it is not standard; test files are not counted. It runs `go list
// -deps` with the go command on PATH (go test puts its own first).
func NonStandardDeps(t testing.TB, pkg string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", pkg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v: %s", pkg, err, strings.TrimSpace(stderr.String()))
		return nil
	}
	return strings.Fields(string(out))
}
