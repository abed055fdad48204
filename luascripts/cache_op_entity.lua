-- cache_op_entity.lua: one object of a guild kept in a per-guild hash —
-- CHANNEL_*, THREAD_*, GUILD_ROLE_*, VOICE_STATE_UPDATE and PRESENCE_UPDATE.
-- Operations of cache_ops.lua (not a script of its own); the hash carries
-- the guild's hash tag.
--
-- Every operation here, and in the other cache_op_*.lua files, makes its
-- Redis calls with redis.pcall: an error reply (a key of the wrong type)
-- ends the operation, the calls after it are not made, and the error is
-- the operation's reply.

-- entity_set ("es"): store an object.
--   KEYS slice: hash (channels, threads, roles, voice states or presences)
--   ARGV: id (user id for voice states and presences), object JSON
--   Reply: the JSON cached under id before (nil if none).
local function entity_set(hash, id, json)
  local old = redis.pcall('HGET', hash, id)
  if failed(old) then return old end
  local e = redis.pcall('HSET', hash, id, json)
  if failed(e) then return e end
  return old
end

-- entity_del ("ed"): forget an object.
--   KEYS slice: hash
--   ARGV: id
--   Reply: the JSON cached under id before (nil if none).
local function entity_del(hash, id)
  local old = redis.pcall('HGET', hash, id)
  if failed(old) then return old end
  local e = redis.pcall('HDEL', hash, id)
  if failed(e) then return e end
  return old
end
