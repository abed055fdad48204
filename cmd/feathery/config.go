package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/url"
	"os"
	"path"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/feathery/feathery/broker"
	"go.yaml.in/yaml/v3"
)

// Config is the schema of feathery.yaml. CONFIG.md documents every field.
type Config struct {
	Log     LogConfig     `yaml:"log"`
	Redis   RedisConfig   `yaml:"redis"`
	Admin   AdminConfig   `yaml:"admin"`
	Discord DiscordConfig `yaml:"discord"`
	// IdentifyWindow is the identify bucket window; default 5s (Discord's).
	IdentifyWindow Duration `yaml:"identify_window"`
	// ShutdownTimeout bounds the graceful shutdown; default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Publisher tunes the micro-batching publisher.
	Publisher PublisherTuning `yaml:"publisher"`
	Bots      []BotConfig     `yaml:"bots"`
}

// PublisherTuning are the publisher's limits; zero values take the
// broker's defaults.
type PublisherTuning struct {
	QueueSize     int      `yaml:"queue_size"`
	MaxBatch      int      `yaml:"max_batch"`
	MaxBatchBytes int      `yaml:"max_batch_bytes"`
	MaxDelay      Duration `yaml:"max_delay"`
	PrefixTTL     Duration `yaml:"prefix_ttl"`
	ControlMaxLen int64    `yaml:"control_max_len"`
}

// LogConfig chooses the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// RedisConfig says which Redis to use: one of URL, Cluster or Embedded.
// None of them configured means embedded.
type RedisConfig struct {
	// Prefix is the namespace of every key; default "feathery".
	Prefix       string   `yaml:"prefix"`
	URL          string   `yaml:"url"`
	Cluster      []string `yaml:"cluster"`
	Embedded     bool     `yaml:"embedded"`
	EmbeddedAddr string   `yaml:"embedded_addr"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	DB           int      `yaml:"db"`
	TLS          bool     `yaml:"tls"`
	// TLSServerName overrides the name checked in the server certificate.
	TLSServerName string `yaml:"tls_server_name"`
	// TLSInsecureSkipVerify skips certificate verification (tests only).
	TLSInsecureSkipVerify bool `yaml:"tls_insecure_skip_verify"`
	// DisableClientCache turns off RESP3 client-side caching, for servers
	// without CLIENT TRACKING.
	DisableClientCache bool `yaml:"disable_client_cache"`
	// DialTimeout bounds connecting; default 5s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// RequirePersistence refuses to start unless every Redis node keeps
	// AOF (checked at start).
	RequirePersistence bool `yaml:"require_persistence"`
}

// AdminConfig is the HTTP admin API and dashboard.
type AdminConfig struct {
	// Addr is the listen address; default 127.0.0.1:7420; "off" disables.
	Addr string `yaml:"addr"`
	// Token is the bearer token for state-changing endpoints; empty
	// disables them.
	Token string `yaml:"token"`
}

// DiscordConfig overrides where Discord is.
type DiscordConfig struct {
	// RESTURL is the REST API base; default https://discord.com/api/v10.
	RESTURL string `yaml:"rest_url"`
}

// BotConfig is one bot.
type BotConfig struct {
	Name           string        `yaml:"name"`
	Token          string        `yaml:"token"`
	Intents        Intents       `yaml:"intents"`
	Shards         ShardCount    `yaml:"shards"`
	ShardIDs       ShardIDs      `yaml:"shard_ids"`
	Compression    string        `yaml:"compression"`
	LargeThreshold int           `yaml:"large_threshold"`
	RequestMembers bool          `yaml:"request_members"`
	Presence       Presence      `yaml:"presence"`
	Filters        FiltersConfig `yaml:"filters"`
	Routes         []RouteConfig `yaml:"routes"`
	DefaultStream  StreamConfig  `yaml:"default_stream"`
	Cache          *CacheConfig  `yaml:"cache"`
}

// FiltersConfig are the filters applied before anything is published.
type FiltersConfig struct {
	Ignore        []string `yaml:"ignore"`
	CacheOnly     []string `yaml:"cache_only"`
	DropBots      *bool    `yaml:"drop_bots"`
	DropWebhooks  *bool    `yaml:"drop_webhooks"`
	Prefixes      []string `yaml:"prefixes"`
	MentionPrefix *bool    `yaml:"mention_prefix"`
}

// RouteConfig sends events whose names match Events to Stream.
type RouteConfig struct {
	Events []string `yaml:"events"`
	Stream string   `yaml:"stream"`
	MaxLen int64    `yaml:"maxlen"`
	MaxAge Duration `yaml:"max_age"`
	Groups []string `yaml:"groups"`
}

// StreamConfig is the stream of the events no route takes.
type StreamConfig struct {
	Stream string   `yaml:"stream"`
	MaxLen int64    `yaml:"maxlen"`
	MaxAge Duration `yaml:"max_age"`
	Groups []string `yaml:"groups"`
}

// CacheConfig turns the Redis cache on (the default) or off and chooses what
// it keeps.
type CacheConfig struct {
	Enabled   *bool    `yaml:"enabled"`
	Namespace string   `yaml:"namespace"`
	Entities  []string `yaml:"entities"`
}

// Defaults.
const (
	defaultAdminAddr       = "127.0.0.1:7420"
	defaultEmbeddedAddr    = "127.0.0.1:0"
	defaultIdentifyWindow  = 5 * time.Second
	defaultShutdownTimeout = 30 * time.Second
	defaultCompression     = "zlib-stream"
)

// cacheEntities are the names accepted in cache.entities.
var cacheEntities = broker.CacheEntities

// Duration is a time.Duration written like "5s" or "1h30m".
type Duration time.Duration

func (d *Duration) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a duration like 5s, got %s", kindName(n))
	}
	x, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("want a duration like 5s or 1h30m, got %s", safeQuote(n.Value))
	}
	if x < 0 {
		return fmt.Errorf("must not be negative")
	}
	*d = Duration(x)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Intents is a gateway intents bit set, written as a number, one name or a
// list of names (and numbers).
type Intents struct {
	Value uint64
	Set   bool
}

// intentBits are the documented gateway intents.
var intentBits = map[string]uint64{
	"GUILDS":                        1 << 0,
	"GUILD_MEMBERS":                 1 << 1,
	"GUILD_MODERATION":              1 << 2,
	"GUILD_EXPRESSIONS":             1 << 3,
	"GUILD_INTEGRATIONS":            1 << 4,
	"GUILD_WEBHOOKS":                1 << 5,
	"GUILD_INVITES":                 1 << 6,
	"GUILD_VOICE_STATES":            1 << 7,
	"GUILD_PRESENCES":               1 << 8,
	"GUILD_MESSAGES":                1 << 9,
	"GUILD_MESSAGE_REACTIONS":       1 << 10,
	"GUILD_MESSAGE_TYPING":          1 << 11,
	"DIRECT_MESSAGES":               1 << 12,
	"DIRECT_MESSAGE_REACTIONS":      1 << 13,
	"DIRECT_MESSAGE_TYPING":         1 << 14,
	"MESSAGE_CONTENT":               1 << 15,
	"GUILD_SCHEDULED_EVENTS":        1 << 16,
	"AUTO_MODERATION_CONFIGURATION": 1 << 20,
	"AUTO_MODERATION_EXECUTION":     1 << 21,
	"GUILD_MESSAGE_POLLS":           1 << 24,
	"DIRECT_MESSAGE_POLLS":          1 << 25,
}

const (
	intentsAll           uint64 = 53608447
	intentsPrivileged    uint64 = 1<<1 | 1<<8 | 1<<15
	intentsUnprivileged         = intentsAll &^ intentsPrivileged
	defaultIntentsString        = "ALL_UNPRIVILEGED"
)

// parseIntentName resolves one intent name (or ALL / ALL_UNPRIVILEGED) or
// number.
func parseIntentName(s string) (uint64, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	switch name {
	case "ALL":
		return intentsAll, nil
	case "ALL_UNPRIVILEGED", "UNPRIVILEGED":
		return intentsUnprivileged, nil
	}
	if b, ok := intentBits[name]; ok {
		return b, nil
	}
	if x, err := strconv.ParseUint(name, 0, 64); err == nil {
		if bad := x &^ intentsAll; bad != 0 {
			return 0, fmt.Errorf("%d has bits that are no gateway intent (bit %d)", x, bits.TrailingZeros64(bad))
		}
		return x, nil
	}
	return 0, fmt.Errorf("unknown intent %s (want a name like GUILDS or GUILD_MESSAGES, or a number)", safeQuote(s))
}

func (in *Intents) decodeNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		v := uint64(0)
		for _, part := range strings.Split(n.Value, "|") {
			x, err := parseIntentName(part)
			if err != nil {
				return err
			}
			v |= x
		}
		*in = Intents{Value: v, Set: true}
		return nil
	case yaml.SequenceNode:
		v := uint64(0)
		for i, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("item %d: want an intent name, got %s", i, kindName(c))
			}
			x, err := parseIntentName(c.Value)
			if err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			v |= x
		}
		*in = Intents{Value: v, Set: true}
		return nil
	}
	return fmt.Errorf("want a number or a list of intent names, got %s", kindName(n))
}

// Presence is IDENTIFY's presence object, written in YAML and sent as
// JSON: {status, activities: [{name, type, state, url}], afk, since}.
type Presence struct {
	JSON []byte
}

type presenceYAML struct {
	Status     string         `yaml:"status" json:"status"`
	Since      *int64         `yaml:"since" json:"since"`
	AFK        bool           `yaml:"afk" json:"afk"`
	Activities []activityYAML `yaml:"activities" json:"activities"`
}

type activityYAML struct {
	Name  string `yaml:"name" json:"name"`
	Type  int    `yaml:"type" json:"type"`
	State string `yaml:"state" json:"state,omitempty"`
	URL   string `yaml:"url" json:"url,omitempty"`
}

var presenceStatuses = []string{"online", "dnd", "idle", "invisible", "offline"}

func (p *Presence) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want a mapping like {status: online, activities: [{name: ..., type: 0}]}, got %s", kindName(n))
	}
	var v presenceYAML
	w := &nodeWalker{}
	if err := w.decode(n, reflect.ValueOf(&v).Elem(), ""); err != nil {
		return err
	}
	if v.Status == "" {
		v.Status = "online"
	}
	if !contains(presenceStatuses, v.Status) {
		return fmt.Errorf("status %s: want one of %s", safeQuote(v.Status), strings.Join(presenceStatuses, ", "))
	}
	for i, a := range v.Activities {
		if a.Name == "" {
			return fmt.Errorf("activities[%d].name: missing", i)
		}
		if a.Type < 0 || a.Type > 5 {
			return fmt.Errorf("activities[%d].type: %d is not an activity type (0-5)", i, a.Type)
		}
	}
	if v.Activities == nil {
		v.Activities = []activityYAML{}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode presence: %w", err)
	}
	p.JSON = b
	return nil
}

// ShardCount is "auto" (0) or a positive number of shards.
type ShardCount int

func (s *ShardCount) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want auto or a number, got %s", kindName(n))
	}
	if strings.EqualFold(n.Value, "auto") {
		*s = 0
		return nil
	}
	x, err := strconv.Atoi(n.Value)
	if err != nil || x < 1 || x > 1<<20 {
		return fmt.Errorf("want auto or a positive number, got %s", safeQuote(n.Value))
	}
	*s = ShardCount(x)
	return nil
}

// ShardIDs is the list of shards this process runs, written as a list of
// numbers or as ranges ("0-15", "0-3,8-11"). Nil means every shard.
type ShardIDs []int

func (s *ShardIDs) decodeNode(n *yaml.Node) error {
	var out []int
	add := func(spec string) error {
		for _, part := range strings.Split(spec, ",") {
			part = strings.TrimSpace(part)
			lo, hi, isRange := strings.Cut(part, "-")
			a, err1 := strconv.Atoi(strings.TrimSpace(lo))
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(strings.TrimSpace(hi))
			}
			if err1 != nil || err2 != nil || a < 0 || b < 0 {
				return fmt.Errorf("bad shard range %s (want N or N-M, e.g. 0-15)", safeQuote(part))
			}
			if b < a {
				return fmt.Errorf("bad shard range %s: end before start", safeQuote(part))
			}
			if b-a > 1<<20 {
				return fmt.Errorf("shard range %s is too large", safeQuote(part))
			}
			for i := a; i <= b; i++ {
				out = append(out, i)
			}
		}
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		if err := add(n.Value); err != nil {
			return err
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("want shard ids or ranges, got %s in the list", kindName(c))
			}
			if err := add(c.Value); err != nil {
				return err
			}
		}
	default:
		return fmt.Errorf("want a list of shard ids or a range like \"0-15\", got %s", kindName(n))
	}
	sort.Ints(out)
	for i := 1; i < len(out); i++ {
		if out[i] == out[i-1] {
			return fmt.Errorf("shard %d listed twice", out[i])
		}
	}
	*s = out
	return nil
}

// configError is a config problem located in its file.
type configError struct {
	File string
	*fieldError
}

func (e *configError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	return "config " + loc + ": " + e.fieldError.Error()
}

func (e *configError) Unwrap() error { return e.fieldError }

// loadConfigFile reads, expands, decodes and validates the file at name.
func loadConfigFile(name string, lookup func(string) (string, bool)) (*Config, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("read config %s: %w", name, pe.Err)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(name, b, lookup)
}

// parseConfig parses a config document. name is only used in errors.
func parseConfig(name string, b []byte, lookup func(string) (string, bool)) (*Config, error) {
	wrap := func(err error) error {
		var fe *fieldError
		if errors.As(err, &fe) {
			return &configError{File: name, fieldError: fe}
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		// yaml's syntax errors carry line numbers and quote no values
		// beyond a token or two; strip the "yaml: " prefix.
		return nil, fmt.Errorf("config %s: %s", name, oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	if root.Kind == 0 {
		return nil, fmt.Errorf("config %s: the file is empty", name)
	}
	if err := expandEnv(&root, "", lookup); err != nil {
		return nil, wrap(err)
	}
	var cfg Config
	w := &nodeWalker{lines: map[string]int{}}
	if err := w.decode(&root, reflect.ValueOf(&cfg).Elem(), ""); err != nil {
		return nil, wrap(err)
	}
	if err := cfg.validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) && fe.Line == 0 {
			fe.Line = w.lineOf(fe.Path)
		}
		return nil, wrap(err)
	}
	return &cfg, nil
}

// lineOf returns the line of path or of its nearest ancestor.
func (w *nodeWalker) lineOf(p string) int {
	for p != "" {
		if l, ok := w.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

var botNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func problem(p, format string, args ...any) error {
	return &fieldError{Path: p, Msg: fmt.Sprintf(format, args...)}
}

// validate checks the decoded config and fills in defaults.
func (c *Config) validate() error {
	if _, err := parseLogLevel(c.Log.Level); err != nil {
		return problem("log.level", "%v", err)
	}
	if err := checkLogFormat(c.Log.Format); err != nil {
		return problem("log.format", "%v", err)
	}
	if err := c.Redis.validate(); err != nil {
		return err
	}
	if c.Admin.Addr == "" {
		c.Admin.Addr = defaultAdminAddr
	}
	if c.Admin.Addr != "off" {
		if _, port, err := net.SplitHostPort(c.Admin.Addr); err != nil || port == "" {
			return problem("admin.addr", "want host:port (e.g. %s) or off, got %s", defaultAdminAddr, safeQuote(c.Admin.Addr))
		}
	}
	if t := c.Admin.Token; t != "" && len(t) < 16 {
		return problem("admin.token", "too short: use at least 16 characters")
	}
	if u := c.Discord.RESTURL; u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return problem("discord.rest_url", "want an http(s) URL like https://discord.com/api/v10")
		}
	}
	if err := c.Publisher.validate(); err != nil {
		return err
	}
	if c.IdentifyWindow == 0 {
		c.IdentifyWindow = Duration(defaultIdentifyWindow)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(defaultShutdownTimeout)
	}
	if len(c.Bots) == 0 {
		return problem("bots", "missing: configure at least one bot")
	}
	names := map[string]int{}
	for i := range c.Bots {
		p := indexPath("bots", i)
		if err := c.Bots[i].validate(p); err != nil {
			return err
		}
		if j, dup := names[c.Bots[i].Name]; dup {
			return problem(p+".name", "%q is already the name of bots[%d]", c.Bots[i].Name, j)
		}
		names[c.Bots[i].Name] = i
	}
	return nil
}

// embedded reports whether the embedded Redis is used.
func (r *RedisConfig) embedded() bool {
	return r.Embedded || (r.URL == "" && len(r.Cluster) == 0)
}

func (t *PublisherTuning) validate() error {
	for name, v := range map[string]int{"queue_size": t.QueueSize, "max_batch": t.MaxBatch, "max_batch_bytes": t.MaxBatchBytes} {
		if v < 0 {
			return problem("publisher."+name, "must not be negative")
		}
	}
	if t.ControlMaxLen < 0 {
		return problem("publisher.control_max_len", "must not be negative")
	}
	if t.PrefixTTL.D() > time.Second {
		return problem("publisher.prefix_ttl", "at most 1s (prefix changes must apply within a second)")
	}
	return nil
}

func (r *RedisConfig) validate() error {
	if strings.ContainsAny(r.Prefix, " \t\r\n{}") {
		return problem("redis.prefix", "no spaces or braces")
	}
	n := 0
	if r.URL != "" {
		n++
	}
	if len(r.Cluster) > 0 {
		n++
	}
	if r.Embedded {
		n++
	}
	if n > 1 {
		return problem("redis", "set only one of url, cluster and embedded")
	}
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil {
			// Never echo the URL: it may hold a password.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			return problem("redis.url", "not a valid URL: %v", err)
		}
		switch u.Scheme {
		case "redis", "rediss":
			if u.Host == "" {
				return problem("redis.url", "missing host (want redis://host:port/db)")
			}
			if strings.Contains(strings.TrimPrefix(strings.TrimSuffix(u.Host, "]"), "["), ":") || strings.HasPrefix(u.Host, "[") {
				host, port, err := net.SplitHostPort(u.Host)
				if err != nil && strings.HasPrefix(u.Host, "[") && strings.HasSuffix(u.Host, "]") {
					host, port, err = strings.Trim(u.Host, "[]"), "6379", nil
				}
				if err != nil {
					return problem("redis.url", "host and port: %v", err)
				}
				if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
					return problem("redis.url", "port %s is not a port number", safeQuote(port))
				}
				if host == "" {
					return problem("redis.url", "missing host (want redis://host:port/db)")
				}
			}
		case "unix":
			if u.Path == "" {
				return problem("redis.url", "missing socket path (want unix:///path/to/redis.sock)")
			}
		default:
			return problem("redis.url", "unsupported scheme %s (want redis://, rediss:// or unix://)", safeQuote(u.Scheme))
		}
		if db := strings.Trim(u.Path, "/"); (u.Scheme == "redis" || u.Scheme == "rediss") && db != "" {
			if _, err := strconv.Atoi(db); err != nil {
				return problem("redis.url", "database %s in the path is not a number", safeQuote(db))
			}
		}
	}
	if r.DB < 0 {
		return problem("redis.db", "must not be negative")
	}
	if r.DB != 0 && len(r.Cluster) > 0 {
		return problem("redis.db", "Redis Cluster has only database 0")
	}
	for i, a := range r.Cluster {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return problem(indexPath("redis.cluster", i), "want host:port, got %s", safeQuote(a))
		}
	}
	if r.EmbeddedAddr != "" {
		if !r.embedded() {
			return problem("redis.embedded_addr", "only applies to the embedded Redis")
		}
		if _, _, err := net.SplitHostPort(r.EmbeddedAddr); err != nil {
			return problem("redis.embedded_addr", "want host:port (e.g. 127.0.0.1:6379), got %s", safeQuote(r.EmbeddedAddr))
		}
	}
	if r.embedded() {
		if r.EmbeddedAddr == "" {
			r.EmbeddedAddr = defaultEmbeddedAddr
		}
		if r.TLS {
			return problem("redis.tls", "not supported with the embedded Redis")
		}
	}
	return nil
}

func (b *BotConfig) validate(p string) error {
	if b.Name == "" {
		return problem(p+".name", "missing")
	}
	if !botNameRE.MatchString(b.Name) {
		return problem(p+".name", "%s: use 1-64 letters, digits, _ or -", safeQuote(b.Name))
	}
	switch {
	case b.Token == "":
		return problem(p+".token", "missing")
	case strings.HasPrefix(b.Token, "Bot "):
		return problem(p+".token", "write the token without the \"Bot \" prefix")
	case strings.ContainsAny(b.Token, " \t\r\n"):
		return problem(p+".token", "contains white space")
	}
	if !b.Intents.Set {
		b.Intents = Intents{Value: intentsUnprivileged, Set: true}
	}
	if b.Shards > 0 {
		for _, id := range b.ShardIDs {
			if id >= int(b.Shards) {
				return problem(p+".shard_ids", "shard %d is not below shards (%d)", id, b.Shards)
			}
		}
	}
	if b.Compression == "" {
		b.Compression = defaultCompression
	}
	switch b.Compression {
	case "none", "zlib-stream", "zstd-stream":
	default:
		return problem(p+".compression", "unknown compression %s (want none, zlib-stream or zstd-stream)", safeQuote(b.Compression))
	}
	if b.LargeThreshold != 0 && (b.LargeThreshold < 50 || b.LargeThreshold > 250) {
		return problem(p+".large_threshold", "must be between 50 and 250, got %d", b.LargeThreshold)
	}
	if err := checkEventNames(p+".filters.ignore", b.Filters.Ignore); err != nil {
		return err
	}
	if err := checkEventNames(p+".filters.cache_only", b.Filters.CacheOnly); err != nil {
		return err
	}
	for i, pre := range b.Filters.Prefixes {
		if pre == "" {
			return problem(indexPath(p+".filters.prefixes", i), "empty prefix")
		}
	}
	streams := map[string]int{}
	for i := range b.Routes {
		rp := indexPath(p+".routes", i)
		r := &b.Routes[i]
		if len(r.Events) == 0 {
			r.Events = []string{"*"}
		}
		if err := checkEventNames(rp+".events", r.Events); err != nil {
			return err
		}
		if r.Stream == "" {
			return problem(rp+".stream", "missing")
		}
		if strings.ContainsAny(r.Stream, " \t\r\n{}") {
			return problem(rp+".stream", "%s: no spaces or braces", safeQuote(r.Stream))
		}
		if r.Stream == defaultStreamName(b) {
			return problem(rp+".stream", "%q is the default stream; events no route takes go there anyway", r.Stream)
		}
		if j, dup := streams[r.Stream]; dup {
			return problem(rp+".stream", "%q is already the stream of routes[%d]; list more events in that route instead", r.Stream, j)
		}
		streams[r.Stream] = i
		if r.MaxLen < 0 {
			return problem(rp+".maxlen", "must not be negative")
		}
		if r.MaxLen > 0 && r.MaxAge > 0 {
			return problem(rp, "set maxlen or max_age, not both")
		}
		for j, g := range r.Groups {
			if g == "" || strings.ContainsAny(g, " \t\r\n") {
				return problem(indexPath(rp+".groups", j), "want a group name without spaces")
			}
		}
	}
	ds := &b.DefaultStream
	if ds.Stream != "" {
		if strings.ContainsAny(ds.Stream, " \t\r\n{}") {
			return problem(p+".default_stream.stream", "%s: no spaces or braces", safeQuote(ds.Stream))
		}
		if j, dup := streams[ds.Stream]; dup {
			return problem(p+".default_stream.stream", "%q is already the stream of routes[%d]", ds.Stream, j)
		}
	}
	if ds.MaxLen < 0 {
		return problem(p+".default_stream.maxlen", "must not be negative")
	}
	if ds.MaxLen > 0 && ds.MaxAge > 0 {
		return problem(p+".default_stream", "set maxlen or max_age, not both")
	}
	for j, g := range ds.Groups {
		if g == "" || strings.ContainsAny(g, " \t\r\n{}") {
			return problem(indexPath(p+".default_stream.groups", j), "want a group name without spaces or braces")
		}
	}
	if b.Filters.MentionPrefix != nil && !*b.Filters.MentionPrefix && len(b.Filters.Prefixes) > 0 {
		return problem(p+".filters.mention_prefix", "the prefix filter always accepts a mention of the bot; remove mention_prefix: false")
	}
	if c := b.Cache; c != nil {
		for i, e := range c.Entities {
			if !contains(cacheEntities, e) {
				return problem(indexPath(p+".cache.entities", i), "unknown entity %s (want one of %s)", safeQuote(e), strings.Join(cacheEntities, ", "))
			}
		}
		if contains(c.Entities, "users") && !contains(c.Entities, "members") {
			return problem(p+".cache.entities", "users come from member objects: list members too")
		}
		if strings.ContainsAny(c.Namespace, " \t\r\n{}") {
			return problem(p+".cache.namespace", "no spaces or braces")
		}
	}
	return nil
}

// defaultStreamName is the bot's stream for events no route takes.
func defaultStreamName(b *BotConfig) string {
	if b.DefaultStream.Stream != "" {
		return b.DefaultStream.Stream
	}
	return "events"
}

var eventNameRE = regexp.MustCompile(`^[A-Z0-9_*?\[\]^-]+$`)

// checkEventNames checks event names and globs.
func checkEventNames(p string, names []string) error {
	for i, n := range names {
		if !eventNameRE.MatchString(n) {
			return problem(indexPath(p, i), "%s is not an event name or pattern (like MESSAGE_CREATE or GUILD_*)", safeQuote(n))
		}
		if _, err := path.Match(n, ""); err != nil {
			return problem(indexPath(p, i), "bad pattern %s", safeQuote(n))
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// secrets returns every secret of the config, for log redaction.
func (c *Config) secrets() []string {
	var s []string
	for _, b := range c.Bots {
		s = append(s, b.Token)
	}
	if c.Redis.Password != "" {
		s = append(s, c.Redis.Password)
	}
	if u, err := url.Parse(c.Redis.URL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			s = append(s, pw)
		}
	}
	if c.Admin.Token != "" {
		s = append(s, c.Admin.Token)
	}
	return s
}
