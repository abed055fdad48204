-- cache_entity.lua: one object of a guild kept in a per-guild hash —
-- CHANNEL_*, THREAD_*, GUILD_ROLE_*, VOICE_STATE_UPDATE and PRESENCE_UPDATE.
-- The key carries the guild's hash tag.
--
-- KEYS[1] the hash (channels, threads, roles, voice states or presences)
--
-- ARGV[1] op: "set" (store ARGV[3] under ARGV[2]) or "del" (forget ARGV[2])
-- ARGV[2] object id (user id for voice states and presences)
-- ARGV[3] object JSON ("set" only)
--
-- Reply: the cached JSON before the call (nil if none).

local old = redis.call('HGET', KEYS[1], ARGV[2])
if ARGV[1] == 'set' then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
elseif ARGV[1] == 'del' then
  redis.call('HDEL', KEYS[1], ARGV[2])
else
  return redis.error_reply('cache_entity: unknown op ' .. tostring(ARGV[1]))
end
return old
