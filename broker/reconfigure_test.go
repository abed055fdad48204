package broker_test

import (
	"reflect"
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
	if err := p.Stage("b", 3); err != nil {
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
