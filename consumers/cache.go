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

// ErrMalformed: a cached value is not what the key layout holds there
// (written by something else than feathery).
var ErrMalformed = errors.New("malformed cached value")

// CacheReader reads feathery's cache with the key layout of KEYS.md
// (keyspace.CacheKeys). Objects come back as the raw JSON feathery stored, with
// the pieces it keeps apart put back: a member gets its "user", a presence
// its "user":{"id"}, members and users the members stored compact left out
// (keyspace.ExpandMember, ExpandUser). Decode them with encoding/json into the types of this
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

// userEntry reads the user's entry in its bucket: the cached guilds it is
// a member of and its compact object ("" when unknown). A user in no
// cached guild is ErrNotCached.
func (r *CacheReader) userEntry(ctx context.Context, userID string) (guilds []string, user string, err error) {
	key := r.keys.CacheUsers(userID)
	v, err := r.client.Do(ctx, r.client.B().Hget().Key(key).Field(userID).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, "", fmt.Errorf("hget %s %s: %w", key, userID, ErrNotCached)
	}
	if err != nil {
		return nil, "", fmt.Errorf("hget %s %s: %w", key, userID, err)
	}
	guilds, user, err = keyspace.ParseUserEntry(v)
	if err != nil {
		return nil, "", fmt.Errorf("hget %s %s: %w: %w", key, userID, ErrMalformed, err)
	}
	return guilds, user, nil
}

// expandUser is the user object of a compact one read from key.
func (r *CacheReader) expandUser(userID, user string) (json.RawMessage, error) {
	u, err := keyspace.ExpandUser(userID, []byte(user))
	if err != nil {
		return nil, fmt.Errorf("hget %s %s: %w: %w", r.keys.CacheUsers(userID), userID, ErrMalformed, err)
	}
	return u, nil
}

// User is a cached user (a member of at least one cached guild), with the
// members the cache stores it without put back.
func (r *CacheReader) User(ctx context.Context, userID string) (json.RawMessage, error) {
	_, u, err := r.userEntry(ctx, userID)
	if err != nil {
		return nil, err
	}
	if u == "" {
		return nil, fmt.Errorf("hget %s %s: no user object: %w", r.keys.CacheUsers(userID), userID, ErrNotCached)
	}
	return r.expandUser(userID, u)
}

// MutualGuilds are the ids of the cached guilds the user is a member of,
// sorted (none for a user the cache does not hold).
func (r *CacheReader) MutualGuilds(ctx context.Context, userID string) ([]string, error) {
	gs, _, err := r.userEntry(ctx, userID)
	if errors.Is(err, ErrNotCached) {
		return []string{}, nil
	}
	if err != nil {
		return nil, err
	}
	slices.Sort(gs)
	return gs, nil
}

// Member is the guild member with the members the cache stores it without
// put back, and its "user" first (when users are cached).
func (r *CacheReader) Member(ctx context.Context, guildID, userID string) (json.RawMessage, error) {
	ms, err := r.MembersByID(ctx, guildID, []string{userID})
	if err != nil {
		return nil, err
	}
	if ms[0] == nil {
		return nil, fmt.Errorf("hget %s %s: %w", r.keys.CacheMembers(guildID), userID, ErrNotCached)
	}
	return ms[0], nil
}

// Members are the guild's members by user id, as Member reads them (one
// HGETALL, then one pipelined HGET per member). A member whose cached
// value cannot be read fails the call (ErrMalformed).
func (r *CacheReader) Members(ctx context.Context, guildID string) (map[string]json.RawMessage, error) {
	ms, err := r.hgetall(ctx, r.keys.CacheMembers(guildID))
	if err != nil || len(ms) == 0 {
		return ms, err
	}
	ids := make([]string, 0, len(ms))
	raw := make([]json.RawMessage, 0, len(ms))
	for id, m := range ms {
		ids = append(ids, id)
		raw = append(raw, m)
	}
	out, err := r.withUsers(ctx, guildID, ids, raw)
	if err != nil {
		return nil, err
	}
	for i, id := range ids {
		ms[id] = out[i]
	}
	return ms, nil
}

// MembersByID are the guild's members of the given user ids, in their
// order, as Member reads them; nil for a user that is not a member (one
// HMGET and one pipelined HGET per member).
func (r *CacheReader) MembersByID(ctx context.Context, guildID string, userIDs []string) ([]json.RawMessage, error) {
	if len(userIDs) == 0 {
		return nil, nil
	}
	key := r.keys.CacheMembers(guildID)
	vals, err := r.client.Do(ctx, r.client.B().Hmget().Key(key).Field(userIDs...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("hmget %s: %w", key, err)
	}
	if len(vals) != len(userIDs) {
		return nil, fmt.Errorf("hmget %s: %d values for %d fields", key, len(vals), len(userIDs))
	}
	raw := make([]json.RawMessage, len(userIDs))
	for i := range vals {
		b, err := vals[i].AsBytes()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("hmget %s %s: %w", key, userIDs[i], err)
		}
		raw[i] = b
	}
	return r.withUsers(ctx, guildID, userIDs, raw)
}

// withUsers expands the compact members raw (nil = none) of userIDs and
// puts each one's user first when cached.
func (r *CacheReader) withUsers(ctx context.Context, guildID string, userIDs []string, raw []json.RawMessage) ([]json.RawMessage, error) {
	cmds := make(rueidis.Commands, 0, len(raw))
	at := make([]int, 0, len(raw))
	for i, m := range raw {
		if m != nil {
			cmds = append(cmds, r.client.B().Hget().Key(r.keys.CacheUsers(userIDs[i])).Field(userIDs[i]).Build())
			at = append(at, i)
		}
	}
	out := make([]json.RawMessage, len(raw))
	if len(cmds) == 0 {
		return out, nil
	}
	for j, res := range r.client.DoMulti(ctx, cmds...) {
		i, id := at[j], userIDs[at[j]]
		var u json.RawMessage
		v, err := res.ToString()
		switch {
		case rueidis.IsRedisNil(err):
		case err != nil:
			return nil, fmt.Errorf("hget %s %s: %w", r.keys.CacheUsers(id), id, err)
		default:
			_, us, err := keyspace.ParseUserEntry(v)
			if err != nil {
				return nil, fmt.Errorf("hget %s %s: %w: %w", r.keys.CacheUsers(id), id, ErrMalformed, err)
			}
			if us != "" {
				if u, err = r.expandUser(id, us); err != nil {
					return nil, err
				}
			}
		}
		m, err := keyspace.ExpandMember(raw[i], u)
		if err != nil {
			return nil, fmt.Errorf("hget %s %s: %w: %w", r.keys.CacheMembers(guildID), id, ErrMalformed, err)
		}
		out[i] = m
	}
	return out, nil
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
