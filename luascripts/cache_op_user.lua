-- cache_op_user.lua: one user's object and mutual-guild set — the users of
-- member events and GUILD_CREATE / GUILD_DELETE, and USER_UPDATE.
-- Operations of cache_ops.lua; both keys carry the user's hash tag.
--
-- KEYS slice of every operation here:
--   user   the user JSON (string)
--   guilds ids of the cached guilds the user is a member of (set)

-- user_join ("uj"): the user is a member of a guild.
--   ARGV: guild id, user JSON ("" keeps the cached object)
--   Reply: the user JSON cached before (nil if none).
local function user_join(user, guilds, guild, json)
  local old = redis.pcall('GET', user)
  if failed(old) then return old end
  local e
  if json ~= '' then e = redis.pcall('SET', user, json) end
  if not failed(e) then e = redis.pcall('SADD', guilds, guild) end
  if failed(e) then return e end
  return old
end

-- user_leave ("ul"): the user is no longer a member of a guild; a user left
-- in no cached guild is deleted.
--   ARGV: guild id
--   Reply: the user JSON cached before (nil if none).
local function user_leave(user, guilds, guild)
  local old = redis.pcall('GET', user)
  if failed(old) then return old end
  local e = redis.pcall('SREM', guilds, guild)
  if not failed(e) then
    e = redis.pcall('SCARD', guilds)
    if e == 0 then e = redis.pcall('DEL', user) end
  end
  if failed(e) then return e end
  return old
end

-- user_update ("uu"): USER_UPDATE, merged over the cached object only when
-- the user is cached (guilds is not touched).
--   ARGV: user JSON
--   Reply: the user JSON cached before (nil if none).
local function user_update(user, json)
  local old = redis.pcall('GET', user)
  if failed(old) or not old then return old end
  local e = redis.pcall('SET', user, json_merge(old, json))
  if failed(e) then return e end
  return old
end
