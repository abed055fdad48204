-- cache_op_member.lua: one guild member — GUILD_MEMBER_ADD / UPDATE /
-- REMOVE (GUILD_MEMBERS_CHUNK is cache_member_chunk.lua). Operations of
-- cache_ops.lua; the keys carry the guild's hash tag. The member's user
-- object and mutual-guild set are cache_op_user.lua's.

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
-- member (update), then drop those at their defaults (member_drops: the
-- member is stored compact, see keyspace.MemberDefaults).
--   KEYS slice: members
--   ARGV: user id, member JSON, keys: "" or the JSON's top-level keys, each
--         quoted, concatenated (the JSON compact at its top level, ending in
--         its closing brace: the merge then scans only the cached member)
--   Reply: the member JSON cached before (nil if none).
local function member_merge(members, id, json, keys)
  local old = redis.pcall('HGET', members, id)
  if failed(old) then return old end
  local e = redis.pcall('HSET', members, id, json_drop(json_merge_keys(get_or_nil(old), json, keys), member_drops))
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
