// Package luascripts holds feathery's Redis Lua scripts, one .lua file per
// script, each embedded with go:embed and wrapped once as a typed Go
// function. Every script documents its KEYS, ARGV and reply in a header
// comment. All KEYS of one call share a hash tag, so the scripts run on Redis
// Cluster. The package only depends on rueidis; it neither logs nor reads
// configuration.
//
//	var args luascripts.PublishArgs // reused batch after batch
//	args.Build(&luascripts.PublishCall{
//		Checkpoint: "feathery:{bot:main}:session:0",
//		Streams:    []luascripts.PublishStream{{Key: "feathery:{bot:main}:events"}},
//		Session:    "abc", Seq: 42, Bot: "main", Shard: 0,
//		Entries:    entries,
//	})
//	res, err := luascripts.Publish(ctx, client, &args)
package luascripts
