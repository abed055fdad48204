package gateway

import "time"

// Event is one dispatch (op 0) as a shard hands it to its Sink.
//
// Data and the byte slices it points into belong to the shard's read buffer:
// they are valid only until Sink.Publish returns. A Sink that keeps an event
// beyond the call copies what it needs.
type Event struct {
	// Bot is the bot name from the configuration.
	Bot string
	// Shard is the shard id and ShardCount the total shard count of the bot.
	Shard      int
	ShardCount int
	// Intents the session was identified with.
	Intents uint64
	// Session is the gateway session id (from READY) the event belongs to.
	Session string
	// ResumeURL is the session's resume_gateway_url (from READY).
	ResumeURL string
	// Seq is the gateway sequence number ("s").
	Seq int64
	// Type is the event name ("t"), e.g. MESSAGE_CREATE.
	Type string
	// GuildID is the guild id of the event ("d.guild_id", or "d.id" for
	// GUILD_* events about the guild itself); 0 when it has none.
	GuildID uint64
	// Data is the dispatch's "d", byte for byte as Discord sent it.
	Data []byte
	// Received is when the shard read the frame.
	Received time.Time
	// Skip asks the Sink to record the event for the session's checkpoint
	// only: it is neither cached nor published. A re-shard's hand-over
	// sets it on the dispatches another shard delivers (see Reshard).
	Skip bool
}
