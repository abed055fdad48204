-- lease_release: give a shard's lease up so another node takes it at once.
--
-- KEYS[1] the shard's lease hash (fields node, fence, expires)
--
-- ARGV[1] the fencing number the caller holds
--
-- The fence stays (the next owner increments it); node and expires are
-- cleared. A lease whose fence is no longer the caller's is left alone.
--
-- Reply: 1 released, 0 not the caller's any more
local fence = redis.call('HGET', KEYS[1], 'fence')
if fence and fence == ARGV[1] then
  redis.call('HSET', KEYS[1], 'node', '', 'expires', '0')
  return 1
end
return 0
