package luascripts

import _ "embed"

// cacheOpMemberSrc defines the member operations of cache_ops.lua.
//
//go:embed cache_op_member.lua
var cacheOpMemberSrc string

// CacheMemberOp names a single-member operation of cache_op_member.lua.
type CacheMemberOp string

// The single-member operations of cache_op_member.lua.
const (
	CacheMemberSet    CacheMemberOp = "set"    // member_set (GUILD_MEMBER_ADD)
	CacheMemberMerge  CacheMemberOp = "merge"  // member_merge (GUILD_MEMBER_UPDATE)
	CacheMemberRemove CacheMemberOp = "remove" // member_remove (GUILD_MEMBER_REMOVE)
)

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

// CacheOpMemberMerge is CacheOpMember's merge with keys, the top-level
// keys of the member JSON it was made from, each quoted, concatenated: the
// merge then scans only the cached member, and member is stored without
// its defaults (keyspace.MemberDefaults: keys names them when it had them),
// compact at its top level, ending with its closing brace. keys "" =
// unknown: member as Discord sent it, the merge drops the defaults.
func CacheOpMemberMerge(members, userID, member, keys string) CacheOp {
	return CacheOp{code: "mm", k1: members, a: [4]string{userID, member, keys}, na: 3}
}
