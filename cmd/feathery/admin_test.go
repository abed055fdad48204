package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeBackend is an adminBackend with fixed answers.
type fakeBackend struct {
	mu         sync.Mutex
	healthy    bool
	reconnects []string
}

func (f *fakeBackend) Status(context.Context) statusReport {
	return statusReport{Version: "test", Shards: []shardRow{{Bot: "main", Shard: 0, State: "ready", Seq: 7}}}
}

func (f *fakeBackend) Health(context.Context) healthReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.healthy {
		return healthReport{OK: true, Redis: "ok", ShardsReady: 1, ShardsTotal: 1}
	}
	return healthReport{OK: false, Redis: "ok", ShardsReady: 0, ShardsTotal: 1, Detail: "1 of 1 shards not ready"}
}

func (f *fakeBackend) Gatherer() prometheus.Gatherer {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "feathery_test_total", Help: "A test counter."}, []string{"bot"})
	c.WithLabelValues(`we"ird\bot`).Add(3)
	reg.MustRegister(c)
	return reg
}

func (f *fakeBackend) Reconnect(_ context.Context, bot string, shard int) error {
	if bot != "main" || shard != 0 {
		return errNotFound
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reconnects = append(f.reconnects, bot)
	return nil
}

func (f *fakeBackend) Reload(context.Context) error {
	return errors.New("config f.yaml:3: bots[0].name: missing")
}

func (f *fakeBackend) Reshard(_ context.Context, bot string, shards int) error {
	if bot != "main" {
		return errNotFound
	}
	if shards == 7 {
		return fmt.Errorf("%w: busy", errReshardRefused)
	}
	return nil
}

const adminToken = "admin-token-0123456789"

func startTestAdmin(t *testing.T, token string) (*adminServer, *fakeBackend) {
	t.Helper()
	b := &fakeBackend{}
	a, err := startAdmin("127.0.0.1:0", token, b, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := a.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return a, b
}

func httpDo(t *testing.T, method, url, bearer string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func TestAdmin_ReconnectAuth(t *testing.T) {
	a, b := startTestAdmin(t, adminToken)
	u := "http://" + a.Addr() + "/api/bots/main/shards/0/reconnect"
	for _, c := range []struct {
		name, bearer string
		want         int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "admin-token-0123456780", http.StatusUnauthorized},
		{"right token", adminToken, http.StatusAccepted},
	} {
		code, h, body := httpDo(t, "POST", u, c.bearer)
		if code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, code, c.want, body)
		}
		if strings.Contains(body, adminToken) {
			t.Errorf("%s: reply shows the admin token", c.name)
		}
		if code == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
	}
	if len(b.reconnects) != 1 {
		t.Errorf("backend saw %d reconnects, want 1", len(b.reconnects))
	}
	if code, _, _ := httpDo(t, "POST", "http://"+a.Addr()+"/api/bots/main/shards/9/reconnect", adminToken); code != http.StatusNotFound {
		t.Errorf("unknown shard: status %d, want 404", code)
	}
	if code, _, _ := httpDo(t, "POST", "http://"+a.Addr()+"/api/bots/main/shards/x/reconnect", adminToken); code != http.StatusBadRequest {
		t.Errorf("bad shard id: status %d, want 400", code)
	}
	if code, _, _ := httpDo(t, "GET", u, adminToken); code != http.StatusMethodNotAllowed {
		t.Errorf("GET on a POST endpoint: status %d, want 405", code)
	}
}

func TestAdmin_NoTokenDisablesActions(t *testing.T) {
	a, b := startTestAdmin(t, "")
	code, _, body := httpDo(t, "POST", "http://"+a.Addr()+"/api/bots/main/shards/0/reconnect", "anything")
	if code != http.StatusForbidden || !strings.Contains(body, "admin.token") {
		t.Errorf("status %d body %q, want 403 naming admin.token", code, body)
	}
	if len(b.reconnects) != 0 {
		t.Error("the backend was called")
	}
}

func TestAdmin_Healthz(t *testing.T) {
	a, b := startTestAdmin(t, "")
	u := "http://" + a.Addr() + "/healthz"
	code, h, body := httpDo(t, "GET", u, "")
	if code != http.StatusServiceUnavailable {
		t.Errorf("not ready: status %d, want 503", code)
	}
	var hr healthReport
	if err := json.Unmarshal([]byte(body), &hr); err != nil || h.Get("Content-Type") != "application/json" {
		t.Fatalf("body %q (%s): %v", body, h.Get("Content-Type"), err)
	}
	if hr.OK || hr.Detail == "" {
		t.Errorf("got %+v", hr)
	}
	b.mu.Lock()
	b.healthy = true
	b.mu.Unlock()
	if code, _, body := httpDo(t, "GET", u, ""); code != http.StatusOK || !strings.Contains(body, `"ok": true`) {
		t.Errorf("ready: status %d body %q", code, body)
	}
}

func TestAdmin_StatusMetricsDashboard(t *testing.T) {
	a, _ := startTestAdmin(t, "")
	code, _, body := httpDo(t, "GET", "http://"+a.Addr()+"/api/status", "")
	var st statusReport
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Shards) != 1 || st.Shards[0].Seq != 7 {
		t.Errorf("status: %d %q", code, body)
	}
	code, h, body := httpDo(t, "GET", "http://"+a.Addr()+"/metrics", "")
	want := "# HELP feathery_test_total A test counter.\n# TYPE feathery_test_total counter\nfeathery_test_total{bot=\"we\\\"ird\\\\bot\"} 3\n"
	if code != 200 || body != want || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("metrics: %d %q\ngot  %q\nwant %q", code, h.Get("Content-Type"), body, want)
	}
	code, h, body = httpDo(t, "GET", "http://"+a.Addr()+"/", "")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(body, "/api/console") {
		t.Errorf("dashboard: %d %q", code, h.Get("Content-Type"))
	}
	if code, _, _ := httpDo(t, "GET", "http://"+a.Addr()+"/nope", ""); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

// TestAdmin_ReloadReshard: POST /api/reload and POST
// /api/bots/{bot}/reshard need the token and answer {"ok":true} or
// {"error":"..."} with a status that says why.
func TestAdmin_ReloadReshard(t *testing.T) {
	a, _ := startTestAdmin(t, adminToken)
	base := "http://" + a.Addr()
	post := func(path, bearer, body string) (int, string) {
		req, err := http.NewRequest("POST", base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		path, bearer, body string
		code               int
		want               string
	}{
		{"/api/reload", "", "", http.StatusUnauthorized, `"error"`},
		{"/api/reload", adminToken, "", http.StatusBadRequest, `"error": "config f.yaml:3: bots[0].name: missing"`},
		{"/api/bots/main/reshard", "", `{"shards":5}`, http.StatusUnauthorized, `"error"`},
		{"/api/bots/main/reshard", adminToken, `{"shards":5}`, http.StatusAccepted, `"ok": true`},
		{"/api/bots/main/reshard", adminToken, `{"shards":7}`, http.StatusConflict, `busy`},
		{"/api/bots/other/reshard", adminToken, `{"shards":5}`, http.StatusNotFound, `"error"`},
		{"/api/bots/main/reshard", adminToken, `{"shards":0}`, http.StatusBadRequest, `"error"`},
		{"/api/bots/main/reshard", adminToken, `{"count":5}`, http.StatusBadRequest, `"error"`},
	} {
		code, body := post(c.path, c.bearer, c.body)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("POST %s %s: got %d %s, want %d with %s", c.path, c.body, code, body, c.code, c.want)
		}
	}
}
