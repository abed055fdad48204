package luascripts

import _ "embed"

// cacheOpListSrc defines the list operation of cache_ops.lua.
//
//go:embed cache_op_list.lua
var cacheOpListSrc string

// CacheOpListSet replaces a per-guild JSON array (emojis, stickers):
// list_set of cache_op_list.lua.
func CacheOpListSet(key, json string) CacheOp {
	return CacheOp{code: "ls", k1: key, a: [4]string{json}, na: 1}
}
