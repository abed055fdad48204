package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// A live re-shard runs two shard sets of a bot at once, whose shard ids
// overlap. The new set's events are staged: they go to queues of their own
// whose checkpoints are kept apart (Keys.Session(bot, shard) + "/" +
// count), so that neither set's checkpoint expectation sees the other's
// writes. Promote makes the staged queues the bot's shards: from their
// next batch on they write the shards' own checkpoints.

// stagedKey is the checkpoint of a staged shard.
func (p *Publisher) stagedKey(bot string, shard, count int) string {
	return p.keys.Session(bot, shard) + "/" + strconv.Itoa(count)
}

// Stage sends bot's events of shard count count to staged queues until
// Promote or Unstage.
func (p *Publisher) Stage(bot string, count int) error {
	b, err := p.bot(bot)
	if err != nil {
		return err
	}
	b.staging.Store(int64(count))
	return nil
}

// Unstage ends a staging without promoting it (a re-shard abandoned).
func (p *Publisher) Unstage(bot string, count int) {
	if b := (*p.bots.Load())[bot]; b != nil {
		b.staging.CompareAndSwap(int64(count), 0)
	}
}

// Promote makes the staged queues of bot's count shards its shards: each
// is flushed, then writes the shard's own checkpoint from its next batch
// on (without expecting what the old set left there). The old set must
// have stopped.
func (p *Publisher) Promote(ctx context.Context, bot string, count int) error {
	b := (*p.bots.Load())[bot]
	if b == nil {
		return fmt.Errorf("promote %s: unknown bot", bot)
	}
	if b.staging.Load() != int64(count) {
		return fmt.Errorf("promote %s: %d shards are not staged", bot, count)
	}
	var errs []error
	for _, sq := range b.stagedAll() {
		if err := sq.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("flush staged %s shard %d: %w", bot, sq.shard, err))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	staged := *b.staged.Load()
	old := *b.shards.Load()
	n := len(old)
	for id := range staged {
		n = max(n, id+1)
	}
	next := make([]*shardQueue, n)
	copy(next, old)
	for id, sq := range staged {
		key := p.keys.Session(bot, id)
		sq.promoteTo.Store(&key)
		next[id] = sq
	}
	b.shards.Store(&next)
	empty := map[int]*shardQueue{}
	b.staged.Store(&empty)
	b.staging.Store(0)
	return errors.Join(errs...)
}

// stagedShard returns the staged queue of shard, starting its flusher on
// first use.
func (b *botState) stagedShard(shard, count int) (*shardQueue, error) {
	if sq := (*b.staged.Load())[shard]; sq != nil {
		return sq, nil
	}
	if shard < 0 || shard >= maxShardID {
		return nil, fmt.Errorf("publish: shard id %d out of range", shard)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := *b.staged.Load()
	if sq := old[shard]; sq != nil {
		return sq, nil
	}
	p := b.p
	if p.closing.Load() {
		return nil, ErrClosed
	}
	next := make(map[int]*shardQueue, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	sq := newShardQueue(b, shard)
	sq.ckKey = p.stagedKey(b.name, shard, count)
	next[shard] = sq
	b.staged.Store(&next)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		sq.run(p.ctx)
	}()
	return sq, nil
}

// stagedAll returns the staged queues.
func (b *botState) stagedAll() []*shardQueue {
	var out []*shardQueue
	for _, sq := range *b.staged.Load() {
		out = append(out, sq)
	}
	return out
}
