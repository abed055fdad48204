package luascripts

import _ "embed"

// cacheOpEntitySrc defines the entity operations of cache_ops.lua.
//
//go:embed cache_op_entity.lua
var cacheOpEntitySrc string

// CacheOpEntitySet stores object JSON under id in a per-guild hash
// (channels, threads, roles, voice states, presences): entity_set of
// cache_op_entity.lua.
func CacheOpEntitySet(hash, id, json string) CacheOp {
	return CacheOp{code: "es", k1: hash, a: [4]string{id, json}, na: 2}
}

// CacheOpEntityDel forgets id in a per-guild hash: entity_del of
// cache_op_entity.lua.
func CacheOpEntityDel(hash, id string) CacheOp {
	return CacheOp{code: "ed", k1: hash, a: [4]string{id}, na: 1}
}
