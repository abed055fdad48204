package broker

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

// FuzzParseSession feeds checkpoint hashes with arbitrary values: parsing
// never panics, fails only with ErrBadSession naming the key, and what it
// accepts round-trips.
func FuzzParseSession(f *testing.F) {
	f.Add("s1", "42", "wss://r", "16", "513", true)
	f.Add("", "1", "", "", "", false)
	f.Add("x", "-1", "u", "a", "-5", true)
	f.Add("x", "99999999999999999999", "u", "1", "18446744073709551615", true)
	f.Fuzz(func(t *testing.T, id, seq, url, shards, intents string, withOptional bool) {
		m := map[string]string{"session": id, "seq": seq, "resume_url": url}
		if withOptional {
			m["shards"], m["intents"] = shards, intents
		}
		s, err := parseSession("k:{bot:b}:session:0", m)
		if err != nil {
			if !errors.Is(err, ErrBadSession) || !strings.Contains(err.Error(), "k:{bot:b}:session:0") {
				t.Fatalf("error %v does not wrap ErrBadSession with the key", err)
			}
			return
		}
		if s.ID != id || s.Seq != mustInt(seq) || s.ResumeURL != url {
			t.Fatalf("parsed %+v from %v", s, m)
		}
	})
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
