-- fleet_leave: remove a node from a bot's membership.
--
-- KEYS[1] the bot's members (sorted set: node id -> expiry)
-- KEYS[2] the bot's member details (hash: node id -> JSON)
--
-- ARGV[1] node id
--
-- Reply: 1 when the node was a member, else 0
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
