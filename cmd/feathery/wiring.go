package main

import (
	"log/slog"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/gateway"
)

// redisConfig maps the config's redis section onto the broker's.
func redisConfig(cfg *Config) broker.RedisConfig { return cfg.Redis.broker() }

// broker maps the redis section onto the broker's config.
func (r *RedisConfig) broker() broker.RedisConfig {
	return broker.RedisConfig{
		URL:                   r.URL,
		ClusterAddrs:          r.Cluster,
		Embedded:              r.embedded(),
		EmbeddedAddr:          r.EmbeddedAddr,
		Username:              r.Username,
		Password:              r.Password,
		DB:                    r.DB,
		TLS:                   r.TLS,
		TLSServerName:         r.TLSServerName,
		TLSCAFile:             r.TLSCAFile,
		TLSInsecureSkipVerify: r.TLSInsecureSkipVerify,
		DisableClientCache:    r.DisableClientCache,
		DialTimeout:           r.DialTimeout.D(),
	}
}

// publisherConfig maps the config onto the broker's publisher config.
func publisherConfig(cfg *Config, clientCaching bool, log *slog.Logger) broker.PublisherConfig {
	t := cfg.Publisher
	pc := broker.PublisherConfig{
		Prefix:            cfg.Redis.Prefix,
		QueueSize:         t.QueueSize,
		MaxBatch:          t.MaxBatch,
		MaxBatchBytes:     t.MaxBatchBytes,
		MaxDelay:          t.MaxDelay.D(),
		GatherDelay:       t.GatherDelay.D(),
		PrefixTTL:         t.PrefixTTL.D(),
		ControlMaxLen:     t.ControlMaxLen,
		ClientSideCaching: clientCaching,
		Logger:            log,
	}
	for i := range cfg.Bots {
		b := &cfg.Bots[i]
		bc := broker.BotConfig{
			Name: b.Name,
			Default: broker.StreamConfig{
				Stream: b.DefaultStream.Stream,
				MaxLen: b.DefaultStream.MaxLen,
				MaxAge: b.DefaultStream.MaxAge.D(),
				Groups: b.DefaultStream.Groups,
			},
			Filters: broker.FilterConfig{
				Ignore:              b.Filters.Ignore,
				CacheOnly:           b.Filters.CacheOnly,
				DropBotMessages:     b.Filters.DropBots != nil && *b.Filters.DropBots,
				DropWebhookMessages: b.Filters.DropWebhooks != nil && *b.Filters.DropWebhooks,
				PrefixFilter:        len(b.Filters.Prefixes) > 0 || (b.Filters.MentionPrefix != nil && *b.Filters.MentionPrefix),
				Prefixes:            b.Filters.Prefixes,
			},
		}
		for _, r := range b.Routes {
			bc.Routes = append(bc.Routes, broker.Route{
				Events: r.Events,
				StreamConfig: broker.StreamConfig{
					Stream: r.Stream,
					MaxLen: r.MaxLen,
					MaxAge: r.MaxAge.D(),
					Groups: r.Groups,
				},
			})
		}
		pc.Bots = append(pc.Bots, bc)
	}
	return pc
}

// gatewayBots maps the config's bots onto the gateway's.
func gatewayBots(cfg *Config) []gateway.BotConfig {
	out := make([]gateway.BotConfig, 0, len(cfg.Bots))
	for _, b := range cfg.Bots {
		comp, _ := gateway.ParseCompression(b.Compression) // validated with the config
		out = append(out, gateway.BotConfig{
			Name:               b.Name,
			Token:              b.Token,
			Intents:            b.Intents.Value,
			Shards:             int(b.Shards),
			ShardIDs:           b.ShardIDs,
			Compression:        comp,
			LargeThreshold:     b.LargeThreshold,
			RequestMembers:     b.RequestMembers,
			Presence:           b.Presence.JSON,
			AutoscaleEvery:     b.Autoscale.CheckEvery.D(),
			AutoscaleMaxGuilds: b.Autoscale.MaxGuildsPerShard,
		})
	}
	return out
}

// cacheEnabled reports whether bot b keeps the cache (the default).
func cacheEnabled(b *BotConfig) bool {
	return b.Cache == nil || b.Cache.Enabled == nil || *b.Cache.Enabled
}

// cacheConfig maps the bots' cache sections onto the broker's cache
// config; ok is false when no bot keeps a cache.
func cacheConfig(cfg *Config, log *slog.Logger) (cc broker.CacheConfig, ok bool) {
	cc = broker.CacheConfig{Bots: map[string]broker.CacheBotConfig{}, Logger: log}
	if cfg.Redis.Prefix != "" {
		cc.Namespace = cfg.Redis.Prefix + ":cache"
	}
	for i := range cfg.Bots {
		b := &cfg.Bots[i]
		if !cacheEnabled(b) {
			cc.Bots[b.Name] = broker.CacheBotConfig{Disabled: true}
			continue
		}
		ok = true
		if b.Cache != nil {
			cc.Bots[b.Name] = broker.CacheBotConfig{Namespace: b.Cache.Namespace, Entities: b.Cache.Entities}
		}
	}
	return cc, ok
}
