package gateway

import (
	"context"
	"fmt"
	"slices"
)

// ReshardActive reports whether bot's shard sets still overlap here: a
// re-shard runs, or its new set still skips late copies of what the old
// set published.
func (m *Manager) ReshardActive(bot string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	br := m.botLocked(bot)
	return br != nil && (br.reshard != nil || br.ho.Load() != nil)
}

// ResetShardCount makes count the shard count of an OnDemand bot (a fleet
// node whose fleet re-sharded): a re-shard running here is abandoned
// without a cut-over, every shard of the bot running here stops gracefully
// (flushed, closed with a resumable code), and StartShard then runs shards
// of count. ctx bounds the stops.
func (m *Manager) ResetShardCount(ctx context.Context, bot string, count int) error {
	if !m.cfg.OnDemand {
		return fmt.Errorf("reset shard count of bot %q: only shards started on demand can be reset", bot)
	}
	if count < 1 {
		return fmt.Errorf("reset shard count of bot %q: shard count %d: want at least 1", bot, count)
	}
	m.mu.Lock()
	br := m.botLocked(bot)
	if br == nil {
		m.mu.Unlock()
		return fmt.Errorf("reset shard count of bot %q: %w", bot, ErrUnknownShard)
	}
	shards := slices.Clone(br.order)
	staged := 0
	if rs := br.reshard; rs != nil {
		shards = append(shards, rs.next.order...)
		staged = rs.next.count
		rs.abortLocked()
	}
	nb := &botRun{cfg: br.cfg, url: br.url, count: count, limits: br.limits, shards: map[int]*shard{}}
	i := slices.Index(m.bots, br)
	m.bots = slices.Clone(m.bots)
	m.bots[i] = nb
	m.mu.Unlock()
	if err := m.stopShards(ctx, shards); err != nil {
		return fmt.Errorf("reset shard count of bot %q: %w", bot, err)
	}
	if st, ok := m.cfg.Sink.(Stager); ok {
		// A re-shard running, or one cut over without its promotion (a
		// fleet refused its commit): its new set's staging ends.
		for _, c := range []int{staged, br.count} {
			if c == 0 {
				continue
			}
			if err := st.Unstage(ctx, bot, c); err != nil {
				m.log.Warn("reset shard count: end the staging of an abandoned re-shard", "bot", bot, "err", err)
			}
		}
	}
	if len(shards) > 0 {
		m.log.Info("shard count reset", "bot", bot, "from", br.count, "to", count, "stopped", len(shards))
	}
	return nil
}
