-- cache_guild_delete.lua: GUILD_DELETE for one guild. Every key carries the
-- guild's hash tag.
--
-- KEYS: the twelve keys of cache_guild.lua, same order (guild, bots,
-- unavailable, channels, threads, roles, emojis, stickers, members, voice
-- states, presences, pending user leaves).
-- ARGV[1] bot name
-- ARGV[2] "1" = the guild is unavailable (an outage): the data is kept and
--         the guild marked unavailable; "0" = the bot was removed: the bot
--         leaves KEYS[2] and, once no bot sees the guild, every key is deleted
--
-- Reply: array; [1] the cached guild JSON before the call ("" if none);
-- [2..] user ids whose membership ended: when the data was deleted, the
-- members it had, and those still in KEYS[12] (see pending_leaves); the
-- caller removes the guild from their mutual guilds, then the ids from
-- KEYS[12].

local old = get_or_nil(redis.call('GET', KEYS[1]))
local reply = { old or '' }
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], '1')
  return pending_leaves(reply, {}, KEYS[12], KEYS[9])
end
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) > 0 then return pending_leaves(reply, {}, KEYS[12], KEYS[9]) end
local ids = redis.call('HKEYS', KEYS[9])
redis.call('DEL', unpack(KEYS, 1, 11))
return pending_leaves(reply, ids, KEYS[12], KEYS[9])
