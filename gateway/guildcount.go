package gateway

import "sync/atomic"

// guildCount counts the guilds a shard's session holds, for autoscale's
// guilds-per-shard threshold: READY lists them; a GUILD_CREATE of a guild
// READY did not list (or one that came back after an outage) is a join
// only when the guild was not already counted; GUILD_DELETE without
// "unavailable" is a leave. Only the guilds not yet created (READY's lazy
// ones, the unavailable ones) are kept, so the set is empty in steady
// state. observe runs on the shard's goroutine; n is read by anyone.
type guildCount struct {
	n       atomic.Int64
	waiting map[uint64]struct{}
}

// observe counts one dispatch the Sink accepted.
func (c *guildCount) observe(t string, d []byte, guild uint64) {
	switch t {
	case "READY":
		ids := readyGuildIDs(d)
		c.waiting = make(map[uint64]struct{}, len(ids))
		for _, id := range ids {
			c.waiting[id] = struct{}{}
		}
		c.n.Store(int64(len(c.waiting)))
	case "GUILD_CREATE":
		if guild == 0 {
			return
		}
		if _, ok := c.waiting[guild]; ok {
			delete(c.waiting, guild)
			if len(c.waiting) == 0 {
				c.waiting = nil
			}
			return
		}
		c.n.Add(1)
	case "GUILD_DELETE":
		if guild == 0 {
			return
		}
		if v, ok := topLevelValue(d, "unavailable"); ok && string(v) == "true" {
			if _, ok := c.waiting[guild]; !ok {
				if c.waiting == nil {
					c.waiting = map[uint64]struct{}{}
				}
				c.waiting[guild] = struct{}{}
			}
			return
		}
		if _, ok := c.waiting[guild]; ok {
			delete(c.waiting, guild)
		}
		c.n.Add(-1)
	}
}
