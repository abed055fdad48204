-- identify_sent: the IDENTIFY granted by identify.lua has just been written.
-- The bucket's next IDENTIFY is spaced from now, the actual send, not only
-- from the grant (the send may have come late after it).
--
-- KEYS[1] the bucket key (see identify.lua)
--
-- ARGV[1] window in ms (as given to identify.lua)
-- ARGV[2] the holder (the shard that sent)
--
-- The key is set to expire ARGV[1] ms from now when it is the holder's own
-- hold (ending the hold early) or would expire sooner (a missing key, one
-- without a TTL, another holder's shorter window); a longer hold of another
-- holder is kept. A key of another type is an error.
--
-- Reply: 1
local window = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if v == ARGV[2] or ttl < window then
  redis.call('SET', KEYS[1], 'sent', 'PX', window)
end
return 1
