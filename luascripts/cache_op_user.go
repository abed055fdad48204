package luascripts

import _ "embed"

// cacheOpUserSrc defines the user operations of cache_ops.lua.
//
//go:embed cache_op_user.lua
var cacheOpUserSrc string

// CacheUserOp names an operation of cache_op_user.lua.
type CacheUserOp string

// The operations of cache_op_user.lua.
const (
	CacheUserJoin   CacheUserOp = "join"   // user_join
	CacheUserLeave  CacheUserOp = "leave"  // user_leave
	CacheUserUpdate CacheUserOp = "update" // user_update (USER_UPDATE)
)

// CacheOpUser is an operation on one user's entry in its bucket users
// (keyspace.CacheKeys.CacheUsers): its memberships and object. guildID is
// used by join and leave, userJSON by join (compact; "" keeps the cached
// object) and update (as Discord sent it: stored compact after the merge).
func CacheOpUser(users string, op CacheUserOp, userID, guildID, userJSON string) CacheOp {
	switch op {
	case CacheUserJoin:
		return CacheOp{code: "uj", k1: users, a: [4]string{userID, guildID, userJSON}, na: 3}
	case CacheUserLeave:
		return CacheOp{code: "ul", k1: users, a: [4]string{userID, guildID}, na: 2}
	}
	return CacheOp{code: "uu", k1: users, a: [4]string{userID, userJSON}, na: 2}
}
