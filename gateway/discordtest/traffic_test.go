package discordtest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/gateway/testkit"
)

type msgD struct {
	Content   string `json:"content"`
	WebhookID string `json:"webhook_id"`
	GuildID   string `json:"guild_id"`
	ChannelID string `json:"channel_id"`
	Author    struct {
		ID  string `json:"id"`
		Bot bool   `json:"bot"`
	} `json:"author"`
	Mentions []struct {
		ID string `json:"id"`
	} `json:"mentions"`
}

// TestTrafficIntentsAndMessageVariants: a session only receives events of
// its intents, messages without MESSAGE_CONTENT are empty unless they mention
// the bot, and the generated messages cover every variant.
func TestTrafficIntentsAndMessageVariants(t *testing.T) {
	s := startFake(t, Config{Guilds: 3, Seed: 5, Prefixes: []string{"!", `?"q`}, IdentifyWindow: time.Nanosecond, Shards: 2})
	full, _, _ := connectIdentify(t, s, "", 0, 1, allIntents)
	full.close()
	narrow, _, _ := connectIdentify(t, s, "", 0, 1, intentGuildMessages)
	narrow.close()
	testkit.Eventually(t, waitTimeout, "disconnect", func() bool { return s.Stats().Connections == 0 })
	s.generate(3000)
	l := s.Ledger(0)
	bot := s.BotUserID()
	variants := map[string]int{}
	w := s.Snapshot()
	for _, e := range l[0].Entries {
		if e.T != "MESSAGE_CREATE" {
			continue
		}
		var m msgD
		if err := json.Unmarshal(e.D, &m); err != nil {
			t.Fatalf("bad message %s: %v", e.D, err)
		}
		if _, ok := w.Guilds[m.GuildID]; !ok {
			t.Fatalf("message in unknown guild %s", m.GuildID)
		}
		switch {
		case m.WebhookID != "":
			variants["webhook"]++
		case len(m.Mentions) == 1 && m.Mentions[0].ID == bot && strings.HasPrefix(m.Content, "<@"+bot+">"):
			variants["mention"]++
		case m.Author.Bot:
			variants["bot"]++
		case strings.HasPrefix(m.Content, "!") || strings.HasPrefix(m.Content, `?"q`):
			variants["prefix"]++
		default:
			variants["plain"]++
		}
	}
	for _, v := range []string{"webhook", "mention", "bot", "prefix", "plain"} {
		if variants[v] == 0 {
			t.Errorf("no %s message in %v", v, variants)
		}
	}
	mentions := 0
	for _, e := range l[1].Entries {
		switch e.T {
		case "READY", "GUILD_CREATE", "MESSAGE_CREATE", "INTERACTION_CREATE":
		default:
			t.Fatalf("session with GUILD_MESSAGES only got %s", e.T)
		}
		if e.T != "MESSAGE_CREATE" {
			continue
		}
		var m msgD
		_ = json.Unmarshal(e.D, &m)
		if len(m.Mentions) > 0 {
			mentions++
			if m.Content == "" {
				t.Fatal("a message mentioning the bot lost its content")
			}
		} else if m.Content != "" {
			t.Fatalf("content %q without MESSAGE_CONTENT", m.Content)
		}
	}
	if mentions == 0 {
		t.Fatal("no mention reached the narrow session")
	}
}

// TestRateSpreadsOverShards: live traffic goes to every connected shard,
// each event to the shard of its guild.
func TestRateSpreadsOverShards(t *testing.T) {
	s := startFake(t, Config{Guilds: 20, Shards: 3, IdentifyWindow: time.Nanosecond, Rate: 3000})
	var recs []*recorder
	for shard := 0; shard < 3; shard++ {
		c, _, _ := connectIdentify(t, s, "", shard, 3, allIntents)
		recs = append(recs, record(c))
	}
	for shard, r := range recs {
		testkit.Eventually(t, waitTimeout, "traffic on every shard", func() bool { return r.count() > 50 })
		for _, f := range r.snapshot() {
			var d struct {
				GuildID string `json:"guild_id"`
			}
			_ = json.Unmarshal(f.D, &d)
			if d.GuildID != "" && shardOf(d.GuildID, 3) != shard {
				t.Fatalf("shard %d got an event of guild %s (shard %d)", shard, d.GuildID, shardOf(d.GuildID, 3))
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Shards: -1}, {MaxConcurrency: -2}, {Rate: -1}, {Mix: map[string]float64{"NOPE": 1}},
		{Mix: map[string]float64{"MESSAGE_CREATE": -1}}, {Prefixes: []string{}}, {MaxFrameSize: -1}, {Addr: "nonsense:address:x"},
	} {
		if s, err := Start(cfg); err == nil {
			_ = s.Close()
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}

// TestOverlappingShardCounts: during re-sharding a guild's events go to
// every live session that sees it, whatever its shard count.
func TestOverlappingShardCounts(t *testing.T) {
	s := startFake(t, Config{Guilds: 10, Seed: 9, IdentifyWindow: time.Nanosecond, ResumeWindow: time.Hour})
	a, _, _ := connectIdentify(t, s, "", 0, 1, allIntents)
	a.close()
	b, _, _ := connectIdentify(t, s, "", 1, 2, allIntents)
	b.close()
	if made := s.generate(2000); made != 2000 {
		t.Fatalf("made %d", made)
	}
	one := s.Ledger(0)[0].Entries
	two := s.Ledger(1)[0].Entries
	var fromOne []LedgerEntry
	for _, e := range one {
		if e.Guild != "" && shardOf(e.Guild, 2) == 1 && e.T != "GUILD_CREATE" {
			fromOne = append(fromOne, e)
		}
	}
	var live []LedgerEntry
	for _, e := range two {
		if e.T != "READY" && e.T != "GUILD_CREATE" {
			if shardOf(e.Guild, 2) != 1 {
				t.Fatalf("session [1,2] got guild %s", e.Guild)
			}
			live = append(live, e)
		}
	}
	if len(live) == 0 || len(live) != len(fromOne) {
		t.Fatalf("session [1,2] got %d events, session [0,1] %d of its guilds", len(live), len(fromOne))
	}
	for i := range live {
		if live[i].T != fromOne[i].T || string(live[i].D) != string(fromOne[i].D) {
			t.Fatalf("event %d differs", i)
		}
	}
}

// TestSetRateStopsStaleBatch: a batch the traffic loop sized at a rate that
// SetRate has since changed makes nothing, so no live event follows
// SetRate(0); a batch at the current rate is made in full.
func TestSetRateStopsStaleBatch(t *testing.T) {
	s := startFake(t, Config{Guilds: 4, Seed: 5, ResumeWindow: time.Hour})
	c, _, _ := connectIdentify(t, s, "", 0, 1, allIntents)
	c.close()
	s.mu.Lock()
	stale := s.rateEpoch
	s.mu.Unlock()
	s.SetRate(0)
	before := len(s.Ledger(0)[0].Entries)
	if made := s.generateAt(100, stale); made != 0 {
		t.Fatalf("a batch sized before SetRate(0) made %d events", made)
	}
	if n := len(s.Ledger(0)[0].Entries); n != before {
		t.Fatalf("ledger grew from %d to %d after SetRate(0)", before, n)
	}
	s.mu.Lock()
	current := s.rateEpoch
	s.mu.Unlock()
	if made := s.generateAt(100, current); made != 100 {
		t.Fatalf("a batch at the current rate made %d of 100 events", made)
	}
}
