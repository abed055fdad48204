package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/redis/rueidis"
)

func addEntry(t *testing.T, c rueidis.Client, key string, seq int) {
	t.Helper()
	cmd := c.B().Xadd().Key(key).Id("*").FieldValue().
		FieldValue("v", "1").FieldValue("t", "MESSAGE_CREATE").
		FieldValue("d", `{"id":"`+strconv.Itoa(1000+seq)+`","content":"!ping"}`).
		FieldValue("bot", "b").FieldValue("shard", "0").FieldValue("session", "s1").
		FieldValue("seq", strconv.Itoa(seq)).FieldValue("guild", "42").
		FieldValue("at", strconv.FormatInt(time.Now().UnixMilli(), 10)).Build()
	if err := c.Do(context.Background(), cmd).Error(); err != nil {
		t.Fatal(err)
	}
}

func TestTail(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	key := broker.NewKeys("").Events("b")
	for i := 1; i <= 3; i++ {
		addEntry(t, c, key, i)
	}

	t.Run("text", func(t *testing.T) {
		m, out, _ := testMain(nil)
		if err := m.Run(t.Context(), []string{"tail", "--redis", srv.URL(), "--bot", "b", "--from", "0", "--count", "3"}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 3 {
			t.Fatalf("got %d lines:\n%s", len(lines), out)
		}
		for i, l := range lines {
			if !strings.Contains(l, " MESSAGE_CREATE bot=b shard=0 seq="+strconv.Itoa(i+1)+" guild=42 {") {
				t.Errorf("line %d: %q", i, l)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		m, out, _ := testMain(nil)
		if err := m.Run(t.Context(), []string{"tail", "--redis", srv.URL(), "--stream", key, "--json", "--from", "0", "--count", "2"}); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("got %d lines:\n%s", len(lines), out)
		}
		for i, l := range lines {
			var e struct {
				Stream, ID, T string
				Seq           int64
				D             struct{ Content string }
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %d %q: %v", i, l, err)
			}
			if e.Stream != key || e.ID == "" || e.T != "MESSAGE_CREATE" || e.Seq != int64(i+1) || e.D.Content != "!ping" {
				t.Errorf("line %d: %+v", i, e)
			}
		}
	})

	t.Run("group acks", func(t *testing.T) {
		m, out, _ := testMain(nil)
		if err := m.Run(t.Context(), []string{"tail", "--redis", srv.URL(), "--bot", "b", "--group", "g", "--consumer", "c1", "--from", "0", "--count", "3"}); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), "MESSAGE_CREATE"); n != 3 {
			t.Fatalf("printed %d entries:\n%s", n, out)
		}
		pending, err := c.Do(t.Context(), c.B().Xpending().Key(key).Group("g").Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := pending[0].AsInt64(); n != 0 {
			t.Errorf("%d entries pending after tail --group, want 0 (acked)", n)
		}
	})

	t.Run("live", func(t *testing.T) {
		m, out, errOut := testMain(nil)
		stop, done := runAsync(t, m, "tail", "--redis", srv.URL(), "--bot", "b", "--count", "1")
		// The tail starts at "$": add entries until it has seen one.
		seq := 100
		testkit.Eventually(t, 10*time.Second, "a live entry", func() bool {
			select {
			case <-done:
				return true
			default:
			}
			seq++
			addEntry(t, c, key, seq)
			return false
		})
		if err := stop(); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if strings.Count(out.String(), "\n") != 1 || !strings.Contains(out.String(), "seq=1") {
			t.Errorf("got %q", out)
		}
	})

	t.Run("config", func(t *testing.T) {
		path := writeFile(t, "feathery.yaml", "redis: {url: \""+srv.URL()+"\"}\nbots:\n  - name: b\n    token: ${TOKEN}\n")
		m, out, _ := testMain(map[string]string{"TOKEN": testToken})
		if err := m.Run(t.Context(), []string{"tail", "-c", path, "--from", "0", "--count", "1"}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "MESSAGE_CREATE bot=b shard=0 seq=1 ") {
			t.Errorf("got %q", out)
		}
	})

	t.Run("no stream", func(t *testing.T) {
		m, _, _ := testMain(nil)
		err := m.Run(t.Context(), []string{"tail", "--redis", srv.URL()})
		if err == nil || !strings.Contains(err.Error(), "say which stream") {
			t.Errorf("got %v", err)
		}
	})
}
