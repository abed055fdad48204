package consumers_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/consumers"
)

func TestDecodeEntry(t *testing.T) {
	f := entryFields("GUILD_MEMBER_UPDATE", 42, `{"guild_id":"1"}`)
	f["before"] = `{"nick":"old"}`
	m, err := consumers.DecodeEntry("1700000000123-7", f)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "1700000000123-7" || m.V != 1 || m.T != "GUILD_MEMBER_UPDATE" || string(m.D) != `{"guild_id":"1"}` ||
		m.Bot != "testbot" || m.Shard != 3 || m.Session != "sess-1" || m.Seq != 42 || m.Guild != "81384788765712384" ||
		string(m.Before) != `{"nick":"old"}` || !m.At.Equal(time.UnixMilli(1700000000123)) {
		t.Fatalf("decoded: %+v", m)
	}

	// Optional fields.
	f = entryFields("READY", 1, `{}`)
	delete(f, "guild")
	if m, err = consumers.DecodeEntry("1-0", f); err != nil || m.Guild != "" || m.Before != nil {
		t.Fatalf("without guild/before: %+v, %v", m, err)
	}
	f["guild"] = "0"
	if m, err = consumers.DecodeEntry("1-0", f); err != nil || m.Guild != "" {
		t.Fatalf("guild 0: %+v, %v", m, err)
	}
}

func TestDecodeEntry_Errors(t *testing.T) {
	cases := []struct {
		name, field, value string // value "" with del = remove the field
		del                bool
		wantErr            error
	}{
		{"missing v", "v", "", true, consumers.ErrMissingField},
		{"garbage v", "v", "one", false, consumers.ErrBadField},
		{"future v", "v", "2", false, consumers.ErrBadField},
		{"missing t", "t", "", true, consumers.ErrMissingField},
		{"empty t", "t", "", false, consumers.ErrBadField},
		{"missing d", "d", "", true, consumers.ErrMissingField},
		{"empty d", "d", "", false, consumers.ErrBadField},
		{"missing bot", "bot", "", true, consumers.ErrMissingField},
		{"missing shard", "shard", "", true, consumers.ErrMissingField},
		{"garbage shard", "shard", "x1", false, consumers.ErrBadField},
		{"negative shard", "shard", "-1", false, consumers.ErrBadField},
		{"huge shard", "shard", "99999999999", false, consumers.ErrBadField},
		{"missing session", "session", "", true, consumers.ErrMissingField},
		{"missing seq", "seq", "", true, consumers.ErrMissingField},
		{"garbage seq", "seq", "1.5", false, consumers.ErrBadField},
		{"garbage guild", "guild", "abc", false, consumers.ErrBadField},
		{"missing at", "at", "", true, consumers.ErrMissingField},
		{"garbage at", "at", "yesterday", false, consumers.ErrBadField},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := entryFields("MESSAGE_CREATE", 1, `{}`)
			if tc.del {
				delete(f, tc.field)
			} else {
				f[tc.field] = tc.value
			}
			_, err := consumers.DecodeEntry("5-0", f)
			var ee *consumers.EntryError
			if !errors.As(err, &ee) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, want *EntryError wrapping %v", err, tc.wantErr)
			}
			if ee.Field != tc.field || ee.ID != "5-0" || !strings.Contains(err.Error(), `"`+tc.field+`"`) {
				t.Fatalf("error %q names field %q, want %q", err, ee.Field, tc.field)
			}
		})
	}
	if _, err := consumers.DecodeEntry("5-0", nil); !errors.Is(err, consumers.ErrMissingField) {
		t.Fatalf("nil fields: %v", err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add("1", "MESSAGE_CREATE", `{"id":"1","content":"hi","author":{"id":"2"}}`, "bot", "0", "sess", "1", "81384788765712384", "", "1700000000000")
	f.Add("1", "GUILD_CREATE", `{"id":"1","channels":[{"id":"3"}]}`, "", "15", "", "999", "", `{"id":"1"}`, "0")
	f.Add("x", "", "", "", "-1", "", "-5", "abc", "null", "-1")
	f.Add("1", "INTERACTION_CREATE", `{"id":"9","data":{"options":[{"name":"a","value":1}]}}`, "b", "2147483648", "s", "9223372036854775808", "0", "[", "9")
	f.Fuzz(func(t *testing.T, v, typ, d, bot, shard, session, seq, guild, before, at string) {
		fields := map[string]string{"v": v, "t": typ, "d": d, "bot": bot, "shard": shard,
			"session": session, "seq": seq, "guild": guild, "before": before, "at": at}
		m, err := consumers.DecodeEntry("1-0", fields)
		if err != nil {
			var ee *consumers.EntryError
			if !errors.As(err, &ee) || ee.Field == "" {
				t.Fatalf("error without a field name: %v", err)
			}
			if _, ok := fields[ee.Field]; !ok {
				t.Fatalf("error names unknown field %q", ee.Field)
			}
		} else if m.V != 1 || m.T == "" || len(m.D) == 0 || m.Shard < 0 || m.Seq < 0 {
			t.Fatalf("accepted an invalid entry: %+v", m)
		}
		if err == nil {
			// Whatever the payload, the typed decoders return, never panic.
			_, _ = consumers.Decode[consumers.MessageCreate](m)
			_, _ = consumers.Decode[consumers.GuildCreate](m)
			_, _ = consumers.Decode[consumers.InteractionCreate](m)
			_, _ = consumers.Decode[consumers.Ready](m)
			_, _, _ = consumers.DecodeBefore[consumers.Member](m)
		}
		// Same with a field missing.
		for k := range fields {
			delete(fields, k)
			if _, err := consumers.DecodeEntry("1-0", fields); err == nil && (k != "guild" && k != "before") {
				t.Fatalf("accepted an entry without %q", k)
			}
			break
		}
	})
}

func BenchmarkDecodeEntry(b *testing.B) {
	f := entryFields("MESSAGE_CREATE", 123456, `{"id":"1235000000000000001","channel_id":"1100000000000000002","content":"!ping"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := consumers.DecodeEntry("1700000000123-0", f); err != nil {
			b.Fatal(err)
		}
	}
}
