package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_entity.lua
var cacheEntitySrc string

// CacheEntityScript is cache_entity.lua: one object in a per-guild hash
// (channels, threads, roles, voice states, presences).
var CacheEntityScript = newCacheScript("cache_entity", cacheEntitySrc)

// CacheEntitySet builds the call that stores object JSON under id in hash.
func CacheEntitySet(b rueidis.Builder, hash, id, json string) rueidis.Completed {
	return CacheEntityScript.evalsha(b, []string{hash}, []string{"set", id, json})
}

// CacheEntityDel builds the call that forgets id in hash.
func CacheEntityDel(b rueidis.Builder, hash, id string) rueidis.Completed {
	return CacheEntityScript.evalsha(b, []string{hash}, []string{"del", id})
}

// ParseCacheEntity reads the reply of cache_entity.lua: the object JSON
// cached before (ok=false if none).
func ParseCacheEntity(r rueidis.RedisResult) (before string, ok bool, err error) {
	return optString(r)
}
