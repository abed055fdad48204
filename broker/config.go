package broker

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"
)

// PublisherConfig configures a Publisher. The yaml tags are the names cmd/
// uses in feathery.yaml; Cache and Logger are set in code.
type PublisherConfig struct {
	// Prefix is the key namespace; default "feathery".
	Prefix string `yaml:"prefix"`
	// Bots holds the routes and filters of each bot. A bot that publishes
	// without being listed gets the defaults (one stream, no filters).
	Bots []BotConfig `yaml:"bots"`
	// QueueSize bounds each shard's queue (events); when it is full,
	// Publish blocks. Default 4096.
	QueueSize int `yaml:"queue_size"`
	// QueueBytes bounds the payload bytes queued per shard (a large
	// GUILD_CREATE counts for its size); default 32 MiB. A single event
	// larger than the bound is accepted when the queue is empty.
	QueueBytes int `yaml:"queue_bytes"`
	// MaxBatch bounds the events of one publish script call; default 512.
	MaxBatch int `yaml:"max_batch"`
	// MaxBatchBytes bounds the payload bytes of one batch; default 1 MiB.
	// A single larger event still goes, alone.
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// MaxDelay is the longest a batch of a busy shard waits for more
	// events, counted from its first event, when the queue runs dry before
	// MaxBatch. A shard is busy when events were queued behind the batch's
	// first one or its previous batch carried more than one; a quiet
	// shard's batch never waits. Default 0: never wait. Waiting trades
	// latency and this process's CPU (a timer and a wake-up per batch) for
	// Redis CPU (fewer, larger script calls); BenchmarkPublishPaced
	// measures both.
	MaxDelay time.Duration `yaml:"max_delay"`
	// ClientSideCaching says the client has RESP3 client-side caching on
	// (Client.ClientSideCaching): guild prefixes are then read with DoCache.
	// Otherwise a local cache of PrefixTTL is kept.
	ClientSideCaching bool `yaml:"-"`
	// PrefixTTL is how long guild prefixes are cached; at most 1s so a
	// change is in force within a second. Default 500ms (1s with
	// client-side caching, where invalidation is pushed).
	PrefixTTL time.Duration `yaml:"prefix_ttl"`
	// ControlQueueSize bounds the control event queue (oldest dropped when
	// full); default 1024.
	ControlQueueSize int `yaml:"control_queue_size"`
	// ControlMaxLen trims the control stream (MAXLEN ~); default 100000.
	ControlMaxLen int64 `yaml:"control_max_len"`
	// RetryMin and RetryMax bound the backoff while Redis fails; defaults
	// 50ms and 2s.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// Cache, when set, sees every batch before it is published.
	Cache CacheWriter `yaml:"-"`
	// Logger; nil discards.
	Logger *slog.Logger `yaml:"-"`
}

// BotConfig is the publishing configuration of one bot.
type BotConfig struct {
	// Name is the bot name events carry (Event.Bot).
	Name string `yaml:"name"`
	// Default is the stream of events no route claims; its Stream name
	// defaults to "events".
	Default StreamConfig `yaml:"default_stream"`
	// Routes are tried in order; the first whose Events glob matches the
	// event name takes the event.
	Routes []Route `yaml:"routes"`
	// Filters drop events before they are published.
	Filters FilterConfig `yaml:"filters"`
}

// StreamConfig is a stream of a bot with its trim policy and the consumer
// groups created on it at start.
type StreamConfig struct {
	// Stream is the stream's name inside the bot's namespace
	// (Keys.Stream).
	Stream string `yaml:"stream"`
	// MaxLen trims with MAXLEN ~ MaxLen; 0 = no length bound.
	MaxLen int64 `yaml:"max_len"`
	// MaxAge trims with MINID ~ (now - MaxAge); 0 = no age bound. Only one
	// of MaxLen and MaxAge may be set.
	MaxAge time.Duration `yaml:"max_age"`
	// Groups are created (XGROUP CREATE ... $ MKSTREAM) before the first
	// entry is published; an existing group is kept as it is.
	Groups []string `yaml:"groups"`
}

// Route sends the events whose name matches one of Events (path.Match
// globs, e.g. "MESSAGE_*") to a stream.
type Route struct {
	Events       []string `yaml:"events"`
	StreamConfig `yaml:",inline"`
}

// FilterConfig chooses what a bot does not publish. Every filter counts
// what it dropped (PublisherStats).
type FilterConfig struct {
	// Ignore: events (globs) dropped before everything, the cache included.
	Ignore []string `yaml:"ignore"`
	// CacheOnly: events (globs) the cache sees but that are not published.
	CacheOnly []string `yaml:"cache_only"`
	// DropBotMessages drops MESSAGE_CREATE/MESSAGE_UPDATE whose author is a
	// bot (author.bot).
	DropBotMessages bool `yaml:"drop_bot_messages"`
	// DropWebhookMessages drops MESSAGE_CREATE/MESSAGE_UPDATE sent by a
	// webhook (webhook_id).
	DropWebhookMessages bool `yaml:"drop_webhook_messages"`
	// PrefixFilter keeps only the MESSAGE_CREATE events whose content
	// starts with one of Prefixes, one of the guild's prefixes (Redis SET
	// Keys.GuildPrefixes) or a mention of the bot (<@id> or <@!id>). In
	// direct messages only Prefixes and the mention count.
	PrefixFilter bool `yaml:"prefix_filter"`
	// Prefixes are the default prefixes.
	Prefixes []string `yaml:"prefixes"`
	// BotUserID is the bot's user id for mentions; when empty it is learnt
	// from READY (d.user.id).
	BotUserID string `yaml:"bot_user_id"`
}

// Filter names, the keys of ShardStats.Filtered.
const (
	FilterIgnore    = "ignore"
	FilterCacheOnly = "cache_only"
	FilterBot       = "bot"
	FilterWebhook   = "webhook"
	FilterPrefix    = "prefix"
)

// Validate checks c and names the first bad field ("bots[0].routes[1].events[0]: ...").
func (c *PublisherConfig) Validate() error {
	if c.Prefix != "" {
		if err := CheckName(c.Prefix); err != nil {
			return fmt.Errorf("prefix: %w", err)
		}
	}
	for name, v := range map[string]int{"queue_size": c.QueueSize, "queue_bytes": c.QueueBytes, "max_batch": c.MaxBatch, "max_batch_bytes": c.MaxBatchBytes, "control_queue_size": c.ControlQueueSize} {
		if v < 0 {
			return fmt.Errorf("%s: %d is negative", name, v)
		}
	}
	if c.ControlMaxLen < 0 {
		return fmt.Errorf("control_max_len: %d is negative", c.ControlMaxLen)
	}
	for name, d := range map[string]time.Duration{"max_delay": c.MaxDelay, "retry_min": c.RetryMin, "retry_max": c.RetryMax, "prefix_ttl": c.PrefixTTL} {
		if d < 0 {
			return fmt.Errorf("%s: %s is negative", name, d)
		}
	}
	if c.PrefixTTL > time.Second {
		return fmt.Errorf("prefix_ttl: %s is above 1s (prefix changes must apply within a second)", c.PrefixTTL)
	}
	seen := map[string]bool{}
	for i := range c.Bots {
		b := &c.Bots[i]
		if err := CheckName(b.Name); err != nil {
			return fmt.Errorf("bots[%d].name: %w", i, err)
		}
		if seen[b.Name] {
			return fmt.Errorf("bots[%d].name: %q listed twice", i, b.Name)
		}
		seen[b.Name] = true
		if err := b.validate(); err != nil {
			return fmt.Errorf("bots[%d].%w", i, err)
		}
	}
	return nil
}

func (b *BotConfig) validate() error {
	if err := b.Default.validate(true); err != nil {
		return fmt.Errorf("default_stream.%w", err)
	}
	for i := range b.Routes {
		r := &b.Routes[i]
		if len(r.Events) == 0 {
			return fmt.Errorf("routes[%d].events: is empty", i)
		}
		if err := checkGlobs(r.Events); err != nil {
			return fmt.Errorf("routes[%d].events%w", i, err)
		}
		if err := r.StreamConfig.validate(false); err != nil {
			return fmt.Errorf("routes[%d].%w", i, err)
		}
	}
	f := &b.Filters
	if err := checkGlobs(f.Ignore); err != nil {
		return fmt.Errorf("filters.ignore%w", err)
	}
	if err := checkGlobs(f.CacheOnly); err != nil {
		return fmt.Errorf("filters.cache_only%w", err)
	}
	for i, p := range f.Prefixes {
		if p == "" {
			return fmt.Errorf("filters.prefixes[%d]: is empty", i)
		}
	}
	for _, r := range f.BotUserID {
		if r < '0' || r > '9' {
			return fmt.Errorf("filters.bot_user_id: %q is not a snowflake", f.BotUserID)
		}
	}
	return nil
}

func (s *StreamConfig) validate(isDefault bool) error {
	if s.Stream != "" || !isDefault {
		if err := CheckName(s.Stream); err != nil {
			return fmt.Errorf("stream: %w", err)
		}
		for _, r := range reservedStreamPrefixes {
			if strings.HasPrefix(s.Stream, r) {
				return fmt.Errorf("stream: %q starts with %q, which names other keys of the bot", s.Stream, r)
			}
		}
	}
	if s.MaxLen < 0 {
		return fmt.Errorf("max_len: %d is negative", s.MaxLen)
	}
	if s.MaxAge < 0 {
		return fmt.Errorf("max_age: %s is negative", s.MaxAge)
	}
	if s.MaxLen > 0 && s.MaxAge > 0 {
		return fmt.Errorf("max_len: set only one of max_len and max_age")
	}
	if s.MaxAge > 0 && s.MaxAge < time.Millisecond {
		return fmt.Errorf("max_age: %s is below 1ms", s.MaxAge)
	}
	for i, g := range s.Groups {
		if err := CheckName(g); err != nil {
			return fmt.Errorf("groups[%d]: %w", i, err)
		}
	}
	return nil
}

// reservedStreamPrefixes are the bot-tagged key names that are not streams
// (see Keys).
var reservedStreamPrefixes = []string{"session:", "identify:"}

func checkGlobs(globs []string) error {
	for i, g := range globs {
		if g == "" {
			return fmt.Errorf("[%d]: is empty", i)
		}
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("[%d]: %q is not a valid glob: %w", i, g, err)
		}
	}
	return nil
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

func (c *PublisherConfig) setDefaults() {
	if c.QueueSize == 0 {
		c.QueueSize = 4096
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = 32 << 20
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.PrefixTTL == 0 {
		c.PrefixTTL = 500 * time.Millisecond
		if c.ClientSideCaching {
			c.PrefixTTL = time.Second
		}
	}
	if c.ControlQueueSize == 0 {
		c.ControlQueueSize = 1024
	}
	if c.ControlMaxLen == 0 {
		c.ControlMaxLen = 100000
	}
	if c.RetryMin == 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}
