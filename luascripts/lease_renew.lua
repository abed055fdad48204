-- lease_renew: extend the leases a node holds, in one call.
--
-- KEYS[1..N] lease hashes (fields node, fence, expires), one per shard,
--            all of one bot (one hash slot)
--
-- ARGV[1]       node id of the caller
-- ARGV[2]       lease time to live, ms
-- ARGV[2+i]     the fencing number the caller holds for KEYS[i]
--
-- A lease is renewed while its fence is still the caller's, even past its
-- expiry: nobody took it in between (taking it increments fence), so the
-- caller never stopped being the last owner. A lease hash that no longer
-- exists (Redis lost its data) is written again with the caller's fence:
-- nobody else holds it, and the fence does not start over.
--
-- Reply: {r1, ..., rN}: ri = 1 renewed, 0 lost (another fence is current)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local exp = string.format('%d', now + tonumber(ARGV[2]))
local out = {}
for i = 1, #KEYS do
  local fence = redis.call('HGET', KEYS[i], 'fence')
  if (fence and fence == ARGV[2 + i]) or (not fence and redis.call('EXISTS', KEYS[i]) == 0) then
    redis.call('HSET', KEYS[i], 'node', ARGV[1], 'fence', ARGV[2 + i], 'expires', exp)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
