-- cache_member.lua: guild members of one guild (GUILD_MEMBER_ADD / UPDATE /
-- REMOVE, GUILD_MEMBERS_CHUNK). Every key carries the guild's hash tag; the
-- user objects and mutual-guild sets are cache_user.lua's.
--
-- KEYS[1] members (hash user id -> member JSON without user)
-- KEYS[2] presences (hash user id -> presence JSON)
--
-- ARGV[1] op:
--   "set"    ARGV[2] user id, ARGV[3] member JSON: store it (add)
--   "merge"  ARGV[2] user id, ARGV[3] member JSON: write its top-level
--            members over the cached member (update)
--   "remove" ARGV[2] user id: forget the member and its presence
--   "chunk"  ARGV[2] n, then n user id/member JSON pairs, then m, then m
--            user id/presence JSON pairs: store them all
--
-- Reply: the cached member JSON before the call (nil if none); "chunk"
-- replies nil.

local op = ARGV[1]
if op == 'chunk' then
  local n = tonumber(ARGV[2])
  if n > 0 then hset_args(KEYS[1], 3, n) end
  local at = 3 + 2 * n
  local m = tonumber(ARGV[at])
  if m > 0 then hset_args(KEYS[2], at + 1, m) end
  return false
end
local id = ARGV[2]
local old = redis.call('HGET', KEYS[1], id)
if op == 'set' then
  redis.call('HSET', KEYS[1], id, ARGV[3])
elseif op == 'merge' then
  redis.call('HSET', KEYS[1], id, json_merge(get_or_nil(old), ARGV[3]))
elseif op == 'remove' then
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
else
  return redis.error_reply('cache_member: unknown op ' .. tostring(op))
end
return old
