package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_guild_delete.lua
var cacheGuildDeleteSrc string

// CacheGuildDeleteScript is cache_guild_delete.lua (GUILD_DELETE).
var CacheGuildDeleteScript = newCacheScript("cache_guild_delete", cacheGuildDeleteSrc)

// CacheGuildDelete builds the call of cache_guild_delete.lua: bot lost the
// guild, to an outage (unavailable) or for good.
func CacheGuildDelete(b rueidis.Builder, k CacheGuildKeys, bot string, unavailable bool) rueidis.Completed {
	flag := "0"
	if unavailable {
		flag = "1"
	}
	return CacheGuildDeleteScript.evalsha(b, k.slice(), []string{bot, flag})
}

// ParseCacheGuildDelete reads the reply of cache_guild_delete.lua: the guild
// JSON cached before (ok=false if none) and, when the guild's data was
// deleted, the user ids of its members.
func ParseCacheGuildDelete(r rueidis.RedisResult) (before string, ok bool, members []string, err error) {
	return beforeAndIDs(r)
}
