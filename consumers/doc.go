// Package consumers is what a Go program uses to consume what feathery
// publishes: a consumer-group reader, typed decoding of stream entries and of
// the common Discord events, and a plain tail reader. Package
// consumers/typed decodes entries into disgo's Discord types instead;
// examples in other languages live beside it (node/, python/), and
// README.md beside this file covers all three languages.
//
// feathery writes each dispatch as one stream entry with flat fields v, t,
// d, bot, shard, session, seq, guild, before and at (see DecodeEntry). A
// bot's default stream is "feathery:{bot:<bot>}:events" (keyspace.Keys names
// every key).
//
// # Group reading
//
// A GroupReader reads through a consumer group: new entries with a blocking
// XREADGROUP, acknowledged only after the handler returned nil; entries left
// pending by a dead consumer (or a failed handler) are taken over with
// XAUTOCLAIM after ClaimIdle; an entry delivered MaxDeliveries times without
// success goes to a dead-letter stream ("<stream>:dead"); cancelling the
// context lets the handler in flight finish, then Run returns nil.
//
//	client, _ := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{"127.0.0.1:6379"}})
//	r, err := consumers.NewGroupReader(client, consumers.GroupConfig{
//		Streams: []string{"feathery:{bot:mybot}:events"},
//		Group:   "mybot-workers",
//		Logger:  slog.Default(),
//	})
//	if err != nil {
//		return err
//	}
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
//	defer stop()
//	return r.Run(ctx, func(ctx context.Context, m consumers.Message) error {
//		switch m.T {
//		case "MESSAGE_CREATE":
//			msg, err := consumers.DecodeMessageCreate(m)
//			if err != nil {
//				return err // stays pending; dead-lettered after MaxDeliveries
//			}
//			if strings.HasPrefix(msg.Content, "!ping") {
//				return reply(ctx, msg.ChannelID, "pong")
//			}
//		case "GUILD_MEMBER_ADD":
//			add, err := consumers.DecodeGuildMemberAdd(m)
//			if err != nil {
//				return err
//			}
//			return welcome(ctx, add.GuildID, add.User)
//		}
//		return nil // acknowledged
//	})
//
// Delivery is at least once. (m.Bot, m.Shard, m.Session, m.Seq) identifies
// an event, for a handler that wants to drop the rare repeat.
//
// # Decoding
//
// DecodeEntry turns raw fields into a Message and names the field that is
// missing or malformed. DecodeMessageCreate, DecodeInteractionCreate,
// DecodeGuildMemberAdd/Update/Remove, DecodeGuildCreate, DecodeReady and
// the others check the event name and decode "d" into small structs whose
// ids are Snowflake strings; Decode[T] decodes "d" into any type and
// DecodeBefore[T] the before image of an UPDATE/DELETE event.
//
// # Tailing
//
// Tail reads a stream without a group (XREAD BLOCK), for tools and
// debugging:
//
//	err := consumers.Tail(ctx, client, "feathery:{bot:mybot}:events", "$", func(e consumers.Entry) error {
//		m, err := e.Message()
//		if err != nil {
//			return err
//		}
//		fmt.Println(m.ID, m.T, m.Guild)
//		return nil
//	})
package consumers
