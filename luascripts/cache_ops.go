package luascripts

import (
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

//go:embed cache_ops.lua
var cacheOpsSrc string

// CacheOpsScript is cache_ops.lua: several single-object operations (those
// of cache_entity.lua, cache_member.lua, cache_list.lua and cache_user.lua)
// in one call, applied in order.
var CacheOpsScript = newCacheScript("cache_ops", cacheOpsSrc)

// CacheOp is one operation of cache_ops.lua; build it with the CacheOp*
// functions.
type CacheOp struct {
	code   string
	k1, k2 string // k2 "" = one key
	a      [4]string
	na     int
}

// CacheOpEntitySet stores object JSON under id in a per-guild hash.
func CacheOpEntitySet(hash, id, json string) CacheOp {
	return CacheOp{code: "es", k1: hash, a: [4]string{id, json}, na: 2}
}

// CacheOpEntityDel forgets id in a per-guild hash.
func CacheOpEntityDel(hash, id string) CacheOp {
	return CacheOp{code: "ed", k1: hash, a: [4]string{id}, na: 1}
}

// CacheOpMember is a single-member operation: members and presences are
// the guild's hashes, member the member JSON without its user (unused for
// CacheMemberRemove).
func CacheOpMember(members, presences string, op CacheMemberOp, userID, member string) CacheOp {
	switch op {
	case CacheMemberSet:
		return CacheOp{code: "ms", k1: members, a: [4]string{userID, member}, na: 2}
	case CacheMemberMerge:
		return CacheOpMemberMerge(members, userID, member, "")
	}
	return CacheOp{code: "mr", k1: members, k2: presences, a: [4]string{userID}, na: 1}
}

// CacheOpMemberMerge is CacheOpMember's merge with the member JSON's
// top-level keys given, each quoted, concatenated ("" = unknown): the merge
// then scans only the cached member. member must be compact at its top
// level and end with its closing brace.
func CacheOpMemberMerge(members, userID, member, keys string) CacheOp {
	return CacheOp{code: "mm", k1: members, a: [4]string{userID, member, keys}, na: 3}
}

// CacheOpListSet replaces a per-guild JSON array (emojis, stickers).
func CacheOpListSet(key, json string) CacheOp {
	return CacheOp{code: "ls", k1: key, a: [4]string{json}, na: 1}
}

// CacheOpUser is an operation on one user's object and mutual-guild set
// (the keys share the user's hash tag); as CacheUser.
func CacheOpUser(user, guilds string, op CacheUserOp, guildID, userJSON string) CacheOp {
	switch op {
	case CacheUserJoin:
		return CacheOp{code: "uj", k1: user, k2: guilds, a: [4]string{guildID, userJSON}, na: 2}
	case CacheUserLeave:
		return CacheOp{code: "ul", k1: user, k2: guilds, a: [4]string{guildID}, na: 1}
	}
	return CacheOp{code: "uu", k1: user, k2: guilds, a: [4]string{userJSON}, na: 1}
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
