package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_user.lua
var cacheUserSrc string

// CacheUserScript is cache_user.lua (one user's object and mutual guilds).
var CacheUserScript = newCacheScript("cache_user", cacheUserSrc)

// CacheUserOp is ARGV[1] of cache_user.lua.
type CacheUserOp string

// The operations of cache_user.lua.
const (
	CacheUserJoin   CacheUserOp = "join"
	CacheUserLeave  CacheUserOp = "leave"
	CacheUserUpdate CacheUserOp = "update"
)

// CacheUser builds the call of cache_user.lua. user and guilds are the
// user's two keys (same hash tag); guildID is used by join and leave, user
// JSON by join ("" keeps the cached object) and update.
func CacheUser(b rueidis.Builder, user, guilds string, op CacheUserOp, guildID, userJSON string) rueidis.Completed {
	return CacheUserScript.evalsha(b, []string{user, guilds}, []string{string(op), guildID, userJSON})
}

// ParseCacheUser reads the reply of cache_user.lua: the user JSON cached
// before (ok=false if none).
func ParseCacheUser(r rueidis.RedisResult) (before string, ok bool, err error) {
	return optString(r)
}
