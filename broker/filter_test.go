package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/gateway/testkit"
	"github.com/redis/rueidis"
)

// A guild's prefix changed by another client takes effect within a second,
// with rueidis client-side caching (real Redis) and with the local TTL
// cache (embedded miniredis, no CLIENT TRACKING).
func TestPrefixFilter_GuildPrefixChange(t *testing.T) {
	t.Run("ClientSideCaching", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		c, err := broker.NewClient(broker.RedisConfig{URL: srv.URL()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		if !c.ClientSideCaching() {
			t.Fatal("client-side caching is off")
		}
		testGuildPrefixChange(t, c, srv.Client(t))
	})
	t.Run("Embedded", func(t *testing.T) {
		c, err := broker.NewClient(broker.RedisConfig{Embedded: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		other, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{c.Addr()}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(other.Close)
		testGuildPrefixChange(t, c, other)
	})
}

func testGuildPrefixChange(t *testing.T, c *broker.Client, other rueidis.Client) {
	const guild = 41771983423143937
	keys := broker.NewKeys("")
	p := newPublisher(t, c.Redis(), broker.PublisherConfig{
		ClientSideCaching: c.ClientSideCaching(),
		Bots:              []broker.BotConfig{{Name: "b", Filters: broker.FilterConfig{PrefixFilter: true, Prefixes: []string{"!"}}}},
	})
	seq := int64(0)
	send := func(content string) int64 {
		seq++
		e := ev(seq, "MESSAGE_CREATE", fmt.Sprintf(`{"guild_id":"%d","content":%q,"author":{"id":"1"}}`, guild, content))
		e.GuildID = guild
		mustPublish(t, p, e)
		flush(t, p, "b", 0)
		return seq
	}
	published := func(s int64) bool {
		for _, e := range readStream(t, c.Redis(), keys.Events("b")) {
			if e.seq(t) == s {
				return true
			}
		}
		return false
	}
	if s := send("!ping"); !published(s) {
		t.Fatalf("default prefix: not published")
	}
	if s := send("?ping"); published(s) {
		t.Fatalf("unknown prefix ?: published")
	}
	// Another client adds "?" for the guild.
	if err := other.Do(t.Context(), other.B().Sadd().Key(keys.GuildPrefixes(guild, "b")).Member("?").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// In force within a second (prefix TTL <= 1s); the deadline leaves room
	// for a loaded machine.
	testkit.EventuallyWhy(t, 5*time.Second, func() string {
		if s := send("?ping"); !published(s) {
			return "message with the guild's new prefix still dropped"
		}
		return ""
	})
	// And removed again.
	if err := other.Do(t.Context(), other.B().Srem().Key(keys.GuildPrefixes(guild, "b")).Member("?").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWhy(t, 5*time.Second, func() string {
		if s := send("?ping"); published(s) {
			return "message with the removed prefix still published"
		}
		return ""
	})
}

// Bot and webhook messages are dropped when configured, mentions and
// interactions pass, and every counter matches what was dropped.
func TestFilters_Messages(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{Bots: []broker.BotConfig{
		{Name: "b", Filters: broker.FilterConfig{
			DropBotMessages: true, DropWebhookMessages: true, PrefixFilter: true, Prefixes: []string{"!", "bot "},
			Ignore: []string{"PRESENCE_*"}, CacheOnly: []string{"GUILD_MEMBER_*"},
		}},
		{Name: "open"}, // no filters
	}})
	type msg struct {
		t, d string
		keep bool
	}
	msgs := []msg{
		{"READY", `{"user":{"id":"555","bot":true},"session_id":"s1"}`, true},
		{"MESSAGE_CREATE", `{"content":"!help","author":{"id":"1"}}`, true},
		{"MESSAGE_CREATE", `{"content":"bot help","author":{"id":"1","bot":false}}`, true},
		{"MESSAGE_CREATE", `{"content":"hello","author":{"id":"1"}}`, false},               // prefix
		{"MESSAGE_CREATE", `{"content":"<@555> help","author":{"id":"1"}}`, true},          // mention learnt from READY
		{"MESSAGE_CREATE", `{"content":"<@!555> help","author":{"id":"1"}}`, true},         // nickname mention
		{"MESSAGE_CREATE", `{"content":"<@556> help","author":{"id":"1"}}`, false},         // someone else
		{"MESSAGE_CREATE", `{"content":"!help","author":{"id":"2","bot":true}}`, false},    // bot
		{"MESSAGE_UPDATE", `{"content":"edited","author":{"id":"2","bot":true}}`, false},   // bot
		{"MESSAGE_CREATE", `{"content":"!x","webhook_id":"9","author":{"id":"9"}}`, false}, // webhook
		{"MESSAGE_UPDATE", `{"id":"3","webhook_id":"9"}`, false},                           // webhook
		{"MESSAGE_UPDATE", `{"content":"no prefix on updates","author":{"id":"1"}}`, true},
		{"MESSAGE_UPDATE", `{"id":"3","embeds":[]}`, true},                         // partial update
		{"MESSAGE_CREATE", `{"content":"!x","webhook_id":null,"author":{}}`, true}, // null webhook_id
		{"MESSAGE_CREATE", `{"author":{"id":"1"}}`, true},                          // no content: kept
		{"MESSAGE_CREATE", `not json`, true},                                       // unreadable: kept
		{"INTERACTION_CREATE", `{"type":2,"data":{"name":"help"}}`, true},
		{"MESSAGE_DELETE", `{"id":"3"}`, true},
		{"PRESENCE_UPDATE", `{}`, false},
		{"GUILD_MEMBER_ADD", `{}`, false},
	}
	var want []int64
	for i, m := range msgs {
		seq := int64(i + 1)
		mustPublish(t, p, ev(seq, m.t, m.d))
		if m.keep {
			want = append(want, seq)
		}
		o := ev(seq, m.t, m.d)
		o.Bot = "open"
		mustPublish(t, p, o)
	}
	flush(t, p, "b", 0)
	flush(t, p, "open", 0)
	got := seqs(t, readStream(t, c, "feathery:{bot:b}:events"))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("published seqs %v, want %v", got, want)
	}
	st := shardStats(p, "b", 0)
	wantF := map[string]uint64{broker.FilterBot: 2, broker.FilterWebhook: 2, broker.FilterPrefix: 2, broker.FilterIgnore: 1, broker.FilterCacheOnly: 1}
	if fmt.Sprint(st.Filtered) != fmt.Sprint(wantF) {
		t.Errorf("filtered %v, want %v", st.Filtered, wantF)
	}
	if st.Published != uint64(len(want)) {
		t.Errorf("published %d, want %d", st.Published, len(want))
	}
	if n := len(readStream(t, c, "feathery:{bot:open}:events")); n != len(msgs) {
		t.Errorf("unfiltered bot: %d entries, want %d", n, len(msgs))
	}
	// The gauges polled every second agree with Stats.
	gauges := p.AppendGauges(nil)
	if len(gauges) != 2 {
		t.Fatalf("gauges: got %+v, want one per shard queue (b/0, open/0)", gauges)
	}
	for _, g := range gauges {
		st := shardStats(p, g.Bot, g.Shard)
		var filtered uint64
		for _, n := range st.Filtered {
			filtered += n
		}
		if g.Published != st.Published || g.Filtered != filtered || g.QueueDepth != st.QueueDepth {
			t.Errorf("gauge %+v, want published %d, filtered %d, depth %d as in Stats", g, st.Published, filtered, st.QueueDepth)
		}
	}
}

// A configured bot user id is used without READY.
func TestFilters_ConfiguredMention(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	c := srv.Client(t)
	p := newPublisher(t, c, broker.PublisherConfig{Bots: []broker.BotConfig{
		{Name: "b", Filters: broker.FilterConfig{PrefixFilter: true, BotUserID: "777"}},
	}})
	mustPublish(t, p, ev(1, "MESSAGE_CREATE", `{"content":"<@777> hi"}`))
	mustPublish(t, p, ev(2, "MESSAGE_CREATE", `{"content":"hi <@777>"}`))
	flush(t, p, "b", 0)
	if got := seqs(t, readStream(t, c, "feathery:{bot:b}:events")); fmt.Sprint(got) != "[1]" {
		t.Errorf("published %v, want [1]", got)
	}
}
