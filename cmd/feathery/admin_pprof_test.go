package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/feathery/feathery/gateway/testkit"
)

// /debug/pprof is served by the admin API: open without admin.token, behind
// the bearer token once one is set.
func TestAdmin_Pprof(t *testing.T) {
	open, _ := startTestAdmin(t, "")
	code, _, body := httpDo(t, "GET", "http://"+open.Addr()+"/debug/pprof/", "")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("index without token: status %d, body %.200q; want 200 listing profiles", code, body)
	}
	code, _, body = httpDo(t, "GET", "http://"+open.Addr()+"/debug/pprof/goroutine?debug=1", "")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("goroutine profile: status %d, body %.200q", code, body)
	}

	guarded, _ := startTestAdmin(t, adminToken)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/cmdline"} {
		u := "http://" + guarded.Addr() + path
		if code, _, body := httpDo(t, "GET", u, ""); code != http.StatusUnauthorized || strings.Contains(body, adminToken) {
			t.Errorf("%s without token: status %d, want 401 (body %.100q)", path, code, body)
		}
		if code, _, _ := httpDo(t, "GET", u, "wrong-token-0123456789"); code != http.StatusUnauthorized {
			t.Errorf("%s with a wrong token: status %d, want 401", path, code)
		}
		if code, _, _ := httpDo(t, "GET", u, adminToken); code != http.StatusOK {
			t.Errorf("%s with the token: status %d, want 200", path, code)
		}
	}
}

// A bind beyond loopback: without admin.token /debug/pprof is off (and
// start-up says so); with the token it needs the token.
func TestAdmin_PprofBeyondLoopback(t *testing.T) {
	logs := &testkit.SyncBuffer{}
	a, err := startAdmin("0.0.0.0:0", "", &fakeBackend{}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	_, port, _ := net.SplitHostPort(a.Addr())
	base := "http://127.0.0.1:" + port
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=2", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		code, _, body := httpDo(t, "GET", base+path, "")
		if code != http.StatusForbidden || !strings.Contains(body, "admin.token") || strings.Contains(body, "goroutine ") {
			t.Errorf("%s beyond loopback without a token: status %d body %.200q; want 403 naming admin.token", path, code, body)
		}
	}
	if code, _, _ := httpDo(t, "GET", base+"/api/status", ""); code != http.StatusOK {
		t.Errorf("/api/status: status %d, want 200 (only profiling is off)", code)
	}
	if !strings.Contains(logs.String(), "/debug/pprof is off") {
		t.Errorf("start-up does not say profiling is off; log:\n%s", logs.String())
	}

	logs = &testkit.SyncBuffer{}
	g, err := startAdmin("0.0.0.0:0", adminToken, &fakeBackend{}, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(context.Background()) })
	_, port, _ = net.SplitHostPort(g.Addr())
	u := "http://127.0.0.1:" + port + "/debug/pprof/"
	if code, _, _ := httpDo(t, "GET", u, ""); code != http.StatusUnauthorized {
		t.Errorf("with admin.token, no bearer: status %d, want 401", code)
	}
	if code, _, _ := httpDo(t, "GET", u, adminToken); code != http.StatusOK {
		t.Errorf("with admin.token and the bearer: status %d, want 200", code)
	}
	if !strings.Contains(logs.String(), "needs the bearer token") || strings.Contains(logs.String(), adminToken) {
		t.Errorf("start-up log does not say pprof needs the token (or shows it):\n%s", logs.String())
	}
}

// The Bearer scheme name is case-insensitive; the token itself is not.
func TestAdmin_BearerSchemeCase(t *testing.T) {
	a, b := startTestAdmin(t, adminToken)
	u := "http://" + a.Addr() + "/api/bots/main/shards/0/reconnect"
	for _, c := range []struct {
		header string
		want   int
	}{
		{"bearer " + adminToken, http.StatusAccepted},
		{"BEARER " + adminToken, http.StatusAccepted},
		{"Bearer  " + adminToken, http.StatusAccepted},
		{"Bearer " + strings.ToUpper(adminToken), http.StatusUnauthorized},
		{"Basic " + adminToken, http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{adminToken, http.StatusUnauthorized},
	} {
		req, err := http.NewRequestWithContext(t.Context(), "POST", u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", c.header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("Authorization %q: status %d, want %d", strings.Replace(c.header, adminToken, "<token>", 1), resp.StatusCode, c.want)
		}
	}
	if len(b.reconnects) != 3 {
		t.Errorf("backend saw %d reconnects, want 3", len(b.reconnects))
	}
}
