package main

import (
	"context"
	"strings"
	"testing"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// nopSink is a gateway.Sink that drops everything.
type nopSink struct{}

func (nopSink) Publish(context.Context, *gateway.Event) error { return nil }

func (nopSink) Flush(context.Context, string, int) error { return nil }

// FuzzParseConfig: any file gives a config or a one-line error; never a
// panic, and never the token that ${TOKEN} expands to.
func FuzzParseConfig(f *testing.F) {
	f.Add(exampleConfig)
	f.Add([]byte("bots:\n  - name: main\n    token: ${TOKEN}\n    intents: [GUILDS]\n    shard_ids: \"0-3\"\n"))
	f.Add([]byte("redis: {url: \"redis://:${TOKEN}@h:1/0\"}\nbots: [{name: a, token: \"${TOKEN}\", shards: 4}]\n"))
	f.Add([]byte("bots: &a [{name: x, token: y}]\nadmin: *a\n"))
	f.Add([]byte("bots:\n  - name: main\n    token: ${TOKEN}\n    routes: [{events: [\"[\"], stream: s}]\n"))
	f.Add([]byte("bots:\n  - name: main\n    token: ${TOKEN}\n    routes: [{events: [X], stream: \"session:x\", groups: [\"g{1}\"]}]\n"))
	f.Add([]byte("publisher: {queue_size: 2000000000}\nbots: [{name: a, token: t, large_threshold: 300, compression: zstd}]\n"))
	env := envOf(map[string]string{"TOKEN": testToken})
	f.Fuzz(func(t *testing.T, doc []byte) {
		cfg, err := parseConfig("f.yaml", doc, env)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error spans lines: %q", msg)
			}
			if strings.Contains(msg, testToken) {
				t.Fatalf("error shows the token: %q", msg)
			}
			return
		}
		if len(cfg.Bots) == 0 {
			t.Fatal("a config without bots validated")
		}
		for _, b := range cfg.Bots {
			if b.Name == "" || b.Token == "" {
				t.Fatalf("bot without name or token validated: %+v", b)
			}
		}
		// What validated is what the constructors run accepts: the same
		// validators (broker.NewClient, NewPublisher, NewCache and
		// gateway.NewManager run them first).
		pc := publisherConfig(cfg, false, nil)
		if err := pc.Validate(); err != nil {
			t.Fatalf("validated config rejected by the broker: %v", err)
		}
		if err := redisConfig(cfg).Validate(); err != nil {
			t.Fatalf("validated redis section rejected by the broker: %v", err)
		}
		cc, _ := cacheConfig(cfg, nil)
		if err := broker.CheckCacheNamespace(cc.Namespace); err != nil {
			t.Fatalf("validated cache namespace rejected: %v", err)
		}
		for name, bc := range cc.Bots {
			if err := bc.Validate(); err != nil {
				t.Fatalf("validated cache of %s rejected: %v", name, err)
			}
		}
		if _, err := gateway.NewManager(gateway.ManagerConfig{Bots: gatewayBots(cfg), Sink: nopSink{}}); err != nil {
			t.Fatalf("validated bots rejected by the gateway: %v", err)
		}
	})
}
