// Package luascripts holds feathery's Redis Lua scripts, one .lua file per
// concern, each embedded with go:embed and wrapped once as a typed Go
// function. Every file documents its KEYS, ARGV and reply in a header
// comment. All KEYS of one call share a hash tag, so the scripts run on Redis
// Cluster. The package only depends on rueidis; it neither logs nor reads
// configuration.
//
// Streams: publish.lua (Publish: the XADDs of a batch and the session
// checkpoint in one call) and identify.lua (Identify: the identify rate
// limit).
//
// Cache scripts, each starting with the shared helpers of cache_json.lua:
//
//   - cache_guild.lua (CacheGuild): GUILD_CREATE, GUILD_UPDATE, a guild
//     becoming unavailable;
//   - cache_guild_delete.lua (CacheGuildDelete): GUILD_DELETE;
//   - cache_thread_sync.lua (CacheThreadSync): THREAD_LIST_SYNC;
//   - cache_member_chunk.lua (CacheMemberChunk): GUILD_MEMBERS_CHUNK;
//   - cache_ops.lua (CacheOps, CacheTx): single-object operations, many in
//     one call. Each concern is a file of local functions, concatenated in
//     front of cache_ops.lua's dispatch loop into that one script:
//     cache_op_entity.lua (CacheOpEntitySet, CacheOpEntityDel: channels,
//     threads, roles, voice states, presences), cache_op_member.lua
//     (CacheOpMember, CacheOpMemberMerge: member add, update, remove),
//     cache_op_list.lua (CacheOpListSet: emojis, stickers) and
//     cache_op_user.lua (CacheOpUser: a user joining or leaving a guild,
//     USER_UPDATE). CacheTx sends the operations that need no Lua as plain
//     commands in MULTI/EXEC instead, with the same replies.
//
// Publishing a batch:
//
//	var args luascripts.PublishArgs // reused batch after batch
//	args.Build(&luascripts.PublishCall{
//		Checkpoint: "feathery:{bot:main}:session:0",
//		Streams:    []luascripts.PublishStream{{Key: "feathery:{bot:main}:events"}},
//		Session:    "abc", Seq: 42, Bot: "main", Shard: 0,
//		Entries:    entries,
//	})
//	res, err := luascripts.Publish(ctx, client, &args)
package luascripts
