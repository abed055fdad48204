// Package typed decodes feathery's stream entries into the Discord types of
// disgo (github.com/disgoorg/disgo: package gateway for the dispatch events,
// package discord for the objects in them), so a Go consumer works with a
// maintained model of Discord instead of a copy of its own. It lives apart
// from package consumers so that a consumer that does not want disgo does
// not build it.
//
// Decode gives an Event: the typed Envelope (t, bot, shard, session, seq,
// guild, before, at) and the dispatch data as disgo's type for the event.
// DecodeAs[T] asks for one type; a Router calls one typed handler per event
// and is itself a consumers.Handler:
//
//	r := typed.NewRouter()
//	typed.On(r, gateway.EventTypeMessageCreate, func(ctx context.Context, e typed.Envelope, d gateway.EventMessageCreate) error {
//		if d.Author.Bot {
//			return nil
//		}
//		return reply(ctx, d.ChannelID, "pong")
//	})
//	typed.On(r, gateway.EventTypeGuildMemberAdd, func(ctx context.Context, e typed.Envelope, d gateway.EventGuildMemberAdd) error {
//		return welcome(ctx, e.Guild, d.User)
//	})
//	reader, err := consumers.NewGroupReader(client, consumers.GroupConfig{
//		Streams: []string{"feathery:{bot:mybot}:events", "feathery:{bot:mybot}:commands"},
//		Group:   "mybot-workers",
//	})
//	if err != nil {
//		return err
//	}
//	return reader.Run(ctx, r.Handle)
//
// An entry that does not decode is an error of its handler: it stays
// pending and goes to the dead-letter stream after the reader's
// MaxDeliveries, with the error text naming the entry and the event.
package typed
