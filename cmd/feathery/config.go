package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
	"go.yaml.in/yaml/v3"
)

// Config is the schema of feathery.yaml. CONFIG.md documents every field.
type Config struct {
	Log     LogConfig     `yaml:"log"`
	Redis   RedisConfig   `yaml:"redis"`
	Admin   AdminConfig   `yaml:"admin"`
	Node    NodeConfig    `yaml:"node"`
	Discord DiscordConfig `yaml:"discord"`
	// IdentifyWindow is the identify bucket window; default 5s (Discord's).
	IdentifyWindow Duration `yaml:"identify_window"`
	// ShutdownTimeout bounds the graceful shutdown; default 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// Publisher tunes the micro-batching publisher.
	Publisher PublisherTuning `yaml:"publisher"`
	// Fleet turns the fleet on (Node names this process in it).
	Fleet FleetSettings `yaml:"fleet"`
	Bots  []BotConfig   `yaml:"bots"`
}

// FleetSettings are the fleet's: processes sharing redis.prefix share the
// shards of the bots they run.
type FleetSettings struct {
	// Enabled defaults to on with an external Redis, off (and impossible)
	// with the embedded one.
	Enabled *bool `yaml:"enabled"`
	// LeaseTTL is how long a shard's lease and a node's membership last
	// without renewal; default 10s.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// PublisherTuning are the publisher's limits; zero values take the
// broker's defaults.
type PublisherTuning struct {
	QueueSize     int      `yaml:"queue_size"`
	MaxBatch      int      `yaml:"max_batch"`
	MaxBatchBytes int      `yaml:"max_batch_bytes"`
	MaxDelay      Duration `yaml:"max_delay"`
	GatherDelay   Duration `yaml:"gather_delay"`
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
	// TLSCAFile is a PEM file of the CA certificates that sign the
	// server's certificate (default: the system's).
	TLSCAFile string `yaml:"tls_ca_file"`
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
	// PublicCache opens the cache read API (/api/cache/...) without the
	// token; by default it needs it.
	PublicCache bool `yaml:"public_cache"`
}

// NodeConfig names this process in the fleet.
type NodeConfig struct {
	// ID names the node; default host name and pid.
	ID string `yaml:"id"`
	// Capacity weighs this node's share of shards; default 1.
	Capacity int `yaml:"capacity"`
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
	// Autoscale re-shards a bot with shards: auto when Discord recommends
	// more shards.
	Autoscale AutoscaleConfig `yaml:"autoscale"`
}

// AutoscaleConfig is how often a bot with shards: auto asks Discord for
// its recommended shard count.
type AutoscaleConfig struct {
	// CheckEvery; default 8h with shards: auto.
	CheckEvery Duration `yaml:"check_every"`
	// MaxGuildsPerShard: the check also re-shards when the bot's shards
	// hold more guilds than this on average; default 2000.
	MaxGuildsPerShard int `yaml:"max_guilds_per_shard"`
}

// Defaults of autoscale: check_every, and max_guilds_per_shard, below
// Discord's limit of 2,500 a shard since guilds spread unevenly over the
// shards (the largest holds a few percent more than the average).
const (
	defaultAutoscaleEvery    = 8 * time.Hour
	defaultMaxGuildsPerShard = 2000
)

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

// maxConfigSize bounds the config file; a real one is a few KiB.
const maxConfigSize = 1 << 20

// loadConfigFile reads, expands, decodes and validates the file at name.
func loadConfigFile(name string, lookup func(string) (string, bool)) (*Config, error) {
	f, err := os.Open(name)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("read config %s: %w", name, pe.Err)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", name, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config %s: larger than %d bytes", name, maxConfigSize)
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

// validNodeID: 1-64 letters, digits, '.', '_' or '-'.
func validNodeID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func problem(p, format string, args ...any) error {
	return &fieldError{Path: p, Msg: fmt.Sprintf(format, args...)}
}

// Upper bounds of the durations only this file configures.
const (
	maxIdentifyWindow  = time.Minute
	maxShutdownTimeout = time.Hour
)

// validate checks the decoded config and fills in defaults. The rules of
// what the broker and the gateway are given are theirs (checkStart): "run
// --check" and "run" run the same ones.
func (c *Config) validate() error {
	if _, err := parseLogLevel(c.Log.Level); err != nil {
		return problem("log.level", "%v", err)
	}
	if err := checkLogFormat(c.Log.Format); err != nil {
		return problem("log.format", "%v", err)
	}
	if c.Redis.embedded() && c.Redis.EmbeddedAddr == "" {
		c.Redis.EmbeddedAddr = defaultEmbeddedAddr
	}
	if c.Admin.Addr == "" {
		c.Admin.Addr = defaultAdminAddr
	}
	if c.Admin.Addr != "off" {
		if _, port, err := net.SplitHostPort(c.Admin.Addr); err != nil || port == "" {
			return problem("admin.addr", "want host:port (e.g. %s) or off, got %s", defaultAdminAddr, safeQuote(c.Admin.Addr))
		}
	}
	if id := c.Node.ID; id != "" && !validNodeID(id) {
		return problem("node.id", "want 1-64 letters, digits, '.', '_' or '-', got %s", safeQuote(id))
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
	if c.IdentifyWindow == 0 {
		c.IdentifyWindow = Duration(defaultIdentifyWindow)
	}
	if c.IdentifyWindow.D() > maxIdentifyWindow {
		return problem("identify_window", "%s is above %s", c.IdentifyWindow.D(), maxIdentifyWindow)
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = Duration(defaultShutdownTimeout)
	}
	if c.ShutdownTimeout.D() > maxShutdownTimeout {
		return problem("shutdown_timeout", "%s is above %s", c.ShutdownTimeout.D(), maxShutdownTimeout)
	}
	if err := c.validateFleet(); err != nil {
		return err
	}
	if len(c.Bots) == 0 {
		return problem("bots", "missing: configure at least one bot")
	}
	for i := range c.Bots {
		if err := c.Bots[i].validate(indexPath("bots", i)); err != nil {
			return err
		}
	}
	return c.checkStart()
}

// checkStart runs the validators of everything run builds from the config
// (the Redis client, the publisher, the cache, the gateway's bots): the
// constructors run the same ones, so a config that passes here does not
// fail them at start.
func (c *Config) checkStart() error {
	if err := c.Redis.validate(); err != nil {
		return err
	}
	pc := publisherConfig(c, false, nil)
	if err := pc.Validate(); err != nil {
		var fe *broker.FieldError
		if errors.As(err, &fe) {
			return fieldProblem(publisherField(fe.Field), fe.Err)
		}
		return problem("publisher", "%v", err)
	}
	cc, _ := cacheConfig(c, nil)
	if err := broker.CheckCacheNamespace(cc.Namespace); err != nil {
		return fieldProblem("redis.prefix", err)
	}
	for i := range c.Bots {
		if bc, ok := cc.Bots[c.Bots[i].Name]; ok {
			if err := bc.Validate(); err != nil {
				return fromRule(indexPath("bots", i)+".cache", err)
			}
		}
	}
	for i, gb := range gatewayBots(c) {
		if err := gb.Validate(); err != nil {
			return fromRule(indexPath("bots", i), err)
		}
	}
	return nil
}

const defaultLeaseTTL = 10 * time.Second

// validateFleet checks the node and fleet sections and fills in defaults.
func (c *Config) validateFleet() error {
	if c.Node.Capacity < 0 || c.Node.Capacity > 1000 {
		return problem("node.capacity", "must be between 1 and 1000, got %d", c.Node.Capacity)
	}
	if c.Node.Capacity == 0 {
		c.Node.Capacity = 1
	}
	if c.Fleet.Enabled != nil && *c.Fleet.Enabled && c.Redis.embedded() {
		return problem("fleet.enabled", "a fleet shares one Redis: configure redis.url or redis.cluster")
	}
	if c.Fleet.LeaseTTL == 0 {
		c.Fleet.LeaseTTL = Duration(defaultLeaseTTL)
	}
	if ttl := c.Fleet.LeaseTTL.D(); ttl < time.Second || ttl > 5*time.Minute {
		return problem("fleet.lease_ttl", "must be between 1s and 5m, got %s", ttl)
	}
	return nil
}

// fleetEnabled reports whether this process is a node of a fleet.
func (c *Config) fleetEnabled() bool {
	if c.Fleet.Enabled != nil {
		return *c.Fleet.Enabled
	}
	return !c.Redis.embedded()
}

// embedded reports whether the embedded Redis is used.
func (r *RedisConfig) embedded() bool {
	return r.Embedded || (r.URL == "" && len(r.Cluster) == 0)
}

// validate checks the redis section with the broker's rules.
func (r *RedisConfig) validate() error {
	return fromRule("redis", r.broker().Validate())
}

// publisherField names a field of broker.PublisherConfig in the file.
func publisherField(f string) string {
	switch {
	case f == "prefix":
		return "redis.prefix"
	case strings.HasPrefix(f, "bots["):
		return f
	}
	return "publisher." + f
}

// fromRule turns a broker or gateway validation error into a fieldError
// under prefix.
func fromRule(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *broker.FieldError
	if errors.As(err, &fe) {
		return fieldProblem(joinField(prefix, fe.Field), fe.Err)
	}
	var ge *gateway.BotFieldError
	if errors.As(err, &ge) {
		return fieldProblem(joinField(prefix, ge.Field), ge.Err)
	}
	return fieldProblem(prefix, err)
}

func joinField(prefix, f string) string {
	switch {
	case f == "":
		return prefix
	case prefix == "" || f[0] == '[':
		return prefix + f
	}
	return prefix + "." + f
}

func fieldProblem(p string, err error) error {
	return &fieldError{Path: p, Msg: oneLine(err.Error())}
}

func (b *BotConfig) validate(p string) error {
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
	if b.Autoscale.CheckEvery != 0 {
		if b.Shards != 0 {
			return problem(p+".autoscale.check_every", "only applies to shards: auto")
		}
		if b.Autoscale.CheckEvery.D() < time.Second {
			return problem(p+".autoscale.check_every", "at least 1s")
		}
	} else if b.Shards == 0 {
		b.Autoscale.CheckEvery = Duration(defaultAutoscaleEvery)
	}
	if n := b.Autoscale.MaxGuildsPerShard; n != 0 {
		if b.Shards != 0 {
			return problem(p+".autoscale.max_guilds_per_shard", "only applies to shards: auto")
		}
		if n < 1 || n > gateway.MaxGuildsPerShard {
			return problem(p+".autoscale.max_guilds_per_shard", "%d is not between 1 and %d (Discord's limit a shard)", n, gateway.MaxGuildsPerShard)
		}
	} else if b.Shards == 0 {
		b.Autoscale.MaxGuildsPerShard = defaultMaxGuildsPerShard
	}
	if b.Compression == "" {
		b.Compression = defaultCompression
	}
	if _, err := gateway.ParseCompression(b.Compression); err != nil {
		return problem(p+".compression", "unknown compression %s (want none, zlib-stream or zstd-stream)", safeQuote(b.Compression))
	}
	for i := range b.Routes {
		if len(b.Routes[i].Events) == 0 {
			b.Routes[i].Events = []string{"*"}
		}
	}
	if b.Filters.MentionPrefix != nil && !*b.Filters.MentionPrefix && len(b.Filters.Prefixes) > 0 {
		return problem(p+".filters.mention_prefix", "the prefix filter always accepts a mention of the bot; remove mention_prefix: false")
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
