package broker

import (
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/luascripts"
)

// planned is what an event asks of Redis in one phase: nothing, a script
// call of its own (guild snapshots, member chunks, thread syncs), or a
// single-object operation that shares a cache_ops call with its
// neighbours.
type planned struct {
	kind uint8 // 0 none, planSingle, planOp
	cmd  rueidis.Completed
	op   luascripts.CacheOp
}

const (
	planSingle uint8 = 1 + iota
	planOp
)

func single(cmd rueidis.Completed) planned  { return planned{kind: planSingle, cmd: cmd} }
func batched(op luascripts.CacheOp) planned { return planned{kind: planOp, op: op} }

// cachePipe is one phase of Apply: script calls in pipeline order, the
// single-object operations gathered into cache_ops calls. On Redis Cluster
// a cache_ops call holds one hash tag's operations (one slot); on a single
// Redis it holds every operation between two calls of their own. An
// operation joins the open call of its tag, which may sit earlier in the
// pipeline than calls of other tags — those touch other keys, so the order
// that matters, within one tag, is kept.
type cachePipe struct {
	b       rueidis.Builder
	cluster bool
	calls   []pipeCall
	open    map[string]int // tag -> index in calls of its open cache_ops call
	cmds    rueidis.Commands
	res     []rueidis.RedisResult
}

type pipeCall struct {
	cmd rueidis.Completed
	ops *luascripts.CacheOps // nil: a call of its own
	// replies of ops, set by read
	replies []rueidis.RedisMessage
	err     error // the whole cache_ops call's error
}

// pipeRef names one event's reply: call index and, for cache_ops calls, the
// operation's index (-1 = the call's whole reply).
type pipeRef struct{ call, op int }

var noRef = pipeRef{-1, -1}

func newCachePipe(c rueidis.Client) *cachePipe {
	return &cachePipe{b: c.B(), cluster: c.Mode() == rueidis.ClientModeCluster}
}

func (p *cachePipe) key(tag string) string {
	if p.cluster {
		return tag
	}
	return ""
}

// add queues pl under tag (the hash tag of its keys).
func (p *cachePipe) add(tag string, pl planned) pipeRef {
	k := p.key(tag)
	switch pl.kind {
	case planSingle:
		delete(p.open, k)
		p.calls = append(p.calls, pipeCall{cmd: pl.cmd})
		return pipeRef{len(p.calls) - 1, -1}
	case planOp:
		i, ok := p.open[k]
		if !ok {
			if p.open == nil {
				p.open = make(map[string]int)
			}
			i = len(p.calls)
			p.calls = append(p.calls, pipeCall{ops: new(luascripts.CacheOps)})
			p.open[k] = i
		}
		return pipeRef{i, p.calls[i].ops.Add(pl.op)}
	}
	return noRef
}

// build returns the pipeline's commands, pinned (Apply may send them again
// after a NOSCRIPT reply).
func (p *cachePipe) build() rueidis.Commands {
	p.cmds = p.cmds[:0]
	for i := range p.calls {
		c := &p.calls[i]
		if c.ops != nil {
			c.cmd = c.ops.Build(p.b)
		}
		p.cmds = append(p.cmds, c.cmd.Pin())
	}
	return p.cmds
}

// read takes the pipeline's replies (one per call).
func (p *cachePipe) read(res []rueidis.RedisResult) {
	p.res = res
	for i := range p.calls {
		c := &p.calls[i]
		if c.ops == nil {
			continue
		}
		c.replies, c.err = luascripts.ParseCacheOps(res[i], c.ops.Len())
	}
}

// result is a call of its own's reply.
func (p *cachePipe) result(r pipeRef) rueidis.RedisResult { return p.res[r.call] }

// opErr is the error of the operation or call r (nil when it succeeded).
func (p *cachePipe) opErr(r pipeRef) error {
	c := &p.calls[r.call]
	if c.ops == nil {
		if err := p.res[r.call].Error(); err != nil && !rueidis.IsRedisNil(err) {
			return err
		}
		return nil
	}
	if c.err != nil {
		return c.err
	}
	if err := c.replies[r.op].Error(); err != nil && !rueidis.IsRedisNil(err) {
		return err
	}
	return nil
}

// before reads a single-object operation's reply: the JSON cached before.
func (p *cachePipe) before(r pipeRef) (string, bool, error) {
	c := &p.calls[r.call]
	if c.ops == nil {
		return luascripts.ParseCacheEntity(p.res[r.call])
	}
	if c.err != nil {
		return "", false, c.err
	}
	return luascripts.ParseCacheOpBefore(&c.replies[r.op])
}
