-- cache_guild.lua: GUILD_CREATE and GUILD_UPDATE for one guild. Every key
-- carries the guild's hash tag.
--
-- KEYS[1] guild JSON (string)        KEYS[7]  emojis JSON array (string)
-- KEYS[2] bots seeing the guild (set) KEYS[8]  stickers JSON array (string)
-- KEYS[3] unavailable marker (string) KEYS[9]  members (hash user id -> member JSON without user)
-- KEYS[4] channels (hash id -> JSON)  KEYS[10] voice states (hash user id -> JSON)
-- KEYS[5] threads (hash id -> JSON)   KEYS[11] presences (hash user id -> JSON)
-- KEYS[6] roles (hash id -> JSON)   KEYS[12] pending user leaves (set)
--
-- ARGV[1] mode: "create" (a full snapshot: replaces what is given),
--         "update" (merges the guild object's top-level members into the
--         cached one, replaces the lists that are given) or "unavailable"
--         (GUILD_CREATE of an unavailable guild: only marks it)
-- ARGV[2] bot name (added to KEYS[2] for "create" and "unavailable")
-- ARGV[3] guild JSON without its lists, "" = leave the guild object alone
-- ARGV[4] "1" when the member and presence lists are partial (a large
--         guild): they are merged instead of replaced
-- ARGV[5] "update": ARGV[3]'s top-level keys, each quoted, concatenated
--         ("" = unknown), so the merge scans only the cached guild
-- then eight sections in the order channels, threads, roles, emojis,
-- stickers, members, voice states, presences. Each starts with a count n:
-- -1 = absent (keep what is cached); for hash sections n >= 0 is followed by
-- n id/JSON pairs, for emojis and stickers n = 1 is followed by the array.
--
-- Reply: array; [1] the cached guild JSON before the call ("" if none);
-- [2..] user ids whose membership ended — because a full member list no
-- longer has them, or earlier and still in KEYS[12] (see pending_leaves):
-- the caller removes the guild from their mutual guilds, then the ids
-- from KEYS[12].

local mode, bot, guild, partial = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local old = get_or_nil(redis.call('GET', KEYS[1]))
local reply = { old or '' }
local gone = {}

if mode == 'create' or mode == 'unavailable' then
  redis.call('SADD', KEYS[2], bot)
end
if mode == 'unavailable' then
  redis.call('SET', KEYS[3], '1')
  return pending_leaves(reply, gone, KEYS[12], KEYS[9])
end
if mode == 'create' then
  redis.call('DEL', KEYS[3])
  if guild ~= '' then redis.call('SET', KEYS[1], guild) end
elseif guild ~= '' then
  redis.call('SET', KEYS[1], json_merge_keys(old, guild, ARGV[5]))
end

local at = 6
local function hash_section(key, merge, removed)
  local n = tonumber(ARGV[at])
  at = at + 1
  if n < 0 then return end
  if removed then
    local keep = {}
    for i = 0, n - 1 do keep[ARGV[at + 2 * i]] = true end
    local ids = redis.call('HKEYS', key)
    for i = 1, #ids do
      if not keep[ids[i]] then gone[#gone + 1] = ids[i] end
    end
  end
  if not merge then redis.call('DEL', key) end
  if n > 0 then hset_args(key, at, n) end
  at = at + 2 * n
end
local function string_section(key)
  local n = tonumber(ARGV[at])
  at = at + 1
  if n < 0 then return end
  redis.call('SET', KEYS[key], ARGV[at])
  at = at + 1
end

hash_section(KEYS[4], false, false)
hash_section(KEYS[5], false, false)
hash_section(KEYS[6], false, false)
string_section(7)
string_section(8)
hash_section(KEYS[9], partial, not partial)
hash_section(KEYS[10], false, false)
hash_section(KEYS[11], partial, false)
return pending_leaves(reply, gone, KEYS[12], KEYS[9])
