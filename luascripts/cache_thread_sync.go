package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_thread_sync.lua
var cacheThreadSyncSrc string

// CacheThreadSyncScript is cache_thread_sync.lua (THREAD_LIST_SYNC).
var CacheThreadSyncScript = newCacheScript("cache_thread_sync", cacheThreadSyncSrc)

// CacheThreadSync builds the call of cache_thread_sync.lua: the threads of
// the parent channels (all = the whole guild) are replaced by threads.
func CacheThreadSync(b rueidis.Builder, threadsKey string, all bool, parents []string, threads []CacheField) rueidis.Completed {
	args := make([]string, 0, 1+len(parents)+2*len(threads))
	if all {
		args = append(args, "-1")
	} else {
		args = append(args, itoa(len(parents)))
		args = append(args, parents...)
	}
	for _, f := range threads {
		args = append(args, f.ID, f.JSON)
	}
	return CacheThreadSyncScript.evalsha(b, []string{threadsKey}, args)
}
