package gateway

import "context"

// Sink receives the dispatches of every shard, each shard's in its order.
//
// Publish is called from the shard's read loop, one event at a time. It
// returns once the Sink has accepted the event; it may block to apply
// backpressure (the shard then stops reading its socket). An accepted event
// must eventually be made durable in the order it was accepted, and only then
// may the Sink advance the session's checkpoint (session id, seq, resume URL)
// that a SessionStore later loads: the checkpoint is the Sink's to write.
//
// A non-nil error means the event was not accepted; the shard closes its
// connection with a resumable code and resumes from the last accepted seq —
// unless the error is a RewoundError.
type Sink interface {
	Publish(ctx context.Context, ev *Event) error
}

// RewoundError is implemented by a Sink's Publish error (found with
// errors.As) that says the Sink's durable checkpoint no longer covers events
// it accepted: its store lost writes (a failover to a replica that missed
// them, a restart from an older file) or the checkpoint was rewritten. The
// shard then closes its connection with a resumable code, loads the
// checkpoint again from its SessionStore and RESUMEs from there, so the
// gateway replays what was lost; when the stored checkpoint is of another
// session (or none), it resumes its session from the start. If the gateway
// cannot replay, the session ends with a gap ControlEvent.
type RewoundError interface {
	error
	CheckpointRewound() bool
}

// Flusher is implemented by Sinks that buffer. A shard stopping gracefully
// calls Flush after its last Publish and before it closes its connection.
type Flusher interface {
	Flush(ctx context.Context, bot string, shard int) error
}

// SinkFunc adapts a function to the Sink interface.
type SinkFunc func(ctx context.Context, ev *Event) error

// Publish calls f(ctx, ev).
func (f SinkFunc) Publish(ctx context.Context, ev *Event) error { return f(ctx, ev) }

// Stager is implemented by Sinks that keep one checkpoint per shard id. A
// re-shard's new set has the ids of the old one: from Stage until Promote
// (or Unstage) the Sink keeps the checkpoints of the events of count
// shards apart from the old set's; Promote, called once the old set has
// stopped and been flushed, makes them the shards' checkpoints.
type Stager interface {
	Stage(ctx context.Context, bot string, count int) error
	Promote(ctx context.Context, bot string, count int) error
	Unstage(ctx context.Context, bot string, count int) error
}
