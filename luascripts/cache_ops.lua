-- cache_ops.lua: several single-object cache operations in one call, each
-- the same as its own script (cache_entity.lua, cache_member.lua,
-- cache_list.lua, cache_user.lua), applied in order. The caller puts in
-- one call only keys of one hash slot (one guild's or one user's keys on
-- Redis Cluster; anything on a single Redis).
--
-- KEYS: every key the operations name (each once)
-- ARGV: operations one after another, each an op code, the index of its
-- first key in KEYS, then its arguments:
--   "es" k id json    HSET KEYS[k] id json            (cache_entity "set")
--   "ed" k id         HDEL KEYS[k] id                 (cache_entity "del")
--   "ms" k id json    member set; KEYS[k] members, KEYS[k+1] presences
--   "mm" k id json    member merge (top-level members over the cached one)
--   "mr" k id         member remove (member and presence forgotten)
--   "ls" k json       SET KEYS[k] json                (cache_list)
--   "uj" k guild json user joins guild; KEYS[k] user, KEYS[k+1] guilds;
--                     json "" keeps the cached object
--   "ul" k guild      user leaves guild; a user in no cached guild is deleted
--   "uu" k json       user update, merged only when the user is cached
--
-- Reply: one element per operation, in order: the cached object before it
-- (nil if none), or an error when Redis refused it (a key of the wrong
-- type); an operation that fails leaves the others alone, as its own
-- script call would.

local function entity_set(k, id, json)
  local old = redis.call('HGET', k, id)
  redis.call('HSET', k, id, json)
  return old
end
local function entity_del(k, id)
  local old = redis.call('HGET', k, id)
  redis.call('HDEL', k, id)
  return old
end
local function member_merge(k, id, json)
  local old = redis.call('HGET', k, id)
  redis.call('HSET', k, id, json_merge(get_or_nil(old), json))
  return old
end
local function member_remove(k, p, id)
  local old = redis.call('HGET', k, id)
  redis.call('HDEL', k, id)
  redis.call('HDEL', p, id)
  return old
end
local function list_set(k, json)
  local old = redis.call('GET', k)
  redis.call('SET', k, json)
  return old
end
local function user_join(u, g, guild, json)
  local old = redis.call('GET', u)
  if json ~= '' then redis.call('SET', u, json) end
  redis.call('SADD', g, guild)
  return old
end
local function user_leave(u, g, guild)
  local old = redis.call('GET', u)
  redis.call('SREM', g, guild)
  if redis.call('SCARD', g) == 0 then
    redis.call('DEL', u)
  end
  return old
end
local function user_update(u, json)
  local old = redis.call('GET', u)
  if old then redis.call('SET', u, json_merge(old, json)) end
  return old
end

local reply = {}
local i, n = 1, #ARGV
while i <= n do
  local op, k = ARGV[i], KEYS[tonumber(ARGV[i + 1])]
  local ok, v
  if op == 'es' or op == 'ms' then
    ok, v = pcall(entity_set, k, ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'ed' then
    ok, v = pcall(entity_del, k, ARGV[i + 2])
    i = i + 3
  elseif op == 'mm' then
    ok, v = pcall(member_merge, k, ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'mr' then
    ok, v = pcall(member_remove, k, KEYS[tonumber(ARGV[i + 1]) + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'ls' then
    ok, v = pcall(list_set, k, ARGV[i + 2])
    i = i + 3
  elseif op == 'uj' then
    ok, v = pcall(user_join, k, KEYS[tonumber(ARGV[i + 1]) + 1], ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'ul' then
    ok, v = pcall(user_leave, k, KEYS[tonumber(ARGV[i + 1]) + 1], ARGV[i + 2])
    i = i + 3
  elseif op == 'uu' then
    ok, v = pcall(user_update, k, ARGV[i + 2])
    i = i + 3
  else
    return redis.error_reply('cache_ops: unknown op ' .. tostring(op))
  end
  if ok then
    reply[#reply + 1] = v
  else
    if type(v) == 'table' then v = v.err end
    reply[#reply + 1] = { err = tostring(v) }
  end
end
return reply
