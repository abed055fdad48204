package broker

import (
	"log/slog"
	"sync"
	"time"
)

// onceLog logs a warning once per id (until onceLogIDs other ids were
// logged), and at most onceLogBurst lines per onceLogWindow; the lines it
// holds back are counted in the next one. The cache reports with it what
// others wrote into its keys, which repeats for every event that reads
// them.
type onceLog struct {
	mu         sync.Mutex
	seen       map[string]struct{}
	window     time.Time // start of the current window
	lines      int       // lines logged in the window
	suppressed int       // reports not logged since the last line
}

const (
	onceLogIDs    = 10000
	onceLogBurst  = 10
	onceLogWindow = time.Minute
)

// warn logs msg with attrs unless id was logged already or the window's
// lines are spent.
func (g *onceLog) warn(log *slog.Logger, id, msg string, attrs ...any) {
	g.mu.Lock()
	if _, ok := g.seen[id]; ok {
		g.mu.Unlock()
		return
	}
	now := time.Now()
	if now.Sub(g.window) >= onceLogWindow {
		g.window, g.lines = now, 0
	}
	if g.lines >= onceLogBurst {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	if g.seen == nil || len(g.seen) >= onceLogIDs {
		g.seen = make(map[string]struct{})
	}
	g.seen[id] = struct{}{}
	g.lines++
	held := g.suppressed
	g.suppressed = 0
	g.mu.Unlock()
	if held > 0 {
		attrs = append(attrs, "not_logged_since_last", held)
	}
	log.Warn(msg, attrs...)
}

// garbage logs that key (field) held a value that is not JSON, read as
// ev's before image.
func (g *onceLog) garbage(log *slog.Logger, key, field string, ev *Event) {
	id := key
	attrs := []any{"key", key}
	if field != "" {
		id += " " + field
		attrs = append(attrs, "field", field)
	}
	attrs = append(attrs, "bot", ev.Bot, "shard", ev.Shard, "seq", ev.Seq, "type", ev.Type)
	g.warn(log, id, "cache: a cached value is not JSON; the event goes out without a before image (logged once per key)", attrs...)
}
