-- cache_ops.lua: several single-object cache operations in one call,
-- applied in order. The operations are the local functions of
-- cache_op_entity.lua, cache_op_member.lua, cache_op_list.lua and
-- cache_op_user.lua, which come before this loop in the script's source
-- (each documents its KEYS slice, ARGV and reply). The caller puts in one
-- call only keys of one hash slot (one guild's or one user's keys on Redis
-- Cluster; anything on a single Redis).
--
-- KEYS: every key the operations name (each once; an operation's keys are
-- adjacent, in the order of its KEYS slice)
-- ARGV: operations one after another, each an op code, the index in KEYS
-- of its first key, then its ARGV:
--   "es" k id json         entity_set     KEYS[k] hash
--   "ed" k id              entity_del     KEYS[k] hash
--   "ms" k id json         member_set     KEYS[k] members
--   "mm" k id json keys    member_merge   KEYS[k] members
--   "mr" k id              member_remove  KEYS[k] members, KEYS[k+1] presences
--   "ls" k json            list_set       KEYS[k] list
--   "uj" k id guild json   user_join      KEYS[k] users
--   "ul" k id guild        user_leave     KEYS[k] users
--   "uu" k id json         user_update    KEYS[k] users
--
-- Reply: one element per operation, in order: the cached object before it
-- (nil if none), or the error Redis refused one of its calls with (a key of
-- the wrong type); an operation that fails leaves the others alone. An
-- unknown op code fails the whole call before anything after it runs.

local reply = {}
local i, n = 1, #ARGV
while i <= n do
  local op, k = ARGV[i], tonumber(ARGV[i + 1])
  local v
  if op == 'es' then
    v = entity_set(KEYS[k], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'ed' then
    v = entity_del(KEYS[k], ARGV[i + 2])
    i = i + 3
  elseif op == 'ms' then
    v = member_set(KEYS[k], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'mm' then
    v = member_merge(KEYS[k], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  elseif op == 'mr' then
    v = member_remove(KEYS[k], KEYS[k + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'ls' then
    v = list_set(KEYS[k], ARGV[i + 2])
    i = i + 3
  elseif op == 'uj' then
    v = user_join(KEYS[k], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  elseif op == 'ul' then
    v = user_leave(KEYS[k], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'uu' then
    v = user_update(KEYS[k], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  else
    return redis.error_reply('cache_ops: unknown op ' .. tostring(op))
  end
  reply[#reply + 1] = v
end
return reply
