package typed_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"

	"github.com/feathery/feathery/consumers"
	"github.com/feathery/feathery/consumers/typed"
	fgateway "github.com/feathery/feathery/gateway"
	"github.com/feathery/feathery/gateway/discordtest"
)

// allIntents asks for every event the fake can send, privileged ones too.
const allIntents = 53608447

// fakeEntries connects one shard to a fake Discord whose live traffic mixes
// every event it can make, requests members (GUILD_MEMBERS_CHUNK), and
// returns the fake's ledger once each event was sent.
func fakeEntries(t *testing.T) []discordtest.LedgerEntry {
	t.Helper()
	mix := map[string]float64{}
	for _, e := range discordtest.Events() {
		mix[e] = 1
	}
	fake, err := discordtest.Start(discordtest.Config{
		Token: "typed-test-token", Guilds: 4, Seed: 7, Rate: 300, Mix: mix,
		IdentifyWindow: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.Close() })
	m, err := fgateway.NewManager(fgateway.ManagerConfig{
		Bots: []fgateway.BotConfig{{Name: "typed", Token: "typed-test-token", Intents: allIntents,
			RequestMembers: true}},
		Sink:           fgateway.SinkFunc(func(context.Context, *fgateway.Event) error { return nil }),
		RESTURL:        fake.URL() + "/api/v10",
		IdentifyWindow: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	want := append(discordtest.Events(), "READY", "GUILD_MEMBERS_CHUNK")
	var entries []discordtest.LedgerEntry
	deadline := time.Now().Add(60 * time.Second)
	for {
		entries = entries[:0]
		count := map[string]int{}
		for _, s := range fake.Ledger(0) {
			for _, e := range s.Entries {
				entries = append(entries, e)
				count[e.T]++
			}
		}
		var missing []string
		for _, name := range want {
			if count[name] < 1 {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 {
			return entries
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the fake has not sent %v", missing)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// message builds the Message a consumer reads for a ledger entry.
func message(i int, e discordtest.LedgerEntry) consumers.Message {
	return consumers.Message{
		ID: strconv.Itoa(i) + "-0", Stream: "feathery:{bot:typed}:events", V: 1, T: e.T, D: e.D,
		Bot: "typed", Shard: 0, Session: "s", Seq: e.Seq, Guild: e.Guild, At: e.SentAt,
	}
}

// keyOf reads a dotted JSON path ("user.id") of a raw object as a string.
func keyOf(t *testing.T, raw []byte, path string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("raw JSON: %v", err)
	}
	for _, p := range strings.Split(path, ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = obj[p]
	}
	s, _ := v.(string)
	return s
}

// idOf reads the id a typed event is about, through the typed model; path is
// the JSON path of the same id in the raw payload.
func idOf(d gateway.EventData) (id string, path string) {
	switch d := d.(type) {
	case gateway.EventReady:
		return d.SessionID, "session_id"
	case gateway.EventGuildCreate:
		return d.ID.String(), "id"
	case gateway.EventGuildUpdate:
		return d.ID.String(), "id"
	case gateway.EventGuildDelete:
		return d.ID.String(), "id"
	case gateway.EventGuildMemberAdd:
		return d.User.ID.String(), "user.id"
	case gateway.EventGuildMemberUpdate:
		return d.User.ID.String(), "user.id"
	case gateway.EventGuildMemberRemove:
		return d.User.ID.String(), "user.id"
	case gateway.EventGuildMembersChunk:
		return d.GuildID.String(), "guild_id"
	case gateway.EventGuildRoleCreate:
		return d.Role.ID.String(), "role.id"
	case gateway.EventGuildRoleUpdate:
		return d.Role.ID.String(), "role.id"
	case gateway.EventGuildRoleDelete:
		return d.RoleID.String(), "role_id"
	case gateway.EventGuildEmojisUpdate:
		return d.GuildID.String(), "guild_id"
	case gateway.EventChannelCreate:
		return d.ID().String(), "id"
	case gateway.EventChannelUpdate:
		return d.ID().String(), "id"
	case gateway.EventChannelDelete:
		return d.ID().String(), "id"
	case gateway.EventThreadCreate:
		return d.ID().String(), "id"
	case gateway.EventThreadUpdate:
		return d.ID().String(), "id"
	case gateway.EventThreadDelete:
		return d.ID.String(), "id"
	case gateway.EventMessageCreate:
		return d.ID.String(), "id"
	case gateway.EventMessageUpdate:
		return d.ID.String(), "id"
	case gateway.EventMessageDelete:
		return d.ID.String(), "id"
	case gateway.EventMessageReactionAdd:
		return d.MessageID.String(), "message_id"
	case gateway.EventInteractionCreate:
		return d.ID().String(), "id"
	case gateway.EventPresenceUpdate:
		return d.PresenceUser.ID.String(), "user.id"
	case gateway.EventVoiceStateUpdate:
		return d.UserID.String(), "user_id"
	case gateway.EventTypingStart:
		return d.UserID.String(), "user_id"
	}
	return "", ""
}

// Every dispatch the fake Discord sends decodes into disgo's type for its
// event (never the raw fallback), and the id it is about reads the same
// through the typed model as in the raw JSON.
func TestDecode_EveryFakeEvent(t *testing.T) {
	entries := fakeEntries(t)
	seen := map[string]bool{}
	for i, e := range entries {
		m := message(i, e)
		ev, err := typed.Decode(m)
		if err != nil {
			t.Fatalf("%s (seq %d): %v\n%s", e.T, e.Seq, err, e.D)
		}
		if _, unknown := ev.Data.(gateway.EventUnknown); unknown || ev.Data == nil {
			t.Fatalf("%s decodes to %T, want disgo's type for it", e.T, ev.Data)
		}
		got, path := idOf(ev.Data)
		if path == "" {
			t.Fatalf("%s decodes to %T, which this test does not check", e.T, ev.Data)
		}
		if want := keyOf(t, e.D, path); got != want || want == "" {
			t.Fatalf("%s: typed %s = %q, raw %q", e.T, path, got, want)
		}
		if ev.T != gateway.EventType(e.T) || ev.Seq != e.Seq || ev.ID != m.ID || ev.Stream != m.Stream {
			t.Fatalf("%s: envelope %+v", e.T, ev.Envelope)
		}
		if e.Guild != "" && ev.Guild.String() != e.Guild {
			t.Fatalf("%s: envelope guild %s, want %s", e.T, ev.Guild, e.Guild)
		}
		seen[e.T] = true
	}
	t.Logf("decoded %d entries of %d events", len(entries), len(seen))
}

// A typed handler gets the entry decoded into its type; a handler whose
// type does not match the event, or a payload that does not decode, is an
// error naming the entry and the event.
func TestRouter(t *testing.T) {
	r := typed.NewRouter()
	var got []string
	typed.On(r, gateway.EventTypeMessageCreate, func(_ context.Context, e typed.Envelope, d gateway.EventMessageCreate) error {
		got = append(got, e.ID+" "+d.Content+" "+d.Author.Username+" "+e.Guild.String())
		return nil
	})
	typed.On(r, gateway.EventTypeGuildMemberAdd, func(_ context.Context, e typed.Envelope, d gateway.EventMessageCreate) error {
		return nil // wrong type on purpose
	})
	var defaulted []string
	r.Default = func(_ context.Context, m consumers.Message) error { defaulted = append(defaulted, m.T); return nil }
	if ev := r.Events(); !slices.Equal(ev, []string{"GUILD_MEMBER_ADD", "MESSAGE_CREATE"}) {
		t.Fatalf("Events: %v", ev)
	}
	ctx := t.Context()
	msg := consumers.Message{ID: "1-0", T: "MESSAGE_CREATE", Guild: "81384788765712384",
		D: []byte(`{"id":"5","channel_id":"6","content":"hi","author":{"id":"7","username":"ann"},"timestamp":"2024-01-01T00:00:00Z"}`)}
	if err := r.Handle(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1-0 hi ann 81384788765712384"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	err := r.Handle(ctx, consumers.Message{ID: "2-0", T: "GUILD_MEMBER_ADD", D: []byte(`{"guild_id":"1","user":{"id":"2"}}`)})
	var de *typed.DecodeError
	if !errors.As(err, &de) || de.ID != "2-0" || !strings.Contains(err.Error(), "gateway.EventGuildMemberAdd, not gateway.EventMessageCreate") {
		t.Fatalf("mismatched type: got %v", err)
	}
	err = r.Handle(ctx, consumers.Message{ID: "3-0", T: "MESSAGE_CREATE", D: []byte(`{"id":[]}`)})
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "entry 3-0: decode MESSAGE_CREATE") {
		t.Fatalf("bad payload: got %v", err)
	}
	if err := r.Handle(ctx, consumers.Message{ID: "4-0", T: "TYPING_START", D: []byte(`{}`)}); err != nil || !slices.Equal(defaulted, []string{"TYPING_START"}) {
		t.Fatalf("default: %v %v", err, defaulted)
	}
	if _, err := typed.EnvelopeOf(consumers.Message{ID: "5-0", Guild: "x"}); err == nil || !strings.Contains(err.Error(), `guild "x"`) {
		t.Fatalf("bad guild: %v", err)
	}
}

func TestDecodeBeforeAndResumed(t *testing.T) {
	m := consumers.Message{ID: "1-0", T: "GUILD_MEMBER_UPDATE", D: []byte(`{"guild_id":"1","user":{"id":"2"}}`),
		Before: []byte(`{"user":{"id":"2","username":"old"},"nick":"was"}`)}
	b, ok, err := typed.DecodeBefore[discord.Member](m)
	if err != nil || !ok || b.User.Username != "old" || b.Nick == nil || *b.Nick != "was" {
		t.Fatalf("before: %+v %v %v", b, ok, err)
	}
	m.Before = nil
	if _, ok, err := typed.DecodeBefore[discord.Member](m); ok || err != nil {
		t.Fatalf("no before: %v %v", ok, err)
	}
	ev, err := typed.Decode(consumers.Message{ID: "2-0", T: "RESUMED", D: []byte("null"), Guild: ""})
	if err != nil || ev.Data != nil || ev.Guild != snowflake.ID(0) {
		t.Fatalf("RESUMED: %+v %v", ev, err)
	}
}

// FuzzDecode: any payload gives an event or an error, never a panic.
func FuzzDecode(f *testing.F) {
	f.Add("MESSAGE_CREATE", `{"id":"5","content":"hi","author":{"id":"7"}}`)
	f.Add("INTERACTION_CREATE", `{"id":"1","type":2,"data":{"id":"3","name":"ping","type":1}}`)
	f.Add("GUILD_CREATE", `{"id":"1","channels":[{"id":"2","type":0}],"members":[]}`)
	f.Add("CHANNEL_CREATE", `{"id":"2","type":99}`)
	f.Fuzz(func(t *testing.T, name, d string) {
		ev, err := typed.Decode(consumers.Message{ID: "1-0", T: name, D: []byte(d)})
		if err == nil && ev.T != gateway.EventType(name) {
			t.Fatalf("event %q decoded as %q", name, ev.T)
		}
	})
}

// BenchmarkDecode measures decoding a MESSAGE_CREATE the fake sends into
// disgo's type, beside the hand-written consumers.DecodeMessageCreate.
func BenchmarkDecode(b *testing.B) {
	d := []byte(`{"type":0,"tts":false,"timestamp":"2024-05-01T12:00:00.000000+00:00","pinned":false,"nonce":"1234567890123456789","mentions":[],"mention_roles":[],"mention_everyone":false,"member":{"roles":["81384788765712390"],"premium_since":null,"pending":false,"nick":null,"mute":false,"joined_at":"2023-01-01T00:00:00.000000+00:00","flags":0,"deaf":false,"communication_disabled_until":null,"avatar":null},"id":"1236321839348203520","flags":0,"embeds":[],"edited_timestamp":null,"content":"!ping how are you today","components":[],"channel_id":"81384788765712385","author":{"username":"someone","public_flags":0,"id":"80351110224678912","global_name":"Someone","discriminator":"0","avatar":"a_1234567890abcdef1234567890abcdef"},"attachments":[],"guild_id":"81384788765712384"}`)
	m := consumers.Message{ID: "1-0", T: "MESSAGE_CREATE", D: d, Guild: "81384788765712384"}
	b.Run("lib=disgo", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(d)))
		for b.Loop() {
			if _, _, err := typed.DecodeAs[gateway.EventMessageCreate](m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("lib=consumers", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(d)))
		for b.Loop() {
			if _, err := consumers.DecodeMessageCreate(m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
