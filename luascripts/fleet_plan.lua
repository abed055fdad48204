-- fleet_plan: read (and at first create) a bot's fleet plan: the shard
-- count every node runs leases for, its epoch, a re-shard request, and the
-- re-shard coordinator's lease.
--
-- KEYS[1] the bot's plan hash (fields count, epoch, want, reason)
-- KEYS[2] the bot's re-shard lease hash (fields node, fence, expires)
--
-- ARGV[1] the shard count of the node's configuration, written as the
--         plan's count when there is no plan yet (epoch 0)
--
-- want is the shard count a re-shard was asked for ("" = none) and reason
-- why. The epoch grows by one with every committed re-shard
-- (fleet_reshard_commit.lua).
--
-- Reply: {now ms, count, epoch, want, reason, coordinator node,
--         coordinator fence, coordinator expires}, "" / "0" for a missing
--         field.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSETNX', KEYS[1], 'count', ARGV[1])
redis.call('HSETNX', KEYS[1], 'epoch', '0')
local p = redis.call('HMGET', KEYS[1], 'count', 'epoch', 'want', 'reason')
local r = redis.call('HMGET', KEYS[2], 'node', 'fence', 'expires')
return {string.format('%d', now), p[1] or '', p[2] or '', p[3] or '', p[4] or '',
  r[1] or '', r[2] or '0', r[3] or '0'}
