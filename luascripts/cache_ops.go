package luascripts

import (
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/keyspace"
)

//go:embed cache_ops.lua
var cacheOpsSrc string

// CacheOpsScript is cache_ops.lua: several single-object operations in one
// call, applied in order. Its source is the operations' files (each
// defining local functions: cache_op_entity.lua, cache_op_member.lua,
// cache_op_list.lua, cache_op_user.lua) followed by cache_ops.lua's
// dispatch loop, so the operations are one script and one EVALSHA. They
// are preceded by member_drops and user_drops, the members the cache stores
// its member and user objects without (keyspace.MemberDropList,
// UserDropList).
var CacheOpsScript = newCacheScript("cache_ops",
	"local member_drops = '"+keyspace.MemberDropList()+"'\n"+
		"local member_probes = "+luaProbes(keyspace.MemberDefaults())+"\n"+
		"local user_drops = '"+keyspace.UserDropList()+"'\n"+
		"local user_probes = "+luaProbes(keyspace.UserDefaults(), "id")+"\n"+
		cacheOpEntitySrc+"\n"+cacheOpMemberSrc+"\n"+cacheOpListSrc+"\n"+cacheOpUserSrc+"\n"+cacheOpsSrc)

// luaProbes is a Lua table of the texts whose absence from an object
// proves json_drop has nothing to drop: `"key":value` of each default,
// `"key":` of each key dropped whatever its value. Keys and values are
// keyspace's constants: no quote or backslash of Lua's.
func luaProbes(list []keyspace.Default, any ...string) string {
	out := "{"
	for _, k := range any {
		out += `'"` + k + `":',`
	}
	for _, d := range list {
		out += `'"` + d.Key + `":` + d.Value + `',`
	}
	return out + "}"
}

// CacheOp is one operation of cache_ops.lua; build it with the CacheOp*
// functions of this package (one per operation of the cache_op_*.lua
// files).
type CacheOp struct {
	code   string
	k1, k2 string // k2 "" = one key
	a      [4]string
	na     int
}

// CacheOps collects operations for one cache_ops.lua call. The zero value
// is empty and ready; Reset makes it so again, keeping its buffers.
type CacheOps struct {
	keys []string
	idx  map[string]int // key -> index in keys + 1
	args []string
	n    int
}

// Reset empties o.
func (o *CacheOps) Reset() {
	o.keys = o.keys[:0]
	clear(o.idx)
	o.args = o.args[:0]
	o.n = 0
}

// Len is the number of operations added.
func (o *CacheOps) Len() int { return o.n }

// Add appends op and returns its index in the reply.
func (o *CacheOps) Add(op CacheOp) int {
	if o.idx == nil {
		o.idx = make(map[string]int)
	}
	k := o.idx[op.k1]
	if op.k2 != "" {
		// The two keys must be adjacent: reuse k1 only when k2 follows it.
		if k == 0 || k >= len(o.keys) || o.keys[k] != op.k2 {
			o.keys = append(o.keys, op.k1, op.k2)
			k = len(o.keys) - 1
			o.idx[op.k1] = k
		}
	} else if k == 0 {
		o.keys = append(o.keys, op.k1)
		k = len(o.keys)
		o.idx[op.k1] = k
	}
	o.args = append(o.args, op.code, strconv.Itoa(k))
	o.args = append(o.args, op.a[:op.na]...)
	o.n++
	return o.n - 1
}

// Build returns the call; o may be reset once the call has been sent and
// its reply read.
func (o *CacheOps) Build(b rueidis.Builder) rueidis.Completed {
	return CacheOpsScript.evalsha(b, o.keys, o.args)
}

// ParseCacheOps reads the reply of cache_ops.lua holding n operations:
// one message per operation, each either the object cached before it (see
// ParseCacheOpBefore) or the error Redis refused it with.
func ParseCacheOps(r rueidis.RedisResult, n int) ([]rueidis.RedisMessage, error) {
	arr, err := r.ToArray()
	if err != nil {
		return nil, err
	}
	if len(arr) != n {
		return nil, fmt.Errorf("cache_ops reply has %d values, want %d", len(arr), n)
	}
	return arr, nil
}

// ParseCacheOpBefore reads one operation's reply of cache_ops.lua: the
// JSON cached before (ok=false if none).
func ParseCacheOpBefore(m *rueidis.RedisMessage) (before string, ok bool, err error) {
	if m.IsNil() {
		return "", false, nil
	}
	s, err := m.ToString()
	if err != nil {
		return "", false, err
	}
	return s, true, nil
}
