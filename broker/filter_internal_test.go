package broker

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestMentions(t *testing.T) {
	cases := []struct {
		content, id string
		want        bool
	}{
		{"<@123> hi", "123", true},
		{"<@!123>", "123", true},
		{"<@1234> hi", "123", false},
		{"<@12> hi", "123", false},
		{"<@123", "123", false},
		{"hi <@123>", "123", false},
		{"<@123>", "", false},
		{"<@!!123>", "123", false},
	}
	for _, tc := range cases {
		if got := mentions(tc.content, tc.id); got != tc.want {
			t.Errorf("mentions(%q, %q) = %v, want %v", tc.content, tc.id, got, tc.want)
		}
	}
}

// FuzzPeekMessage checks the message peek against encoding/json: on any
// input it never panics, and on a valid JSON object it reads the same
// content, author.bot and webhook_id.
func FuzzPeekMessage(f *testing.F) {
	for _, s := range []string{
		`{"content":"!help","author":{"id":"1","bot":true},"webhook_id":"9"}`,
		`{"content":"h\u00e9 \"q\" \\ \ud83d\ude00","author":{"bot":false}}`,
		`{"author":{"bot":"true"},"webhook_id":null,"content":5}`,
		`{"content":"a","content":"b"}`,
		`{"nested":{"content":"x"},"author":[1,2],"webhook_id":0}`,
		`{"content":"\ud800"}`,
		`[1,2]`, `{"content":`, `{}`, ``, `nul`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := peekMessage(data)
		_ = peekReadyUserID(data)
		var ref map[string]json.RawMessage // exact (case-sensitive) keys
		if !json.Valid(data) || json.Unmarshal(data, &ref) != nil || len(data) == 0 || data[0] != '{' {
			return
		}
		if hasDuplicateKeys(data) {
			return // first-wins vs last-wins differ between decoders
		}
		var content string
		raw, ok := ref["content"]
		wantContent := ok && json.Unmarshal(raw, &content) == nil
		if m.hasContent != wantContent || (wantContent && m.content != content && utf8.ValidString(m.content)) {
			t.Errorf("content: got %q/%v, want %q/%v", m.content, m.hasContent, content, wantContent)
		}
		raw, ok = ref["webhook_id"]
		wantHook := ok && string(raw) != "null"
		if m.webhook != wantHook {
			t.Errorf("webhook: got %v, want %v", m.webhook, wantHook)
		}
		var author map[string]json.RawMessage
		wantBot := false
		if raw, ok := ref["author"]; ok && json.Unmarshal(raw, &author) == nil {
			wantBot = string(author["bot"]) == "true"
		}
		if m.bot != wantBot {
			t.Errorf("bot: got %v, want %v", m.bot, wantBot)
		}
	})
}

// hasDuplicateKeys reports whether any object in data repeats a key.
func hasDuplicateKeys(data []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(data))
	var walk func() bool
	walk = func() bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, _ := dec.Token()
				ks, _ := k.(string)
				if seen[ks] {
					return true
				}
				seen[ks] = true
				if walk() {
					return true
				}
			}
			_, _ = dec.Token()
		case json.Delim('['):
			for dec.More() {
				if walk() {
					return true
				}
			}
			_, _ = dec.Token()
		}
		return false
	}
	return walk()
}
