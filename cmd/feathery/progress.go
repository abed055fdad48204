package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/feathery/feathery/gateway"
)

// progress follows each bot's shards while some are not ready (failed and
// stopped shards left out: they will not become ready): it logs
// "312/1000 shards ready, 41 identifying, ETA 4m10s" every logEvery, then
// "all 1000 shards ready in 5m31s" once they all are. It runs again each
// time shards of a bot stop being ready (a Redis outage, a re-shard).
type progress struct {
	log      *slog.Logger
	logEvery time.Duration
	bots     map[string]*botProgress
}

// botProgress is one bot's start-up or recovery.
type botProgress struct {
	Ready       int `json:"ready"`
	Identifying int `json:"identifying"`
	Resuming    int `json:"resuming"`
	Total       int `json:"total"`
	// Since is when the current stretch of not-ready shards began; zero
	// while all are ready.
	Since time.Time `json:"since,omitzero"`
	// ETASeconds is the estimate until all are ready (from the pace so
	// far); -1 while there is no pace yet, 0 when all are ready.
	ETASeconds float64 `json:"eta_seconds"`
	// ReadyIn is how long the last stretch took, once it is over.
	ReadyIn string `json:"ready_in,omitempty"`

	readyAtStart int
	lastLog      time.Time
}

func newProgress(log *slog.Logger, every time.Duration) *progress {
	return &progress{log: log, logEvery: every, bots: map[string]*botProgress{}}
}

// update counts shards and logs when due; started is the process' start,
// the beginning of the first stretch.
func (p *progress) update(now, started time.Time, shards []gateway.ShardStatus) {
	counts := map[string]*botProgress{}
	for _, s := range shards {
		c := counts[s.Bot]
		if c == nil {
			c = &botProgress{}
			counts[s.Bot] = c
		}
		if s.State == gateway.StateFailed || s.State == gateway.StateStopped {
			continue // never ready again: a problem of its own, not progress
		}
		c.Total++
		switch s.State {
		case gateway.StateReady:
			c.Ready++
		case gateway.StateIdentifying:
			c.Identifying++
		case gateway.StateResuming:
			c.Resuming++
		}
	}
	for bot, c := range counts {
		b := p.bots[bot]
		if b == nil {
			b = &botProgress{Since: started}
			p.bots[bot] = b
		}
		b.Ready, b.Identifying, b.Resuming, b.Total = c.Ready, c.Identifying, c.Resuming, c.Total
		if b.Ready >= b.Total {
			if !b.Since.IsZero() {
				took := now.Sub(b.Since).Round(time.Second)
				b.ReadyIn = took.String()
				p.log.Info(fmt.Sprintf("all %d shards ready in %s", b.Total, took), "bot", bot)
				b.Since = time.Time{}
			}
			b.ETASeconds = 0
			continue
		}
		if b.Since.IsZero() {
			b.Since, b.readyAtStart, b.lastLog, b.ReadyIn = now, b.Ready, now, ""
		}
		b.ETASeconds = -1
		gained, elapsed := b.Ready-b.readyAtStart, now.Sub(b.Since)
		if gained > 0 && elapsed > 0 {
			b.ETASeconds = (elapsed.Seconds() / float64(gained)) * float64(b.Total-b.Ready)
		}
		if now.Sub(b.lastLog) >= p.logEvery {
			b.lastLog = now
			eta := "unknown"
			if b.ETASeconds >= 0 {
				eta = (time.Duration(b.ETASeconds * float64(time.Second))).Round(time.Second).String()
			}
			p.log.Info(fmt.Sprintf("%d/%d shards ready, %d identifying, ETA %s", b.Ready, b.Total, b.Identifying, eta), "bot", bot)
		}
	}
}

// snapshot copies the per-bot progress.
func (p *progress) snapshot() map[string]botProgress {
	out := make(map[string]botProgress, len(p.bots))
	for k, v := range p.bots {
		out[k] = *v
	}
	return out
}
