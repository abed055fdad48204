package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_member.lua
var cacheMemberSrc string

// CacheMemberScript is cache_member.lua (guild members of one guild).
var CacheMemberScript = newCacheScript("cache_member", cacheMemberSrc)

// CacheMemberOp is ARGV[1] of cache_member.lua.
type CacheMemberOp string

// The single-member operations of cache_member.lua.
const (
	CacheMemberSet    CacheMemberOp = "set"
	CacheMemberMerge  CacheMemberOp = "merge"
	CacheMemberRemove CacheMemberOp = "remove"
)

// CacheMember builds a single-member call of cache_member.lua; members and
// presences are the guild's hashes, member the member JSON without its user
// (unused for CacheMemberRemove).
func CacheMember(b rueidis.Builder, members, presences string, op CacheMemberOp, userID, member string) rueidis.Completed {
	args := []string{string(op), userID}
	if op != CacheMemberRemove {
		args = append(args, member)
	}
	return CacheMemberScript.evalsha(b, []string{members, presences}, args)
}

// CacheMemberChunk builds the "chunk" call of cache_member.lua: store the
// members (id = user id, JSON without user) and presences (id = user id).
func CacheMemberChunk(b rueidis.Builder, members, presences string, ms, ps []CacheField) rueidis.Completed {
	args := make([]string, 0, 3+2*len(ms)+2*len(ps))
	args = append(args, "chunk", itoa(len(ms)))
	for _, f := range ms {
		args = append(args, f.ID, f.JSON)
	}
	args = append(args, itoa(len(ps)))
	for _, f := range ps {
		args = append(args, f.ID, f.JSON)
	}
	return CacheMemberScript.evalsha(b, []string{members, presences}, args)
}

// ParseCacheMember reads the reply of cache_member.lua: the member JSON
// cached before (ok=false if none).
func ParseCacheMember(r rueidis.RedisResult) (before string, ok bool, err error) {
	return optString(r)
}
