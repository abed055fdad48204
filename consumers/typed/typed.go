package typed

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"

	"github.com/feathery/feathery/consumers"
)

// Envelope is where an entry came from, typed: every field feathery writes
// beside "d" (t, bot, shard, session, seq, guild, before, at), plus the
// entry's id, stream and delivery count.
type Envelope struct {
	// ID is the stream entry id and Stream the stream it was read from.
	ID     string
	Stream string
	// T is the event name, e.g. gateway.EventTypeMessageCreate.
	T gateway.EventType
	// Bot is the bot's name in feathery's configuration.
	Bot string
	// Shard, Session and Seq say where the event arrived; (Bot, Shard,
	// Session, Seq) identifies it.
	Shard   int
	Session string
	Seq     int64
	// Guild is the event's guild; 0 when it has none.
	Guild snowflake.ID
	// Before is the cached object before an UPDATE/DELETE event (JSON), nil
	// when the entry has none; see DecodeBefore.
	Before json.RawMessage
	// At is when feathery received the event.
	At time.Time
	// Deliveries is how many times the group delivered the entry (1 on the
	// first); 0 outside a group.
	Deliveries int64
}

// EnvelopeOf types the envelope of a decoded entry.
func EnvelopeOf(m consumers.Message) (Envelope, error) {
	e := Envelope{
		ID: m.ID, Stream: m.Stream, T: gateway.EventType(m.T), Bot: m.Bot,
		Shard: m.Shard, Session: m.Session, Seq: m.Seq, Before: m.Before, At: m.At,
		Deliveries: m.Deliveries,
	}
	if m.Guild != "" {
		g, err := strconv.ParseUint(m.Guild, 10, 64)
		if err != nil {
			return e, fmt.Errorf("entry %s: guild %q: not a snowflake", m.ID, m.Guild)
		}
		e.Guild = snowflake.ID(g)
	}
	return e, nil
}

// Event is a decoded entry: its envelope and its "d" as disgo's type for
// the event (gateway.EventMessageCreate for MESSAGE_CREATE, and so on;
// gateway.EventUnknown, the raw JSON, for an event disgo does not know; nil
// for RESUMED, which has no data).
type Event struct {
	Envelope
	Data gateway.EventData
}

// DecodeError says which entry and event could not be decoded, and why.
type DecodeError struct {
	ID  string            // entry id
	T   gateway.EventType // event name
	Err error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("entry %s: decode %s: %v", e.ID, e.T, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// Decode decodes m's envelope and its "d" into disgo's type for m.T.
func Decode(m consumers.Message) (Event, error) {
	env, err := EnvelopeOf(m)
	if err != nil {
		return Event{Envelope: env}, err
	}
	data, err := gateway.UnmarshalEventData(m.D, env.T)
	if err != nil {
		return Event{Envelope: env}, &DecodeError{ID: m.ID, T: env.T, Err: err}
	}
	return Event{Envelope: env, Data: data}, nil
}

// DecodeAs decodes m into T, which must be disgo's type for m.T (for
// example gateway.EventGuildMemberAdd for GUILD_MEMBER_ADD); another type is
// an error naming both.
func DecodeAs[T gateway.EventData](m consumers.Message) (Envelope, T, error) {
	var zero T
	ev, err := Decode(m)
	if err != nil {
		return ev.Envelope, zero, err
	}
	d, ok := ev.Data.(T)
	if !ok {
		return ev.Envelope, zero, &DecodeError{ID: m.ID, T: ev.T,
			Err: fmt.Errorf("decodes to %s, not %s", typeName(ev.Data), reflect.TypeFor[T]())}
	}
	return ev.Envelope, d, nil
}

// DecodeBefore decodes the before image of an UPDATE/DELETE event into T
// (for example discord.Member for GUILD_MEMBER_UPDATE). ok is false when the
// entry has none (the cache is off, or it had not seen the object).
func DecodeBefore[T any](m consumers.Message) (v T, ok bool, err error) {
	if len(m.Before) == 0 {
		return v, false, nil
	}
	if err := json.Unmarshal(m.Before, &v); err != nil {
		return v, false, &DecodeError{ID: m.ID, T: gateway.EventType(m.T), Err: fmt.Errorf("before: %w", err)}
	}
	return v, true, nil
}

func typeName(v any) string {
	if v == nil {
		return "no data"
	}
	return reflect.TypeOf(v).String()
}

// Router sends each entry to the typed handler registered for its event
// (with On); its Handle method is a consumers.Handler.
type Router struct {
	routes map[gateway.EventType]func(ctx context.Context, m consumers.Message) error
	// Default handles entries of events with no handler; nil acknowledges
	// them without doing anything.
	Default consumers.Handler
}

// NewRouter returns a router with no handlers.
func NewRouter() *Router {
	return &Router{routes: map[gateway.EventType]func(context.Context, consumers.Message) error{}}
}

// On registers fn for event t; T is disgo's type for t. An entry that does
// not decode into T is an error (the entry stays pending and is
// dead-lettered after the reader's MaxDeliveries). A second On for the same
// event replaces the first.
func On[T gateway.EventData](r *Router, t gateway.EventType, fn func(ctx context.Context, e Envelope, d T) error) {
	r.routes[t] = func(ctx context.Context, m consumers.Message) error {
		env, d, err := DecodeAs[T](m)
		if err != nil {
			return err
		}
		return fn(ctx, env, d)
	}
}

// Events returns the events that have a handler, sorted.
func (r *Router) Events() []string {
	out := make([]string, 0, len(r.routes))
	for t := range r.routes {
		out = append(out, string(t))
	}
	sort.Strings(out)
	return out
}

// Handle is a consumers.Handler: it calls the handler of m's event.
func (r *Router) Handle(ctx context.Context, m consumers.Message) error {
	if h, ok := r.routes[gateway.EventType(m.T)]; ok {
		return h(ctx, m)
	}
	if r.Default != nil {
		return r.Default(ctx, m)
	}
	return nil
}
