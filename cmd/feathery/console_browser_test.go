package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/feathery/feathery/gateway/testkit"
)

// The dashboard is tested in a real headless Chromium (Debian's chromium
// package; CI installs it) against a fleet of two nodes on the fake
// Discord. The tests skip only when no Chromium binary is found.

// chromiumPath finds a Chromium or Chrome binary ($CHROMIUM first).
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary found (install Debian's chromium package or set $CHROMIUM); the dashboard browser tests need it")
	return ""
}

// pageProblems collects what the page reports as errors: console.error,
// uncaught exceptions and error log entries (CSP violations, failed
// requests).
type pageProblems struct {
	mu   sync.Mutex
	list []string
}

func (p *pageProblems) add(s string) {
	p.mu.Lock()
	p.list = append(p.list, s)
	p.mu.Unlock()
}

// unexpected are the problems that do not match any of allowed.
func (p *pageProblems) unexpected(allowed ...string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.list {
		ok := false
		for _, a := range allowed {
			if strings.Contains(s, a) {
				ok = true
			}
		}
		if !ok {
			out = append(out, s)
		}
	}
	return out
}

// newBrowser starts headless Chromium and returns a tab's context.
func newBrowser(t *testing.T, width, height int) (context.Context, *pageProblems) {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	probs := &pageProblems{}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				probs.add("console.error: " + strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			probs.add("exception: " + msg)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				probs.add(fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, struct{}{}); err != nil {
		t.Fatalf("enable the log domain: %v", err)
	}
	if _, err := chromedp.Call(ctx, runtime.Enable, struct{}{}); err != nil {
		t.Fatalf("enable the runtime domain: %v", err)
	}
	return ctx, probs
}

// eval runs a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(cctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitPage polls a JavaScript condition (the page redraws on its own).
func waitPage(t *testing.T, ctx context.Context, d time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !eval[bool](t, ctx, expr) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting in the page for %s (%s)", d, what, expr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func do(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(cctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// cellSel is the grid cell of a shard.
func cellSel(shard int) string { return fmt.Sprintf(`#grids .cell[data-key="main/%d"]`, shard) }

// TestDashboard_Browser: a fleet of two nodes (8 shards) seen through node
// a's dashboard in headless Chromium: one cell per shard; a shard forced
// to reconnect (by the fake, and by the page's action, which runs on the
// other node) changes colour; the lag of a group grows on the page while
// its consumer is stopped; an action without the token is refused and with
// it works; the page logs no error.
func TestDashboard_Browser(t *testing.T) {
	chromiumPath(t)
	r := startFleet(t, fleetOptions{shards: 8, nodes: 2, rate: 40})
	stopConsumer := r.startConsumer("feathery:{bot:main}:events", "g1")
	testkit.Eventually(t, 90*time.Second, "8 shards ready", func() bool { return r.readyCount(0) == 8 })

	ctx, probs := newBrowser(t, 1400, 1800)
	do(t, ctx, "open the dashboard", chromedp.Navigate("http://"+r.nodes[0].admin.Addr()+"/?refresh=500"))

	// One cell per shard, every one ready (both nodes' shards).
	waitPage(t, ctx, 60*time.Second, "8 cells", `document.querySelectorAll("#grids .cell").length === 8`)
	waitPage(t, ctx, 60*time.Second, "8 ready cells", `document.querySelectorAll('#grids .cell[data-state="ready"]').length === 8`)
	if n := eval[int](t, ctx, `document.querySelectorAll("#grids .cell").length`); n != 8 {
		t.Fatalf("grid has %d cells, want 8", n)
	}
	colour := func(shard int) string {
		return eval[string](t, ctx, fmt.Sprintf(`getComputedStyle(document.querySelector(%q)).backgroundColor`, cellSel(shard)))
	}
	readyColour := colour(2)

	// The fake drops shard 2 (node a): its cell changes colour.
	if err := r.fake.CloseShard(2, 4000); err != nil {
		t.Fatal(err)
	}
	waitPage(t, ctx, 60*time.Second, "shard 2's cell to change colour",
		fmt.Sprintf(`getComputedStyle(document.querySelector(%q)).backgroundColor !== %q`, cellSel(2), readyColour))

	// An action without the token is refused.
	do(t, ctx, "open shard 6", chromedp.Click(chromedp.CSS(cellSel(6))))
	waitPage(t, ctx, 30*time.Second, "the reconnect button", `!!document.getElementById("reconnect-btn")`)
	do(t, ctx, "reconnect without token", chromedp.Click(chromedp.CSS("#reconnect-btn")))
	waitPage(t, ctx, 30*time.Second, "the refusal", `document.getElementById("action-result").textContent.includes("refused")`)
	if c := colour(6); c != readyColour {
		t.Fatalf("shard 6 changed colour (%s) after a refused action", c)
	}
	// With the token it works: shard 6 runs on node b, the page is node a's.
	do(t, ctx, "enter the token", chromedp.SendKeys(chromedp.CSS("#token"), adminToken))
	do(t, ctx, "reconnect with token", chromedp.Click(chromedp.CSS("#reconnect-btn")))
	waitPage(t, ctx, 30*time.Second, "the action done", `document.getElementById("action-result").textContent.includes("done (202)")`)
	waitPage(t, ctx, 60*time.Second, "shard 6's cell to change colour",
		fmt.Sprintf(`getComputedStyle(document.querySelector(%q)).backgroundColor !== %q`, cellSel(6), readyColour))
	if got := eval[string](t, ctx, `sessionStorage.getItem("feathery-token")`); got != adminToken {
		t.Errorf("the token is not kept in the tab's session storage")
	}
	if got := eval[int](t, ctx, `localStorage.length + document.cookie.length`); got != 0 {
		t.Errorf("the page stores something beyond the tab (localStorage or cookies)")
	}

	// The lag panel: caught up while the consumer reads, growing once it stops.
	lagExpr := `(() => { const c = document.querySelector('#streams tr[data-group="g1"] td.lag'); return c ? Number(c.textContent.replace(/,/g, "")) : -1; })()`
	waitPage(t, ctx, 60*time.Second, "g1's lag near zero", lagExpr+` >= 0 && `+lagExpr+` < 20`)
	stopConsumer()
	waitPage(t, ctx, 60*time.Second, "g1's lag above 20", lagExpr+` > 20`)
	first := eval[float64](t, ctx, lagExpr)
	waitPage(t, ctx, 60*time.Second, "g1's lag growing", fmt.Sprintf(`%s > %v`, lagExpr, first+30))
	waitPage(t, ctx, 60*time.Second, "g1 shown falling behind", `document.querySelector('#streams tr[data-group="g1"]').className === "bad" && document.getElementById("problems").className === "bad"`)

	// No console errors; the one failed request is the refused action.
	refused := "status of 401 (Unauthorized) (http://" + r.nodes[0].admin.Addr() + "/api/console/shards/main/6/reconnect)"
	if bad := probs.unexpected(refused); len(bad) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(bad, "\n"))
	}
}

// TestDashboard_Screenshots writes the dashboard at 1,000 shards (two
// nodes of 500) to $FEATHERY_SCREENSHOTS (make screenshots: docs/).
func TestDashboard_Screenshots(t *testing.T) {
	dir := os.Getenv("FEATHERY_SCREENSHOTS")
	if dir == "" {
		t.Skip("set FEATHERY_SCREENSHOTS=dir (make screenshots) to write the dashboard screenshots")
	}
	chromiumPath(t)
	r := startFleet(t, fleetOptions{shards: 1000, nodes: 2, rate: 300, guilds: 20, heartbeat: 30 * time.Second})
	stop := r.startConsumer("feathery:{bot:main}:events", "g1")
	testkit.Eventually(t, 10*time.Minute, "1000 shards ready", func() bool { return r.readyCount(0) == 1000 })
	// A few problems, as an operator would see them: a shard stopped for
	// good, shards that just reconnected, a group falling behind.
	_ = r.fake.CloseShard(17, 4014)
	for _, s := range []int{100, 101, 102, 640} {
		_ = r.fake.CloseShard(s, 4000)
	}
	stop()
	ctx, _ := newBrowser(t, 1500, 1200)
	do(t, ctx, "open the dashboard", chromedp.Navigate("http://"+r.nodes[0].admin.Addr()+"/"))
	waitPage(t, ctx, 120*time.Second, "1000 cells", `document.querySelectorAll("#grids .cell").length === 1000`)
	waitPage(t, ctx, 60*time.Second, "the lag growing", `document.querySelector('#streams tr[data-group="g1"]') && document.querySelector('#streams tr[data-group="g1"]').className === "bad"`)
	do(t, ctx, "open a shard", chromedp.Click(chromedp.CSS(cellSel(17))))
	time.Sleep(3 * time.Second) // let the chart gather a few more seconds (a picture, not a check)
	shot := func(name string, a chromedp.Action[[]byte]) {
		cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		b, err := chromedp.Run(cctx, a)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", filepath.Join(dir, name), len(b))
	}
	shot("dashboard-1000-shards.png", chromedp.FullScreenshot(100))
	shot("dashboard-grid-1000-shards.png", chromedp.Screenshot(chromedp.CSS("#grids")))
}
