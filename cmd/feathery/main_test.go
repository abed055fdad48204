package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
)

// testMain returns a Main with captured output and the given environment.
func testMain(env map[string]string) (*Main, *testkit.SyncBuffer, *testkit.SyncBuffer) {
	out, errOut := &testkit.SyncBuffer{}, &testkit.SyncBuffer{}
	return &Main{
		Stdout:     out,
		Stderr:     errOut,
		LookupEnv:  envOf(env),
		IsTerminal: func(any) bool { return false },
	}, out, errOut
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runAsync runs m.Run in a goroutine. stop cancels it and returns its
// error; done is closed when Run has returned (then stop returns at once).
func runAsync(t *testing.T, m *Main, args ...string) (stop func() error, done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var err error
	go func() {
		defer close(ch)
		err = m.Run(ctx, args)
	}()
	stop = func() error {
		cancel()
		select {
		case <-ch:
			return err
		case <-time.After(60 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("feathery %s did not stop within 60s; goroutines:\n%s", strings.Join(args, " "), buf)
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop, ch
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
