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
// connection with a resumable code and resumes from the last accepted seq.
type Sink interface {
	Publish(ctx context.Context, ev *Event) error
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
