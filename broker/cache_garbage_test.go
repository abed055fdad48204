package broker

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/bytedance/sonic"

	"github.com/feathery/feathery/gateway/testkit"
)

// TestCacheGarbageBefore: cached values that are not JSON (written by
// someone else, again and again) are never handed on as before images;
// each read is counted, each key logged once, and the log lines are
// bounded per minute.
func TestCacheGarbageBefore(t *testing.T) {
	client := realRedis(t).client
	logs := &testkit.SyncBuffer{}
	c := newTestCache(t, client, CacheConfig{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	k := NewCacheKeys("")
	g := wid(wGuildBase, 0)
	u := wid(wUserBase, 0)
	ctx := context.Background()
	do := func(cmd ...string) {
		t.Helper()
		if err := client.Do(ctx, client.B().Arbitrary(cmd[0]).Keys(cmd[1]).Args(cmd[2:]...).Build()).Error(); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	apply(t, c, ev("a", "GUILD_CREATE", mustJSON(obj{"id": g, "name": "g", "members": []any{wMember(0, 0, nil, "")},
		"channels": []any{wChannel(g, 0, 0, false)}})))
	const rounds = 40
	for range rounds {
		do("SET", k.CacheGuild(g), `{"id":"`+g+`","name":`)
		do("HSET", k.CacheChannels(g), wid(wChannelBase, 0), "\x00garbage")
		do("HSET", k.CacheMembers(g), u, `{"nick":"x"`)
		do("HSET", k.CacheUsers(u), u, g+`{"username":`)
		b := apply(t, c,
			ev("a", "USER_UPDATE", mustJSON(wUser(0, 2))),
			ev("a", "GUILD_UPDATE", mustJSON(obj{"id": g, "name": "g2"})),
			ev("a", "CHANNEL_UPDATE", mustJSON(wChannel(g, 0, 1, true))),
			ev("a", "GUILD_MEMBER_UPDATE", mustJSON(wMember(0, 1, nil, g))))
		for i, v := range b {
			if v != nil {
				t.Fatalf("event %d: before image %q, want none (the cached value was not JSON)", i, v)
			}
		}
	}
	if got := c.Stats().Garbage; got != 4*rounds {
		t.Errorf("Garbage = %d, want %d", got, 4*rounds)
	}
	if n := strings.Count(logs.String(), "is not JSON"); n != 4 {
		t.Errorf("%d log lines for 4 keys read %d times each, want 4:\n%s", n, rounds, logs.String())
	}
	// A valid value is handed on again.
	do("HSET", k.CacheChannels(g), wid(wChannelBase, 0), `{"id":"1"}`)
	if b := apply(t, c, ev("a", "CHANNEL_UPDATE", mustJSON(wChannel(g, 0, 2, true)))); string(b[0]) != `{"id":"1"}` {
		t.Errorf("valid before image %q", b[0])
	}

	// Many bad keys: at most onceLogBurst lines a minute.
	var evs []*Event
	for i := 1; i <= 30; i++ {
		do("HSET", k.CacheChannels(g), wid(wChannelBase, i), "nope")
		evs = append(evs, ev("a", "CHANNEL_DELETE", mustJSON(wChannel(g, i, 0, true))))
	}
	for i, v := range apply(t, c, evs...) {
		if v != nil && !sonic.Valid(v) {
			t.Fatalf("event %d: before %q is not JSON", i, v)
		}
	}
	if n := strings.Count(logs.String(), "is not JSON"); n != onceLogBurst {
		t.Errorf("%d log lines after 34 bad keys within a minute, want %d", n, onceLogBurst)
	}
	if got := c.Stats().Garbage; got != 4*rounds+30 {
		t.Errorf("Garbage = %d, want %d", got, 4*rounds+30)
	}
}
