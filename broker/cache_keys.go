package broker

import "github.com/feathery/feathery/luascripts"

// DefaultCacheNamespace is the namespace of the cache keys unless a bot is
// given its own.
const DefaultCacheNamespace = "feathery:cache"

// CacheKeys forms the cache's key names (consumers/KEYS.md documents them).
// With N the namespace, G a guild id and U a user id:
//
//	N:{G}:guild        string  guild object without its lists
//	N:{G}:bots         set     names of the bots that see the guild
//	N:{G}:unavailable  string  "1" while the guild is in an outage
//	N:{G}:channels     hash    channel id -> channel JSON
//	N:{G}:threads      hash    thread id -> thread JSON
//	N:{G}:roles        hash    role id -> role JSON
//	N:{G}:emojis       string  JSON array of the guild's emojis
//	N:{G}:stickers     string  JSON array of the guild's stickers
//	N:{G}:members      hash    user id -> member JSON without "user"
//	N:{G}:voice_states hash    user id -> voice state JSON without "member"
//	N:{G}:presences    hash    user id -> presence JSON without "user" and "guild_id"
//	N:{uU}:user        string  user JSON
//	N:{uU}:guilds      set     ids of the cached guilds the user is a member of
//
// Per-guild keys share the hash tag {G}, a user's keys the tag {uU}, so every
// cache script touches one Cluster slot.
type CacheKeys struct {
	ns string
}

// NewCacheKeys returns the layout under namespace ("" = DefaultCacheNamespace).
func NewCacheKeys(namespace string) CacheKeys {
	if namespace == "" {
		namespace = DefaultCacheNamespace
	}
	return CacheKeys{ns: namespace}
}

// Namespace is the prefix of every cache key.
func (k CacheKeys) Namespace() string {
	if k.ns == "" {
		return DefaultCacheNamespace
	}
	return k.ns
}

func (k CacheKeys) guildKey(guild, suffix string) string {
	return k.Namespace() + ":{" + guild + "}:" + suffix
}

func (k CacheKeys) userKey(user, suffix string) string {
	return k.Namespace() + ":{u" + user + "}:" + suffix
}

// CacheGuild is the guild object of guild (a snowflake in decimal).
func (k CacheKeys) CacheGuild(guild string) string { return k.guildKey(guild, "guild") }

// CacheGuildBots is the set of bots that see guild.
func (k CacheKeys) CacheGuildBots(guild string) string { return k.guildKey(guild, "bots") }

// CacheGuildUnavailable exists ("1") while guild is unavailable.
func (k CacheKeys) CacheGuildUnavailable(guild string) string {
	return k.guildKey(guild, "unavailable")
}

// CacheChannels is the hash of guild's channels.
func (k CacheKeys) CacheChannels(guild string) string { return k.guildKey(guild, "channels") }

// CacheThreads is the hash of guild's active threads.
func (k CacheKeys) CacheThreads(guild string) string { return k.guildKey(guild, "threads") }

// CacheRoles is the hash of guild's roles.
func (k CacheKeys) CacheRoles(guild string) string { return k.guildKey(guild, "roles") }

// CacheEmojis is guild's emoji array.
func (k CacheKeys) CacheEmojis(guild string) string { return k.guildKey(guild, "emojis") }

// CacheStickers is guild's sticker array.
func (k CacheKeys) CacheStickers(guild string) string { return k.guildKey(guild, "stickers") }

// CacheMembers is the hash of guild's members.
func (k CacheKeys) CacheMembers(guild string) string { return k.guildKey(guild, "members") }

// CacheVoiceStates is the hash of guild's voice states.
func (k CacheKeys) CacheVoiceStates(guild string) string { return k.guildKey(guild, "voice_states") }

// CachePresences is the hash of guild's presences.
func (k CacheKeys) CachePresences(guild string) string { return k.guildKey(guild, "presences") }

// CacheUser is the user object of user.
func (k CacheKeys) CacheUser(user string) string { return k.userKey(user, "user") }

// CacheUserGuilds is the set of cached guilds user is a member of.
func (k CacheKeys) CacheUserGuilds(user string) string { return k.userKey(user, "guilds") }

// cacheGuildKeys are the keys cache_guild.lua and cache_guild_delete.lua take.
func (k CacheKeys) cacheGuildKeys(guild string) luascripts.CacheGuildKeys {
	return luascripts.CacheGuildKeys{
		Guild: k.CacheGuild(guild), Bots: k.CacheGuildBots(guild),
		Unavailable: k.CacheGuildUnavailable(guild), Channels: k.CacheChannels(guild),
		Threads: k.CacheThreads(guild), Roles: k.CacheRoles(guild),
		Emojis: k.CacheEmojis(guild), Stickers: k.CacheStickers(guild),
		Members: k.CacheMembers(guild), VoiceStates: k.CacheVoiceStates(guild),
		Presences: k.CachePresences(guild),
	}
}
