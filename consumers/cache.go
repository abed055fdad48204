package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/keyspace"
)

// ErrNotCached: the cache holds no such object.
var ErrNotCached = errors.New("not cached")

// CacheReader reads feathery's cache with the key layout of KEYS.md
// (keyspace.CacheKeys). Objects come back as the raw JSON feathery stored, with
// the pieces it keeps apart put back: a member gets its "user", a presence
// its "user":{"id"}. Decode them with encoding/json into the types of this
// package (Member, Role, Channel, ...) when wanted.
type CacheReader struct {
	client rueidis.Client
	keys   keyspace.CacheKeys
}

// NewCacheReader reads the cache under namespace ("" = the default,
// keyspace.DefaultCacheNamespace).
func NewCacheReader(client rueidis.Client, namespace string) *CacheReader {
	return &CacheReader{client: client, keys: keyspace.NewCacheKeys(namespace)}
}

func (r *CacheReader) get(ctx context.Context, key string) (json.RawMessage, error) {
	b, err := r.client.Do(ctx, r.client.B().Get().Key(key).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotCached)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return b, nil
}

func (r *CacheReader) hget(ctx context.Context, key, field string) (json.RawMessage, error) {
	b, err := r.client.Do(ctx, r.client.B().Hget().Key(key).Field(field).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, fmt.Errorf("hget %s %s: %w", key, field, ErrNotCached)
	}
	if err != nil {
		return nil, fmt.Errorf("hget %s %s: %w", key, field, err)
	}
	return b, nil
}

func (r *CacheReader) hgetall(ctx context.Context, key string) (map[string]json.RawMessage, error) {
	m, err := r.client.Do(ctx, r.client.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("hgetall %s: %w", key, err)
	}
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[k] = json.RawMessage(v)
	}
	return out, nil
}

func (r *CacheReader) smembers(ctx context.Context, key string) ([]string, error) {
	s, err := r.client.Do(ctx, r.client.B().Smembers().Key(key).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("smembers %s: %w", key, err)
	}
	slices.Sort(s)
	return s, nil
}

// Guild is the guild object without its lists (those have their own keys).
func (r *CacheReader) Guild(ctx context.Context, guildID string) (json.RawMessage, error) {
	return r.get(ctx, r.keys.CacheGuild(guildID))
}

// GuildUnavailable reports whether the guild is in an outage.
func (r *CacheReader) GuildUnavailable(ctx context.Context, guildID string) (bool, error) {
	n, err := r.client.Do(ctx, r.client.B().Exists().Key(r.keys.CacheGuildUnavailable(guildID)).Build()).AsInt64()
	if err != nil {
		return false, fmt.Errorf("exists %s: %w", r.keys.CacheGuildUnavailable(guildID), err)
	}
	return n > 0, nil
}

// GuildBots are the names of the bots that see the guild, sorted.
func (r *CacheReader) GuildBots(ctx context.Context, guildID string) ([]string, error) {
	return r.smembers(ctx, r.keys.CacheGuildBots(guildID))
}

// Channels are the guild's channels by id.
func (r *CacheReader) Channels(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	return r.hgetall(ctx, r.keys.CacheChannels(guildID))
}

// Channel is one channel of the guild.
func (r *CacheReader) Channel(ctx context.Context, guildID, channelID string) (json.RawMessage, error) {
	return r.hget(ctx, r.keys.CacheChannels(guildID), channelID)
}

// Threads are the guild's active threads by id.
func (r *CacheReader) Threads(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	return r.hgetall(ctx, r.keys.CacheThreads(guildID))
}

// Thread is one thread of the guild.
func (r *CacheReader) Thread(ctx context.Context, guildID, threadID string) (json.RawMessage, error) {
	return r.hget(ctx, r.keys.CacheThreads(guildID), threadID)
}

// Roles are the guild's roles by id.
func (r *CacheReader) Roles(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	return r.hgetall(ctx, r.keys.CacheRoles(guildID))
}

// Role is one role of the guild.
func (r *CacheReader) Role(ctx context.Context, guildID, roleID string) (json.RawMessage, error) {
	return r.hget(ctx, r.keys.CacheRoles(guildID), roleID)
}

// Emojis is the guild's emoji array.
func (r *CacheReader) Emojis(ctx context.Context, guildID string) (json.RawMessage, error) {
	return r.get(ctx, r.keys.CacheEmojis(guildID))
}

// Stickers is the guild's sticker array.
func (r *CacheReader) Stickers(ctx context.Context, guildID string) (json.RawMessage, error) {
	return r.get(ctx, r.keys.CacheStickers(guildID))
}

// User is a cached user (a member of at least one cached guild).
func (r *CacheReader) User(ctx context.Context, userID string) (json.RawMessage, error) {
	return r.get(ctx, r.keys.CacheUser(userID))
}

// MutualGuilds are the ids of the cached guilds the user is a member of,
// sorted.
func (r *CacheReader) MutualGuilds(ctx context.Context, userID string) ([]string, error) {
	return r.smembers(ctx, r.keys.CacheUserGuilds(userID))
}

// Member is the guild member with its "user" put back (when users are
// cached).
func (r *CacheReader) Member(ctx context.Context, guildID, userID string) (json.RawMessage, error) {
	m, err := r.hget(ctx, r.keys.CacheMembers(guildID), userID)
	if err != nil {
		return nil, err
	}
	u, err := r.get(ctx, r.keys.CacheUser(userID))
	if errors.Is(err, ErrNotCached) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	return putFirst("user", u, m), nil
}

// Members are the guild's members by user id, each with its "user" put
// back (one HGETALL, then one pipelined GET per member).
func (r *CacheReader) Members(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	ms, err := r.hgetall(ctx, r.keys.CacheMembers(guildID))
	if err != nil || len(ms) == 0 {
		return ms, err
	}
	ids := make([]string, 0, len(ms))
	cmds := make(rueidis.Commands, 0, len(ms))
	for id := range ms {
		ids = append(ids, id)
		cmds = append(cmds, r.client.B().Get().Key(r.keys.CacheUser(id)).Build())
	}
	for i, res := range r.client.DoMulti(ctx, cmds...) {
		u, err := res.AsBytes()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get %s: %w", r.keys.CacheUser(ids[i]), err)
		}
		ms[ids[i]] = putFirst("user", u, ms[ids[i]])
	}
	return ms, nil
}

// VoiceStates are the guild's voice states by user id.
func (r *CacheReader) VoiceStates(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	return r.hgetall(ctx, r.keys.CacheVoiceStates(guildID))
}

// VoiceState is one user's voice state in the guild.
func (r *CacheReader) VoiceState(ctx context.Context, guildID, userID string) (json.RawMessage, error) {
	return r.hget(ctx, r.keys.CacheVoiceStates(guildID), userID)
}

// Presences are the guild's presences by user id, each with
// "user":{"id":...} put back.
func (r *CacheReader) Presences(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	ps, err := r.hgetall(ctx, r.keys.CachePresences(guildID))
	if err != nil {
		return nil, err
	}
	for id, p := range ps {
		ps[id] = putFirst("user", userRef(id), p)
	}
	return ps, nil
}

// Presence is one user's presence in the guild, with "user":{"id":...}.
func (r *CacheReader) Presence(ctx context.Context, guildID, userID string) (json.RawMessage, error) {
	p, err := r.hget(ctx, r.keys.CachePresences(guildID), userID)
	if err != nil {
		return nil, err
	}
	return putFirst("user", userRef(userID), p), nil
}

func userRef(id string) []byte {
	b, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{id})
	return b
}

// putFirst returns object obj with member key: raw in front. A value that
// is not an object is returned as it is.
func putFirst(key string, raw, obj []byte) json.RawMessage {
	i := 0
	for i < len(obj) && (obj[i] == ' ' || obj[i] == '\t' || obj[i] == '\n' || obj[i] == '\r') {
		i++
	}
	if i >= len(obj) || obj[i] != '{' {
		return obj
	}
	rest := obj[i+1:]
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t' || rest[j] == '\n' || rest[j] == '\r') {
		j++
	}
	kq, _ := json.Marshal(key)
	out := make([]byte, 0, len(obj)+len(raw)+len(kq)+3)
	out = append(out, '{')
	out = append(out, kq...)
	out = append(out, ':')
	out = append(out, raw...)
	if j < len(rest) && rest[j] != '}' {
		out = append(out, ',')
	}
	return append(out, rest[j:]...)
}
