-- lease_acquire: take shards' leases that nobody holds, each with a new
-- fencing number.
--
-- KEYS[1..N] the shards' lease hashes (fields node, fence, expires), all of
--            one bot (one hash slot). A hash is never deleted: fence only
--            grows, across every owner.
--
-- ARGV[1] node id of the caller
-- ARGV[2] lease time to live, ms
-- ARGV[3] optional: the plan epoch the caller runs (fleet_plan.lua). Then
--         the last key is the bot's plan hash, not a lease, and nothing is
--         taken unless the plan's epoch is ARGV[3]: a node that has not yet
--         seen a re-shard's new shard count cannot take shard i of the new
--         count for shard i of the old one.
--
-- Time is the Redis server's (TIME), so nodes' clocks do not matter. A
-- lease is free when its node is empty (released) or its expiry has
-- passed; taking it increments fence.
--
-- Reply: for each key, four values:
--        1, new fence, node, ttl ms                   taken
--        0, current fence, owner node, ms it has left  held by another
--        0, -1, "", 0                                  the plan moved on
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local out = {}
local n = #KEYS
if ARGV[3] then
  n = n - 1
  if (redis.call('HGET', KEYS[#KEYS], 'epoch') or '0') ~= ARGV[3] then
    for i = 1, n do
      out[#out + 1] = 0
      out[#out + 1] = -1
      out[#out + 1] = ''
      out[#out + 1] = 0
    end
    return out
  end
end
for i = 1, n do
  local cur = redis.call('HMGET', KEYS[i], 'node', 'fence', 'expires')
  local exp = tonumber(cur[3]) or 0
  if cur[1] and cur[1] ~= '' and exp > now then
    out[#out + 1] = 0
    out[#out + 1] = tonumber(cur[2]) or 0
    out[#out + 1] = cur[1]
    out[#out + 1] = exp - now
  else
    local fence = redis.call('HINCRBY', KEYS[i], 'fence', 1)
    redis.call('HSET', KEYS[i], 'node', ARGV[1], 'expires', string.format('%d', now + ttl))
    out[#out + 1] = 1
    out[#out + 1] = fence
    out[#out + 1] = ARGV[1]
    out[#out + 1] = ttl
  end
end
return out
