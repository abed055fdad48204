package broker

import (
	"fmt"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/luascripts"
)

// planned is what an event asks of Redis in one phase: nothing, a script
// call of its own (guild snapshots, member chunks, thread syncs), or a
// single-object operation that shares a transaction with its neighbours.
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

// cachePipe is one phase of Apply: script calls of their own in pipeline
// order, the single-object operations gathered into few calls.
//
// On a single Redis, the operations between two calls of their own form a
// stretch; operations of different hash tags touch different keys, so only
// the order within a tag matters. A stretch becomes one transaction of plain
// commands (luascripts.CacheTx) holding the tags whose operations need no
// Lua, and one cache_ops script call holding the tags that have an
// operation needing Lua (a merge, a user leaving). So no NOSCRIPT reply can
// come from inside a transaction, whose other commands would have run.
//
// On Redis Cluster each tag's operations (one slot) go as one cache_ops
// call: a cluster client cannot pipeline transactions of several slots
// together. An operation joins the open call of its tag, which may sit
// earlier in the pipeline than calls of other tags.
type cachePipe struct {
	b       rueidis.Builder
	cluster bool
	calls   []pipeCall
	refs    []pipeRef      // by handle (see add)
	open    map[string]int // cluster: tag -> index in calls of its open call
	stretch []stretchOp    // single Redis: operations since the last call of its own
	lua     map[string]bool
	cmds    rueidis.Commands
	starts  []int // index in cmds of each call's first command
	res     []rueidis.RedisResult
}

type stretchOp struct {
	tag string
	op  luascripts.CacheOp
	h   int
}

type pipeCall struct {
	cmd rueidis.Completed
	ops *luascripts.CacheTx // nil: a call of its own
	at  int                 // index in cmds of the call's reply (EXEC for a transaction)
	// replies of ops, set by read
	replies []rueidis.RedisMessage
	err     error // the whole call's error
}

// pipeRef locates one event's reply: call index and, for gathered
// operations, the operation's index (-1 = the call's whole reply).
type pipeRef struct{ call, op int }

// noRef is the handle of no reply.
const noRef = -1

func newCachePipe(c rueidis.Client) *cachePipe {
	return &cachePipe{b: c.B(), cluster: c.Mode() == rueidis.ClientModeCluster}
}

// add queues pl under tag (the hash tag of its keys) and returns the handle
// of its reply, valid once build has run.
func (p *cachePipe) add(tag string, pl planned) int {
	h := len(p.refs)
	switch pl.kind {
	case planSingle:
		if p.cluster {
			delete(p.open, tag)
		} else {
			p.flush()
		}
		p.calls = append(p.calls, pipeCall{cmd: pl.cmd})
		p.refs = append(p.refs, pipeRef{len(p.calls) - 1, -1})
	case planOp:
		if !p.cluster {
			p.stretch = append(p.stretch, stretchOp{tag: tag, op: pl.op, h: h})
			if pl.op.NeedsLua() {
				if p.lua == nil {
					p.lua = make(map[string]bool)
				}
				p.lua[tag] = true
			}
			p.refs = append(p.refs, pipeRef{-1, -1})
			break
		}
		i, ok := p.open[tag]
		if !ok {
			if p.open == nil {
				p.open = make(map[string]int)
			}
			i = len(p.calls)
			p.calls = append(p.calls, pipeCall{ops: &luascripts.CacheTx{Script: true}})
			p.open[tag] = i
		}
		p.refs = append(p.refs, pipeRef{i, p.calls[i].ops.Add(pl.op)})
	default:
		return noRef
	}
	return h
}

// flush turns the open stretch into its transaction and script call.
func (p *cachePipe) flush() {
	tx, script := -1, -1
	for _, so := range p.stretch {
		i := &tx
		if p.lua[so.tag] {
			i = &script
		}
		if *i < 0 {
			*i = len(p.calls)
			p.calls = append(p.calls, pipeCall{ops: &luascripts.CacheTx{Script: i == &script}})
		}
		p.refs[so.h] = pipeRef{*i, p.calls[*i].ops.Add(so.op)}
	}
	p.stretch = p.stretch[:0]
	clear(p.lua)
}

// build returns the pipeline's commands, pinned (Apply may send them again
// after a NOSCRIPT reply).
func (p *cachePipe) build() rueidis.Commands {
	p.flush()
	p.cmds = p.cmds[:0]
	p.starts = p.starts[:0]
	for i := range p.calls {
		c := &p.calls[i]
		p.starts = append(p.starts, len(p.cmds))
		if c.ops != nil {
			for _, cmd := range c.ops.Build(p.b) {
				p.cmds = append(p.cmds, cmd.Pin())
			}
		} else {
			p.cmds = append(p.cmds, c.cmd.Pin())
		}
		c.at = len(p.cmds) - 1
	}
	return p.cmds
}

// noScript reports whether result i of the pipeline says the scripts were
// lost, and the index of the first command to send again (the start of its
// call: a transaction is sent whole).
func (p *cachePipe) noScript(i int, r rueidis.RedisResult) (bool, int) {
	c := &p.calls[p.callOf(i)]
	if luascripts.IsNoScript(r.Error()) || (c.ops != nil && !c.ops.Script && i == c.at && luascripts.NoScript(r)) {
		return true, p.starts[p.callOf(i)]
	}
	return false, 0
}

// callOf is the call that command i belongs to.
func (p *cachePipe) callOf(i int) int {
	lo, hi := 0, len(p.starts)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if p.starts[mid] <= i {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// read takes the pipeline's replies (one per command).
func (p *cachePipe) read(res []rueidis.RedisResult) {
	p.res = res
	for i := range p.calls {
		c := &p.calls[i]
		if c.ops == nil {
			continue
		}
		c.replies, c.err = c.ops.Parse(res[c.at])
	}
}

// result is the reply of the call of its own with handle h.
func (p *cachePipe) result(h int) rueidis.RedisResult { return p.res[p.calls[p.refs[h].call].at] }

// opErr is the error of the operation or call with handle h (nil when it
// succeeded).
func (p *cachePipe) opErr(h int) error {
	r := p.refs[h]
	c := &p.calls[r.call]
	if c.ops == nil {
		if err := p.res[c.at].Error(); err != nil && !rueidis.IsRedisNil(err) {
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

// before reads the reply of the single-object operation with handle h: the
// JSON cached before.
func (p *cachePipe) before(h int) (string, bool, error) {
	r := p.refs[h]
	c := &p.calls[r.call]
	if c.ops == nil {
		return "", false, fmt.Errorf("before image of a script call of its own (only single-object operations have one)")
	}
	if c.err != nil {
		return "", false, c.err
	}
	return luascripts.ParseCacheOpBefore(&c.replies[r.op])
}
