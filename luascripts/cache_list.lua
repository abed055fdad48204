-- cache_list.lua: a list a guild replaces as a whole — GUILD_EMOJIS_UPDATE
-- and GUILD_STICKERS_UPDATE. The key carries the guild's hash tag.
--
-- KEYS[1] the list (string holding a JSON array, byte for byte as sent)
-- ARGV[1] the new JSON array
--
-- Reply: the cached JSON array before the call (nil if none).

local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
return old
