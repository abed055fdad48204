package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

func TestWiring(t *testing.T) {
	doc := `
redis: {url: "redis://:pw@localhost:6379/1", prefix: fx, username: u, dial_timeout: 2s}
publisher: {queue_size: 64, max_delay: 5ms, gather_delay: 2ms}
bots:
  - name: a
    token: tok-a-123456
    intents: [GUILDS, GUILD_MESSAGES]
    shards: 8
    shard_ids: "2-3"
    compression: zstd-stream
    large_threshold: 100
    request_members: true
    filters: {ignore: [TYPING_START], cache_only: [PRESENCE_UPDATE], drop_bots: true, prefixes: ["!"]}
    routes: [{events: ["MESSAGE_*"], stream: msgs, maxlen: 10, groups: [w]}]
    default_stream: {max_age: 1h}
    cache: {namespace: ns-a, entities: [guilds, members, users]}
  - name: b
    token: tok-b-123456
    filters: {mention_prefix: true}
    cache: {enabled: false}
  - name: c
    token: tok-c-123456
`
	cfg, err := parseConfig("w.yaml", []byte(doc), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}

	rc := redisConfig(cfg)
	if rc.URL != cfg.Redis.URL || rc.Embedded || rc.Username != "u" || rc.DialTimeout != 2*time.Second {
		t.Errorf("redis: %+v", rc)
	}

	gb := gatewayBots(cfg)
	want := gateway.BotConfig{
		Name: "a", Token: "tok-a-123456", Intents: 1 | 512, Shards: 8, ShardIDs: []int{2, 3},
		Compression: gateway.CompressionZstdStream, LargeThreshold: 100, RequestMembers: true,
	}
	if !reflect.DeepEqual(gb[0], want) {
		t.Errorf("gateway bot a:\ngot  %+v\nwant %+v", gb[0], want)
	}
	if gb[1].Compression != gateway.CompressionZlibStream || gb[1].Shards != 0 || gb[1].ShardIDs != nil || gb[1].Intents != intentsUnprivileged {
		t.Errorf("gateway bot b defaults: %+v", gb[1])
	}

	pc := publisherConfig(cfg, false, nil)
	if err := pc.Validate(); err != nil {
		t.Fatalf("the broker rejects the mapped config: %v", err)
	}
	if pc.Prefix != "fx" || pc.QueueSize != 64 || pc.MaxDelay != 5*time.Millisecond || pc.GatherDelay != 2*time.Millisecond {
		t.Errorf("publisher: %+v", pc)
	}
	a := pc.Bots[0]
	if !a.Filters.DropBotMessages || a.Filters.DropWebhookMessages || !a.Filters.PrefixFilter ||
		!reflect.DeepEqual(a.Filters.Prefixes, []string{"!"}) || !reflect.DeepEqual(a.Filters.CacheOnly, []string{"PRESENCE_UPDATE"}) {
		t.Errorf("filters a: %+v", a.Filters)
	}
	if len(a.Routes) != 1 || a.Routes[0].Stream != "msgs" || a.Routes[0].MaxLen != 10 || a.Default.MaxAge != time.Hour {
		t.Errorf("routes a: %+v default %+v", a.Routes, a.Default)
	}
	if b := pc.Bots[1]; !b.Filters.PrefixFilter || len(b.Filters.Prefixes) != 0 {
		t.Errorf("mention_prefix alone must turn the prefix filter on without prefixes: %+v", b.Filters)
	}
	if c := pc.Bots[2]; c.Filters.PrefixFilter || c.Filters.DropBotMessages {
		t.Errorf("bot c has filters: %+v", c.Filters)
	}

	cc, on := cacheConfig(cfg, nil)
	if !on || cc.Namespace != "fx:cache" {
		t.Fatalf("cache: on %v namespace %q", on, cc.Namespace)
	}
	wantCache := map[string]broker.CacheBotConfig{
		"a": {Namespace: "ns-a", Entities: []string{"guilds", "members", "users"}},
		"b": {Disabled: true},
	}
	if !reflect.DeepEqual(cc.Bots, wantCache) {
		t.Errorf("cache bots: got %+v, want %+v", cc.Bots, wantCache)
	}

	// Only bots without a cache: no cache writer at all.
	off, err := parseConfig("w.yaml", []byte("bots: [{name: x, token: t-123456, cache: {enabled: false}}]"), envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, on := cacheConfig(off, nil); on {
		t.Error("cache on although every bot turned it off")
	}
}

// TestWiring_ExampleAcceptedByBroker: what init writes maps onto a
// publisher config the broker accepts.
func TestWiring_ExampleAcceptedByBroker(t *testing.T) {
	cfg, err := parseConfig("feathery.yaml", exampleConfig, envOf(map[string]string{"DISCORD_TOKEN": testToken}))
	if err != nil {
		t.Fatal(err)
	}
	pc := publisherConfig(cfg, false, nil)
	if err := pc.Validate(); err != nil {
		t.Fatal(err)
	}
}
