-- cache_user.lua: one user's object and mutual-guild set. Both keys carry
-- the user's hash tag.
--
-- KEYS[1] user JSON (string)
-- KEYS[2] ids of the cached guilds the user is a member of (set)
--
-- ARGV[1] op:
--   "join"   ARGV[2] guild id, ARGV[3] user JSON ("" = keep the cached
--            object): the user is a member of the guild
--   "leave"  ARGV[2] guild id: the user is no longer a member; a user left
--            in no cached guild is deleted
--   "update" ARGV[3] user JSON: merged over the cached object, only when the
--            user is cached (USER_UPDATE)
--
-- Reply: the cached user JSON before the call (nil if none).

local op = ARGV[1]
local old = redis.call('GET', KEYS[1])
if op == 'join' then
  if ARGV[3] ~= '' then redis.call('SET', KEYS[1], ARGV[3]) end
  redis.call('SADD', KEYS[2], ARGV[2])
elseif op == 'leave' then
  redis.call('SREM', KEYS[2], ARGV[2])
  if redis.call('SCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[1])
  end
elseif op == 'update' then
  if old then redis.call('SET', KEYS[1], json_merge(old, ARGV[3])) end
else
  return redis.error_reply('cache_user: unknown op ' .. tostring(op))
end
return old
