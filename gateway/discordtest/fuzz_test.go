package discordtest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws/wsutil"
)

var fuzzSeeds = []string{
	`{"op":1,"d":null}`,
	`{"op":1,"d":5}`,
	`{"op":2,"d":{"token":"fake-token","intents":513,"properties":{"os":"linux"},"shard":[0,1]}}`,
	`{"op":2,"d":{"token":"fake-token","intents":"x","properties":{}}}`,
	`{"op":2,"d":{"token":"fake-token","intents":1,"properties":{},"shard":[0]}}`,
	`{"op":2,"d":{"token":"fake-token","intents":1,"properties":{},"large_threshold":9}}`,
	`{"op":6,"d":{"token":"fake-token","session_id":"x","seq":1}}`,
	`{"op":6,"d":{"token":"fake-token","session_id":"x","seq":"1"}}`,
	`{"op":8,"d":{"guild_id":"1","query":"","limit":0}}`,
	`{"op":3,"d":{}}`,
	`{"op":99}`,
	`{"op":null}`,
	`[]`,
	`{"op":1,"d":1e400}`,
	"\xff\xfe",
	``,
}

// FuzzDecodeIdentify: the payload and IDENTIFY decoders never panic, and a
// payload that is not JSON is always a decode error.
func FuzzDecodeIdentify(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		op, d, err := decodePayload(p, 4096)
		if !json.Valid(p) && err == nil {
			t.Fatalf("invalid JSON %q decoded as op %d", p, op)
		}
		if err != nil {
			return
		}
		switch op {
		case 2:
			_, _, shard, code, _ := decodeIdentify(d, []string{"fake-token"}, false)
			if code == 0 && (shard[1] < 1 || shard[0] < 0 || shard[0] >= shard[1]) {
				t.Fatalf("accepted shard %v", shard)
			}
			if code != 0 && closeReasons[code] == "" {
				t.Fatalf("unknown close code %d", code)
			}
		}
	})
}

// FuzzGatewayPayload sends each input as a client payload over a real
// connection: the fake answers or closes with a known code (4002 for what is
// not JSON), and never crashes.
func FuzzGatewayPayload(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	s, err := Start(Config{IdentifyWindow: time.Nanosecond, SessionStartRemaining: 1 << 30, SessionStartTotal: 1 << 30, Guilds: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	f.Fuzz(func(t *testing.T, p []byte) {
		c := dialRaw(t, s.GatewayURL()+"?v=10&encoding=json")
		c.hello()
		c.sendRaw(p)
		c.sendRaw([]byte(`{"op":1,"d":null}`))
		for {
			fr, err := c.next(10 * time.Second)
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				if closeReasons[int(ce.Code)] == "" {
					t.Fatalf("input %q: unknown close code %d", p, ce.Code)
				}
				if (!json.Valid(p) || len(p) > 4096) && ce.Code != 4002 {
					t.Fatalf("input %q: close %d, want 4002", p, ce.Code)
				}
				return
			}
			if err != nil {
				t.Fatalf("input %q: %v", p, err)
			}
			if fr.Op == 11 {
				if !json.Valid(p) {
					t.Fatalf("input %q is not JSON but the connection stayed open", p)
				}
				return
			}
		}
	})
}
