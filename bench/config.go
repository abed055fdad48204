package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the part of feathery.yaml the harness writes (the schema is
// cmd/feathery's; see `feathery init`). Zero values are left out of the file,
// so feathery's defaults apply.
type Config struct {
	// RedisURL is redis.url; "" leaves the redis section to feathery's
	// default (the embedded Redis).
	RedisURL string
	// Prefix is redis.prefix, the namespace of every key; "" = "feathery".
	Prefix string
	// RESTURL is discord.rest_url, e.g. Fake.RESTURL().
	RESTURL string
	// AdminAddr is admin.addr; "" = feathery's default, "off" disables it.
	AdminAddr string
	// AdminToken is admin.token.
	AdminToken string
	// LogLevel is log.level; default "warn". LogFormat is log.format;
	// default "json".
	LogLevel, LogFormat string
	// IdentifyWindow is identify_window; 0 = feathery's default (5s).
	IdentifyWindow time.Duration
	// ShutdownTimeout is shutdown_timeout; 0 = feathery's default (30s).
	ShutdownTimeout time.Duration
	// Publisher tunes the publisher; zero fields are left out.
	Publisher PublisherTuning
	// Bots are the bots (at least one).
	Bots []Bot
	// FleetOff writes fleet.enabled: false (one process, no leases).
	FleetOff bool
}

// PublisherTuning is the publisher section.
type PublisherTuning struct {
	QueueSize int
	MaxBatch  int
	MaxDelay  time.Duration
	// GatherDelay is publisher.gather_delay.
	GatherDelay time.Duration
}

// Bot is one entry of bots.
type Bot struct {
	Name  string
	Token string
	// Intents is written as is (a number or names joined by "|");
	// "" = every intent (ALL).
	Intents string
	// Shards is the shard count; 0 = auto.
	Shards int
	// ShardIDs are the shards this process runs; nil = all.
	ShardIDs []int
	// Compression is none, zlib-stream or zstd-stream; "" = feathery's
	// default (zlib-stream).
	Compression string
	// Cache turns the Redis cache on; CacheEntities chooses what it keeps
	// (nil = every entity).
	Cache         bool
	CacheEntities []string
	// Ignore and CacheOnly are filters.ignore and filters.cache_only.
	Ignore, CacheOnly []string
	// RequestMembers is request_members.
	RequestMembers bool
	// Routes and DefaultStream place the events; zero = one stream per bot,
	// never trimmed.
	Routes        []Route
	DefaultStream Stream
}

// Route is one entry of a bot's routes.
type Route struct {
	Events []string
	Stream string
	MaxLen int64
	Groups []string
}

// Stream is a bot's default_stream.
type Stream struct {
	Stream string
	MaxLen int64
	Groups []string
}

// YAML renders the config as feathery.yaml.
func (c Config) YAML() ([]byte, error) {
	if len(c.Bots) == 0 {
		return nil, fmt.Errorf("render config: no bots")
	}
	doc := map[string]any{}
	logLevel, logFormat := c.LogLevel, c.LogFormat
	if logLevel == "" {
		logLevel = "warn"
	}
	if logFormat == "" {
		logFormat = "json"
	}
	doc["log"] = map[string]any{"level": logLevel, "format": logFormat}
	redis := map[string]any{}
	if c.RedisURL != "" {
		redis["url"] = c.RedisURL
	}
	if c.Prefix != "" {
		redis["prefix"] = c.Prefix
	}
	if len(redis) > 0 {
		doc["redis"] = redis
	}
	admin := map[string]any{}
	if c.AdminAddr != "" {
		admin["addr"] = c.AdminAddr
	}
	if c.AdminToken != "" {
		admin["token"] = c.AdminToken
	}
	if len(admin) > 0 {
		doc["admin"] = admin
	}
	if c.RESTURL != "" {
		doc["discord"] = map[string]any{"rest_url": c.RESTURL}
	}
	if c.IdentifyWindow > 0 {
		doc["identify_window"] = c.IdentifyWindow.String()
	}
	if c.FleetOff {
		doc["fleet"] = map[string]any{"enabled": false}
	}
	if c.ShutdownTimeout > 0 {
		doc["shutdown_timeout"] = c.ShutdownTimeout.String()
	}
	pub := map[string]any{}
	if c.Publisher.QueueSize > 0 {
		pub["queue_size"] = c.Publisher.QueueSize
	}
	if c.Publisher.MaxBatch > 0 {
		pub["max_batch"] = c.Publisher.MaxBatch
	}
	if c.Publisher.MaxDelay > 0 {
		pub["max_delay"] = c.Publisher.MaxDelay.String()
	}
	if c.Publisher.GatherDelay > 0 {
		pub["gather_delay"] = c.Publisher.GatherDelay.String()
	}
	if len(pub) > 0 {
		doc["publisher"] = pub
	}
	bots := make([]map[string]any, 0, len(c.Bots))
	for i, b := range c.Bots {
		if b.Name == "" || b.Token == "" {
			return nil, fmt.Errorf("render config: bots[%d]: name and token are required", i)
		}
		m := map[string]any{"name": b.Name, "token": b.Token}
		if b.Intents == "" {
			m["intents"] = "ALL"
		} else {
			m["intents"] = b.Intents
		}
		if b.Shards > 0 {
			m["shards"] = b.Shards
		} else {
			m["shards"] = "auto"
		}
		if len(b.ShardIDs) > 0 {
			ids := make([]string, len(b.ShardIDs))
			for j, id := range b.ShardIDs {
				ids[j] = strconv.Itoa(id)
			}
			m["shard_ids"] = strings.Join(ids, ",")
		}
		if b.Compression != "" {
			m["compression"] = b.Compression
		}
		if b.RequestMembers {
			m["request_members"] = true
		}
		filters := map[string]any{}
		if len(b.Ignore) > 0 {
			filters["ignore"] = b.Ignore
		}
		if len(b.CacheOnly) > 0 {
			filters["cache_only"] = b.CacheOnly
		}
		if len(filters) > 0 {
			m["filters"] = filters
		}
		if len(b.Routes) > 0 {
			routes := make([]map[string]any, 0, len(b.Routes))
			for _, r := range b.Routes {
				rm := map[string]any{"events": r.Events, "stream": r.Stream}
				if r.MaxLen > 0 {
					rm["maxlen"] = r.MaxLen
				}
				if len(r.Groups) > 0 {
					rm["groups"] = r.Groups
				}
				routes = append(routes, rm)
			}
			m["routes"] = routes
		}
		ds := map[string]any{}
		if b.DefaultStream.Stream != "" {
			ds["stream"] = b.DefaultStream.Stream
		}
		if b.DefaultStream.MaxLen > 0 {
			ds["maxlen"] = b.DefaultStream.MaxLen
		}
		if len(b.DefaultStream.Groups) > 0 {
			ds["groups"] = b.DefaultStream.Groups
		}
		if len(ds) > 0 {
			m["default_stream"] = ds
		}
		cache := map[string]any{"enabled": b.Cache}
		if len(b.CacheEntities) > 0 {
			cache["entities"] = b.CacheEntities
		}
		m["cache"] = cache
		bots = append(bots, m)
	}
	doc["bots"] = bots
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return append([]byte("# written by the feathery bench harness\n"), out...), nil
}

// WriteConfig writes c as a feathery.yaml at path (mode 0600: it holds
// tokens).
func WriteConfig(path string, c Config) error {
	b, err := c.YAML()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}
