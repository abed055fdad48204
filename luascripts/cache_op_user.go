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

// CacheOpUser is an operation on one user's object and mutual-guild set
// (the keys share the user's hash tag). guildID is used by join and leave,
// userJSON by join ("" keeps the cached object) and update.
func CacheOpUser(user, guilds string, op CacheUserOp, guildID, userJSON string) CacheOp {
	switch op {
	case CacheUserJoin:
		return CacheOp{code: "uj", k1: user, k2: guilds, a: [4]string{guildID, userJSON}, na: 2}
	case CacheUserLeave:
		return CacheOp{code: "ul", k1: user, k2: guilds, a: [4]string{guildID}, na: 1}
	}
	return CacheOp{code: "uu", k1: user, k2: guilds, a: [4]string{userJSON}, na: 1}
}
