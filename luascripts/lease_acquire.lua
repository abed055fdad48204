-- lease_acquire: take a shard's lease when nobody holds it, with a new
-- fencing number.
--
-- KEYS[1] the shard's lease hash (fields node, fence, expires). The hash is
--         never deleted: fence only grows, across every owner.
--
-- ARGV[1] node id of the caller
-- ARGV[2] lease time to live, ms
--
-- Time is the Redis server's (TIME), so nodes' clocks do not matter. A
-- lease is free when its node is empty (released) or its expiry has
-- passed; taking it increments fence.
--
-- Reply: {1, new fence, node, ttl ms}                  taken
--        {0, current fence, owner node, ms it has left} held by another
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HMGET', KEYS[1], 'node', 'fence', 'expires')
local exp = tonumber(cur[3]) or 0
if cur[1] and cur[1] ~= '' and exp > now then
  return {0, tonumber(cur[2]) or 0, cur[1], exp - now}
end
local fence = redis.call('HINCRBY', KEYS[1], 'fence', 1)
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'expires', string.format('%d', now + ttl))
return {1, fence, ARGV[1], ttl}
