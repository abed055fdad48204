-- cache_op_list.lua: a list a guild replaces as a whole —
-- GUILD_EMOJIS_UPDATE and GUILD_STICKERS_UPDATE. An operation of
-- cache_ops.lua; the key carries the guild's hash tag.

-- list_set ("ls"): replace the list.
--   KEYS slice: the list (string holding a JSON array, byte for byte as sent)
--   ARGV: the new JSON array
--   Reply: the JSON array cached before (nil if none).
local function list_set(key, json)
  local old = redis.pcall('GET', key)
  if failed(old) then return old end
  local e = redis.pcall('SET', key, json)
  if failed(e) then return e end
  return old
end
