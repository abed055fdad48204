package discordtest

import (
	"fmt"
	"log/slog"
	"time"
)

// Config configures a fake Discord. The zero value works: every field falls
// back to the default named in its comment.
type Config struct {
	// Addr is the listen address; default "127.0.0.1:0".
	Addr string
	// Token is the valid bot token; default "fake-token".
	Token string
	// OtherTokens are further valid tokens of the same bot (its token
	// reset): sessions, identify buckets and limits are shared.
	OtherTokens []string
	// Shards is the recommended shard count reported by /gateway/bot; default 1.
	Shards int
	// MaxConcurrency is session_start_limit.max_concurrency; default 1.
	MaxConcurrency int
	// IdentifyWindow is the time one identify bucket needs between two
	// IDENTIFYs; default 5s. Two IDENTIFYs are timed by their arrival at
	// the fake's socket (on Linux the kernel's receive time from TCP_INFO,
	// within a few ms and never early; elsewhere when the fake read them),
	// not by when a busy fake got round to reading them.
	IdentifyWindow time.Duration
	// IdentifyTolerance is how much earlier than IdentifyWindow a bucket's
	// next IDENTIFY may arrive before it counts as "identify_rate" (network
	// and scheduling jitter); 0 = IdentifyWindow/10, negative = none.
	IdentifyTolerance time.Duration
	// HeartbeatInterval is sent in HELLO; default 41250ms.
	HeartbeatInterval time.Duration
	// SessionStartTotal and SessionStartRemaining seed session_start_limit;
	// default 1000 and 1000. Every accepted IDENTIFY takes one from remaining.
	SessionStartTotal, SessionStartRemaining int
	// ResumeWindow is how long a dropped session stays resumable; default 3m.
	ResumeWindow time.Duration
	// Guilds is the number of guilds in the world; default 10.
	Guilds int
	// MembersPerGuild is the number of members of each guild (the bot
	// included); default 20.
	MembersPerGuild int
	// Seed makes the world and the traffic deterministic.
	Seed int64
	// Rate is the number of live dispatches per second over all live
	// sessions; 0 = none.
	Rate float64
	// Mix maps an event name to its weight in the live traffic; nil = the
	// default mix (see DefaultMix).
	Mix map[string]float64
	// Prefixes are the command prefixes used by generated MESSAGE_CREATE
	// content; default ["!"].
	Prefixes []string
	// BotUserID is the bot's user id (READY user, mentions); default generated.
	BotUserID string
	// MaxFrameSize splits each gateway message over websocket frames of at
	// most this many bytes (0 = one frame). With zlib-stream the pieces are
	// separate websocket messages (a zlib-stream gateway message may span
	// several); with no compression and zstd-stream they are continuation
	// frames of one websocket message.
	MaxFrameSize int
	// Logger receives the fake's own log lines; nil = discard.
	Logger *slog.Logger

	// DisallowPrivileged makes IDENTIFY with a privileged intent
	// (GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT) close with 4014;
	// default false (privileged intents allowed).
	DisallowPrivileged bool
	// SendLimit and SendWindow bound what a client may send on one
	// connection (close 4008 beyond it); default 120 per 60s.
	SendLimit  int
	SendWindow time.Duration
	// MaxPayload is the largest payload a client may send; default 4096.
	MaxPayload int
	// MemberRequestInterval is the minimum time between two "all members"
	// Request Guild Members for one guild (RATE_LIMITED otherwise); default 30s.
	MemberRequestInterval time.Duration
	// ReconnectDelay is how long the fake waits after sending op 7 before it
	// closes the connection itself; default 1s.
	ReconnectDelay time.Duration
	// RESTRateLimit is the global REST limit in requests per second (429
	// beyond it); default 50.
	RESTRateLimit int
	// MaxGuildsPerShard is the most guilds one session may hold: an IDENTIFY
	// whose shard would have more closes with 4011 (sharding required);
	// default 2500, as Discord.
	MaxGuildsPerShard int
	// LedgerLimit bounds the entries kept per session (0 = unbounded). A
	// RESUME from a seq older than the oldest entry kept gets op 9 false.
	// Set it for long benchmarks.
	LedgerLimit int
	// ApplicationID is READY's application.id; default the bot user id.
	ApplicationID string
}

// DefaultMix is the event mix used when Config.Mix is nil.
func DefaultMix() map[string]float64 {
	return map[string]float64{
		"MESSAGE_CREATE":      40,
		"TYPING_START":        10,
		"PRESENCE_UPDATE":     10,
		"GUILD_MEMBER_ADD":    3,
		"GUILD_MEMBER_UPDATE": 5,
		"GUILD_MEMBER_REMOVE": 2,
		"CHANNEL_CREATE":      1,
		"CHANNEL_UPDATE":      2,
		"CHANNEL_DELETE":      1,
		"GUILD_ROLE_CREATE":   1,
		"GUILD_ROLE_UPDATE":   2,
		"GUILD_ROLE_DELETE":   1,
		"VOICE_STATE_UPDATE":  5,
		"INTERACTION_CREATE":  3,
		"GUILD_UPDATE":        1,
		"GUILD_EMOJIS_UPDATE": 1,
		"THREAD_CREATE":       1,
		"THREAD_UPDATE":       0.5,
		"THREAD_DELETE":       0.5,
	}
}

func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Token == "" {
		c.Token = "fake-token"
	}
	if c.Shards == 0 {
		c.Shards = 1
	}
	if c.MaxConcurrency == 0 {
		c.MaxConcurrency = 1
	}
	if c.IdentifyWindow == 0 {
		c.IdentifyWindow = 5 * time.Second
	}
	switch {
	case c.IdentifyTolerance == 0:
		c.IdentifyTolerance = c.IdentifyWindow / 10
	case c.IdentifyTolerance < 0:
		c.IdentifyTolerance = 0
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 41250 * time.Millisecond
	}
	if c.SessionStartTotal == 0 {
		c.SessionStartTotal = 1000
	}
	if c.SessionStartRemaining == 0 {
		c.SessionStartRemaining = c.SessionStartTotal
	}
	if c.ResumeWindow == 0 {
		c.ResumeWindow = 3 * time.Minute
	}
	if c.Guilds == 0 {
		c.Guilds = 10
	}
	if c.MembersPerGuild == 0 {
		c.MembersPerGuild = 20
	}
	if c.Prefixes == nil {
		c.Prefixes = []string{"!"}
	}
	if c.SendLimit == 0 {
		c.SendLimit = 120
	}
	if c.SendWindow == 0 {
		c.SendWindow = 60 * time.Second
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 4096
	}
	if c.MemberRequestInterval == 0 {
		c.MemberRequestInterval = 30 * time.Second
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = time.Second
	}
	if c.MaxGuildsPerShard == 0 {
		c.MaxGuildsPerShard = 2500
	}
	if c.RESTRateLimit == 0 {
		c.RESTRateLimit = 50
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.Shards < 1:
		return c, fmt.Errorf("shards %d: must be at least 1", c.Shards)
	case c.MaxConcurrency < 1:
		return c, fmt.Errorf("max concurrency %d: must be at least 1", c.MaxConcurrency)
	case c.IdentifyWindow < 0, c.HeartbeatInterval < 0, c.ResumeWindow < 0, c.SendWindow < 0,
		c.MemberRequestInterval < 0, c.ReconnectDelay < 0:
		return c, fmt.Errorf("durations must not be negative")
	case c.Guilds < 0:
		return c, fmt.Errorf("guilds %d: must not be negative", c.Guilds)
	case c.MembersPerGuild < 1:
		return c, fmt.Errorf("members per guild %d: must be at least 1", c.MembersPerGuild)
	case c.Rate < 0:
		return c, fmt.Errorf("rate %v: must not be negative", c.Rate)
	case c.MaxFrameSize < 0:
		return c, fmt.Errorf("max frame size %d: must not be negative", c.MaxFrameSize)
	case c.SessionStartRemaining < 0 || c.SessionStartTotal < 0:
		return c, fmt.Errorf("session start limit must not be negative")
	case c.LedgerLimit < 0:
		return c, fmt.Errorf("ledger limit %d: must not be negative", c.LedgerLimit)
	}
	if len(c.Prefixes) == 0 {
		return c, fmt.Errorf("prefixes: need at least one")
	}
	for name, w := range c.Mix {
		if w < 0 {
			return c, fmt.Errorf("mix %s: weight %v must not be negative", name, w)
		}
		if _, ok := generators[name]; !ok {
			return c, fmt.Errorf("mix %s: unknown event (known: %v)", name, knownEvents())
		}
	}
	return c, nil
}
