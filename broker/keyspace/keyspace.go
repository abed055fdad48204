// Package keyspace forms every Redis key and stream name feathery uses. It
// is a leaf: it imports only the standard library, so a program that only
// reads what feathery writes (package consumers, a worker, a dashboard) can
// name the keys without linking the broker, its embedded Redis or its Lua
// and JSON engines.
//
// Keys forms the streams side under a prefix (default "feathery"): each
// bot's streams, the shards' checkpoint hashes, the identify limiter's keys,
// the control stream and the per-guild command prefixes. CacheKeys forms the
// cache's keys under a namespace (default "feathery:cache"); consumers/KEYS.md
// documents what each holds. Both types' docs draw the full layout.
//
// Every key of one bot's streams side shares the hash tag {bot:<bot>}, every
// per-guild key the tag {<guild_id>} and every user bucket of the cache the
// tag {u<last three digits of the user id>}, so each script touches one
// Redis Cluster slot. Nothing else in feathery builds a key name.
package keyspace

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultPrefix is the namespace every key starts with unless configured.
const DefaultPrefix = "feathery"

// DefaultStream is the stream name of events no route claims.
const DefaultStream = "events"

// Keys forms the key and stream names of the streams side (the cache's are
// CacheKeys'). Layout, with P the prefix (default "feathery"):
//
//	P:{bot:<bot>}:events                 a bot's default stream
//	P:{bot:<bot>}:<stream>               a bot's route stream
//	P:{bot:<bot>}:session:<shard>        a shard's checkpoint hash
//	                                     (session, seq, resume_url, shards, intents)
//	P:{bot:<bot>}:session:<shard>/<n>    a re-shard's new set (n shards) checkpoint
//	                                     while it is staged
//	P:{bot:<bot>}:identify:bucket:<b>    identify bucket b = shard % max_concurrency
//	                                     (exists while its window runs)
//	P:{bot:<bot>}:identify:remaining     daily session starts left
//	P:{bot:<bot>}:lease:<shard>          a shard's lease hash (node, fence,
//	                                     expires); never deleted
//	P:{bot:<bot>}:nodes                  the bot's fleet members (sorted set:
//	                                     node id -> expiry, server ms)
//	P:{bot:<bot>}:nodes:details          member details (hash: node id -> JSON)
//	P:{bot:<bot>}:fleet                  pub/sub channel: lease released, plan changed
//	P:{bot:<bot>}:plan                   the fleet's plan (count, epoch; want, reason:
//	                                     a re-shard asked for)
//	P:{bot:<bot>}:reshard                the re-shard coordinator's lease hash
//	P:control                            feathery's control stream
//	P:{<guild_id>}:prefixes:<bot>        a guild's command prefixes for a bot
//	                                     (a SET any client may SADD/SREM)
//
// A bot's streams, checkpoints, identify, lease and membership keys share
// the hash tag {bot:<bot>}, so one publish script touches one Cluster slot
// (and checks the lease's fencing number atomically). Per-guild keys
// carry the {<guild_id>} tag, the one the cache keys use.
type Keys struct {
	prefix string
}

// NewKeys returns the key layout under prefix ("" = DefaultPrefix).
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keys{prefix: prefix}
}

// Prefix is the namespace of every key.
func (k Keys) Prefix() string {
	if k.prefix == "" {
		return DefaultPrefix
	}
	return k.prefix
}

// BotTag is the hash tag shared by a bot's keys, braces included.
func (k Keys) BotTag(bot string) string { return "{bot:" + bot + "}" }

// Events is the default stream of bot.
func (k Keys) Events(bot string) string { return k.Stream(bot, DefaultStream) }

// Stream is the route stream named stream of bot.
func (k Keys) Stream(bot, stream string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":" + stream
}

// Session is the checkpoint hash of (bot, shard).
func (k Keys) Session(bot string, shard int) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":session:" + strconv.Itoa(shard)
}

// Resharding holds the shard count of the bot's live re-shard in progress,
// whose new set's checkpoints are Session(bot, shard) + "/" + count.
func (k Keys) Resharding(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":resharding"
}

// IdentifyBucket is the key held while bucket's identify window runs.
func (k Keys) IdentifyBucket(bot string, bucket int) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":identify:bucket:" + strconv.Itoa(bucket)
}

// IdentifyRemaining counts the bot's daily session starts left.
func (k Keys) IdentifyRemaining(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":identify:remaining"
}

// Lease is the lease hash of (bot, shard).
func (k Keys) Lease(bot string, shard int) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":lease:" + strconv.Itoa(shard)
}

// StagedSession is the checkpoint hash of shard of a re-shard's new set of
// count shards while it is staged (apart from the old set's of the same
// id).
func (k Keys) StagedSession(bot string, shard, count int) string {
	return k.Session(bot, shard) + "/" + strconv.Itoa(count)
}

// FleetPlan is the hash of the bot's fleet plan: the shard count every
// node runs leases for, its epoch and a re-shard request.
func (k Keys) FleetPlan(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":plan"
}

// ReshardLease is the lease hash of the node coordinating a re-shard of
// the bot in a fleet.
func (k Keys) ReshardLease(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":reshard"
}

// FleetMembers is the sorted set of the bot's live nodes.
func (k Keys) FleetMembers(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":nodes"
}

// FleetMemberDetails is the hash of the bot's nodes' details.
func (k Keys) FleetMemberDetails(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":nodes:details"
}

// FleetChannel is the pub/sub channel on which the bot's nodes announce
// released leases.
func (k Keys) FleetChannel(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":fleet"
}

// Control is the stream of feathery's own control events.
func (k Keys) Control() string { return k.Prefix() + ":control" }

// GuildTag is the hash tag of a guild's keys, braces included.
func (k Keys) GuildTag(guild uint64) string { return "{" + strconv.FormatUint(guild, 10) + "}" }

// GuildPrefixes is the SET of command prefixes bot accepts in guild.
func (k Keys) GuildPrefixes(guild uint64, bot string) string {
	return k.Prefix() + ":" + k.GuildTag(guild) + ":prefixes:" + bot
}

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
//	N:{G}:members      hash    user id -> member JSON without "user", compact
//	N:{G}:voice_states hash    user id -> voice state JSON without "member"
//	N:{G}:presences    hash    user id -> presence JSON without "user" and "guild_id"
//	N:{uB}:users       hash    user id -> the ids of the cached guilds the
//	                           user is a member of, comma-separated, then the
//	                           compact user JSON (UserEntry)
//
// B is the user's bucket, the last three digits of U (UserBucket): users
// share a thousand hashes instead of two keys each. "Compact" JSON is the
// object without its top-level members at Discord's defaults (MemberDefaults,
// UserDefaults; a user without "id" too): ExpandMember and ExpandUser put
// them back. Per-guild keys share the hash tag {G}, a bucket's the tag {uB},
// so every cache script touches one Cluster slot.
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

// UserBucket is the bucket of user id (a snowflake in decimal): its last
// three digits ("" for "", the whole id when shorter).
func UserBucket(user string) string {
	if len(user) <= 3 {
		return user
	}
	return user[len(user)-3:]
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

// CachePendingLeaves is the set of user ids that left guild (a GUILD_CREATE
// member list without them, or GUILD_DELETE) and whose mutual guilds
// still have to lose guild; feathery's own bookkeeping, usually empty.
func (k CacheKeys) CachePendingLeaves(guild string) string {
	return k.guildKey(guild, "pending_leaves")
}

// CacheUsers is the hash holding user (field: the user id) with the
// other users of its bucket: the user's mutual guilds and object
// (ParseUserEntry).
func (k CacheKeys) CacheUsers(user string) string {
	return k.Namespace() + ":{u" + UserBucket(user) + "}:users"
}

// CheckName reports whether s can be used as a bot or stream name inside
// keys: not empty, and free of braces (they would break the hash tag),
// whitespace and control characters.
func CheckName(s string) error {
	if s == "" {
		return fmt.Errorf("is empty")
	}
	if strings.ContainsAny(s, "{}") {
		return fmt.Errorf("%q contains a brace", s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q contains whitespace or a control character", s)
		}
	}
	return nil
}
