package luascripts

import (
	"fmt"

	"github.com/redis/rueidis"
)

// CacheTx is a transaction of cache operations: MULTI, the operations in
// order, EXEC — atomic as a whole, so atomic per operation. Operations that
// only read and write keys (entity and list set/delete, member set and
// remove) go as plain commands, so their JSON never passes through Lua
// (which hashes every string it takes in, byte by byte); those that need
// Lua (member merge, user join, leave and update) go as cache_ops.lua
// calls inside the transaction. The keys of one transaction must share a
// hash slot on Redis Cluster. The zero value is empty and ready.
//
// Script set, the operations go as one cache_ops.lua call instead: a
// cluster client cannot pipeline transactions of several slots together.
type CacheTx struct {
	Script bool
	ops    []CacheOp
	layout []txOp
	chunks []CacheOps
}

// txOp locates one operation's replies in EXEC's reply: n > 0 plain
// replies from at on (the first is the object before), or n == 0 the
// cache_ops call at at and the operation's index sub in its reply.
type txOp struct{ at, n, sub int }

// Add appends op and returns its index in Parse's result.
func (t *CacheTx) Add(op CacheOp) int {
	t.ops = append(t.ops, op)
	return len(t.ops) - 1
}

// Len is the number of operations added.
func (t *CacheTx) Len() int { return len(t.ops) }

// NeedsLua reports whether op runs as Lua inside a transaction (a merge, a
// user's entry) rather than as plain commands.
func (op *CacheOp) NeedsLua() bool {
	switch op.code {
	case "mm", "uj", "ul", "uu":
		return true
	}
	return false
}

// Target names the object op reads its before image from: the key and,
// for a hash, the field ("" for a string key).
func (op *CacheOp) Target() (key, field string) {
	switch op.code {
	case "es", "ed", "ms", "mm", "mr", "uj", "ul", "uu":
		return op.k1, op.a[0]
	}
	return op.k1, ""
}

// Build returns the transaction's commands, MULTI first and EXEC last.
func (t *CacheTx) Build(b rueidis.Builder) rueidis.Commands {
	if t.Script {
		var o CacheOps
		for i := range t.ops {
			o.Add(t.ops[i])
		}
		return rueidis.Commands{o.Build(b)}
	}
	cmds := make(rueidis.Commands, 1, 2+3*len(t.ops))
	cmds[0] = b.Multi().Build()
	t.layout = t.layout[:0]
	t.chunks = t.chunks[:0]
	chunkAt := -1 // index in cmds of the open cache_ops call
	closeChunk := func() {
		if chunkAt >= 0 {
			cmds[chunkAt] = t.chunks[len(t.chunks)-1].Build(b)
			chunkAt = -1
		}
	}
	for i := range t.ops {
		op := &t.ops[i]
		if op.NeedsLua() {
			if chunkAt < 0 {
				t.chunks = append(t.chunks, CacheOps{})
				chunkAt = len(cmds)
				cmds = append(cmds, rueidis.Completed{})
			}
			sub := t.chunks[len(t.chunks)-1].Add(*op)
			t.layout = append(t.layout, txOp{at: chunkAt - 1, sub: sub})
			continue
		}
		closeChunk()
		at := len(cmds) - 1
		k, id := op.k1, op.a[0]
		switch op.code {
		case "es", "ms":
			cmds = append(cmds, b.Hget().Key(k).Field(id).Build(), b.Hset().Key(k).FieldValue().FieldValue(id, op.a[1]).Build())
		case "ed":
			cmds = append(cmds, b.Hget().Key(k).Field(id).Build(), b.Hdel().Key(k).Field(id).Build())
		case "mr":
			cmds = append(cmds, b.Hget().Key(k).Field(id).Build(), b.Hdel().Key(k).Field(id).Build(), b.Hdel().Key(op.k2).Field(id).Build())
		case "ls":
			cmds = append(cmds, b.Get().Key(k).Build(), b.Set().Key(k).Value(op.a[0]).Build())
		}
		t.layout = append(t.layout, txOp{at: at, n: len(cmds) - 1 - at})
	}
	closeChunk()
	return append(cmds, b.Exec().Build())
}

// Parse reads EXEC's reply (the last of Build's commands; with Script, the
// cache_ops reply): one message per
// operation, each the object cached before it (see ParseCacheOpBefore) or
// the error Redis refused one of its commands with.
func (t *CacheTx) Parse(exec rueidis.RedisResult) ([]rueidis.RedisMessage, error) {
	if t.Script {
		return ParseCacheOps(exec, len(t.ops))
	}
	arr, err := exec.ToArray()
	if err != nil {
		return nil, err
	}
	want := 0
	if n := len(t.layout); n > 0 {
		last := t.layout[n-1]
		want = last.at + max(last.n, 1)
	}
	if len(arr) != want {
		return nil, fmt.Errorf("cache transaction reply has %d values, want %d", len(arr), want)
	}
	out := make([]rueidis.RedisMessage, len(t.ops))
	for i, l := range t.layout {
		if l.n == 0 {
			m := arr[l.at]
			if m.Error() != nil && !m.IsNil() {
				out[i] = m
				continue
			}
			sub, err := m.ToArray()
			if err != nil {
				return nil, fmt.Errorf("read cache_ops reply: %w", err)
			}
			if l.sub >= len(sub) {
				return nil, fmt.Errorf("cache_ops reply has %d values, want more than %d", len(sub), l.sub)
			}
			out[i] = sub[l.sub]
			continue
		}
		out[i] = arr[l.at]
		for _, m := range arr[l.at : l.at+l.n] {
			if err := m.Error(); err != nil && !m.IsNil() {
				out[i] = m
				break
			}
		}
	}
	return out, nil
}

// NoScript reports whether EXEC's reply holds a NOSCRIPT error (the
// scripts were lost: load them and run the transaction again).
func NoScript(exec rueidis.RedisResult) bool {
	arr, err := exec.ToArray()
	if err != nil {
		return false
	}
	for i := range arr {
		if IsNoScript(arr[i].Error()) {
			return true
		}
	}
	return false
}
