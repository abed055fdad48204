-- cache_op_user.lua: one user's object and memberships — the users of
-- member events and GUILD_CREATE / GUILD_DELETE, and USER_UPDATE.
-- Operations of cache_ops.lua; the key carries the user's bucket hash tag.
--
-- KEYS slice of every operation here:
--   users  the user's bucket (hash user id -> entry)
-- An entry is the ids of the cached guilds the user is a member of,
-- comma-separated in ascending order, followed by the user object stored compact (without
-- "id" and the members user_drops lists), or by nothing while the object
-- is unknown. A user in no cached guild has no entry.
-- Every operation replies the compact user object cached before (false,
-- a nil reply, if none).

-- user_entry splits an entry: guild ids (string, maybe ''), user object
-- (nil if none)
local function user_entry(v)
  if not v then return '', nil end
  local i = sfind(v, '{', 1, true)
  if not i then return v, nil end
  return ssub(v, 1, i - 1), ssub(v, i)
end

-- ids_less orders snowflakes (decimal strings) by value
local function ids_less(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

-- user_join ("uj"): the user is a member of a guild (the ids stay in
-- ascending order, so replays leave the same entry).
--   ARGV: user id, guild id, user JSON (compact; "" keeps the cached object)
local function user_join(users, id, guild, json)
  local old = redis.pcall('HGET', users, id)
  if failed(old) then return old end
  local list, user = user_entry(get_or_nil(old))
  if list == '' then
    list = guild
  elseif sfind(',' .. list .. ',', ',' .. guild .. ',', 1, true) then
    -- already a member: most joins (member updates) change nothing
    if json == '' or json == user then return user or false end
  else
    local ids, n = {}, 0
    for g in string.gmatch(list, '[^,]+') do
      n = n + 1
      ids[n] = g
    end
    ids[n + 1] = guild
    table.sort(ids, ids_less)
    list = table.concat(ids, ',')
  end
  local now = user
  if json ~= '' then now = json end
  local e = redis.pcall('HSET', users, id, list .. (now or ''))
  if failed(e) then return e end
  return user or false
end

-- user_leave ("ul"): the user is no longer a member of a guild; a user left
-- in no cached guild is deleted.
--   ARGV: user id, guild id
local function user_leave(users, id, guild)
  local old = redis.pcall('HGET', users, id)
  if failed(old) then return old end
  old = get_or_nil(old)
  if not old then return false end
  local list, user = user_entry(old)
  local kept, n = {}, 0
  for g in string.gmatch(list, '[^,]+') do
    if g ~= guild then
      n = n + 1
      kept[n] = g
    end
  end
  local e
  if n == 0 then
    e = redis.pcall('HDEL', users, id)
  else
    e = redis.pcall('HSET', users, id, table.concat(kept, ',') .. (user or ''))
  end
  if failed(e) then return e end
  return user or false
end

-- user_update ("uu"): USER_UPDATE, merged over the cached object only when
-- the user is cached (the memberships are not touched), then stored
-- compact.
--   ARGV: user id, user JSON
local function user_update(users, id, json)
  local old = redis.pcall('HGET', users, id)
  if failed(old) then return old end
  local list, user = user_entry(get_or_nil(old))
  if not user then return false end
  local e = redis.pcall('HSET', users, id, list .. json_drop(json_merge(user, json), user_drops, user_probes))
  if failed(e) then return e end
  return user or false
end
