package main

import (
	"strings"
	"testing"
)

// FuzzParseConfig: any file gives a config or a one-line error; never a
// panic, and never the token that ${TOKEN} expands to.
func FuzzParseConfig(f *testing.F) {
	f.Add(exampleConfig)
	f.Add([]byte("bots:\n  - name: main\n    token: ${TOKEN}\n    intents: [GUILDS]\n    shard_ids: \"0-3\"\n"))
	f.Add([]byte("redis: {url: \"redis://:${TOKEN}@h:1/0\"}\nbots: [{name: a, token: \"${TOKEN}\", shards: 4}]\n"))
	f.Add([]byte("bots: &a [{name: x, token: y}]\nadmin: *a\n"))
	f.Add([]byte("bots:\n  - name: main\n    token: ${TOKEN}\n    routes: [{events: [\"[\"], stream: s}]\n"))
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
		// What validated maps onto configs the broker accepts.
		pc := publisherConfig(cfg, false, nil)
		if err := pc.Validate(); err != nil {
			t.Fatalf("validated config rejected by the broker: %v", err)
		}
		gatewayBots(cfg)
	})
}
