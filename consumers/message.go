package consumers

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// EnvelopeVersion is the stream entry format this package reads (field "v").
const EnvelopeVersion = 1

// Field names of a stream entry (see the "Stream entries" section of the
// design). Every entry feathery writes carries them as flat field/value
// pairs.
const (
	FieldVersion = "v"
	FieldType    = "t"
	FieldData    = "d"
	FieldBot     = "bot"
	FieldShard   = "shard"
	FieldSession = "session"
	FieldSeq     = "seq"
	FieldGuild   = "guild"
	FieldBefore  = "before"
	FieldAt      = "at"
)

// Fields added to an entry when it is moved to a dead-letter stream.
const (
	FieldDeadFrom       = "dead_from"
	FieldDeadID         = "dead_id"
	FieldDeadDeliveries = "deliveries"
	FieldDeadError      = "error"
)

// Message is one stream entry written by feathery, with its envelope fields
// typed. It is a plain value: a handler may keep it.
type Message struct {
	// ID is the stream entry id ("1700000000000-0") and Stream the stream
	// key it was read from.
	ID     string
	Stream string

	// V is the envelope version (field "v"), always EnvelopeVersion.
	V int
	// T is the event name, e.g. "MESSAGE_CREATE".
	T string
	// D is the dispatch's "d" JSON, byte for byte as Discord sent it.
	D []byte
	// Bot is the bot name from feathery's configuration.
	Bot string
	// Shard is the shard id the event arrived on.
	Shard int
	// Session is the gateway session id and Seq the gateway sequence
	// number; (Bot, Shard, Session, Seq) identifies an event.
	Session string
	Seq     int64
	// Guild is the guild id of the event; "" when it has none.
	Guild string
	// Before is the cached object before an UPDATE/DELETE event, JSON; nil
	// when the entry has none.
	Before []byte
	// At is when feathery received the event (millisecond precision).
	At time.Time

	// Deliveries is how many times the consumer group has delivered this
	// entry, this delivery included (1 on the first). Zero outside a group.
	Deliveries int64
	// Fields are the entry's raw field/value pairs as stored. Do not modify.
	Fields map[string]string
}

// Sentinel errors wrapped by EntryError.
var (
	// ErrMissingField: a required field is absent from the entry.
	ErrMissingField = errors.New("missing field")
	// ErrBadField: a field is present but its value is not valid.
	ErrBadField = errors.New("bad field")
)

// EntryError says which field of which entry could not be decoded.
type EntryError struct {
	ID     string // entry id
	Field  string // field name
	Reason string // what is wrong, for people
	Err    error  // ErrMissingField or ErrBadField
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("entry %s: field %q: %s", e.ID, e.Field, e.Reason)
}

func (e *EntryError) Unwrap() error { return e.Err }

func missing(id, field string) error {
	return &EntryError{ID: id, Field: field, Reason: "missing", Err: ErrMissingField}
}

func bad(id, field, reason, value string) error {
	if len(value) > 40 {
		value = value[:40] + "..."
	}
	return &EntryError{ID: id, Field: field, Reason: fmt.Sprintf("%s (got %q)", reason, value), Err: ErrBadField}
}

// DecodeEntry turns the field/value pairs of one stream entry into a Message.
// Required fields: v, t, d, bot, shard, session, seq, at; guild and before
// are optional. A missing or malformed field gives an *EntryError naming it.
// Stream is left empty; the caller sets it when it knows it.
func DecodeEntry(id string, fields map[string]string) (Message, error) {
	m := Message{ID: id, Fields: fields}
	if fields == nil {
		return m, &EntryError{ID: id, Field: FieldType, Reason: "entry has no fields (deleted?)", Err: ErrMissingField}
	}
	get := func(name string) (string, error) {
		v, ok := fields[name]
		if !ok {
			return "", missing(id, name)
		}
		return v, nil
	}

	s, err := get(FieldVersion)
	if err != nil {
		return m, err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return m, bad(id, FieldVersion, "not an integer", s)
	}
	if v != EnvelopeVersion {
		return m, bad(id, FieldVersion, fmt.Sprintf("unsupported envelope version, this reader knows %d", EnvelopeVersion), s)
	}
	m.V = v

	if m.T, err = get(FieldType); err != nil {
		return m, err
	}
	if m.T == "" {
		return m, bad(id, FieldType, "empty event name", m.T)
	}

	if s, err = get(FieldData); err != nil {
		return m, err
	}
	if s == "" {
		return m, bad(id, FieldData, "empty payload", s)
	}
	m.D = []byte(s)

	if m.Bot, err = get(FieldBot); err != nil {
		return m, err
	}

	if s, err = get(FieldShard); err != nil {
		return m, err
	}
	shard, err := strconv.ParseInt(s, 10, 32)
	if err != nil || shard < 0 {
		return m, bad(id, FieldShard, "not a shard id (non-negative integer)", s)
	}
	m.Shard = int(shard)

	if m.Session, err = get(FieldSession); err != nil {
		return m, err
	}

	if s, err = get(FieldSeq); err != nil {
		return m, err
	}
	if m.Seq, err = strconv.ParseInt(s, 10, 64); err != nil || m.Seq < 0 {
		return m, bad(id, FieldSeq, "not a sequence number (non-negative integer)", s)
	}

	if g, ok := fields[FieldGuild]; ok && g != "" && g != "0" {
		if _, err := strconv.ParseUint(g, 10, 64); err != nil {
			return m, bad(id, FieldGuild, "not a snowflake", g)
		}
		m.Guild = g
	}

	if b, ok := fields[FieldBefore]; ok && b != "" {
		m.Before = []byte(b)
	}

	if s, err = get(FieldAt); err != nil {
		return m, err
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms < 0 {
		return m, bad(id, FieldAt, "not a Unix time in milliseconds", s)
	}
	m.At = time.UnixMilli(ms)
	return m, nil
}
