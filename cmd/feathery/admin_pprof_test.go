package main

import (
	"net/http"
	"strings"
	"testing"
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
