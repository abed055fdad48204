package consumers_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/feathery/feathery/consumers"
)

func msg(t, d string) consumers.Message {
	return consumers.Message{ID: "1-0", T: t, D: []byte(d)}
}

func TestDecodeMessageCreate(t *testing.T) {
	d := `{"type":0,"tts":false,"timestamp":"2024-05-01T10:20:30.123000+00:00","pinned":false,
	"mentions":[{"username":"x","id":"1234567890123456789","discriminator":"0","avatar":null}],
	"mention_roles":["555"],"mention_everyone":false,
	"member":{"roles":["555"],"premium_since":null,"pending":false,"nick":null,"mute":false,
		"joined_at":"2021-01-01T00:00:00.000000+00:00","flags":0,"deaf":false,"avatar":null},
	"id":"1235000000000000001","flags":0,"embeds":[{"title":"t"}],"edited_timestamp":null,
	"content":"!ping","channel_id":"1100000000000000002",
	"author":{"username":"alice","public_flags":0,"id":"175928847299117063","global_name":"Alice","discriminator":"0","bot":false,"avatar":"abc"},
	"attachments":[{"id":"9","filename":"a.png","size":10,"url":"https://x/a.png"}],"guild_id":"81384788765712384"}`
	m, err := consumers.DecodeMessageCreate(msg("MESSAGE_CREATE", d))
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "1235000000000000001" || m.ChannelID != "1100000000000000002" || m.GuildID != "81384788765712384" ||
		m.Content != "!ping" || m.Author.ID != "175928847299117063" || m.Author.GlobalName != "Alice" ||
		m.Member == nil || m.Member.User != nil || len(m.Member.Roles) != 1 || m.EditedTimestamp != nil ||
		len(m.Mentions) != 1 || m.Mentions[0].ID != "1234567890123456789" || len(m.Embeds) != 1 ||
		len(m.Attachments) != 1 || m.Attachments[0].Size != 10 || !m.Timestamp.Equal(time.Date(2024, 5, 1, 10, 20, 30, 123e6, time.UTC)) {
		t.Fatalf("decoded: %+v", m)
	}
	// Snowflakes keep every digit and carry their time.
	if got := m.Author.ID.Time(); !got.Equal(time.UnixMilli(1462015105796)) {
		t.Fatalf("snowflake time: %v", got)
	}
	if v, ok := consumers.Snowflake("18446744073709551615").Uint64(); !ok || v != 18446744073709551615 {
		t.Fatalf("snowflake max: %v %v", v, ok)
	}
	if _, ok := consumers.Snowflake("x").Uint64(); ok {
		t.Fatal("non-numeric snowflake parsed")
	}

	_, err = consumers.DecodeMessageCreate(msg("GUILD_CREATE", d))
	if !errors.Is(err, consumers.ErrWrongEvent) || !strings.Contains(err.Error(), "GUILD_CREATE") {
		t.Fatalf("wrong event: %v", err)
	}
	_, err = consumers.DecodeMessageCreate(msg("MESSAGE_CREATE", `{"id":12`))
	if err == nil || !strings.Contains(err.Error(), "MessageCreate") {
		t.Fatalf("truncated JSON: %v", err)
	}
	_, err = consumers.DecodeMessageCreate(msg("MESSAGE_CREATE", `{"id":"1","author":"nope"}`))
	if err == nil {
		t.Fatal("wrong type accepted")
	}
}

func TestDecodeInteractionCreate(t *testing.T) {
	d := `{"version":1,"type":2,"token":"tok","id":"100","application_id":"200","guild_id":"300","channel_id":"400",
	"member":{"user":{"id":"500","username":"bob"},"roles":[],"deaf":false,"mute":false,"flags":0,"joined_at":"2021-01-01T00:00:00+00:00"},
	"data":{"id":"600","name":"ban","type":1,"options":[{"name":"user","type":6,"value":"700"},{"name":"days","type":4,"value":7},
	{"name":"sub","type":1,"options":[{"name":"x","type":3,"value":"y"}]}]},"locale":"en-US","app_permissions":"8"}`
	i, err := consumers.DecodeInteractionCreate(msg("INTERACTION_CREATE", d))
	if err != nil {
		t.Fatal(err)
	}
	if i.ID != "100" || i.Type != 2 || i.Data == nil || i.Data.Name != "ban" || len(i.Data.Options) != 3 ||
		string(i.Data.Options[0].Value) != `"700"` || string(i.Data.Options[1].Value) != "7" ||
		len(i.Data.Options[2].Options) != 1 || i.Invoker() == nil || i.Invoker().ID != "500" || i.Token != "tok" {
		t.Fatalf("decoded: %+v", i)
	}
	dm, err := consumers.DecodeInteractionCreate(msg("INTERACTION_CREATE", `{"id":"1","type":3,"user":{"id":"9"},"data":{"custom_id":"btn","component_type":2}}`))
	if err != nil || dm.Invoker() == nil || dm.Invoker().ID != "9" || dm.Data.CustomID != "btn" {
		t.Fatalf("DM interaction: %+v %v", dm, err)
	}
}

func TestDecodeGuildMemberEvents(t *testing.T) {
	add, err := consumers.DecodeGuildMemberAdd(msg("GUILD_MEMBER_ADD",
		`{"guild_id":"1","user":{"id":"2","username":"u"},"roles":["3","4"],"joined_at":"2024-01-01T00:00:00+00:00","deaf":false,"mute":false,"flags":0,"pending":true}`))
	if err != nil || add.GuildID != "1" || add.User == nil || add.User.ID != "2" || len(add.Roles) != 2 || !add.Pending || add.JoinedAt == nil {
		t.Fatalf("add: %+v %v", add, err)
	}
	up, err := consumers.DecodeGuildMemberUpdate(msg("GUILD_MEMBER_UPDATE",
		`{"guild_id":"1","user":{"id":"2","username":"u"},"roles":["3"],"nick":"n","avatar":null,"joined_at":null,"communication_disabled_until":"2030-01-01T00:00:00+00:00"}`))
	if err != nil || up.User.ID != "2" || up.Nick != "n" || up.JoinedAt != nil || up.CommunicationDisabledUntil == nil {
		t.Fatalf("update: %+v %v", up, err)
	}
	rm, err := consumers.DecodeGuildMemberRemove(msg("GUILD_MEMBER_REMOVE", `{"guild_id":"1","user":{"id":"2","username":"u"}}`))
	if err != nil || rm.GuildID != "1" || rm.User.ID != "2" {
		t.Fatalf("remove: %+v %v", rm, err)
	}
}

func TestDecodeGuildCreateAndReady(t *testing.T) {
	g, err := consumers.DecodeGuildCreate(msg("GUILD_CREATE", `{"id":"1","name":"G","owner_id":"2","member_count":3,"large":false,
	"channels":[{"id":"10","type":0,"name":"general","position":1},{"id":"11","type":4,"name":"cat"}],
	"threads":[],"roles":[{"id":"1","name":"@everyone","permissions":"104324673","position":0,"color":0,"hoist":false,"managed":false,"mentionable":false}],
	"members":[{"user":{"id":"2","username":"owner"},"roles":[],"deaf":false,"mute":false,"flags":0,"joined_at":"2020-01-01T00:00:00+00:00"}],
	"emojis":[],"features":["COMMUNITY"],"presences":[],"voice_states":[]}`))
	if err != nil || g.ID != "1" || g.Name != "G" || g.MemberCount != 3 || len(g.Channels) != 2 || g.Channels[0].Name != "general" ||
		len(g.Roles) != 1 || g.Roles[0].Permissions != "104324673" || len(g.Members) != 1 || g.Members[0].User.ID != "2" {
		t.Fatalf("guild create: %+v %v", g, err)
	}
	un, err := consumers.DecodeGuildCreate(msg("GUILD_CREATE", `{"id":"41771983423143937","unavailable":true}`))
	if err != nil || !un.Unavailable {
		t.Fatalf("unavailable guild: %+v %v", un, err)
	}
	r, err := consumers.DecodeReady(msg("READY", `{"v":10,"user":{"id":"9","username":"bot","bot":true},"guilds":[{"id":"1","unavailable":true}],
	"session_id":"abc","resume_gateway_url":"wss://x","shard":[0,2],"application":{"id":"9","flags":0}}`))
	if err != nil || r.V != 10 || !r.User.Bot || len(r.Guilds) != 1 || r.SessionID != "abc" || len(r.Shard) != 2 || r.Application.ID != "9" {
		t.Fatalf("ready: %+v %v", r, err)
	}
}

func TestDecodeOtherEvents(t *testing.T) {
	if c, err := consumers.DecodeChannel(msg("CHANNEL_UPDATE", `{"id":"1","type":0,"guild_id":"2","name":"x","parent_id":null}`)); err != nil || c.Name != "x" {
		t.Fatalf("channel: %+v %v", c, err)
	}
	if r, err := consumers.DecodeGuildRole(msg("GUILD_ROLE_CREATE", `{"guild_id":"2","role":{"id":"3","name":"mod","permissions":"8"}}`)); err != nil || r.Role.Name != "mod" {
		t.Fatalf("role: %+v %v", r, err)
	}
	if r, err := consumers.DecodeGuildRoleDelete(msg("GUILD_ROLE_DELETE", `{"guild_id":"2","role_id":"3"}`)); err != nil || r.RoleID != "3" {
		t.Fatalf("role delete: %+v %v", r, err)
	}
	if v, err := consumers.DecodeVoiceStateUpdate(msg("VOICE_STATE_UPDATE", `{"guild_id":"2","channel_id":null,"user_id":"5","session_id":"s"}`)); err != nil || v.ChannelID != "" || v.UserID != "5" {
		t.Fatalf("voice: %+v %v", v, err)
	}
	if p, err := consumers.DecodePresenceUpdate(msg("PRESENCE_UPDATE", `{"user":{"id":"5"},"guild_id":"2","status":"idle","activities":[],"client_status":{"web":"idle"}}`)); err != nil || p.Status != "idle" || p.ClientStatus["web"] != "idle" {
		t.Fatalf("presence: %+v %v", p, err)
	}
	if d, err := consumers.DecodeMessageDelete(msg("MESSAGE_DELETE", `{"id":"1","channel_id":"2"}`)); err != nil || d.ChannelID != "2" {
		t.Fatalf("message delete: %+v %v", d, err)
	}
	if g, err := consumers.DecodeGuildDelete(msg("GUILD_DELETE", `{"id":"1"}`)); err != nil || g.Unavailable {
		t.Fatalf("guild delete: %+v %v", g, err)
	}
	// Generic decoding into any type, and before images.
	type custom struct {
		Content string `json:"content"`
	}
	m := msg("MESSAGE_UPDATE", `{"content":"new"}`)
	m.Before = []byte(`{"content":"old"}`)
	if c, err := consumers.Decode[custom](m); err != nil || c.Content != "new" {
		t.Fatalf("Decode: %+v %v", c, err)
	}
	if b, ok, err := consumers.DecodeBefore[custom](m); err != nil || !ok || b.Content != "old" {
		t.Fatalf("DecodeBefore: %+v %v %v", b, ok, err)
	}
	m.Before = nil
	if _, ok, err := consumers.DecodeBefore[custom](m); ok || err != nil {
		t.Fatalf("DecodeBefore without image: %v %v", ok, err)
	}
}

func BenchmarkDecodeMessageCreate(b *testing.B) {
	m := msg("MESSAGE_CREATE", `{"type":0,"tts":false,"timestamp":"2024-05-01T10:20:30.123000+00:00","pinned":false,"mentions":[],"mention_roles":[],"mention_everyone":false,"member":{"roles":["555"],"pending":false,"mute":false,"joined_at":"2021-01-01T00:00:00.000000+00:00","flags":0,"deaf":false},"id":"1235000000000000001","flags":0,"embeds":[],"content":"!ping","channel_id":"1100000000000000002","author":{"username":"alice","id":"175928847299117063","discriminator":"0","avatar":"abc"},"attachments":[],"guild_id":"81384788765712384"}`)
	b.SetBytes(int64(len(m.D)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := consumers.DecodeMessageCreate(m); err != nil {
			b.Fatal(err)
		}
	}
}
