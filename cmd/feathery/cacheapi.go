package main

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/consumers"
)

// The cache read API answers Discord's own JSON from the cache: a guild,
// its channels, roles and members (paged like Discord's List Guild
// Members: ?limit=1..1000&after=<user id>), a user and the guilds a user
// shares with the bot. ?bot=NAME reads that bot's cache namespace when it
// has its own. It needs the admin token unless admin.public_cache is true.

//go:embed openapi.json
var openapiJSON []byte

// cacheBackend is what the cache API reads.
type cacheBackend interface {
	// CacheClient is the Redis client and the key layout of bot's cache
	// ("" = the shared namespace); ok is false when no cache is kept.
	CacheClient(bot string) (c rueidis.Client, keys broker.CacheKeys, ok bool)
	// PublicCache reports admin.public_cache.
	PublicCache() bool
}

var snowflakeRE = regexp.MustCompile(`^[0-9]{1,20}$`)

const (
	defaultMembersLimit = 100
	maxMembersLimit     = 1000
)

func (a *adminServer) cacheRoutes(cb cacheBackend) []route {
	guard := a.requireToken
	if cb.PublicCache() {
		guard = func(h http.HandlerFunc) http.HandlerFunc { return h }
	}
	h := func(f func(w http.ResponseWriter, r *http.Request, c rueidis.Client, keys broker.CacheKeys, id string)) http.HandlerFunc {
		return guard(func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if !snowflakeRE.MatchString(id) {
				writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("id %q is not a snowflake (1-20 digits)", truncateString(id, 40))})
				return
			}
			bot := r.URL.Query().Get("bot")
			c, keys, ok := cb.CacheClient(bot)
			if !ok {
				writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("no cache is kept for bot %q", truncateString(bot, 64))})
				return
			}
			f(w, r, c, keys, id)
		})
	}
	return []route{
		{"GET", "/api/cache/guilds/{id}", h(func(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) {
			raw, err := consumers.NewCacheReader(c, k.Namespace()).Guild(r.Context(), id)
			writeRaw(w, "guild "+id, raw, err)
		})},
		{"GET", "/api/cache/guilds/{id}/channels", h(func(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) {
			listOfGuild(w, r, c, k, id, k.CacheChannels(id))
		})},
		{"GET", "/api/cache/guilds/{id}/roles", h(func(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) {
			listOfGuild(w, r, c, k, id, k.CacheRoles(id))
		})},
		{"GET", "/api/cache/guilds/{id}/members", h(handleMembers)},
		{"GET", "/api/cache/users/{id}", h(func(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) {
			raw, err := consumers.NewCacheReader(c, k.Namespace()).User(r.Context(), id)
			writeRaw(w, "user "+id, raw, err)
		})},
		{"GET", "/api/cache/users/{id}/mutual-guilds", h(handleMutualGuilds)},
	}
}

func truncateString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// writeRaw answers a cached object as it is, 404 when not cached, 503 when
// Redis fails.
func writeRaw(w http.ResponseWriter, what string, raw json.RawMessage, err error) {
	switch {
	case errors.Is(err, consumers.ErrNotCached):
		writeJSON(w, http.StatusNotFound, apiError{what + " is not cached"})
	case errors.Is(err, consumers.ErrMalformed):
		writeJSON(w, http.StatusBadGateway, apiError{"read " + what + ": " + err.Error()})
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{"read " + what + ": " + err.Error()})
	case !json.Valid(raw):
		writeJSON(w, http.StatusBadGateway, apiError{"the cached " + what + " is not JSON"})
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(raw)
	}
}

// writeArray answers a JSON array of raw objects, skipping values that are
// not JSON (written by something else).
func writeArray(w http.ResponseWriter, items []json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	buf := []byte{'['}
	n := 0
	for _, it := range items {
		if !json.Valid(it) {
			continue
		}
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, it...)
		n++
	}
	buf = append(buf, ']')
	_, _ = w.Write(buf)
}

// guildCached answers 404 and returns false when the guild is not cached.
func guildCached(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) bool {
	n, err := c.Do(r.Context(), c.B().Exists().Key(k.CacheGuild(id)).Build()).AsInt64()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"read guild " + id + ": " + err.Error()})
		return false
	}
	if n == 0 {
		writeJSON(w, http.StatusNotFound, apiError{"guild " + id + " is not cached"})
		return false
	}
	return true
}

// listOfGuild answers the values of one of the guild's hashes (channels,
// roles) as an array ordered by id.
func listOfGuild(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id, key string) {
	if !guildCached(w, r, c, k, id) {
		return
	}
	m, err := c.Do(r.Context(), c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"read " + key + ": " + err.Error()})
		return
	}
	ids := make([]string, 0, len(m))
	for k := range m {
		ids = append(ids, k)
	}
	sortSnowflakes(ids)
	out := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		out = append(out, json.RawMessage(m[id]))
	}
	writeArray(w, out)
}

func sortSnowflakes(ids []string) {
	sort.Slice(ids, func(i, j int) bool {
		if len(ids[i]) != len(ids[j]) {
			return len(ids[i]) < len(ids[j])
		}
		return ids[i] < ids[j]
	})
}

func snowflakeLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// handleMembers answers one page of members ordered by user id, each with
// its user object, like Discord's GET /guilds/{id}/members.
func handleMembers(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) {
	q := r.URL.Query()
	limit := defaultMembersLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxMembersLimit {
			writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("limit must be 1-%d", maxMembersLimit)})
			return
		}
		limit = n
	}
	after := q.Get("after")
	if after != "" && !snowflakeRE.MatchString(after) {
		writeJSON(w, http.StatusBadRequest, apiError{"after must be a user id"})
		return
	}
	if !guildCached(w, r, c, k, id) {
		return
	}
	ids, err := c.Do(r.Context(), c.B().Hkeys().Key(k.CacheMembers(id)).Build()).AsStrSlice()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"read members of guild " + id + ": " + err.Error()})
		return
	}
	sortSnowflakes(ids)
	start := 0
	if after != "" {
		start = sort.Search(len(ids), func(i int) bool { return snowflakeLess(after, ids[i]) })
	}
	page := ids[start:min(start+limit, len(ids))]
	if len(page) == 0 {
		writeArray(w, nil)
		return
	}
	out, err := consumers.NewCacheReader(c, k.Namespace()).MembersByID(r.Context(), id, page)
	switch {
	case errors.Is(err, consumers.ErrMalformed):
		writeJSON(w, http.StatusBadGateway, apiError{"read members of guild " + id + ": " + err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{"read members of guild " + id + ": " + err.Error()})
		return
	}
	writeArray(w, slices.DeleteFunc(out, func(m json.RawMessage) bool { return m == nil })) // nil: removed since HKEYS
}

// handleMutualGuilds answers the cached guild objects the user is a member
// of, ordered by id.
func handleMutualGuilds(w http.ResponseWriter, r *http.Request, c rueidis.Client, k broker.CacheKeys, id string) {
	ids, err := consumers.NewCacheReader(c, k.Namespace()).MutualGuilds(r.Context(), id)
	if errors.Is(err, consumers.ErrMalformed) {
		writeJSON(w, http.StatusBadGateway, apiError{"read guilds of user " + id + ": " + err.Error()})
		return
	}
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"read guilds of user " + id + ": " + err.Error()})
		return
	}
	sortSnowflakes(ids)
	if len(ids) == 0 {
		writeArray(w, nil)
		return
	}
	cmds := make(rueidis.Commands, 0, len(ids))
	for _, g := range ids {
		cmds = append(cmds, c.B().Get().Key(k.CacheGuild(g)).Build())
	}
	out := make([]json.RawMessage, 0, len(ids))
	for _, res := range c.DoMulti(r.Context(), cmds...) {
		if b, err := res.AsBytes(); err == nil {
			out = append(out, b)
		}
	}
	writeArray(w, out)
}

// CacheClient implements cacheBackend.
func (d *daemon) CacheClient(bot string) (rueidis.Client, broker.CacheKeys, bool) {
	if d.cache == nil {
		return nil, broker.CacheKeys{}, false
	}
	ns := ""
	if d.cfg.Redis.Prefix != "" {
		ns = d.cfg.Redis.Prefix + ":cache"
	}
	if bot != "" {
		found := false
		for i := range d.cfg.Bots {
			b := &d.cfg.Bots[i]
			if b.Name != bot {
				continue
			}
			found = true
			if !cacheEnabled(b) {
				return nil, broker.CacheKeys{}, false
			}
			if b.Cache != nil && b.Cache.Namespace != "" {
				ns = b.Cache.Namespace
			}
		}
		if !found {
			return nil, broker.CacheKeys{}, false
		}
	}
	return d.redis.Redis(), broker.NewCacheKeys(ns), true
}

// PublicCache implements cacheBackend.
func (d *daemon) PublicCache() bool { return d.cfg.Admin.PublicCache }
