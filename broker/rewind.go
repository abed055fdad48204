package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/feathery/feathery/luascripts"
)

// CheckpointIncident is a shard's stored checkpoint found other than this
// process wrote it (or resumed from): Redis lost writes or data, or
// something else wrote the key. It is open from the refusal until the
// shard's checkpoint is back at (or past) Published, or the shard moved to
// another session.
type CheckpointIncident struct {
	Bot   string `json:"bot"`
	Shard int    `json:"shard"`
	Key   string `json:"key"`
	// Status is the publish script's verdict: "behind", "gone", "ahead",
	// "wrongtype" or "garbage".
	Status string `json:"status"`
	// Session and Published: what this process had published (or
	// resumed from) when the checkpoint was found changed.
	Session   string `json:"session"`
	Published int64  `json:"published"`
	// StoredSession and StoredSeq are what the checkpoint held, as found.
	StoredSession string `json:"stored_session,omitempty"`
	StoredSeq     string `json:"stored_seq,omitempty"`
	// ResumeFrom is the seq the shard resumes Session from, so that
	// Discord replays what the streams lack.
	ResumeFrom int64     `json:"resume_from"`
	At         time.Time `json:"at"`
}

// Describe is a one-line account of the incident for logs and /healthz.
func (c *CheckpointIncident) Describe() string {
	stored := "absent"
	switch {
	case c.Status == string(luascripts.StatusWrongType):
		stored = "not a hash"
	case c.StoredSession != "" || c.StoredSeq != "":
		stored = fmt.Sprintf("session %q seq %q", c.StoredSession, c.StoredSeq)
	}
	what := map[string]string{
		"behind":    "went back: Redis lost writes",
		"gone":      "is gone: Redis lost its data",
		"ahead":     "is ahead of what this process published: something else wrote it",
		"wrongtype": "has the wrong type: something else wrote it",
		"garbage":   "holds garbage: something else wrote it",
	}[c.Status]
	if what == "" {
		what = "was refused (" + c.Status + ")"
	}
	return fmt.Sprintf("bot %s shard %d: checkpoint %s %s (found %s, published session %s seq %d); resuming from seq %d",
		c.Bot, c.Shard, c.Key, what, stored, c.Session, c.Published, c.ResumeFrom)
}

// CheckpointError is what Publish returns for a shard's events after its
// stored checkpoint was found changed, until the shard resumes from that
// checkpoint: the shard should drop its connection, load the stored
// checkpoint and RESUME from it, so Discord replays what Redis lost. It
// implements gateway.RewoundError (CheckpointRewound).
type CheckpointError struct {
	Bot        string
	Shard      int
	Key        string
	Status     string
	Session    string
	ResumeFrom int64
}

func (e *CheckpointError) Error() string {
	return fmt.Sprintf("bot %s shard %d: checkpoint %s %s: resume session %s from seq %d", e.Bot, e.Shard, e.Key, e.Status, e.Session, e.ResumeFrom)
}

// CheckpointRewound reports that the shard must resume from the stored
// checkpoint.
func (e *CheckpointError) CheckpointRewound() bool { return true }

// rewind is a shard's gate after a refusal: events of session above
// resumeFrom+1 are refused until the shard resumes.
type rewind struct {
	session    string
	resumeFrom int64
	status     string
}

func (g *rewind) err(sq *shardQueue) error {
	return &CheckpointError{Bot: sq.b.name, Shard: sq.shard, Key: sq.ckKey, Status: g.status, Session: g.session, ResumeFrom: g.resumeFrom}
}

// refused handles a batch the publish script refused: it makes the stored
// checkpoint one the shard can resume from (overwriting it with what this
// process published when it is gone, ahead, or not a checkpoint), reports
// the incident, and gates the shard's events until it resumes from there.
// The caller drops run. False when stopped.
func (sq *shardQueue) refused(ctx context.Context, run []*item, re *luascripts.RefusedError) bool {
	p := sq.b.p
	session := run[0].ev.Session
	for {
		exp := sq.expectation(run)
		inc := &CheckpointIncident{
			Bot: sq.b.name, Shard: sq.shard, Key: sq.ckKey, Status: string(re.Status),
			Session: session, Published: exp.Seq, StoredSession: re.StoredSession, StoredSeq: re.StoredSeq,
			At: time.Now(),
		}
		if re.Status == luascripts.StatusBehind {
			// What the streams hold is what the checkpoint says: resume
			// from it, or, when it is another session, from the start of
			// ours.
			if re.StoredSession == session {
				inc.ResumeFrom = max(re.Seq(), 0)
			}
			sq.ck, sq.ckWritten = checkpoint{session: session, seq: inc.ResumeFrom}, false
			sq.report(inc)
			break
		}
		// Overwrite the checkpoint with what this process published.
		inc.ResumeFrom = exp.Seq
		if re.Status == luascripts.StatusGone {
			// Redis lost its data: consumer groups first, then the
			// checkpoint, so nothing published from now on misses a group.
			sq.b.groupsLost()
			if err := sq.retry(ctx, func() error { return sq.b.ensureGroups(ctx) }); err != nil {
				return false
			}
		}
		status := re.Status
		var again *luascripts.RefusedError
		err := sq.retry(ctx, func() error {
			again = nil
			sq.buildRepair(run, exp, status)
			_, err := luascripts.Publish(ctx, p.c, &sq.sc.args)
			if errors.As(err, &again) {
				return nil // found changed again: the loop handles it
			}
			return err
		})
		if err != nil {
			return false
		}
		sq.report(inc)
		if again != nil {
			re = again
			continue
		}
		sq.ck, sq.ckWritten = checkpoint{session: session, seq: exp.Seq}, true
		break
	}
	ck := sq.ck
	sq.ckStat.Store(&ck)
	sq.refusals.Add(1)
	inc := sq.incident.Load()
	sq.pubMu.Lock()
	sq.gen++
	sq.curGen = sq.gen
	sq.gate = &rewind{session: session, resumeFrom: inc.ResumeFrom, status: inc.Status}
	sq.pubMu.Unlock()
	return true
}

// retry runs f until it succeeds, backing off like a failed batch; the
// error is ctx's when stopped.
func (sq *shardQueue) retry(ctx context.Context, f func() error) error {
	backoff := sq.b.p.cfg.RetryMin
	for {
		err := f()
		if err == nil {
			sq.recovered()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		sq.failed(err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		backoff = min(backoff*2, sq.b.p.cfg.RetryMax)
	}
}

// buildRepair fills the script arguments for a call without entries that
// overwrites a checkpoint found as status with what exp says was published.
func (sq *shardQueue) buildRepair(run []*item, exp luascripts.Expectation, status luascripts.CheckpointStatus) {
	sc := sq.sc
	last := &run[len(run)-1].ev
	session := run[0].ev.Session
	sc.args = luascripts.PublishArgs{} // the refused call's args may still be referenced
	sc.args.Build(&luascripts.PublishCall{
		Checkpoint: sq.ckKey,
		Streams:    []luascripts.PublishStream{{Key: sq.b.conf.Load().streams[0].key}},
		Session:    session,
		Seq:        exp.Seq,
		ResumeURL:  last.ResumeURL,
		ShardCount: last.ShardCount,
		Intents:    last.Intents,
		Bot:        sq.b.name,
		Shard:      sq.shard,
		Expect:     exp,
		Repair:     status,
	})
}

// report opens the incident: log line, control events, /healthz.
func (sq *shardQueue) report(inc *CheckpointIncident) {
	p := sq.b.p
	sq.incident.Store(inc)
	p.log.Error("checkpoint found changed; the shard resumes from the stored checkpoint",
		slog.String("bot", inc.Bot), slog.Int("shard", inc.Shard), slog.String("key", inc.Key),
		slog.String("status", inc.Status), slog.String("stored_session", inc.StoredSession),
		slog.String("stored_seq", inc.StoredSeq), slog.String("session", inc.Session),
		slog.Int64("published", inc.Published), slog.Int64("resume_from", inc.ResumeFrom))
	p.Control(ControlEvent{
		Bot: inc.Bot, Shard: inc.Shard, Kind: ControlCheckpoint, Session: inc.Session, Seq: inc.Published,
		Key: inc.Key, Status: inc.Status, StoredSession: inc.StoredSession, StoredSeq: inc.StoredSeq,
		Err: inc.Describe(), At: inc.At,
	})
	if inc.Status == string(luascripts.StatusGone) {
		p.redisLost(inc)
		if inc.Published > 0 {
			// What this session published is gone with the data.
			p.Control(ControlEvent{
				Bot: inc.Bot, Shard: inc.Shard, Kind: ControlGap, Session: inc.Session, Seq: 0, ToSeq: inc.Published,
				Err: "redis lost its data", At: inc.At,
			})
		}
	}
}

// repaired closes inc: the shard's checkpoint is back.
func (sq *shardQueue) repaired(inc *CheckpointIncident) {
	sq.incident.CompareAndSwap(inc, nil)
	sq.b.p.log.Info("checkpoint repaired", slog.String("bot", inc.Bot), slog.Int("shard", inc.Shard),
		slog.String("key", inc.Key), slog.String("session", sq.ck.session), slog.Int64("seq", sq.ck.seq))
}

// redisLostEvery rate-limits the "Redis lost its data" report: one log
// line and control event for the shards that find it within this time.
const redisLostEvery = time.Minute

// redisLost reports, once per redisLostEvery, that Redis lost its data.
func (p *Publisher) redisLost(inc *CheckpointIncident) {
	now := time.Now()
	p.lostMu.Lock()
	report := now.Sub(p.lostAt) >= redisLostEvery
	if report {
		p.lostAt = now
	}
	p.lostMu.Unlock()
	p.lostCount.Add(1)
	if !report {
		return
	}
	p.log.Error("redis lost its data (FLUSHALL, or a restart or failover without it): consumer groups are created again, checkpoints rewritten; what the streams held is gone",
		slog.String("bot", inc.Bot), slog.Int("shard", inc.Shard), slog.String("key", inc.Key))
	p.Control(ControlEvent{Bot: inc.Bot, Shard: inc.Shard, Kind: ControlRedisLost, Key: inc.Key,
		Err: "redis lost its data: checkpoint " + inc.Key + " is gone", At: inc.At})
}

// Incidents returns the open checkpoint incidents, by bot and shard.
func (p *Publisher) Incidents() []CheckpointIncident {
	var out []CheckpointIncident
	for _, b := range *p.bots.Load() {
		for _, sq := range b.all() {
			if inc := sq.incident.Load(); inc != nil {
				out = append(out, *inc)
			}
		}
	}
	sortIncidents(out)
	return out
}

// DeleteSession deletes the checkpoint of (bot, shard) on purpose (the
// shard gives its session up): the session's events still queued are then
// published without expecting the checkpoint. It implements the gateway's
// SessionStore.Delete.
func (p *Publisher) DeleteSession(ctx context.Context, bot string, shard int) error {
	if b := (*p.bots.Load())[bot]; b != nil {
		if sq := b.lookup(shard); sq != nil {
			sq.forgetBefore.Store(sq.enq.Load())
		}
	}
	key := p.keys.Session(bot, shard)
	if err := p.c.Do(ctx, p.c.B().Del().Key(key).Build()).Error(); err != nil {
		return fmt.Errorf("delete session %s: %w", key, err)
	}
	return nil
}

func sortIncidents(s []CheckpointIncident) {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Bot != s[j].Bot {
			return s[i].Bot < s[j].Bot
		}
		return s[i].Shard < s[j].Shard
	})
}
