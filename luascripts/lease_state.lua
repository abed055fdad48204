-- lease_state: read the leases of a bot's shards and the server time.
--
-- KEYS[1..N] lease hashes (fields node, fence, expires), all of one bot
--
-- Reply: {now ms, node1, fence1, expires1, ..., nodeN, fenceN, expiresN}
--        with "" for a missing field ("0" for a missing fence or expiry)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {string.format('%d', now)}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'node', 'fence', 'expires')
  out[#out + 1] = v[1] or ''
  out[#out + 1] = v[2] or '0'
  out[#out + 1] = v[3] or '0'
end
return out
