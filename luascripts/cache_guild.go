package luascripts

import (
	_ "embed"

	"github.com/redis/rueidis"
)

//go:embed cache_guild.lua
var cacheGuildSrc string

// CacheGuildScript is cache_guild.lua (GUILD_CREATE, GUILD_UPDATE).
var CacheGuildScript = newCacheScript("cache_guild", cacheGuildSrc)

// CacheGuildKeys are the keys of one guild; all carry the guild's hash tag.
// cache_guild.lua and cache_guild_delete.lua take all of them, in this order.
// PendingLeaves is the set of user ids whose leaving the guild is not yet
// applied to their mutual guilds (see ParseCacheGuild).
type CacheGuildKeys struct {
	Guild, Bots, Unavailable, Channels, Threads, Roles, Emojis, Stickers, Members, VoiceStates, Presences string

	PendingLeaves string
}

func (k *CacheGuildKeys) slice() []string {
	return []string{k.Guild, k.Bots, k.Unavailable, k.Channels, k.Threads, k.Roles,
		k.Emojis, k.Stickers, k.Members, k.VoiceStates, k.Presences, k.PendingLeaves}
}

// CacheGuildMode is ARGV[1] of cache_guild.lua.
type CacheGuildMode string

// The modes of cache_guild.lua.
const (
	CacheGuildCreate      CacheGuildMode = "create"
	CacheGuildUpdate      CacheGuildMode = "update"
	CacheGuildUnavailable CacheGuildMode = "unavailable"
)

// CacheGuildArgs are the arguments of cache_guild.lua.
type CacheGuildArgs struct {
	Mode CacheGuildMode
	// Bot is the bot the event came from.
	Bot string
	// Guild is the guild object without its lists; "" leaves it alone.
	Guild string
	// GuildKeys, for CacheGuildUpdate, lists Guild's top-level keys, each
	// quoted, concatenated ("" = unknown): the merge then scans only the
	// cached guild. Guild must then be compact at its top level.
	GuildKeys string
	// Partial: the member and presence lists are not complete (a large
	// guild); they are merged into the cache instead of replacing it.
	Partial                         bool
	Channels, Threads, Roles        CacheSection
	Emojis, Stickers                CacheList
	Members, VoiceStates, Presences CacheSection
}

// CacheGuild builds the call of cache_guild.lua.
func CacheGuild(b rueidis.Builder, k CacheGuildKeys, a CacheGuildArgs) rueidis.Completed {
	args := make([]string, 0, 5+a.Channels.argc()+a.Threads.argc()+a.Roles.argc()+4+
		a.Members.argc()+a.VoiceStates.argc()+a.Presences.argc())
	partial := "0"
	if a.Partial {
		partial = "1"
	}
	args = append(args, string(a.Mode), a.Bot, a.Guild, partial, a.GuildKeys)
	args = a.Channels.append(args)
	args = a.Threads.append(args)
	args = a.Roles.append(args)
	args = a.Emojis.append(args)
	args = a.Stickers.append(args)
	args = a.Members.append(args)
	args = a.VoiceStates.append(args)
	args = a.Presences.append(args)
	return CacheGuildScript.evalsha(b, k.slice(), args)
}

// ParseCacheGuild reads the reply of cache_guild.lua: the guild JSON cached
// before (ok=false if none) and the ids of users whose membership ended (a
// full member list no longer has them, or an earlier call recorded them in
// PendingLeaves). The caller removes the guild from those users'
// mutual guilds and then the ids from PendingLeaves
// (CachePendingLeavesDone), so a failure between the two is completed by
// the next call for the guild.
func ParseCacheGuild(r rueidis.RedisResult) (before string, ok bool, removed []string, err error) {
	return beforeAndIDs(r)
}

// CachePendingLeavesDone builds the SREM that drops ids from the guild's
// pending user leaves once their mutual guilds were updated.
func CachePendingLeavesDone(b rueidis.Builder, k CacheGuildKeys, ids []string) rueidis.Completed {
	return b.Srem().Key(k.PendingLeaves).Member(ids...).Build()
}
