package broker_test

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
)

// TestPublisher_Reconfigure: filters, routes, groups and new bots take
// effect on the batches after Reconfigure, without stopping the shard's
// queue; events skipped for the hand-over only move the checkpoint; an
// invalid config changes nothing.
func TestPublisher_Reconfigure(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	cfg := broker.PublisherConfig{Bots: []broker.BotConfig{{Name: "b"}}}
	p := newPublisher(t, c, cfg)
	mustPublish(t, p, ev(1, "TYPING_START", `{}`))
	mustPublish(t, p, ev(2, "MESSAGE_CREATE", `{}`))
	flush(t, p, "b", 0)

	cfg.Bots[0].Filters.Ignore = []string{"TYPING_START"}
	cfg.Bots[0].Routes = []broker.Route{{Events: []string{"MESSAGE_*"}, StreamConfig: broker.StreamConfig{Stream: "messages", Groups: []string{"g"}}}}
	cfg.Bots = append(cfg.Bots, broker.BotConfig{Name: "other", Default: broker.StreamConfig{Stream: "all"}})
	if err := p.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, p, ev(3, "TYPING_START", `{}`))
	mustPublish(t, p, ev(4, "MESSAGE_CREATE", `{}`))
	skip := ev(5, "GUILD_CREATE", `{}`)
	skip.Skip = true
	mustPublish(t, p, skip)
	o := ev(1, "MESSAGE_CREATE", `{}`)
	o.Bot = "other"
	mustPublish(t, p, o)
	flush(t, p, "b", 0)
	flush(t, p, "other", 0)

	if got := seqs(t, readStream(t, c, keys.Events("b"))); !reflect.DeepEqual(got, []int64{1, 2}) {
		t.Errorf("events stream holds seqs %v, want [1 2]: TYPING_START ignored and MESSAGE_CREATE routed after the reload", got)
	}
	if got := seqs(t, readStream(t, c, keys.Stream("b", "messages"))); !reflect.DeepEqual(got, []int64{4}) {
		t.Errorf("messages stream holds seqs %v, want [4]", got)
	}
	if got := seqs(t, readStream(t, c, keys.Stream("other", "all"))); !reflect.DeepEqual(got, []int64{1}) {
		t.Errorf("bot added by the reload: stream holds seqs %v, want [1]", got)
	}
	if ck := hgetall(t, c, keys.Session("b", 0)); ck["seq"] != "5" {
		t.Errorf("checkpoint seq %q, want 5: a skipped event still moves it", ck["seq"])
	}
	n, err := c.Do(t.Context(), c.B().XinfoGroups().Key(keys.Stream("b", "messages")).Build()).ToArray()
	if err != nil || len(n) != 1 {
		t.Errorf("groups of the new route's stream: %d (%v), want 1", len(n), err)
	}
	if st := shardStats(p, "b", 0); st.Filtered[broker.FilterIgnore] != 1 {
		t.Errorf("ignore filter counted %d, want 1", st.Filtered[broker.FilterIgnore])
	}

	bad := cfg
	bad.Bots = []broker.BotConfig{{Name: "b", Filters: broker.FilterConfig{Ignore: []string{"["}}}}
	if err := p.Reconfigure(bad); err == nil || !strings.Contains(err.Error(), "bots[0].filters.ignore[0]") {
		t.Errorf("invalid config: got %v, want an error naming bots[0].filters.ignore[0]", err)
	}
	mustPublish(t, p, ev(6, "TYPING_START", `{}`))
	flush(t, p, "b", 0)
	if got := seqs(t, readStream(t, c, keys.Events("b"))); !reflect.DeepEqual(got, []int64{1, 2}) {
		t.Errorf("after a refused reload the events stream holds %v, want [1 2] (the running filters stay)", got)
	}
	if err := p.Reconfigure(broker.PublisherConfig{Prefix: "other"}); err == nil {
		t.Error("a changed prefix was accepted")
	}
}

// TestPublisher_StagePromote: while a new shard set is staged, its events
// keep their checkpoints apart from the old set's of the same shard id
// (both publish without a refusal); Promote makes the new set's session
// the shard's checkpoint.
func TestPublisher_StagePromote(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	p := newPublisher(t, c, broker.PublisherConfig{})
	old := func(seq int64) *broker.Event {
		e := ev(seq, "MESSAGE_CREATE", `{}`)
		e.Session, e.ShardCount = "old", 2
		return e
	}
	staged := func(seq int64) *broker.Event {
		e := ev(seq, "MESSAGE_CREATE", `{}`)
		e.Session, e.ShardCount = "new", 3
		return e
	}
	mustPublish(t, p, old(1))
	if err := p.Stage(t.Context(), "b", 3); err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i <= 5; i++ {
		mustPublish(t, p, old(i))
		mustPublish(t, p, staged(i+10))
	}
	flush(t, p, "b", 0)
	if ck := hgetall(t, c, keys.Session("b", 0)); ck["session"] != "old" || ck["seq"] != "5" {
		t.Errorf("shard checkpoint while staged: %v, want the old set's at 5", ck)
	}
	if ck := hgetall(t, c, keys.Session("b", 0)+"/3"); ck["session"] != "new" || ck["seq"] != "15" {
		t.Errorf("staged checkpoint: %v, want the new set's at 15", ck)
	}
	if err := p.Promote(t.Context(), "b", 3); err != nil {
		t.Fatal(err)
	}
	if ck := hgetall(t, c, keys.Session("b", 0)); ck["session"] != "new" || ck["seq"] != "15" {
		t.Errorf("shard checkpoint right after Promote: %v, want the staged one moved there (new at 15)", ck)
	}
	if n, _ := c.Do(t.Context(), c.B().Exists().Key(keys.Session("b", 0)+"/3", keys.Resharding("b")).Build()).AsInt64(); n != 0 {
		t.Errorf("%d of the staged checkpoint and the re-shard record are left after Promote, want none", n)
	}
	mustPublish(t, p, staged(16))
	flush(t, p, "b", 0)
	if ck := hgetall(t, c, keys.Session("b", 0)); ck["session"] != "new" || ck["seq"] != "16" || ck["shards"] != "3" {
		t.Errorf("shard checkpoint after Promote: %v, want the new set's at 16", ck)
	}
	if got := seqs(t, readStream(t, c, keys.Events("b"))); len(got) != 10 {
		t.Errorf("stream holds seqs %v, want the 5 old and 5 new events", got)
	}
	for _, s := range p.Stats().Shards {
		if s.Errors != 0 || s.LastError != "" {
			t.Errorf("shard %d: %d errors (%s): a set refused the other's checkpoint", s.Shard, s.Errors, s.LastError)
		}
	}
}

// TestPublisher_DropStaged: a re-shard that ends without its cut-over (a
// crash) leaves its staged checkpoints; DropStaged, at the next start,
// returns the sessions they name, but for one already the shard's own
// (promoted), and deletes them and the record of the re-shard.
func TestPublisher_DropStaged(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	keys := broker.NewKeys("")
	p := newPublisher(t, c, broker.PublisherConfig{})
	if got, err := p.DropStaged(t.Context(), "b"); err != nil || got != nil {
		t.Fatalf("DropStaged without a re-shard: %v, %v; want nothing", got, err)
	}
	if err := p.Stage(t.Context(), "b", 3); err != nil {
		t.Fatal(err)
	}
	for shard := range 3 {
		e := ev(int64(7+shard), "MESSAGE_CREATE", `{}`)
		e.Shard, e.Session, e.ShardCount = shard, "new"+strconv.Itoa(shard), 3
		mustPublish(t, p, e)
		flush(t, p, "b", shard)
	}
	// Shard 2's checkpoint already holds its new session.
	if err := c.Do(t.Context(), c.B().Hset().Key(keys.Session("b", 2)).FieldValue().FieldValue("session", "new2").FieldValue("seq", "9").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// A second publisher: the next process.
	next := newPublisher(t, c, broker.PublisherConfig{})
	got, err := next.DropStaged(t.Context(), "b")
	if err != nil {
		t.Fatal(err)
	}
	want := []broker.StagedSession{{Shard: 0, Count: 3, Session: "new0", Seq: 7}, {Shard: 1, Count: 3, Session: "new1", Seq: 8}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DropStaged: %+v, want %+v", got, want)
	}
	for _, k := range []string{keys.Resharding("b"), keys.Session("b", 0) + "/3", keys.Session("b", 1) + "/3", keys.Session("b", 2) + "/3"} {
		if n, _ := c.Do(t.Context(), c.B().Exists().Key(k).Build()).AsInt64(); n != 0 {
			t.Errorf("%s is left after DropStaged", k)
		}
	}
	if ck := hgetall(t, c, keys.Session("b", 2)); ck["session"] != "new2" {
		t.Errorf("shard 2's own checkpoint: %v, want it kept", ck)
	}
	if err := c.Do(t.Context(), c.B().Set().Key(keys.Resharding("b")).Value("many").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := next.DropStaged(t.Context(), "b"); err == nil || !strings.Contains(err.Error(), `"many" is not a shard count`) {
		t.Errorf("DropStaged of a bad record: %v, want an error naming it", err)
	}
}
