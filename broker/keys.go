package broker

import (
	"github.com/feathery/feathery/broker/keyspace"
	"github.com/feathery/feathery/luascripts"
)

// The key layout lives in package keyspace, a leaf that readers of the
// streams and the cache import without linking the broker; these names are
// the broker's view of it.

// DefaultPrefix is the namespace every key starts with unless configured.
const DefaultPrefix = keyspace.DefaultPrefix

// DefaultStream is the stream name of events no route claims.
const DefaultStream = keyspace.DefaultStream

// DefaultCacheNamespace is the namespace of the cache keys unless a bot is
// given its own.
const DefaultCacheNamespace = keyspace.DefaultCacheNamespace

// Keys forms the key and stream names of the streams side (keyspace.Keys).
type Keys = keyspace.Keys

// CacheKeys forms the cache's key names (keyspace.CacheKeys).
type CacheKeys = keyspace.CacheKeys

// NewKeys returns the key layout under prefix ("" = DefaultPrefix).
func NewKeys(prefix string) Keys { return keyspace.NewKeys(prefix) }

// NewCacheKeys returns the layout under namespace ("" = DefaultCacheNamespace).
func NewCacheKeys(namespace string) CacheKeys { return keyspace.NewCacheKeys(namespace) }

// CheckName reports whether s can be used as a bot or stream name inside
// keys (keyspace.CheckName).
func CheckName(s string) error { return keyspace.CheckName(s) }

// cacheGuildKeys are the keys cache_guild.lua and cache_guild_delete.lua take.
func cacheGuildKeys(k CacheKeys, guild string) luascripts.CacheGuildKeys {
	return luascripts.CacheGuildKeys{
		Guild: k.CacheGuild(guild), Bots: k.CacheGuildBots(guild),
		Unavailable: k.CacheGuildUnavailable(guild), Channels: k.CacheChannels(guild),
		Threads: k.CacheThreads(guild), Roles: k.CacheRoles(guild),
		Emojis: k.CacheEmojis(guild), Stickers: k.CacheStickers(guild),
		Members: k.CacheMembers(guild), VoiceStates: k.CacheVoiceStates(guild),
		Presences: k.CachePresences(guild), PendingLeaves: k.CachePendingLeaves(guild),
	}
}
