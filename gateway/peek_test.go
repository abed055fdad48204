package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestPeekEnvelope(t *testing.T) {
	cases := []struct {
		name   string
		in     string
		op     int
		seq    int64
		hasSeq bool
		typ    string
		d      string
	}{
		{"dispatch", `{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"guild_id":"1"}}`, 0, 42, true, "MESSAGE_CREATE", `{"guild_id":"1"}`},
		{"ack", `{"t":null,"s":null,"op":11,"d":null}`, 11, 0, false, "", "null"},
		{"ack docs form", `{"op":11}`, 11, 0, false, "", ""},
		{"hello with spaces", " {\n \"op\" : 10 , \"d\" : {\"heartbeat_interval\":41250,\"_trace\":[\"x\"]} } ", 10, 0, false, "", `{"heartbeat_interval":41250,"_trace":["x"]}`},
		{"invalid session", `{"op":9,"d":false}`, 9, 0, false, "", "false"},
		{"escaped content", `{"op":0,"s":1,"t":"X","d":{"c":"a\"}\\\u00e9"}}`, 0, 1, true, "X", `{"c":"a\"}\\\u00e9"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, err := peekEnvelope([]byte(c.in))
			if err != nil {
				t.Fatalf("peek: %v", err)
			}
			if env.Op != c.op || env.Seq != c.seq || env.HasSeq != c.hasSeq || string(env.T) != c.typ || string(env.D) != c.d {
				t.Fatalf("got op %d seq %d/%v t %q d %q, want op %d seq %d/%v t %q d %q",
					env.Op, env.Seq, env.HasSeq, env.T, env.D, c.op, c.seq, c.hasSeq, c.typ, c.d)
			}
		})
	}
}

func TestPeekEnvelope_Bad(t *testing.T) {
	for _, in := range []string{
		``, `[]`, `"op"`, `{`, `{"op":1`, `{"op":}`, `{"op":1,}`, `{"op":"1"}`, `{"d":1}`, `{"op":1} x`,
		`{"op":1,"d":{"a":tru}}`, `{"op":1,"d":"\x"}`, `{"op":1,"d":[1 2]}`, `{"op":1.5}`, `{"op":0,"s":"1"}`,
		`{"op":0,"t":5}`, `{"op":99999999999999999999999}`, `{op:1}`,
	} {
		if _, err := peekEnvelope([]byte(in)); err == nil {
			t.Errorf("peek %q: got no error", in)
		}
	}
}

func TestGuildIDOf(t *testing.T) {
	cases := []struct {
		t, d string
		want uint64
	}{
		{"MESSAGE_CREATE", `{"id":"5","nested":{"guild_id":"9"},"guild_id":"41771983444115456"}`, 41771983444115456},
		{"GUILD_CREATE", `{"guild_id":"7","id":"81384788765712384","channels":[{"guild_id":"1"}]}`, 81384788765712384},
		{"GUILD_DELETE", `{"id":"3","unavailable":true}`, 3},
		{"TYPING_START", `{"channel_id":"1","user_id":"2"}`, 0},
		{"RESUMED", `null`, 0},
		{"MESSAGE_CREATE", `{"guild_id":null}`, 0},
		{"MESSAGE_CREATE", `{"guild_id":"abc"}`, 0},
	}
	for _, c := range cases {
		if got := guildIDOf(c.t, []byte(c.d)); got != c.want {
			t.Errorf("guildIDOf(%s, %s) = %d, want %d", c.t, c.d, got, c.want)
		}
		env, err := peekEnvelope([]byte(`{"op":0,"s":1,"t":"` + c.t + `","d":` + c.d + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := env.guildID(c.t); got != c.want {
			t.Errorf("envelope guildID(%s, %s) = %d, want %d", c.t, c.d, got, c.want)
		}
	}
}

func TestPeek_NoAllocs(t *testing.T) {
	p := []byte(`{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"id":"1","guild_id":"41771983444115456","content":"hi"}}`)
	allocs := testing.AllocsPerRun(100, func() {
		env, err := peekEnvelope(p)
		if err != nil {
			t.Fatal(err)
		}
		_ = env.guildID(eventName(env.T))
	})
	if allocs != 0 {
		t.Fatalf("got %v allocs per peek, want 0", allocs)
	}
}

func TestObjScanner(t *testing.T) {
	in := []byte(`  {"a":"}\"{","b":[{},{"c":"\\"}]} {"next":1}`)
	for split := 0; split <= len(in); split++ {
		var s objScanner
		end, err := s.feed(in[:split])
		if err != nil {
			t.Fatal(err)
		}
		if end < 0 {
			end, err = s.feed(in[split:])
			if err != nil {
				t.Fatal(err)
			}
			end += split
		}
		if got := string(in[:end]); got != `  {"a":"}\"{","b":[{},{"c":"\\"}]}` {
			t.Fatalf("split %d: got %q", split, got)
		}
	}
	var s objScanner
	if _, err := s.feed([]byte(`x{}`)); err == nil {
		t.Fatal("got no error for a payload that is not an object")
	}
}

func FuzzPeekEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"guild_id":"1"}}`,
		`{"t":null,"s":null,"op":11,"d":null}`,
		`{"op":10,"d":{"heartbeat_interval":41250}}`,
		`{"op":0,"s":1,"t":"GUILD_CREATE","d":{"id":"81384788765712384","members":[{"user":{"id":"1"}}]}}`,
		`{"op":9,"d":true}`, `{"a":[[[[]]]],"op":-1}`, `{"op":0,"d":"\ud83c\udf89"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		env, err := peekEnvelope(p)
		if err != nil {
			// What the peek rejects is not a well-formed envelope.
			if !errors.Is(err, errTooDeep) && isEnvelope(p) {
				t.Fatalf("peek rejected the valid envelope %q: %v", p, err)
			}
			return
		}
		if !json.Valid(p) {
			return // the peek checks structure, not every JSON rule (e.g. number syntax)
		}
		var v struct {
			Op int             `json:"op"`
			D  json.RawMessage `json:"d"`
		}
		if err := json.Unmarshal(p, &v); err == nil && v.Op != env.Op {
			t.Fatalf("peek op %d, encoding/json op %d", env.Op, v.Op)
		}
		// The guild id found while skipping d is the one a second look finds.
		for _, typ := range []string{"GUILD_CREATE", "MESSAGE_CREATE"} {
			if a, b := env.guildID(typ), guildIDOf(typ, env.D); a != b {
				t.Fatalf("%s: guild id %d while peeking, %d from d", typ, a, b)
			}
		}
	})
}

// isEnvelope reports whether p is a JSON object whose "op" is an integer
// literal, "s" an integer literal or null, and "t" a string or null.
func isEnvelope(p []byte) bool {
	// Escaped or repeated keys are beyond the peek's contract (Discord
	// sends neither); leave such inputs out.
	if bytes.IndexByte(p, '\\') >= 0 || bytes.Count(p, []byte(`"op"`)) > 1 ||
		bytes.Count(p, []byte(`"s"`)) > 1 || bytes.Count(p, []byte(`"t"`)) > 1 {
		return false
	}
	var raw map[string]json.RawMessage
	if !json.Valid(p) || json.Unmarshal(p, &raw) != nil {
		return false
	}
	isInt := func(v json.RawMessage) bool {
		var n int64
		return json.Unmarshal(v, &n) == nil && !bytes.ContainsAny(v, ".eE")
	}
	op, ok := raw["op"]
	if !ok || !isInt(op) {
		return false
	}
	if s, ok := raw["s"]; ok && string(s) != "null" && !isInt(s) {
		return false
	}
	if tt, ok := raw["t"]; ok {
		var str *string
		if json.Unmarshal(tt, &str) != nil {
			return false
		}
	}
	return true
}

// BenchmarkPeek measures reading op, s, t, d and the guild id of a dispatch:
// a message as Discord sends it, and one dense with escapes and non-ASCII.
func BenchmarkPeek(b *testing.B) {
	payloads := map[string][]byte{
		"message": []byte(`{"t":"MESSAGE_CREATE","s":42,"op":0,"d":{"type":0,"tts":false,"timestamp":"2024-01-01T00:00:00.000000+00:00",` +
			`"pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"member":{"roles":["1","2"],"nick":null,` +
			`"joined_at":"2023-01-01T00:00:00+00:00"},"id":"1193419418519982111","flags":0,"embeds":[],"edited_timestamp":null,` +
			`"content":"` + strings.Repeat("the quick brown fox jumps over the lazy dog ", 8) + `","components":[],` +
			`"channel_id":"1031232412373299290","author":{"username":"someone","public_flags":0,"id":"81384788765712384",` +
			`"global_name":"Some One","discriminator":"0","avatar":"a_1234567890abcdef1234567890abcdef"},"attachments":[],` +
			`"guild_id":"81384788765712384"}}`),
		"escapes": dispatchJSON(42, "MESSAGE_CREATE", 41771983444115456, 600, rand.New(rand.NewPCG(1, 1))),
	}
	for _, name := range []string{"message", "escapes"} {
		p := payloads[name]
		b.Run("payload="+name, func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for range b.N {
				env, err := peekEnvelope(p)
				if err != nil {
					b.Fatal(err)
				}
				if env.guildID(eventName(env.T)) != 81384788765712384 && name == "message" {
					b.Fatal("wrong guild id")
				}
			}
		})
	}
}
