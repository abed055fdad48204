package broker

import "time"

// Event is one dispatch as a shard hands it to the Publisher. Its fields
// are those of gateway.Event, in the same order and of the same types, so
// cmd/ converts a *gateway.Event to a *Event for free.
//
// Data is valid only during Publisher.Publish; the Publisher copies it.
type Event struct {
	Bot        string
	Shard      int
	ShardCount int
	Intents    uint64
	Session    string
	ResumeURL  string
	Seq        int64
	Type       string
	GuildID    uint64
	Data       []byte
	Received   time.Time
	// Skip: the event is only recorded for the checkpoint (gateway.Event).
	Skip bool
}

// Session is a shard's resume checkpoint; the same fields as
// gateway.Session.
type Session struct {
	ID         string
	Seq        int64
	ResumeURL  string
	ShardCount int
	Intents    uint64
}

// Limits are a bot's identify limits from GET /gateway/bot; the same fields
// as gateway.Limits.
type Limits struct {
	MaxConcurrency int
	Window         time.Duration
	Total          int
	Remaining      int
	ResetAfter     time.Duration
}
