-- cache_op_member.lua: one guild member — GUILD_MEMBER_ADD / UPDATE /
-- REMOVE (GUILD_MEMBERS_CHUNK is cache_member_chunk.lua). Operations of
-- cache_ops.lua; the keys carry the guild's hash tag. The member's user
-- object and mutual guilds are cache_op_user.lua's.

-- member_set ("ms"): store a member (add).
--   KEYS slice: members (hash user id -> member JSON without user, compact)
--   ARGV: user id, member JSON (compact)
--   Reply: the member JSON cached before (nil if none).
local function member_set(members, id, json)
  local old = redis.pcall('HGET', members, id)
  if failed(old) then return old end
  local e = redis.pcall('HSET', members, id, json)
  if failed(e) then return e end
  return old
end

-- member_merge ("mm"): write a member's top-level members over the cached
-- member (update), keeping it compact (without the members at Discord's
-- defaults, see keyspace.MemberDefaults).
--   KEYS slice: members
--   ARGV: user id, member JSON, keys. keys "": the JSON as Discord sent it
--         (the merge then drops the defaults, member_drops). Otherwise the
--         JSON compact (without its defaults, and at its top level, ending
--         in its closing brace) and keys the top-level keys of the JSON it
--         was made from, each quoted, concatenated: a cached member named
--         there goes (also when the JSON left it out as a default), and
--         only the cached member is scanned.
--   Reply: the member JSON cached before (nil if none).
local function member_merge(members, id, json, keys)
  local old = redis.pcall('HGET', members, id)
  if failed(old) then return old end
  local merged
  if keys == '' then
    merged = json_drop(json_merge(get_or_nil(old), json), member_drops, member_probes)
  else
    merged = json_merge_named(get_or_nil(old), json, keys)
  end
  local e = redis.pcall('HSET', members, id, merged)
  if failed(e) then return e end
  return old
end

-- member_remove ("mr"): forget a member and its presence (remove).
--   KEYS slice: members, presences
--   ARGV: user id
--   Reply: the member JSON cached before (nil if none).
local function member_remove(members, presences, id)
  local old = redis.pcall('HGET', members, id)
  if failed(old) then return old end
  local e = redis.pcall('HDEL', members, id)
  if not failed(e) then e = redis.pcall('HDEL', presences, id) end
  if failed(e) then return e end
  return old
end
