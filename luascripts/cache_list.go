package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_list.lua
var cacheListSrc string

// CacheListScript is cache_list.lua: a JSON array a guild replaces as a
// whole (emojis, stickers).
var CacheListScript = newCacheScript("cache_list", cacheListSrc)

// CacheListSet builds the call that replaces the array at key with json.
func CacheListSet(b rueidis.Builder, key, json string) rueidis.Completed {
	return CacheListScript.evalsha(b, []string{key}, []string{json})
}

// ParseCacheList reads the reply of cache_list.lua: the array cached before
// (ok=false if none).
func ParseCacheList(r rueidis.RedisResult) (before string, ok bool, err error) {
	return optString(r)
}
