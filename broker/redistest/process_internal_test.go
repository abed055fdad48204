package redistest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// takenFirst picks taken first, then free ports; it counts its calls.
func takenFirst(taken int, calls *int) func() (int, error) {
	return func() (int, error) {
		*calls++
		if *calls == 1 {
			return taken, nil
		}
		return FindFreePort()
	}
}

func listenLoopback(t *testing.T) (net.Listener, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, l.Addr().(*net.TCPAddr).Port
}

func launch(t *testing.T, opts Options) *Process {
	t.Helper()
	p, err := Launch(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// The first port picked is held by another listener: Launch picks again.
func TestLaunch_RetriesTakenPort(t *testing.T) {
	t.Parallel()
	_, taken := listenLoopback(t)
	calls := 0
	p := launch(t, Options{Dir: t.TempDir(), pickPort: takenFirst(taken, &calls)})
	if calls != 2 {
		t.Fatalf("picked %d ports, want 2 (the taken one, then another)", calls)
	}
	if p.Addr == "127.0.0.1:"+strconv.Itoa(taken) {
		t.Fatalf("started on the taken port %d", taken)
	}
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(context.Background(), c.B().Ping().Build()).Error(); err != nil {
		t.Fatalf("ping the started server: %v", err)
	}
}

// The first port picked is held by another redis-server, which answers the
// PING before the new one has exited: Launch must not take it for its own.
func TestLaunch_RetriesPortOfAnotherRedis(t *testing.T) {
	t.Parallel()
	other := launch(t, Options{Dir: t.TempDir()})
	_, port, _ := net.SplitHostPort(other.Addr)
	taken, _ := strconv.Atoi(port)
	calls := 0
	p := launch(t, Options{Dir: t.TempDir(), pickPort: takenFirst(taken, &calls)})
	if p.Addr == other.Addr {
		t.Fatalf("Launch returned the other server's address %s", other.Addr)
	}
	if calls != 2 {
		t.Fatalf("picked %d ports, want 2", calls)
	}
	if p.PID() == other.PID() || p.PID() == 0 {
		t.Fatalf("pid %d, other server's %d", p.PID(), other.PID())
	}
}

// A port the caller chose is not swapped for another; a port taken on
// every attempt ends with an error that says so.
func TestLaunch_TakenPortErrors(t *testing.T) {
	t.Parallel()
	_, taken := listenLoopback(t)
	_, err := Launch(Options{Dir: t.TempDir(), Port: taken})
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("explicit taken port: got %v, want errPortInUse", err)
	}
	calls := 0
	_, err = Launch(Options{Dir: t.TempDir(), pickPort: func() (int, error) { calls++; return taken, nil }})
	if !errors.Is(err, errPortInUse) || !strings.Contains(err.Error(), "5 picked ports taken") {
		t.Fatalf("every pick taken: got %v", err)
	}
	if calls != startAttempts {
		t.Fatalf("picked %d ports, want %d", calls, startAttempts)
	}
}
