-- fleet_reshard_commit: the point of no return of a re-shard in a fleet.
-- The coordinator runs the bot's old set and its new set side by side and
-- holds every lease of both; at its cut-over it commits the new shard count
-- here, in one step, before its new set writes the shards' own checkpoints.
--
-- KEYS[1]                 the bot's plan hash (count, epoch, want, reason)
-- KEYS[2]                 the bot's re-shard lease hash
-- KEYS[2+1 .. 2+L]        the leases of shards 0..L-1, L = max(old, new)
-- KEYS[2+L+1 .. 2+L+M]    the staged checkpoints of new shards 0..M-1
-- KEYS[2+L+M+1 .. 2+2L+M] the checkpoints of shards 0..L-1
--
-- ARGV[1]        the coordinator's node id
-- ARGV[2]        its re-shard lease fence
-- ARGV[3]        the plan epoch it started from
-- ARGV[4]        the old shard count (the plan's count)
-- ARGV[5]        the new shard count M
-- ARGV[5+i]      the fence it holds for shard i-1's lease, i = 1..L
--
-- Unless the plan is still (old count, epoch), the re-shard lease still the
-- coordinator's and every lease still held by it with its fence, nothing is
-- written. Otherwise: the plan becomes (M, epoch+1) with no request; each
-- new shard's staged checkpoint is copied to the shard's checkpoint (a node
-- that takes the shard after a crash resumes the new set's session); the
-- checkpoints and leases of shards M..L-1 are deleted and released; the
-- re-shard lease is released. The leases of shards 0..M-1 stay the
-- coordinator's with their fences.
--
-- Reply: {1, new epoch} committed, {0, why} refused.
local L = #KEYS
local m = tonumber(ARGV[5])
L = (L - 2 - m) / 2
local p = redis.call('HMGET', KEYS[1], 'count', 'epoch')
if p[1] ~= ARGV[4] or (p[2] or '0') ~= ARGV[3] then
  return {0, 'the plan is now ' .. tostring(p[1]) .. ' shards at epoch ' .. tostring(p[2])}
end
local r = redis.call('HMGET', KEYS[2], 'node', 'fence')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] then
  return {0, 'the re-shard lease is no longer this node\'s'}
end
for i = 1, L do
  local l = redis.call('HMGET', KEYS[2 + i], 'node', 'fence')
  if l[1] ~= ARGV[1] or l[2] ~= ARGV[5 + i] then
    return {0, 'the lease of shard ' .. (i - 1) .. ' is no longer this node\'s'}
  end
end
local epoch = tonumber(ARGV[3]) + 1
redis.call('HSET', KEYS[1], 'count', ARGV[5], 'epoch', string.format('%d', epoch))
redis.call('HDEL', KEYS[1], 'want', 'reason')
for i = 1, m do
  local staged = redis.call('HGETALL', KEYS[2 + L + i])
  if #staged > 0 then
    local main = KEYS[2 + L + m + i]
    redis.call('DEL', main)
    redis.call('HSET', main, unpack(staged))
  end
end
for i = m + 1, L do
  redis.call('DEL', KEYS[2 + L + m + i])
  redis.call('HSET', KEYS[2 + i], 'node', '', 'expires', '0')
end
redis.call('HSET', KEYS[2], 'node', '', 'expires', '0')
return {1, epoch}
