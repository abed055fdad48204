package testkit_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
)

// fatalRecorder is a testing.TB whose Fatalf records the message instead of
// stopping the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) { r.msg = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	testkit.Eventually(t, 30*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond checked %d times, want 3 (it stops once met)", calls)
	}

	r := &fatalRecorder{TB: t}
	calls = 0
	testkit.Eventually(r, 50*time.Millisecond, "the impossible", func() bool { calls++; return false })
	if r.msg != "timed out after 50ms waiting for the impossible" {
		t.Fatalf("failure message: got %q", r.msg)
	}
	if calls < 2 {
		t.Fatalf("cond checked %d times, want it polled until the deadline", calls)
	}
}

func TestEventuallyWhy(t *testing.T) {
	t.Parallel()
	calls := 0
	testkit.EventuallyWhy(t, 30*time.Second, func() string {
		if calls++; calls < 3 {
			return "not yet"
		}
		return ""
	})
	if calls != 3 {
		t.Fatalf("cond checked %d times, want 3 (it stops once met)", calls)
	}

	r := &fatalRecorder{TB: t}
	n := 0
	testkit.EventuallyWhy(r, 50*time.Millisecond, func() string { n++; return fmt.Sprintf("%d entries", n) })
	if want := fmt.Sprintf("condition not met within 50ms: %d entries", n); r.msg != want {
		t.Fatalf("failure message: got %q, want %q (the last reason)", r.msg, want)
	}
}

// Writers and a reader at once: the race detector watches.
func TestSyncBuffer(t *testing.T) {
	t.Parallel()
	var b testkit.SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x\n"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(b.String(), "x\n"); got != 800 {
		t.Fatalf("got %d lines, want 800", got)
	}
}

// Every package's tests may import testkit only while it stays a leaf.
func TestLeaf(t *testing.T) {
	t.Parallel()
	deps := testkit.NonStandardDeps(t, ".")
	if len(deps) != 1 || deps[0] != "github.com/feathery/feathery/gateway/testkit" {
		t.Fatalf("testkit links %v; it may import the standard library only", deps)
	}
}
