// Package broker is feathery's Redis side: the client (standalone, TLS,
// Cluster or embedded), the Publisher that turns a shard's events into
// stream entries and checkpoints, its filters, and the Redis SessionStore
// and IdentifyLimiter. Every key name comes from package keyspace.
//
//	c, err := broker.NewClient(broker.RedisConfig{URL: "redis://127.0.0.1:6379"})
//	pub, err := broker.NewPublisher(c.Redis(), broker.PublisherConfig{
//		ClientSideCaching: c.ClientSideCaching(),
//		Bots: []broker.BotConfig{{
//			Name:    "main",
//			Routes:  []broker.Route{{Events: []string{"MESSAGE_*"}, StreamConfig: broker.StreamConfig{Stream: "messages", MaxLen: 100000, Groups: []string{"bot"}}}},
//			Filters: broker.FilterConfig{DropBotMessages: true, PrefixFilter: true, Prefixes: []string{"!"}},
//		}},
//	})
//	err = pub.Publish(ctx, ev)           // the gateway's Sink
//	err = pub.Flush(ctx, "main", 0)      // durable up to here
//	err = pub.Close(ctx)
//
// Stream entries have the fields v ("1"), t, d (the dispatch's d byte for
// byte), bot, shard, session, seq, guild (only when the event has a guild),
// before (only when the cache gave a before image) and at (receive time,
// unix ms), in that order. The publish script writes a batch's entries and
// the shard's checkpoint in one atomic step and skips entries at or below
// the checkpoint of their session, so a replay adds nothing twice.
package broker
