package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// A live re-shard runs two shard sets of a bot at once, whose shard ids
// overlap. The new set's events are staged: they go to queues of their own
// whose checkpoints are kept apart (Keys.Session(bot, shard) + "/" +
// count), so that neither set's checkpoint expectation sees the other's
// writes. Promote makes the staged queues the bot's shards: from their
// next batch on they write the shards' own checkpoints.

// stagedKey is the checkpoint of a staged shard.
func (p *Publisher) stagedKey(bot string, shard, count int) string {
	return p.keys.StagedSession(bot, shard, count)
}

// Stage sends bot's events of shard count count to staged queues until
// Promote or Unstage. It records the re-shard (Keys.Resharding) first, so
// that a start after a crash during the overlap finds the new set's
// checkpoints (DropStaged).
func (p *Publisher) Stage(ctx context.Context, bot string, count int) error {
	b, err := p.bot(bot)
	if err != nil {
		return err
	}
	key := p.keys.Resharding(bot)
	if err := p.c.Do(ctx, p.c.B().Set().Key(key).Value(strconv.Itoa(count)).Build()).Error(); err != nil {
		return fmt.Errorf("stage %s: record the re-shard in %s: %w", bot, key, err)
	}
	b.staging.Store(int64(count))
	return nil
}

// Unstage ends a staging without promoting it (a re-shard abandoned) and
// deletes what it left in Redis.
func (p *Publisher) Unstage(ctx context.Context, bot string, count int) error {
	if b := (*p.bots.Load())[bot]; b != nil {
		b.staging.CompareAndSwap(int64(count), 0)
	}
	if _, err := p.DropStaged(ctx, bot); err != nil {
		return fmt.Errorf("unstage %s: %w", bot, err)
	}
	return nil
}

// EndStaging ends a staging without promoting it, in memory only: what it
// left in Redis stays for DropStaged (a fleet's node that gave a re-shard
// up, while another node may already be staging).
func (p *Publisher) EndStaging(bot string, count int) {
	if b := (*p.bots.Load())[bot]; b != nil {
		b.staging.CompareAndSwap(int64(count), 0)
	}
}

// Promote makes the staged queues of bot's count shards its shards: each
// is flushed, then writes the shard's own checkpoint from its next batch
// on (without expecting what the old set left there). The old set must
// have stopped. Then each staged checkpoint moves to the shard's own
// (unless a batch already wrote it there) and the record of the re-shard
// is deleted: a crash from then on resumes the new set.
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
	b.mu.Unlock()
	if len(errs) == 0 {
		// A batch flushed before promoteTo was set wrote the staged
		// checkpoint: flush again so none is on its way there.
		for _, sq := range staged {
			if err := sq.flush(ctx); err != nil {
				errs = append(errs, fmt.Errorf("flush promoted %s shard %d: %w", bot, sq.shard, err))
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, p.moveStaged(ctx, bot, count))
	}
	return errors.Join(errs...)
}

// moveStagedScript moves a staged checkpoint (KEYS[1]) to the shard's own
// (KEYS[2]) unless that already holds the staged session at a seq at least
// as high (a promoted batch wrote it), and deletes it. (A fleet's commit
// copied it there already, at a seq the staged queue may have passed
// since.)
var moveStagedScript = rueidis.NewLuaScript(`
local st = redis.call('HGETALL', KEYS[1])
if #st == 0 then return 0 end
local h = {}
for i = 1, #st, 2 do h[st[i]] = st[i+1] end
local own = redis.call('HMGET', KEYS[2], 'session', 'seq')
if own[1] ~= h['session'] or (tonumber(own[2]) or 0) < (tonumber(h['seq']) or 0) then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], unpack(st))
end
redis.call('DEL', KEYS[1])
return 1
`)

// moveStaged moves every staged checkpoint of bot's count shards to the
// shard's own and deletes the record of the re-shard.
func (p *Publisher) moveStaged(ctx context.Context, bot string, count int) error {
	for id := range count {
		own := p.keys.Session(bot, id)
		if err := moveStagedScript.Exec(ctx, p.c, []string{p.stagedKey(bot, id, count), own}, nil).Error(); err != nil && !rueidis.IsRedisNil(err) {
			return fmt.Errorf("promote %s: move the staged checkpoint of shard %d to %s: %w", bot, id, own, err)
		}
	}
	if err := p.c.Do(ctx, p.c.B().Del().Key(p.keys.Resharding(bot)).Build()).Error(); err != nil {
		return fmt.Errorf("promote %s: delete the record of the re-shard: %w", bot, err)
	}
	return nil
}

// StagedSession is a checkpoint of a re-shard's new set that was never
// promoted: a crash or stop during the overlap abandoned it.
type StagedSession struct {
	Shard, Count int
	Session      string
	Seq          int64
}

// DropStaged deletes what a re-shard of bot left in Redis when it ended
// without its cut-over (a crash or stop during the overlap), and returns
// the new set's sessions it abandoned. Call it at start, before bot's
// shards run.
func (p *Publisher) DropStaged(ctx context.Context, bot string) ([]StagedSession, error) {
	key := p.keys.Resharding(bot)
	v, err := p.c.Do(ctx, p.c.B().Get().Key(key).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	count, err := strconv.Atoi(v)
	if err != nil || count < 1 || count > maxShardID {
		return nil, fmt.Errorf("read %s: %q is not a shard count", key, v)
	}
	var out []StagedSession
	for id := range count {
		sk := p.stagedKey(bot, id, count)
		m, err := p.c.Do(ctx, p.c.B().Hgetall().Key(sk).Build()).AsStrMap()
		if err != nil {
			return out, fmt.Errorf("read staged checkpoint %s: %w", sk, err)
		}
		if len(m) == 0 {
			continue
		}
		own, err := p.c.Do(ctx, p.c.B().Hget().Key(p.keys.Session(bot, id)).Field("session").Build()).ToString()
		if err != nil && !rueidis.IsRedisNil(err) {
			return out, fmt.Errorf("read checkpoint of shard %d: %w", id, err)
		}
		if m["session"] != "" && m["session"] != own {
			seq, _ := strconv.ParseInt(m["seq"], 10, 64)
			out = append(out, StagedSession{Shard: id, Count: count, Session: m["session"], Seq: seq})
		}
		if err := p.c.Do(ctx, p.c.B().Del().Key(sk).Build()).Error(); err != nil {
			return out, fmt.Errorf("delete staged checkpoint %s: %w", sk, err)
		}
	}
	if err := p.c.Do(ctx, p.c.B().Del().Key(key).Build()).Error(); err != nil {
		return out, fmt.Errorf("delete %s: %w", key, err)
	}
	return out, nil
}

// stagedShard returns the staged queue of shard, creating it on first use.
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
	if cur := b.lookup(shard); cur != nil {
		// In a fleet, the node re-sharding holds the lease of every shard
		// id of both sets: the staged queue carries the same fence.
		sq.fence.Store(cur.fence.Load())
	}
	next[shard] = sq
	b.staged.Store(&next)
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
