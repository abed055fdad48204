// Package gateway is feathery's Discord side: shards that hold gateway
// websocket connections and hand every dispatch, in order, to a Sink.
//
// A shard reads frames with gobwas/ws into reused buffers, inflates
// zlib-stream or zstd-stream with one context per connection, peeks op, s, t
// and the guild id without decoding the payload, and passes "d" on as the raw
// bytes Discord sent. It heartbeats with jitter, detects zombie connections,
// handles IDENTIFY, RESUME, RECONNECT, INVALID_SESSION and every close code,
// and keeps its resume point at the last seq the Sink accepted.
//
// Usage:
//
//	m, err := gateway.NewManager(gateway.ManagerConfig{
//		Bots: []gateway.BotConfig{{Name: "main", Token: token, Intents: 513,
//			Compression: gateway.CompressionZstdStream}},
//		Sink: gateway.SinkFunc(func(ctx context.Context, ev *gateway.Event) error {
//			fmt.Println(ev.Shard, ev.Seq, ev.Type) // ev.Data is valid only during the call
//			return nil
//		}),
//	})
//	if err != nil { ... }
//	if err := m.Start(ctx); err != nil { ... }
//	defer m.Close(context.Background())
package gateway
