-- cache_thread_sync.lua: THREAD_LIST_SYNC for one guild. The key carries
-- the guild's hash tag.
--
-- KEYS[1] threads (hash thread id -> thread JSON)
--
-- ARGV[1] n, the number of parent channel ids synced; -1 = the whole guild
-- ARGV[2 .. n+1] the parent channel ids (their cached threads are dropped
--         first: the list replaces them)
-- then the thread id/thread JSON pairs of the payload's threads
--
-- Reply: the number of cached threads dropped.

local n = tonumber(ARGV[1])
local dropped = 0
if n < 0 then
  dropped = redis.call('HLEN', KEYS[1])
  redis.call('DEL', KEYS[1])
  n = 0
elseif n > 0 then
  local parents = {}
  for i = 2, n + 1 do parents['"' .. ARGV[i] .. '"'] = true end
  local all = redis.call('HGETALL', KEYS[1])
  for i = 1, #all, 2 do
    local p = json_get(all[i + 1], 'parent_id')
    if p and parents[p] then
      redis.call('HDEL', KEYS[1], all[i])
      dropped = dropped + 1
    end
  end
end
local pairs_from = n + 2
local m = (#ARGV - pairs_from + 1) / 2
if m > 0 then hset_args(KEYS[1], pairs_from, m) end
return dropped
