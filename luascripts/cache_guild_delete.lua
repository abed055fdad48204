-- cache_guild_delete.lua: GUILD_DELETE for one guild. Every key carries the
-- guild's hash tag.
--
-- KEYS: the eleven keys of cache_guild.lua, same order (guild, bots,
-- unavailable, channels, threads, roles, emojis, stickers, members, voice
-- states, presences).
-- ARGV[1] bot name
-- ARGV[2] "1" = the guild is unavailable (an outage): the data is kept and
--         the guild marked unavailable; "0" = the bot was removed: the bot
--         leaves KEYS[2] and, once no bot sees the guild, every key is deleted
--
-- Reply: array; [1] the cached guild JSON before the call ("" if none);
-- [2..] when the data was deleted, the user ids of the members it had (the
-- caller removes the guild from their mutual-guild sets).

local old = get_or_nil(redis.call('GET', KEYS[1]))
local reply = { old or '' }
if ARGV[2] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('SET', KEYS[3], '1')
  return reply
end
redis.call('SREM', KEYS[2], ARGV[1])
if redis.call('SCARD', KEYS[2]) > 0 then return reply end
local ids = redis.call('HKEYS', KEYS[9])
for i = 1, #ids do reply[#reply + 1] = ids[i] end
redis.call('DEL', unpack(KEYS))
return reply
