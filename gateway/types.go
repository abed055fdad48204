package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Compression is the transport compression of a gateway connection.
type Compression int

const (
	// CompressionNone sends plain JSON text frames.
	CompressionNone Compression = iota
	// CompressionZlibStream is Discord's zlib-stream: one zlib context per
	// connection, each message ending with a sync flush.
	CompressionZlibStream
	// CompressionZstdStream is Discord's zstd-stream: one zstd context per
	// connection, one gateway message per websocket message.
	CompressionZstdStream
)

// ParseCompression reads "none" (or ""), "zlib-stream" or "zstd-stream".
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "none":
		return CompressionNone, nil
	case "zlib-stream", "zlib":
		return CompressionZlibStream, nil
	case "zstd-stream", "zstd":
		return CompressionZstdStream, nil
	}
	return 0, fmt.Errorf("parse compression %q: want none, zlib-stream or zstd-stream", s)
}

// String returns the name used in the gateway URL ("none" for none).
func (c Compression) String() string {
	switch c {
	case CompressionNone:
		return "none"
	case CompressionZlibStream:
		return "zlib-stream"
	case CompressionZstdStream:
		return "zstd-stream"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// MarshalText implements encoding.TextMarshaler.
func (c Compression) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Compression) UnmarshalText(b []byte) error {
	v, err := ParseCompression(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// State is the lifecycle state of a shard.
type State int

const (
	// StateIdle: created, not started.
	StateIdle State = iota
	// StateConnecting: dialing the gateway and waiting for HELLO.
	StateConnecting
	// StateIdentifying: waiting for an identify slot, IDENTIFY sent, waiting for READY.
	StateIdentifying
	// StateResuming: RESUME sent, replay in progress until RESUMED.
	StateResuming
	// StateReady: receiving live dispatches.
	StateReady
	// StateReconnecting: the connection ended; waiting to connect again.
	StateReconnecting
	// StateStopped: stopped by Close.
	StateStopped
	// StateFailed: stopped for good by a fatal close code or error.
	StateFailed
)

var stateNames = [...]string{"idle", "connecting", "identifying", "resuming", "ready", "reconnecting", "stopped", "failed"}

// String returns the lower-case state name.
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("parse shard state %q", b)
}

// BotConfig is one bot: its token, intents and shards.
type BotConfig struct {
	// Name identifies the bot in events, logs and keys.
	Name string
	// Token is the bot token. It is only ever written into IDENTIFY and
	// RESUME payloads and the REST Authorization header.
	Token string
	// Intents is the gateway intents bitmask.
	Intents uint64
	// Shards is the total shard count; 0 = Discord's recommendation.
	Shards int
	// ShardIDs are the shards this process runs; nil = all.
	ShardIDs []int
	// Compression is the transport compression; default none.
	Compression Compression
	// LargeThreshold is IDENTIFY's large_threshold (50–250); 0 = Discord's default.
	LargeThreshold int
	// Presence is IDENTIFY's presence object, as raw JSON; nil = none.
	Presence json.RawMessage
	// RequestMembers sends Request Guild Members (op 8) for every guild
	// that arrives in GUILD_CREATE.
	RequestMembers bool
	// AutoscaleEvery, with Shards 0 (auto), is how often GET /gateway/bot
	// is asked again; the bot re-shards when Discord recommends more
	// shards than it runs. 0 = never.
	AutoscaleEvery time.Duration
	// AutoscaleMaxGuilds, with AutoscaleEvery, is the most guilds a shard
	// holds on average before the check re-shards: to the count that puts
	// the average at 80% of it, or to Discord's recommendation when that is
	// more. 0 = only Discord's recommendation counts.
	AutoscaleMaxGuilds int
}

// ControlKind is the kind of a ControlEvent.
type ControlKind string

// Control event kinds.
const (
	// ControlState: the shard changed state (State).
	ControlState ControlKind = "state"
	// ControlIdentified: the shard started a new session (Session).
	ControlIdentified ControlKind = "identified"
	// ControlResumed: the shard resumed Session at Seq.
	ControlResumed ControlKind = "resumed"
	// ControlGap: Session was dropped without RESUME (Discord ended it, it
	// could not be resumed, or the saved one was unusable): its events
	// after Seq, the last the Sink accepted (or the saved checkpoint's),
	// will never be received. Err says why.
	ControlGap ControlKind = "gap"
	// ControlFatal: the shard stopped for good (Err).
	ControlFatal ControlKind = "fatal"
	// ControlShardingRequired: Discord closed the shard with 4011; it
	// stopped and the bot re-shards (Err).
	ControlShardingRequired ControlKind = "sharding_required"
	// ControlReshard: a step of a bot's live re-shard (Detail; Shard -1).
	ControlReshard ControlKind = "reshard"
	// ControlRevoked: the shard stopped because another process owns it
	// now (ErrShardRevoked).
	ControlRevoked ControlKind = "revoked"
)

// ControlKinds lists the kinds a Manager reports.
func ControlKinds() []ControlKind {
	return []ControlKind{ControlState, ControlIdentified, ControlResumed, ControlGap, ControlFatal, ControlShardingRequired, ControlReshard, ControlRevoked}
}

// BotFieldError is a problem with one field of a BotConfig; Field is the
// field's name in feathery.yaml ("large_threshold").
type BotFieldError struct {
	Field string
	Err   error
}

func (e *BotFieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *BotFieldError) Unwrap() error { return e.Err }

// Validate checks b as NewManager does; cmd/ runs it when it checks a
// config file.
func (b *BotConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &BotFieldError{Field: field, Err: fmt.Errorf(format, args...)}
	}
	switch {
	case b.Name == "":
		return bad("name", "missing")
	case b.Token == "":
		return bad("token", "missing")
	case b.Shards < 0:
		return bad("shards", "%d is negative", b.Shards)
	case b.LargeThreshold != 0 && (b.LargeThreshold < 50 || b.LargeThreshold > 250):
		return bad("large_threshold", "must be between 50 and 250, got %d", b.LargeThreshold)
	case b.Compression < CompressionNone || b.Compression > CompressionZstdStream:
		return bad("compression", "unknown compression %d", b.Compression)
	case len(b.Presence) > 0 && !json.Valid(b.Presence):
		return bad("presence", "not valid JSON")
	case b.AutoscaleMaxGuilds < 0 || b.AutoscaleMaxGuilds > MaxGuildsPerShard:
		return bad("autoscale.max_guilds_per_shard", "must be between 1 and %d (Discord's limit), got %d", MaxGuildsPerShard, b.AutoscaleMaxGuilds)
	}
	return nil
}

// ControlEvent reports what happens to a shard: state changes, sessions
// identified and resumed, sessions lost (a gap in the event sequence) and
// fatal errors.
type ControlEvent struct {
	Bot   string
	Shard int
	Kind  ControlKind
	State State
	// Session and Seq: the new session (identified, resumed) or, for a
	// gap, the lost session and the last seq the Sink accepted of it.
	Session string
	Seq     int64
	Err     string
	// Detail describes a bot-wide event (Kind "reshard"; Shard is -1).
	Detail string
	At     time.Time
}
