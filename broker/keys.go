package broker

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultPrefix is the namespace every key starts with unless configured.
const DefaultPrefix = "feathery"

// DefaultStream is the stream name of events no route claims.
const DefaultStream = "events"

// Keys forms every Redis key and stream name feathery uses. Layout, with
// P the prefix (default "feathery"):
//
//	P:{bot:<bot>}:events                 a bot's default stream
//	P:{bot:<bot>}:<stream>               a bot's route stream
//	P:{bot:<bot>}:session:<shard>        a shard's checkpoint hash
//	                                     (session, seq, resume_url, shards, intents)
//	P:{bot:<bot>}:identify:bucket:<b>    identify bucket b = shard % max_concurrency
//	                                     (exists while its window runs)
//	P:{bot:<bot>}:identify:remaining     daily session starts left
//	P:control                            feathery's control stream
//	P:{<guild_id>}:prefixes:<bot>        a guild's command prefixes for a bot
//	                                     (a SET any client may SADD/SREM)
//
// A bot's streams, checkpoints and identify keys share the hash tag
// {bot:<bot>}, so one publish script touches one Cluster slot. Per-guild
// keys carry the {<guild_id>} tag, the one the cache keys use.
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

// IdentifyBucket is the key held while bucket's identify window runs.
func (k Keys) IdentifyBucket(bot string, bucket int) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":identify:bucket:" + strconv.Itoa(bucket)
}

// IdentifyRemaining counts the bot's daily session starts left.
func (k Keys) IdentifyRemaining(bot string) string {
	return k.Prefix() + ":" + k.BotTag(bot) + ":identify:remaining"
}

// Control is the stream of feathery's own control events.
func (k Keys) Control() string { return k.Prefix() + ":control" }

// GuildTag is the hash tag of a guild's keys, braces included.
func (k Keys) GuildTag(guild uint64) string { return "{" + strconv.FormatUint(guild, 10) + "}" }

// GuildPrefixes is the SET of command prefixes bot accepts in guild.
func (k Keys) GuildPrefixes(guild uint64, bot string) string {
	return k.Prefix() + ":" + k.GuildTag(guild) + ":prefixes:" + bot
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
