package luascripts

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// mergeProbe runs json_merge (and json_get) of cache_json.lua on a server.
const mergeProbe = `
if ARGV[1] == 'mergekeys' then
  local old = ARGV[2]
  if old == '' then old = nil end
  return json_merge_keys(old, ARGV[3], ARGV[4])
end
if ARGV[1] == 'merge' then
  local old = ARGV[2]
  if old == '' then old = nil end
  return json_merge(old, ARGV[3])
end
local v = json_get(ARGV[2], ARGV[3])
if v == nil then return false end
return v
`

func TestCacheJSONLua(t *testing.T) {
	m := miniredis.RunT(t)
	mc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	for name, client := range map[string]rueidis.Client{
		"redis":     redistest.Start(t, redistest.Options{}).Client(t),
		"miniredis": mc,
	} {
		t.Run(name, func(t *testing.T) {
			script := rueidis.NewLuaScript(cacheJSON + mergeProbe)
			run := func(args ...string) (string, bool) {
				t.Helper()
				v, err := script.Exec(context.Background(), client, nil, args).ToString()
				if rueidis.IsRedisNil(err) {
					return "", false
				}
				if err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				return v, true
			}
			merges := []struct{ old, new, want string }{
				{"", `{"a":1}`, `{"a":1}`},
				{`{"a":"1","b":[]}`, `{"b":[1,2],"c":{}}`, `{"b":[1,2],"c":{},"a":"1"}`},
				{`{"a":"1","b":[],"d":{"e":"]"}}`, `{}`, `{"a":"1","b":[],"d":{"e":"]"}}`},
				{`{"a":"1","b":[]}`, `{"b":[1,2],"a":"2"}`, `{"b":[1,2],"a":"2"}`},
				{`{"a":"1","b":[]}`, `{"b":[1,2],"a":"2"} `, `{"b":[1,2],"a":"2"}`},
				{`{ "id" : "123456789012345678901" , "x":[ ] }`, `{"y":null}`, `{"id":"123456789012345678901","x":[ ],"y":null}`},
				{`{"s":"a\"}{,b\\","n":-1.5e+300}`, `{"t":"ü🎉\u00e9"}`, `{"s":"a\"}{,b\\","n":-1.5e+300,"t":"ü🎉\u00e9"}`},
				{`{"o":{"k":[{"z":"}"}]},"f":false}`, `{"f":true}`, `{"f":true,"o":{"k":[{"z":"}"}]}}`},
				{`{"o":1,"f":false}`, `{"f":"\"x"}`, `{"o":1,"f":"\"x"}`},
				{`{}`, `{"a":[]}`, `{"a":[]}`},
				{`{"a":1}`, `{}`, `{"a":1}`},
				{`not json`, `{"a":2}`, `{"a":2}`},
				{`{"big":12345678901234567}`, `{"x":1}`, `{"x":1,"big":12345678901234567}`},
			}
			for _, c := range merges {
				if got, _ := run("merge", c.old, c.new); got != c.want {
					t.Errorf("merge(%s, %s) = %s, want %s", c.old, c.new, got, c.want)
				}
			}
			if v, ok := run("get", `{"parent_id":"42","x":{"parent_id":"7"}}`, "parent_id"); !ok || v != `"42"` {
				t.Errorf("get parent_id = %q %v", v, ok)
			}
			if _, ok := run("get", `{"x":{"parent_id":"7"}}`, "parent_id"); ok {
				t.Error("get found a nested member")
			}
		})
	}
}

// fieldsProbe compares json_fields with json_fields_general on every
// argument and replies the index of the first that differs (0 = none).
const fieldsProbe = `
local function same(a, b)
  if a == nil or b == nil then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end
for i = 1, #ARGV do
  local k1, v1 = json_fields(ARGV[i])
  local k2, v2 = json_fields_general(ARGV[i])
  if not same(k1, k2) or not same(v1, v2) then return i end
end
return 0
`

// TestCacheJSONFieldsFast: the fast splitter gives the general one's
// result on compact objects and on mutations of them (whitespace, escapes,
// missing or extra separators, truncation), on Redis and miniredis.
func TestCacheJSONFieldsFast(t *testing.T) {
	m := miniredis.RunT(t)
	mc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	r := rand.New(rand.NewPCG(5, 9))
	values := []string{`"x"`, `""`, `"a]b}c,d"`, `"ü🎉"`, `null`, `true`, `-1.5e+300`, `12345678901234567`, `[]`, `{}`,
		`["600000000000000002","600000000000000003"]`, `[1,[2,{"a":"]"}]]`, `{"id":"1","n":{"x":[]}}`, `"a\"b"`, `"\\"`}
	var inputs []string
	for len(inputs) < 3000 {
		var sb strings.Builder
		sb.WriteByte('{')
		for f := range r.IntN(6) {
			if f > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`"k` + strconv.Itoa(f) + `":` + values[r.IntN(len(values))])
		}
		sb.WriteByte('}')
		s := []byte(sb.String())
		for range r.IntN(3) {
			if len(s) == 0 {
				break
			}
			p := r.IntN(len(s))
			switch r.IntN(3) {
			case 0:
				s = append(s[:p], s[p+1:]...)
			case 1:
				s = append(s[:p], append([]byte{` ,:"[]{}\\x1`[r.IntN(12)]}, s[p:]...)...)
			default:
				s = s[:p]
			}
		}
		inputs = append(inputs, string(s))
	}
	for name, client := range map[string]rueidis.Client{
		"redis":     redistest.Start(t, redistest.Options{}).Client(t),
		"miniredis": mc,
	} {
		t.Run(name, func(t *testing.T) {
			script := rueidis.NewLuaScript(cacheJSON + fieldsProbe)
			for at := 0; at < len(inputs); at += 500 {
				batch := inputs[at:min(at+500, len(inputs))]
				i, err := script.Exec(context.Background(), client, nil, batch).AsInt64()
				if err != nil {
					t.Fatal(err)
				}
				if i != 0 {
					t.Fatalf("json_fields(%q) differs from json_fields_general", batch[i-1])
				}
			}
		})
	}
}

// TestCacheJSONMergeRandom: json_merge of random objects (compact or not,
// with escapes or not) is old's members overwritten and extended by new's,
// checked against encoding/json, on Redis and miniredis.
func TestCacheJSONMergeRandom(t *testing.T) {
	m := miniredis.RunT(t)
	mc, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{m.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	r := rand.New(rand.NewPCG(11, 3))
	values := []string{`"x"`, `""`, `"a]b}c,d"`, `"ü🎉"`, `null`, `true`, `-1.5e+300`, `12345678901234567`, `[]`, `{}`,
		`["600000000000000002","600000000000000003"]`, `[1,[2,{"a":"]"}]]`, `{"id":"1","n":{"x":[]}}`, `"a\"b"`, `"\\"`}
	var keys string // the last object's keys, quoted, concatenated
	object := func() string {
		var sb strings.Builder
		keys = ""
		sb.WriteByte('{')
		for i, k := range r.Perm(6)[:r.IntN(7)] {
			if i > 0 {
				sb.WriteByte(',')
				if r.IntN(8) == 0 {
					sb.WriteByte(' ')
				}
			}
			sb.WriteString(`"k` + strconv.Itoa(k) + `":` + values[r.IntN(len(values))])
			keys += `"k` + strconv.Itoa(k) + `"`
		}
		sb.WriteByte('}')
		return sb.String()
	}
	decode := func(s string) map[string]any {
		t.Helper()
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var v map[string]any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("decode %s: %v", s, err)
		}
		return v
	}
	for name, client := range map[string]rueidis.Client{
		"redis":     redistest.Start(t, redistest.Options{}).Client(t),
		"miniredis": mc,
	} {
		t.Run(name, func(t *testing.T) {
			script := rueidis.NewLuaScript(cacheJSON + mergeProbe)
			for range 400 {
				old, upd := object(), object()
				got, err := script.Exec(context.Background(), client, nil, []string{"merge", old, upd}).ToString()
				if err != nil {
					t.Fatal(err)
				}
				want := decode(old)
				for k, v := range decode(upd) {
					want[k] = v
				}
				if g := decode(got); !reflect.DeepEqual(g, want) {
					t.Fatalf("merge(%s, %s) = %s, want %v", old, upd, got, want)
				}
				// Told new's keys, the merge gives the same bytes.
				if strings.Contains(upd, " ") {
					continue // the caller promises a compact top level
				}
				for _, k := range []string{keys, ""} {
					got2, err := script.Exec(context.Background(), client, nil, []string{"mergekeys", old, upd, k}).ToString()
					if err != nil {
						t.Fatal(err)
					}
					if got2 != got {
						t.Fatalf("merge(%s, %s) with keys %q = %s, without %s", old, upd, k, got2, got)
					}
				}
			}
		})
	}
}
