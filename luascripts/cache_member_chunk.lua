-- cache_member_chunk.lua: GUILD_MEMBERS_CHUNK, the members (and presences)
-- of one guild in bulk. Every key carries the guild's hash tag; the users
-- of the chunk join through cache_op_user.lua's user_join.
--
-- KEYS[1] members (hash user id -> member JSON without user)
-- KEYS[2] presences (hash user id -> presence JSON without user)
--
-- ARGV[1] n, then n user id / member JSON pairs, then m, then m user id /
-- presence JSON pairs: all stored
--
-- Reply: nil.

local n = tonumber(ARGV[1])
if n > 0 then hset_args(KEYS[1], 2, n) end
local at = 2 + 2 * n
local m = tonumber(ARGV[at])
if m > 0 then hset_args(KEYS[2], at + 1, m) end
return false
