package broker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/bytedance/sonic/ast"
	"github.com/redis/rueidis"
)

// messageInfo is what the message filters need from a MESSAGE_CREATE or
// MESSAGE_UPDATE payload.
type messageInfo struct {
	content    string // unescaped; references the payload when it has no escapes
	hasContent bool   // content is a JSON string
	bot        bool   // author.bot is true
	webhook    bool   // webhook_id is present and not null
}

// bytesView is a string over b without copying; b must not change while
// the string is in use.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// peekMessage reads the filter fields of a message payload without decoding
// the rest. A malformed payload or field reads as absent: the filters then
// keep the message rather than drop what they cannot judge.
func peekMessage(data []byte) messageInfo {
	var m messageInfo
	if len(data) == 0 || data[0] != '{' {
		return m
	}
	s := ast.NewSearcher(bytesView(data))
	if n, err := s.GetByPath("content"); err == nil && n.TypeSafe() == ast.V_STRING {
		if c, err := n.StrictString(); err == nil {
			m.content, m.hasContent = c, true
		}
	}
	if n, err := s.GetByPath("webhook_id"); err == nil {
		if t := n.TypeSafe(); t != ast.V_NULL && t != ast.V_NONE && t != ast.V_ERROR {
			m.webhook = true
		}
	}
	if n, err := s.GetByPath("author", "bot"); err == nil && n.TypeSafe() == ast.V_TRUE {
		m.bot = true
	}
	return m
}

// peekReadyUserID returns READY's d.user.id, "" when absent or malformed.
// The result is a copy.
func peekReadyUserID(data []byte) string {
	if len(data) == 0 || data[0] != '{' {
		return ""
	}
	n, err := ast.NewSearcher(bytesView(data)).GetByPath("user", "id")
	if err != nil || n.TypeSafe() != ast.V_STRING {
		return ""
	}
	id, err := n.StrictString()
	if err != nil || id == "" {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return ""
		}
	}
	return strings.Clone(id)
}

// hasPrefix reports whether content starts with one of prefixes (empty
// prefixes never match).
func hasPrefix(content string, prefixes []string) bool {
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(content, p) {
			return true
		}
	}
	return false
}

// mentions reports whether content starts with a mention of user id:
// <@id> or <@!id>.
func mentions(content, id string) bool {
	if id == "" || !strings.HasPrefix(content, "<@") {
		return false
	}
	rest := strings.TrimPrefix(content[2:], "!")
	return strings.HasPrefix(rest, id) && strings.HasPrefix(rest[len(id):], ">")
}

// prefixCache reads the guild prefix sets. With client-side caching it
// uses DoCache (invalidations are pushed, TTL bounds staleness); otherwise
// it keeps each set for ttl locally.
type prefixCache struct {
	c    rueidis.Client
	keys Keys
	csc  bool
	ttl  atomic.Int64 // time.Duration

	mu    sync.Mutex
	local map[prefixKey]prefixEntry
}

type prefixKey struct {
	bot   string
	guild uint64
}

type prefixEntry struct {
	set     []string
	expires time.Time
}

// maxLocalPrefixes bounds the local cache; expired entries are pruned when
// it is reached.
const maxLocalPrefixes = 100000

func newPrefixCache(c rueidis.Client, keys Keys, csc bool, ttl time.Duration) *prefixCache {
	pc := &prefixCache{c: c, keys: keys, csc: csc, local: map[prefixKey]prefixEntry{}}
	pc.setTTL(ttl)
	return pc
}

// setTTL changes how long prefix sets are kept from the next lookup on.
func (pc *prefixCache) setTTL(ttl time.Duration) { pc.ttl.Store(int64(ttl)) }

// lookup returns the prefix set of each guild (same order as guilds).
func (pc *prefixCache) lookup(ctx context.Context, bot string, guilds []uint64) ([][]string, error) {
	out := make([][]string, len(guilds))
	if pc.csc {
		cmds := make([]rueidis.CacheableTTL, len(guilds))
		for i, g := range guilds {
			cmds[i] = rueidis.CT(pc.c.B().Smembers().Key(pc.keys.GuildPrefixes(g, bot)).Cache(), time.Duration(pc.ttl.Load()))
		}
		for i, r := range pc.c.DoMultiCache(ctx, cmds...) {
			set, err := r.AsStrSlice()
			if err != nil {
				return nil, fmt.Errorf("read prefixes of guild %d: %w", guilds[i], err)
			}
			out[i] = set
		}
		return out, nil
	}
	now := time.Now()
	var miss []int
	pc.mu.Lock()
	for i, g := range guilds {
		if e, ok := pc.local[prefixKey{bot, g}]; ok && now.Before(e.expires) {
			out[i] = e.set
		} else {
			miss = append(miss, i)
		}
	}
	pc.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	cmds := make(rueidis.Commands, len(miss))
	for j, i := range miss {
		cmds[j] = pc.c.B().Smembers().Key(pc.keys.GuildPrefixes(guilds[i], bot)).Build()
	}
	res := pc.c.DoMulti(ctx, cmds...)
	expires := time.Now().Add(time.Duration(pc.ttl.Load()))
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if len(pc.local) >= maxLocalPrefixes {
		for k, e := range pc.local {
			if !now.Before(e.expires) {
				delete(pc.local, k)
			}
		}
	}
	for j, i := range miss {
		set, err := res[j].AsStrSlice()
		if err != nil {
			return nil, fmt.Errorf("read prefixes of guild %d: %w", guilds[i], err)
		}
		out[i] = set
		if len(pc.local) < maxLocalPrefixes {
			pc.local[prefixKey{bot, guilds[i]}] = prefixEntry{set: set, expires: expires}
		}
	}
	return out, nil
}
