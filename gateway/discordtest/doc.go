// Package discordtest is a fake Discord for tests, the demo and the
// benchmarks: REST GET /api/v{9,10}/gateway[/bot], the websocket gateway and
// a control API, all on one listener (see Start).
//
// It behaves like Discord's gateway: HELLO, heartbeats and ACKs, IDENTIFY
// validation with Discord's close codes, READY then one GUILD_CREATE per
// guild of the shard, RESUME with replay of every dispatch the client missed
// (events for a disconnected session are queued in its ledger and replayed),
// op 7 / op 9 hooks, identify buckets and the send limit enforced,
// zlib-stream and zstd-stream, Request Guild Members. It generates a
// deterministic world from Config.Seed and live traffic at Config.Rate.
//
// Every dispatch is recorded in a ledger per shard and session (Ledger), so a
// test can prove the client received every dispatch once and in order.
package discordtest
