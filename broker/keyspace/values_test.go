package keyspace_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/feathery/feathery/broker/keyspace"
)

func decodeObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		t.Fatalf("%q is not a JSON object: %v", b, err)
	}
	return m
}

func TestExpand(t *testing.T) {
	t.Parallel()
	m, err := keyspace.ExpandMember([]byte(`{"joined_at":"2024-01-01T00:00:00+00:00","nick":"n"}`), []byte(`{"id":"1"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := decodeObject(t, m)
	want := map[string]any{
		"user": map[string]any{"id": "1"}, "joined_at": "2024-01-01T00:00:00+00:00", "nick": "n",
		"roles": []any{}, "avatar": nil, "banner": nil, "premium_since": nil, "deaf": false, "mute": false,
		"pending": false, "flags": float64(0), "communication_disabled_until": nil, "avatar_decoration_data": nil,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("member:\n got %v\nwant %v", got, want)
	}
	if !strings.HasPrefix(string(m), `{"user":{"id":"1"},"joined_at"`) {
		t.Errorf("member %s: want user first, then the stored members in their order", m)
	}
	u, err := keyspace.ExpandUser("80351110224678912", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(u) != `{"id":"80351110224678912","discriminator":"0","global_name":null,"avatar":null,"public_flags":0,`+
		`"banner":null,"accent_color":null,"avatar_decoration_data":null,"collectibles":null,"primary_guild":null}` {
		t.Errorf("user = %s", u)
	}
	for _, bad := range []string{``, `null`, `[]`, `"x"`, `{"a":`, `{"a":1}x`, `{]`} {
		if _, err := keyspace.ExpandMember([]byte(bad), nil); err == nil || !strings.Contains(err.Error(), "cached member") {
			t.Errorf("ExpandMember(%q): %v, want an error naming the member", bad, err)
		}
		if _, err := keyspace.ExpandUser("1", []byte(bad)); err == nil || !strings.Contains(err.Error(), "cached user") {
			t.Errorf("ExpandUser(%q): %v, want an error naming the user", bad, err)
		}
	}
	if _, err := keyspace.ExpandUser(`1"`, []byte(`{}`)); err == nil {
		t.Error("ExpandUser with an id that is not a snowflake: no error")
	}
}

func TestUserEntry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		guilds []string
		user   string
		bad    bool
	}{
		{`1,22{"username":"a"}`, []string{"1", "22"}, `{"username":"a"}`, false},
		{`7`, []string{"7"}, ``, false},
		{`{}`, nil, `{}`, false},
		{``, nil, ``, false},
		{`1,{}`, nil, ``, true},
		{`,`, nil, ``, true},
		{`1;2{}`, nil, ``, true},
		{`123456789012345678901{}`, nil, ``, true},
	} {
		g, u, err := keyspace.ParseUserEntry(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseUserEntry(%q): err %v, want bad %v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && (!reflect.DeepEqual(g, tc.guilds) || u != tc.user) {
			t.Errorf("ParseUserEntry(%q) = %q, %q", tc.in, g, u)
		}
	}
}

func TestDropList(t *testing.T) {
	t.Parallel()
	if got := keyspace.UserDropList(); !strings.HasPrefix(got, `,"id":*,"discriminator":"0",`) || !strings.HasSuffix(got, `"primary_guild":null,`) {
		t.Errorf("UserDropList = %s", got)
	}
	for _, d := range keyspace.MemberDefaults() {
		if !keyspace.IsMemberDefault(d.Key, []byte(d.Value)) || !strings.Contains(keyspace.MemberDropList(), `,"`+d.Key+`":`+d.Value+`,`) {
			t.Errorf("member default %v not dropped", d)
		}
		if keyspace.IsMemberDefault(d.Key, []byte(`"x"`)) {
			t.Errorf("member %s dropped with a value that is not its default", d.Key)
		}
	}
	if !keyspace.IsUserDefault("id", []byte(`"5"`)) || keyspace.IsUserDefault("username", []byte(`null`)) {
		t.Error("IsUserDefault: id must always go, username never")
	}
}

// FuzzCachedValues: the readers of compact members, users and user
// entries never panic; what they accept comes back as a JSON object with
// every member it had, and every default it lacked; a user entry they
// accept is given back whole by UserEntry.
func FuzzCachedValues(f *testing.F) {
	for _, s := range []string{
		`{"joined_at":"2024-01-01T00:00:00+00:00"}`, `{}`, ` { "nick" : "x" } `, `{"roles":[1],"roles":[]}`,
		`12,34{"username":"a"}`, `{"a":"\u00e9🎉\"}{"}`, `[1]`, `null`, `{"a":`, `1,`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if g, u, err := keyspace.ParseUserEntry(s); err == nil && keyspace.UserEntry(g, u) != s {
			t.Fatalf("ParseUserEntry(%q) = %q, %q: UserEntry gives %q", s, g, u, keyspace.UserEntry(g, u))
		}
		var in map[string]json.RawMessage
		okIn := json.Unmarshal([]byte(s), &in) == nil && in != nil
		for _, kind := range []struct {
			name     string
			expand   func([]byte) ([]byte, error)
			defaults []keyspace.Default
		}{
			{"member", func(b []byte) ([]byte, error) { return keyspace.ExpandMember(b, nil) }, keyspace.MemberDefaults()},
			{"user", func(b []byte) ([]byte, error) { return keyspace.ExpandUser("42", b) }, keyspace.UserDefaults()},
		} {
			out, err := kind.expand([]byte(s))
			if (err == nil) != okIn {
				t.Fatalf("%s %q: err %v, but encoding/json reads an object: %v", kind.name, s, err, okIn)
			}
			if err != nil {
				continue
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s %q expanded to %q: %v", kind.name, s, out, err)
			}
			for k := range in {
				if _, ok := got[k]; !ok {
					t.Fatalf("%s %q expanded to %q: lost %s", kind.name, s, out, k)
				}
			}
			for _, d := range kind.defaults {
				if _, ok := got[d.Key]; !ok {
					t.Fatalf("%s %q expanded to %q: no %s", kind.name, s, out, d.Key)
				}
			}
		}
	})
}
