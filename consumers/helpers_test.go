package consumers_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// entryFields builds the fields of a well-formed v1 entry.
func entryFields(t string, seq int64, d string) map[string]string {
	return map[string]string{
		"v": "1", "t": t, "d": d, "bot": "testbot", "shard": "3",
		"session": "sess-1", "seq": strconv.FormatInt(seq, 10),
		"guild": "81384788765712384", "at": "1700000000123",
	}
}

// xadd appends n entries with seq first..first+n-1 and returns their ids.
func xadd(t testing.TB, c rueidis.Client, stream string, first int64, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	for i := range n {
		seq := first + int64(i)
		f := entryFields("MESSAGE_CREATE", seq, fmt.Sprintf(`{"id":"%d","content":"m%d"}`, 1000+seq, seq))
		ids = append(ids, xaddFields(t, c, stream, f))
	}
	return ids
}

func xaddFields(t testing.TB, c rueidis.Client, stream string, f map[string]string) string {
	t.Helper()
	fv := c.B().Xadd().Key(stream).Id("*").FieldValue()
	for _, k := range []string{"v", "t", "d", "bot", "shard", "session", "seq", "guild", "before", "at"} {
		if v, ok := f[k]; ok {
			fv = fv.FieldValue(k, v)
		}
	}
	for k, v := range f { // fields outside the usual set (garbage tests)
		switch k {
		case "v", "t", "d", "bot", "shard", "session", "seq", "guild", "before", "at":
		default:
			fv = fv.FieldValue(k, v)
		}
	}
	id, err := c.Do(context.Background(), fv.Build()).ToString()
	if err != nil {
		t.Fatalf("xadd %s: %v", stream, err)
	}
	return id
}

// pendingCount is XPENDING's summary count of a group.
func pendingCount(t testing.TB, c rueidis.Client, stream, group string) int64 {
	t.Helper()
	arr, err := c.Do(context.Background(), c.B().Xpending().Key(stream).Group(group).Build()).ToArray()
	if err != nil {
		t.Fatalf("xpending %s %s: %v", stream, group, err)
	}
	n, err := arr[0].AsInt64()
	if err != nil {
		t.Fatalf("xpending count: %v", err)
	}
	return n
}

// runReader starts Run in a goroutine; the returned stop cancels it and
// returns Run's error, failing the test if Run does not return within 10s.
func runReader(t testing.TB, run func(ctx context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	stopped := false
	var err error
	stop = func() error {
		if stopped {
			return err
		}
		stopped = true
		cancel()
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("Run did not return within 10s of cancel")
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}
