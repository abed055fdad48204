package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_member_chunk.lua
var cacheMemberChunkSrc string

// CacheMemberChunkScript is cache_member_chunk.lua (GUILD_MEMBERS_CHUNK).
var CacheMemberChunkScript = newCacheScript("cache_member_chunk", cacheMemberChunkSrc)

// CacheMemberChunk builds the call of cache_member_chunk.lua: store the
// members (id = user id, JSON without user) and presences (id = user id)
// in the guild's hashes members and presences. Its reply is nil.
func CacheMemberChunk(b rueidis.Builder, members, presences string, ms, ps []CacheField) rueidis.Completed {
	args := make([]string, 0, 2+2*len(ms)+2*len(ps))
	args = append(args, itoa(len(ms)))
	for _, f := range ms {
		args = append(args, f.ID, f.JSON)
	}
	args = append(args, itoa(len(ps)))
	for _, f := range ps {
		args = append(args, f.ID, f.JSON)
	}
	return CacheMemberChunkScript.evalsha(b, []string{members, presences}, args)
}
