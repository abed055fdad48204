// Package discordtest is a fake Discord for tests, the demo and the
// benchmarks. REST, the websocket gateway and a control API share one
// listener (Start):
//
//	GET  /api/v10/gateway/bot   (also /api/v9/...; "Authorization: Bot <token>", else 401)
//	GET  /api/v10/gateway
//	ws://host:port/?v=10&encoding=json[&compress=zlib-stream|zstd-stream]   (any path)
//	GET  /_fake/stats                      Stats as JSON
//	GET  /_fake/ledger?shard=N[&data=true] sessions of shard N with event, seq, t, guild (and d, before);
//	                                       entries of several sessions with one event number are
//	                                       one event sent to each (shard counts overlapping)
//	GET  /_fake/world                      the World snapshot
//	POST /_fake/shards/{id}/reconnect      op 7, then close 4000 after Config.ReconnectDelay
//	POST /_fake/shards/{id}/invalidate?resumable=true|false
//	POST /_fake/shards/{id}/close?code=N   (code 0: TCP drop without close frame)
//	POST /_fake/shards/{id}/zombie         stop ACKing heartbeats on the current connection
//	POST /_fake/shards/{id}/heartbeat      op 1 (the client must heartbeat at once)
//	POST /_fake/dispatch                   {"shard":N,"t":"EVENT","d":{...}}
//	POST /_fake/rate?rate=R                live events per second
//	POST /_fake/restart                    Restart
//	POST /_fake/shards?n=N                 SetShards: the count /gateway/bot recommends
//	POST /_fake/max_guilds_per_shard?n=N   SetMaxGuildsPerShard: more guilds on an IDENTIFY's shard close it with 4011
//
// Bad input to the control API gets a 4xx JSON reply {"message": ...} that
// names the problem; a hook on a shard without a connection gets 409.
//
// # Gateway behaviour
//
// HELLO is sent at once (heartbeat_interval = Config.HeartbeatInterval).
// Heartbeats are ACKed (not on a Zombie connection). A connection that sends
// no heartbeat for 1.5 × interval is recorded as "late_heartbeat" and dropped
// without a close frame; its session stays resumable (Discord's close code
// for this is undocumented, and a drop is what a client must survive anyway).
//
// IDENTIFY is checked in this order: second IDENTIFY 4005, bad token 4004,
// bad JSON or missing properties 4002, missing or unknown intent bits 4013,
// privileged intents with Config.DisallowPrivileged 4014, shard not
// [id, n] with 0 ≤ id < n 4010 (any n ≥ 1 is accepted), more than
// MaxGuildsPerShard (2500) guilds on the shard 4011. Then
// session_start_limit.remaining exhausted or a second IDENTIFY of a bucket
// (shard_id % MaxConcurrency) within IdentifyWindow (less IdentifyTolerance,
// default a tenth of the window, for jitter; timed by the IDENTIFYs'
// arrival at the socket, see Config.IdentifyWindow) answer op 9 false and
// record a violation ("session_start_limit", "identify_rate"); the
// connection may IDENTIFY again. Any other payload before IDENTIFY/RESUME
// closes 4003 (heartbeats are allowed); unknown opcodes 4001; payloads over
// 4096 bytes or not JSON 4002; more than SendLimit payloads per SendWindow
// (120 / 60 s) 4008. Each of these records a Violation.
//
// READY (s=1) carries session_id, resume_gateway_url (ResumeURL:
// "ws://host:port/resume"), the bot user, the shard's guilds as unavailable
// (guild on shard (id>>22) % num_shards of the IDENTIFY) and application;
// one GUILD_CREATE per guild follows. Live events are sent only to sessions
// whose intents cover them; MESSAGE_CREATE without MESSAGE_CONTENT has empty
// content unless it mentions the bot.
//
// Sessions: a session whose connection drops (or closes with a code other
// than those below) stays resumable for ResumeWindow, and the live traffic
// of its guilds keeps being recorded in its ledger while it is away. RESUME
// with seq ≤ last replays every dispatch after seq in order, then RESUMED
// (itself a dispatch with the next seq). A RESUME with seq beyond the last
// sent closes 4007 and ends the session ("resume_bad_seq"); an unknown or
// expired session gets op 9 false. A RESUME of a session that is still
// connected drops the old connection. A client close frame 1000/1001 ends the
// session ("session_ended_by_client"); CloseShard with 1000, 1001, 4003,
// 4004, 4007, 4009 or 4010–4014 ends it too.
//
// Request Guild Members (op 8) is answered with GUILD_MEMBERS_CHUNKs of at
// most 1000 members (chunk_index/chunk_count, nonce, not_found for user_ids,
// presences on request); query is a case-insensitive prefix of username or
// nick (limit ≤ 100); a second "all members" request (query "", limit 0) for
// a guild within MemberRequestInterval gets RATE_LIMITED {opcode, retry_after,
// meta{guild_id, nonce}}.
//
// zlib-stream: one zlib writer per connection, one Flush per message,
// binary frames. zstd-stream: one zstd encoder per connection, one Flush per
// message, one binary websocket message per gateway message. MaxFrameSize
// splits a zlib message into several websocket messages, and any other
// message into continuation frames.
//
// # The World
//
// The world is generated from Config.Seed: Guilds guilds (ids spread over
// shards), each with @everyone (id = guild id) and 3 roles, a category, 3
// text and 2 voice channels, 2 emojis, a sticker, a thread, MembersPerGuild
// members (the bot included) drawn from a shared pool of users so users
// share guilds, presences for about half of them and one voice state.
// Snowflakes are strings made from a virtual clock, so two fakes with one
// seed make the same world and (driven the same way) the same events.
//
// Snapshot returns World{Guilds map[guild id]GuildState, Users map[user
// id]user, BotUserID}. Every value is raw JSON, keyed by id:
//
//	GuildState.Guild        guild object without roles, emojis, stickers, channels,
//	                        threads, members, voice_states, presences, joined_at,
//	                        large, unavailable, member_count
//	GuildState.Channels     channel objects with guild_id, by channel id
//	GuildState.Threads      thread channel objects with guild_id, by id
//	GuildState.Roles        role objects, by role id
//	GuildState.Emojis       emoji objects, by emoji id
//	GuildState.Stickers     sticker objects (with guild_id), by id
//	GuildState.Members      member objects with nested user, no guild_id, by user id
//	GuildState.VoiceStates  voice states as in GUILD_CREATE (no guild_id, no member), by user id
//	GuildState.Presences    presences as in GUILD_CREATE (no guild_id), by user id
//	Users                   user objects of every member of some guild, by user id
//
// LedgerEntry.Before holds the model's object before an UPDATE, DELETE or
// REMOVE in the same shape (for GUILD_UPDATE the Guild shape, for
// GUILD_EMOJIS_UPDATE the JSON array of emojis, for PRESENCE_UPDATE and
// VOICE_STATE_UPDATE the previous presence/voice state or nil when there was
// none); nil for other events.
//
// Model rules the events follow (what a cache applying them must do to end
// equal to Snapshot): GUILD_MEMBER_REMOVE also removes that member's presence
// (a member in voice is never removed); a user in no guild leaves Users;
// PRESENCE_UPDATE with status "offline" removes the presence;
// VOICE_STATE_UPDATE with channel_id null removes the voice state; only
// roles no member has are deleted; channels with threads or voice states are
// not deleted; MESSAGE_CREATE does not change channels' last_message_id.
//
// Live traffic: Config.Rate events per second over the live sessions, with
// the Config.Mix weights (DefaultMix). Two more events can be mixed in:
// GUILD_CREATE (the bot joins a new guild; up to 2 × Guilds) and GUILD_DELETE
// (the bot leaves one; down to Guilds/2); they change which guilds a session
// has, so they are not in DefaultMix. MESSAGE_UPDATE, MESSAGE_DELETE and
// MESSAGE_REACTION_ADD (about recent generated messages; no model change)
// can be mixed in too.
//
// Dispatch (and POST /_fake/dispatch) updates the model for the events above
// (GUILD_CREATE replaces or adds a whole guild; GUILD_DELETE with
// "unavailable":true leaves the model alone) and refuses a modelled event for
// a guild the model does not have; any other event passes through unchanged. Generation pauses while more than
// 20000 dispatches wait in connection queues, so a client that stops reading
// slows the traffic instead of growing memory. Config.LedgerLimit bounds the
// ledger for long runs.
package discordtest
