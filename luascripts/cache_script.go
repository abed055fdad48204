package luascripts

import (
	"context"
	"crypto/sha1"
	_ "embed"
	"encoding/hex"
	"fmt"

	"github.com/redis/rueidis"
)

// cacheJSON holds the Lua helpers every cache script starts with.
//
//go:embed cache_json.lua
var cacheJSON string

// CacheScript is one cache script: its source (the shared JSON helpers
// followed by the script) and its SHA1. Calls are built as EVALSHA so a
// batch of them pipelines; LoadCacheScripts puts the scripts on every node
// first (the script cache is lost on restart, failover or SCRIPT FLUSH, so a
// caller loads again after a NOSCRIPT reply).
type CacheScript struct {
	name string
	src  string
	sha  string
}

func newCacheScript(name, body string) *CacheScript {
	src := cacheJSON + "\n" + body
	sum := sha1.Sum([]byte(src))
	s := &CacheScript{name: name, src: src, sha: hex.EncodeToString(sum[:])}
	cacheScripts = append(cacheScripts, s)
	return s
}

// cacheScripts lists every cache script, for LoadCacheScripts.
var cacheScripts []*CacheScript

// Name is the script's file name without ".lua".
func (s *CacheScript) Name() string { return s.name }

// SHA1 is the hex SHA1 of Source, as EVALSHA wants it.
func (s *CacheScript) SHA1() string { return s.sha }

// Source is the full Lua source sent by SCRIPT LOAD.
func (s *CacheScript) Source() string { return s.src }

// evalsha builds EVALSHA for keys and args.
func (s *CacheScript) evalsha(b rueidis.Builder, keys, args []string) rueidis.Completed {
	return b.Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// LoadCacheScripts loads every cache script on every node of client
// (SCRIPT LOAD), so EVALSHA calls built by this package find them.
func LoadCacheScripts(ctx context.Context, client rueidis.Client) error {
	for addr, node := range client.Nodes() {
		cmds := make(rueidis.Commands, 0, len(cacheScripts))
		for _, s := range cacheScripts {
			cmds = append(cmds, node.B().ScriptLoad().Script(s.src).Build())
		}
		for i, r := range node.DoMulti(ctx, cmds...) {
			sha, err := r.ToString()
			if err != nil {
				return fmt.Errorf("load script %s on %s: %w", cacheScripts[i].name, addr, err)
			}
			if sha != cacheScripts[i].sha {
				return fmt.Errorf("load script %s on %s: server sha %s, want %s", cacheScripts[i].name, addr, sha, cacheScripts[i].sha)
			}
		}
	}
	return nil
}

// IsNoScript reports whether err is Redis' NOSCRIPT reply: the script was
// not run (load the scripts and call again).
func IsNoScript(err error) bool {
	if re, ok := rueidis.IsRedisErr(err); ok {
		return re.IsNoScript()
	}
	return false
}

// CacheField is one object of a hash section: its id and raw JSON.
type CacheField struct {
	ID   string
	JSON string
}

// CacheSection is a list of objects for a per-guild hash. Replace=false
// leaves the cached hash alone; Replace=true makes Fields its content
// (merged instead when the script says the list is partial).
type CacheSection struct {
	Replace bool
	Fields  []CacheField
}

func (c CacheSection) argc() int {
	if !c.Replace {
		return 1
	}
	return 1 + 2*len(c.Fields)
}

func (c CacheSection) append(args []string) []string {
	if !c.Replace {
		return append(args, "-1")
	}
	args = append(args, itoa(len(c.Fields)))
	for _, f := range c.Fields {
		args = append(args, f.ID, f.JSON)
	}
	return args
}

// CacheList is a JSON array replaced as a whole (emojis, stickers).
// Replace=false leaves the cached list alone.
type CacheList struct {
	Replace bool
	JSON    string
}

func (c CacheList) append(args []string) []string {
	if !c.Replace {
		return append(args, "-1")
	}
	return append(args, "1", c.JSON)
}

func itoa(n int) string {
	if n >= 0 && n < 10 {
		return string(rune('0' + n))
	}
	return fmt.Sprint(n)
}

// beforeAndIDs reads the reply of cache_guild and cache_guild_delete.
func beforeAndIDs(r rueidis.RedisResult) (before string, ok bool, ids []string, err error) {
	arr, err := r.ToArray()
	if err != nil {
		return "", false, nil, err
	}
	if len(arr) == 0 {
		return "", false, nil, fmt.Errorf("empty reply")
	}
	if before, err = arr[0].ToString(); err != nil {
		return "", false, nil, fmt.Errorf("read before image: %w", err)
	}
	if len(arr) > 1 {
		ids = make([]string, len(arr)-1)
		for i, m := range arr[1:] {
			if ids[i], err = m.ToString(); err != nil {
				return "", false, nil, fmt.Errorf("read user id: %w", err)
			}
		}
	}
	return before, before != "", ids, nil
}
