-- fleet_heartbeat: record a node's heartbeat in a bot's membership and
-- return the live members.
--
-- KEYS[1] the bot's members (sorted set: node id -> expiry, server ms)
-- KEYS[2] the bot's member details (hash: node id -> JSON)
--
-- ARGV[1] node id of the caller
-- ARGV[2] membership time to live, ms
-- ARGV[3] the caller's details, JSON (stored as is)
--
-- Members whose expiry has passed are removed from both keys. Time is the
-- Redis server's.
--
-- Reply: {now ms, id1, expiry1, details1, ...} for every live member, the
--        caller included, in id order
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[2])), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local ids = {}
for i = 1, #live, 2 do ids[#ids + 1] = live[i] end
table.sort(ids)
local score = {}
for i = 1, #live, 2 do score[live[i]] = live[i + 1] end
local out = {string.format('%d', now)}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = score[id]
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
