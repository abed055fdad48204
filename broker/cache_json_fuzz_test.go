package broker

import (
	"bytes"
	"encoding/json"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"
	"testing"
)

// FuzzCacheFields checks the payload splitter against encoding/json: on any
// input it must not panic; on a valid object it must find exactly the
// members encoding/json finds, and strip must give back equal JSON.
func FuzzCacheFields(f *testing.F) {
	for _, s := range []string{
		`{"id":"1","a":[],"b":{"c":"}"},"d":"\"x\\"}`,
		` { "a" : 1 , "b" : [ 1 , { } ] } `,
		`{"user":{"id":"80351110224678912"},"roles":[],"nick":null}`,
		`{}`, `[]`, `{"a":`, `{"a":"\u00e9🎉"}`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := map[string]string{}
		dup := false
		err := eachField(b, func(k, v []byte) bool {
			if _, ok := got[string(k)]; ok {
				dup = true
			}
			got[string(k)] = string(v)
			return true
		})
		_, _ = strip(b, func(k string) bool { return k == "user" }, [2]string{"guild_id", `"1"`})
		_ = eachElem(b, func([]byte) error { return nil })
		var want map[string]json.RawMessage
		if json.Unmarshal(b, &want) != nil || want == nil || dup {
			return
		}
		if err != nil {
			t.Fatalf("eachField(%q): %v", b, err)
		}
		for k, v := range want {
			// keys with escapes are compared raw by eachField; skip them
			if bytes.ContainsRune([]byte(k), '\\') || !bytes.Contains(b, []byte(`"`+k+`"`)) {
				return
			}
			if g, ok := got[k]; !ok || !jsonSame(g, string(v)) {
				t.Fatalf("eachField(%q): %s = %q, want %s", b, k, g, v)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("eachField(%q) found %d members, want %d", b, len(got), len(want))
		}
		s, err := strip(b, nil)
		if err != nil || !jsonSame(string(s), string(b)) {
			t.Fatalf("strip(%q) = %q, %v", b, s, err)
		}
	})
}

func jsonSame(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// FuzzCachePlan feeds arbitrary payloads to every cache-affecting event
// type: reading them must give a call or an error, never a panic.
func FuzzCachePlan(f *testing.F) {
	f.Add([]byte(wGuildCreate(0, 1, []int{1, 2}, false)))
	f.Add([]byte(`{"guild_id":"1","user":{"id":"2"},"roles":[]}`))
	f.Add([]byte(`{"guild_id":"1","members":[{"user":{"id":"x"}}],"presences":null}`))
	f.Add([]byte(`{"guild_id":"1","channel_ids":["a"],"threads":[{}]}`))
	f.Add([]byte(`{"id":"1","unavailable":true}`))
	m, err := miniredis.Run()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(m.Close)
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(client.Close)
	c, err := NewCache(client, CacheConfig{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, d []byte) {
		for typ := range cacheKinds {
			var op cacheOp
			_, _ = c.plan(client.B(), &op, &Event{Bot: "a", Type: typ, Data: d})
		}
	})
}
