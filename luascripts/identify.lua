-- identify: take one IDENTIFY slot of a bot's rate-limit bucket.
--
-- KEYS[1] the bucket key: the bucket is busy while it exists. A grant sets
--         it to the holder for ARGV[5] ms (the hold); identify_sent.lua
--         re-arms it for ARGV[1] ms from the IDENTIFY's actual send.
-- KEYS[2] the bot's remaining daily session starts (integer)
--
-- ARGV[1] window in ms (one IDENTIFY per bucket per window)
-- ARGV[2] remaining starts to initialise KEYS[2] with when it is missing
-- ARGV[3] ms until the daily limit resets (TTL of KEYS[2] when initialised)
-- ARGV[4] the holder (the shard asking)
-- ARGV[5] the hold in ms: how long a grant not reported sent keeps the
--         bucket (at least ARGV[1])
--
-- Reply: {1, remaining after this start}   slot taken
--        {0, ms until the bucket frees}     wait and try again
--        {-1, ms until the daily reset}     no start left today
local rem = redis.call('GET', KEYS[2])
if not rem then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  rem = ARGV[2]
end
rem = tonumber(rem)
if rem == nil then
  return redis.error_reply('identify: ' .. KEYS[2] .. ' does not hold an integer')
end
if rem <= 0 then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl < 0 then ttl = 0 end
  return {-1, ttl}
end
local wait = redis.call('PTTL', KEYS[1])
if wait > tonumber(ARGV[5]) then
  -- Nothing of ours sets a longer TTL: waiting for it could take forever.
  return redis.error_reply('identify: ' .. KEYS[1] .. ' expires in ' .. wait ..
    'ms, later than any hold (' .. ARGV[5] .. 'ms); delete it')
end
if wait > 0 then
  return {0, wait}
end
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
return {1, redis.call('DECR', KEYS[2])}
