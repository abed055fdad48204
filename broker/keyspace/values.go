package keyspace

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Members and users are most of a cache's bytes, and most of their
// top-level members hold Discord's defaults (null, false, 0, []). The cache
// stores them compact: without those members, and a user without its "id"
// (the hash field is the id). The lists below are the members left out and
// their values, exactly as JSON; ExpandMember and ExpandUser put back every
// one that is absent, so a reader gets the object Discord describes (a
// member Discord sent without, say, "banner" reads back with "banner":null).

// Default is a top-level member of a cached object that is left out when
// its raw JSON value is Value.
type Default struct{ Key, Value string }

var memberDefaults = []Default{
	{"roles", "[]"}, {"nick", "null"}, {"avatar", "null"}, {"banner", "null"},
	{"premium_since", "null"}, {"deaf", "false"}, {"mute", "false"}, {"pending", "false"},
	{"flags", "0"}, {"communication_disabled_until", "null"}, {"avatar_decoration_data", "null"},
}

var userDefaults = []Default{
	{"discriminator", `"0"`}, {"global_name", "null"}, {"avatar", "null"}, {"public_flags", "0"},
	{"banner", "null"}, {"accent_color", "null"}, {"avatar_decoration_data", "null"},
	{"collectibles", "null"}, {"primary_guild", "null"},
}

// MemberDefaults are the members a cached member object is stored without
// when they hold these values.
func MemberDefaults() []Default { return append([]Default(nil), memberDefaults...) }

// UserDefaults are the members a cached user object is stored without when
// they hold these values ("id" is always left out).
func UserDefaults() []Default { return append([]Default(nil), userDefaults...) }

func isDefault(list []Default, key string, raw []byte) bool {
	for _, d := range list {
		if d.Key == key {
			return d.Value == string(raw)
		}
	}
	return false
}

// IsMemberDefault reports whether a member object's top-level member key
// (unquoted) with raw JSON value raw is left out of the cache.
func IsMemberDefault(key string, raw []byte) bool { return isDefault(memberDefaults, key, raw) }

// IsUserDefault reports whether a user object's top-level member key
// (unquoted) with raw JSON value raw is left out of the cache: "id", or one
// of UserDefaults.
func IsUserDefault(key string, raw []byte) bool {
	return key == "id" || isDefault(userDefaults, key, raw)
}

// DropList is list as the cache scripts take it: every member as
// `"key":value` between commas, with a leading and a trailing comma. any
// names members dropped whatever their value (written `"key":*`).
func DropList(list []Default, any ...string) string {
	var b strings.Builder
	b.WriteByte(',')
	for _, k := range any {
		b.WriteString(`"` + k + `":*,`)
	}
	for _, d := range list {
		b.WriteString(`"` + d.Key + `":` + d.Value + ",")
	}
	return b.String()
}

// MemberDropList and UserDropList are DropList of the member and user
// defaults (the user's with "id").
func MemberDropList() string { return DropList(memberDefaults) }

// UserDropList: see MemberDropList.
func UserDropList() string { return DropList(userDefaults, "id") }

// expand returns object stored with first (raw JSON members, "key":value,
// each) put in front unless stored has the key, and every absent default
// of list appended.
func expand(what string, stored []byte, first [][2]string, list []Default) ([]byte, error) {
	s := trimSpace(stored)
	if len(s) < 2 || s[0] != '{' || !json.Valid(s) {
		return nil, fmt.Errorf("read cached %s: not a JSON object: %.80q", what, stored)
	}
	var have uint64 // bit i: list[i] present; bit 63: first[0] present
	eachTopKey(s, func(k []byte) {
		for i, d := range list {
			if string(k) == d.Key {
				have |= 1 << i
			}
		}
		if len(first) > 0 && string(k) == first[0][0] {
			have |= 1 << 63
		}
	})
	inner := trimSpace(s[1 : len(s)-1])
	out := make([]byte, 0, len(s)+256)
	out = append(out, '{')
	n := 0
	add := func(k, v string) {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, k...)
		out = append(out, '"', ':')
		out = append(out, v...)
		n++
	}
	if len(first) > 0 && have&(1<<63) == 0 {
		add(first[0][0], first[0][1])
	}
	if len(inner) > 0 {
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, inner...)
		n++
	}
	for i, d := range list {
		if have&(1<<i) == 0 {
			add(d.Key, d.Value)
		}
	}
	return append(out, '}'), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// eachTopKey calls fn with the raw text (between its quotes, escapes
// undecoded) of every top-level key of obj, a valid JSON object. A key
// written with escapes is not taken for the default it spells (feathery
// and Discord write keys plainly).
func eachTopKey(obj []byte, fn func(key []byte)) {
	depth := 0
	wantKey := false
	for i := 0; i < len(obj); i++ {
		switch c := obj[i]; c {
		case '{', '[':
			depth++
			wantKey = depth == 1 && c == '{'
		case '}', ']':
			depth--
		case ',':
			wantKey = depth == 1
		case '"':
			j := i + 1
			for ; j < len(obj) && obj[j] != '"'; j++ {
				if obj[j] == '\\' {
					j++
				}
			}
			if wantKey && j < len(obj) {
				fn(obj[i+1 : j])
			}
			wantKey = false
			i = j
		}
	}
}

// ExpandMember returns the member object stored compact in a guild's
// members hash with its absent defaults put back, and with "user": user
// first when user (a user object, e.g. ExpandUser's) is not nil.
func ExpandMember(stored, user []byte) ([]byte, error) {
	var first [][2]string
	if user != nil {
		first = [][2]string{{"user", string(user)}}
	}
	return expand("member", stored, first, memberDefaults)
}

// ExpandUser returns the user object of id stored compact (a
// ParseUserEntry user) with "id" and its absent defaults put back.
func ExpandUser(id string, stored []byte) ([]byte, error) {
	if !isSnowflake(id) {
		return nil, fmt.Errorf("read cached user: bad user id %.40q", id)
	}
	return expand("user", stored, [][2]string{{"id", `"` + id + `"`}}, userDefaults)
}

// ParseUserEntry splits a value of a users hash (CacheUsers): the ids of
// the cached guilds the user is a member of (comma-separated digits), then
// the compact user object, "" when only the memberships are known.
func ParseUserEntry(v string) (guilds []string, user string, err error) {
	list := v
	if i := strings.IndexByte(v, '{'); i >= 0 {
		list, user = v[:i], v[i:]
	}
	if list == "" {
		return nil, user, nil
	}
	guilds = strings.Split(list, ",")
	for _, g := range guilds {
		if !isSnowflake(g) {
			return nil, "", fmt.Errorf("read cached user entry: bad guild id %.40q in %.80q", g, v)
		}
	}
	return guilds, user, nil
}

// UserEntry is the value ParseUserEntry reads: guilds comma-separated,
// then user.
func UserEntry(guilds []string, user string) string { return strings.Join(guilds, ",") + user }

func isSnowflake(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
