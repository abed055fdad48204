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
--   "mm" k id json keys  member merge (top-level members over the cached
--                     one); keys "" or json's top-level keys, each quoted,
--                     concatenated (json compact, as the caller wrote it:
--                     the merge need not scan json)
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

-- Each Redis call is redis.pcall: an error reply ends the operation (the
-- calls after it in the operation are not made) and becomes its reply.
local function failed(v) return type(v) == 'table' and v.err ~= nil end

local reply = {}
local i, n = 1, #ARGV
while i <= n do
  local op, ki = ARGV[i], tonumber(ARGV[i + 1])
  local k = KEYS[ki]
  local v
  if op == 'es' or op == 'ms' or op == 'mm' then
    local id = ARGV[i + 2]
    v = redis.pcall('HGET', k, id)
    if not failed(v) then
      local js = ARGV[i + 3]
      if op == 'mm' then js = json_merge_keys(get_or_nil(v), js, ARGV[i + 4]) end
      local e = redis.pcall('HSET', k, id, js)
      if failed(e) then v = e end
    end
    i = i + 4
    if op == 'mm' then i = i + 1 end
  elseif op == 'ed' or op == 'mr' then
    local id = ARGV[i + 2]
    v = redis.pcall('HGET', k, id)
    if not failed(v) then
      local e = redis.pcall('HDEL', k, id)
      if not failed(e) and op == 'mr' then e = redis.pcall('HDEL', KEYS[ki + 1], id) end
      if failed(e) then v = e end
    end
    i = i + 3
  elseif op == 'ls' then
    v = redis.pcall('GET', k)
    if not failed(v) then
      local e = redis.pcall('SET', k, ARGV[i + 2])
      if failed(e) then v = e end
    end
    i = i + 3
  elseif op == 'uj' or op == 'ul' then
    local g, guild = KEYS[ki + 1], ARGV[i + 2]
    v = redis.pcall('GET', k)
    if not failed(v) then
      local e
      if op == 'uj' then
        local js = ARGV[i + 3]
        if js ~= '' then e = redis.pcall('SET', k, js) end
        if not failed(e) then e = redis.pcall('SADD', g, guild) end
        i = i + 4
      else
        e = redis.pcall('SREM', g, guild)
        if not failed(e) then
          e = redis.pcall('SCARD', g)
          if e == 0 then e = redis.pcall('DEL', k) end
        end
        i = i + 3
      end
      if failed(e) then v = e end
    elseif op == 'uj' then
      i = i + 4
    else
      i = i + 3
    end
  elseif op == 'uu' then
    v = redis.pcall('GET', k)
    if v and not failed(v) then
      local e = redis.pcall('SET', k, json_merge(v, ARGV[i + 2]))
      if failed(e) then v = e end
    end
    i = i + 3
  else
    return redis.error_reply('cache_ops: unknown op ' .. tostring(op))
  end
  reply[#reply + 1] = v
end
return reply
