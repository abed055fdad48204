package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strconv"
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
	// GatherDelay is the longest a publish call of a bot waits, counted
	// from its oldest batch, for the batches of the bot's other shards
	// when none of the bot's calls is in flight. Batches that arrive while
	// a call is in flight go together in the next call in any case.
	// Default 0: never wait. At many shards with a few events each per
	// second, waiting a millisecond or two puts many shards' batches in
	// one call, saving Redis and this process the costs of a call per
	// batch, for at most that much latency; BenchmarkPublishPaced measures
	// both.
	GatherDelay time.Duration `yaml:"gather_delay"`
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
	// Observer, when set, is told about every published batch (metrics).
	Observer PublishObserver `yaml:"-"`
	// OnFenced is called, from the shard's flusher, when the publish
	// script refused a batch of (bot, shard) made under fence (see
	// SetFence): another node took the shard. It must not block.
	OnFenced func(bot string, shard int, fence int64) `yaml:"-"`
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
	MaxLen int64 `yaml:"maxlen"`
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

// FieldError is a configuration problem: Field is the path of the field
// at fault, in the names of feathery.yaml ("bots[0].routes[1].stream").
// The constructors (NewClient, NewPublisher, NewCache) return it, and cmd/
// runs the same Validate methods when it checks a config file, so a file
// that passes the check is one they accept.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// fieldErr returns a FieldError for field.
func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// InField prefixes err's field with prefix (a FieldError), or makes err
// the error of field prefix (another error).
func InField(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		f := fe.Field
		if f != "" && f[0] != '[' && prefix != "" {
			f = "." + f
		}
		return &FieldError{Field: prefix + f, Err: fe.Err}
	}
	return &FieldError{Field: prefix, Err: err}
}

// Upper bounds of the publisher's sizes: a queue or batch larger than
// these buys nothing and a typo could exhaust memory.
const (
	MaxQueueSize        = 1 << 16
	MaxQueueBytes       = 1 << 30
	MaxBatch            = 1 << 14
	MaxBatchBytes       = 64 << 20
	MaxControlQueueSize = 1 << 16
	MaxControlMaxLen    = 1_000_000_000
	MaxStreamMaxLen     = 1_000_000_000_000
	maxRetry            = time.Minute
)

// Validate checks c and names the first bad field ("bots[0].routes[1].events[0]: ...").
func (c *PublisherConfig) Validate() error {
	if c.Prefix != "" {
		if err := CheckName(c.Prefix); err != nil {
			return InField("prefix", err)
		}
	}
	for _, l := range []struct {
		name   string
		v, max int64
	}{
		{"queue_size", int64(c.QueueSize), MaxQueueSize},
		{"queue_bytes", int64(c.QueueBytes), MaxQueueBytes},
		{"max_batch", int64(c.MaxBatch), MaxBatch},
		{"max_batch_bytes", int64(c.MaxBatchBytes), MaxBatchBytes},
		{"control_queue_size", int64(c.ControlQueueSize), MaxControlQueueSize},
		{"control_max_len", c.ControlMaxLen, MaxControlMaxLen},
	} {
		if err := checkSize(l.v, l.max); err != nil {
			return InField(l.name, err)
		}
	}
	for _, d := range []struct {
		name   string
		v, max time.Duration
	}{
		{"max_delay", c.MaxDelay, time.Hour},
		{"gather_delay", c.GatherDelay, time.Second},
		{"retry_min", c.RetryMin, maxRetry},
		{"retry_max", c.RetryMax, maxRetry},
		{"prefix_ttl", c.PrefixTTL, time.Second},
	} {
		if d.v < 0 {
			return fieldErr(d.name, "%s is negative", d.v)
		}
		if d.v > d.max {
			return fieldErr(d.name, "%s is above %s", d.v, d.max)
		}
	}
	seen := map[string]int{}
	for i := range c.Bots {
		b := &c.Bots[i]
		p := "bots[" + strconv.Itoa(i) + "]"
		if err := CheckBotName(b.Name); err != nil {
			return InField(p+".name", err)
		}
		if j, dup := seen[b.Name]; dup {
			return fieldErr(p+".name", "%q is already the name of bots[%d]", b.Name, j)
		}
		seen[b.Name] = i
		if err := b.validate(); err != nil {
			return InField(p, err)
		}
	}
	return nil
}

// checkSize checks a size against 0..max.
func checkSize(v, max int64) error {
	if v < 0 {
		return fmt.Errorf("%d is negative", v)
	}
	if v > max {
		return fmt.Errorf("%d is above the maximum, %d", v, max)
	}
	return nil
}

var botNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckBotName reports whether s can name a bot: 1-64 letters, digits, _
// or - (it is part of keys and of metric labels).
func CheckBotName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if !botNameRE.MatchString(s) {
		return fmt.Errorf("%s: use 1-64 letters, digits, _ or -", quoteShort(s))
	}
	return nil
}

// quoteShort quotes s for an error, unless it is long enough to be a
// secret pasted into the wrong field.
func quoteShort(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("(a %d-character value)", len(s))
	}
	return strconv.Quote(s)
}

func (b *BotConfig) validate() error {
	if err := b.Default.validate(true); err != nil {
		return InField("default_stream", err)
	}
	def := b.Default.Stream
	if def == "" {
		def = DefaultStream
	}
	streams := map[string]int{}
	for i := range b.Routes {
		r := &b.Routes[i]
		p := "routes[" + strconv.Itoa(i) + "]"
		if len(r.Events) == 0 {
			return fieldErr(p+".events", "is empty")
		}
		if err := checkGlobs(r.Events); err != nil {
			return InField(p+".events", err)
		}
		if err := r.StreamConfig.validate(false); err != nil {
			return InField(p, err)
		}
		if r.Stream == def {
			return fieldErr(p+".stream", "%q is the default stream; events no route takes go there anyway", r.Stream)
		}
		if j, dup := streams[r.Stream]; dup {
			return fieldErr(p+".stream", "%q is already the stream of routes[%d]; list more events in that route instead", r.Stream, j)
		}
		streams[r.Stream] = i
	}
	f := &b.Filters
	if err := checkGlobs(f.Ignore); err != nil {
		return InField("filters.ignore", err)
	}
	if err := checkGlobs(f.CacheOnly); err != nil {
		return InField("filters.cache_only", err)
	}
	for i, p := range f.Prefixes {
		if p == "" {
			return fieldErr("filters.prefixes["+strconv.Itoa(i)+"]", "empty prefix")
		}
	}
	for _, r := range f.BotUserID {
		if r < '0' || r > '9' {
			return fieldErr("filters.bot_user_id", "%q is not a snowflake", f.BotUserID)
		}
	}
	return nil
}

func (s *StreamConfig) validate(isDefault bool) error {
	if s.Stream != "" || !isDefault {
		if err := CheckStreamName(s.Stream); err != nil {
			return InField("stream", err)
		}
	}
	if err := checkSize(s.MaxLen, MaxStreamMaxLen); err != nil {
		return InField("maxlen", err)
	}
	if s.MaxAge < 0 {
		return fieldErr("max_age", "%s is negative", s.MaxAge)
	}
	if s.MaxLen > 0 && s.MaxAge > 0 {
		return fieldErr("maxlen", "set maxlen or max_age, not both")
	}
	if s.MaxAge > 0 && s.MaxAge < time.Millisecond {
		return fieldErr("max_age", "%s is below 1ms", s.MaxAge)
	}
	for i, g := range s.Groups {
		if err := CheckName(g); err != nil {
			return InField("groups["+strconv.Itoa(i)+"]", err)
		}
	}
	return nil
}

// CheckStreamName reports whether s can name a stream of a bot: a name
// (CheckName) that is not one of the bot's other keys.
func CheckStreamName(s string) error {
	if s == "" {
		return errors.New("missing")
	}
	if err := CheckName(s); err != nil {
		return err
	}
	for _, r := range reservedStreamPrefixes {
		if strings.HasPrefix(s, r) {
			return fmt.Errorf("%q starts with %q, which names other keys of the bot", s, r)
		}
	}
	return nil
}

// reservedStreamPrefixes are the bot-tagged key names that are not streams
// (see Keys).
var reservedStreamPrefixes = []string{"session:", "identify:"}

// eventGlobRE is what an event name or glob may hold: Discord's names are
// upper case, so a lower-case glob would never match.
var eventGlobRE = regexp.MustCompile(`^[A-Z0-9_*?\[\]^-]+$`)

// checkGlobs checks event names and globs (path.Match patterns).
func checkGlobs(globs []string) error {
	for i, g := range globs {
		f := "[" + strconv.Itoa(i) + "]"
		if g == "" {
			return fieldErr(f, "is empty")
		}
		if !eventGlobRE.MatchString(g) {
			return fieldErr(f, "%s is not an event name or pattern (like MESSAGE_CREATE or GUILD_*)", quoteShort(g))
		}
		if _, err := path.Match(g, ""); err != nil {
			return fieldErr(f, "bad pattern %s", quoteShort(g))
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
