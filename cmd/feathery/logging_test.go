package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/feathery/feathery/gateway/testkit"
)

func TestNewLogger_Format(t *testing.T) {
	for _, c := range []struct {
		format   string
		terminal bool
		json     bool
	}{
		{"auto", false, true},
		{"", false, true},
		{"auto", true, false},
		{"json", true, true},
		{"text", false, false},
	} {
		var buf testkit.SyncBuffer
		m := &Main{IsTerminal: func(any) bool { return c.terminal }}
		log, err := m.newLogger(&buf, logOptions{Format: c.format, Level: "warn"})
		if err != nil {
			t.Fatal(err)
		}
		log.Info("hidden")
		log.Warn("shown", "k", 1)
		got := strings.TrimSpace(buf.String())
		if strings.Contains(got, "hidden") || !strings.Contains(got, "shown") {
			t.Errorf("format %q: level not applied: %q", c.format, got)
		}
		if json.Valid([]byte(got)) != c.json {
			t.Errorf("format %q terminal %v: got %q, want JSON %v", c.format, c.terminal, got, c.json)
		}
	}
	m := &Main{IsTerminal: func(any) bool { return false }}
	if _, err := m.newLogger(&testkit.SyncBuffer{}, logOptions{Level: "loud"}); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := m.newLogger(&testkit.SyncBuffer{}, logOptions{Format: "xml"}); err == nil {
		t.Error("bad format accepted")
	}
}

func TestRedactHandler(t *testing.T) {
	var buf testkit.SyncBuffer
	m := &Main{IsTerminal: func(any) bool { return false }}
	log, err := m.newLogger(&buf, logOptions{Format: "json", Secrets: []string{testToken, "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	log = log.With("pre", "x"+testToken)
	log.WithGroup("g").Info("msg "+testToken,
		"s", testToken,
		"err", errors.New("dial with "+testToken),
		slog.Group("inner", "t", testToken),
		"b", []byte(testToken),
		"short", "pw stays: too short to search for",
	)
	got := buf.String()
	if strings.Contains(got, testToken) {
		t.Fatalf("secret leaked: %s", got)
	}
	if n := strings.Count(got, "[REDACTED]"); n != 6 {
		t.Errorf("got %d redactions, want 6: %s", n, got)
	}
	if !strings.Contains(got, "pw stays") {
		t.Errorf("a short secret was replaced: %s", got)
	}
}
