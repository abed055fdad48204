package luascripts

import (
	"context"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/redistest"
)

// mergeProbe runs json_merge (and json_get) of cache_json.lua on a server.
const mergeProbe = `
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
				{`{"a":"1","b":[]}`, `{"b":[1,2],"c":{}}`, `{"a":"1","b":[1,2],"c":{}}`},
				{`{ "id" : "123456789012345678901" , "x":[ ] }`, `{"y":null}`, `{"id":"123456789012345678901","x":[ ],"y":null}`},
				{`{"s":"a\"}{,b\\","n":-1.5e+300}`, `{"t":"ü🎉\u00e9"}`, `{"s":"a\"}{,b\\","n":-1.5e+300,"t":"ü🎉\u00e9"}`},
				{`{"o":{"k":[{"z":"}"}]},"f":false}`, `{"f":true}`, `{"o":{"k":[{"z":"}"}]},"f":true}`},
				{`{}`, `{"a":[]}`, `{"a":[]}`},
				{`{"a":1}`, `{}`, `{"a":1}`},
				{`not json`, `{"a":2}`, `{"a":2}`},
				{`{"big":12345678901234567}`, `{"x":1}`, `{"big":12345678901234567,"x":1}`},
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
