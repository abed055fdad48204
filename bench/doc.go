// Package bench measures feathery end to end on one machine: the fake
// Discord (gateway/discordtest) sends a generated world and live traffic,
// a feathery binary (a child process) publishes it to a real redis-server
// (a child process too, or an external Redis), and a consumer-group reader
// checks every stream entry against the fake's ledger.
//
// Run drives a whole benchmark and returns a Report; `feathery bench` is its
// command line. The pieces it is made of are exported for end-to-end tests:
//
//	rs, err := bench.StartRedis(bench.RedisOptions{})          // redis-server on a free port
//	defer rs.Close()
//	fake, err := bench.StartFake(discordtest.Config{Shards: 2}) // in-process fake Discord
//	defer fake.Close()
//	cfg := bench.Config{RedisURL: rs.URL(), RESTURL: fake.RESTURL(), AdminAddr: addr,
//		Bots: []bench.Bot{{Name: "b", Token: "fake-token", Shards: 2, Cache: true}}}
//	err = bench.WriteConfig(dir+"/feathery.yaml", cfg)
//	f, err := bench.StartFeathery(bench.FeatheryOptions{Binary: bin, Config: dir + "/feathery.yaml", AdminAddr: addr})
//	defer f.Kill()
//	_, err = f.WaitReady(ctx, 2)
//	v := bench.NewVerifier(fake.ExactData())
//	// read the streams with bench.ReadGroup(ctx, client, bench.ReadOptions{...}, v)
//	// (or bench.RecordStream afterwards), then
//	verdict, err := v.Check(fake, []int{0, 1})
//
// Figures and the commands that produced them are in bench/RESULTS.md.
package bench
