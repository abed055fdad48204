package consumers_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker"
	"github.com/feathery/feathery/broker/redistest"
	"github.com/feathery/feathery/consumers"
)

func sameJSON(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: decode %q: %v", what, got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatalf("%s: decode want: %v", what, err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("%s:\n got %s\nwant %s", what, got, want)
	}
}

func TestCacheReader(t *testing.T) {
	for name, client := range map[string]rueidis.Client{
		"redis":   redistest.Start(t, redistest.Options{}).Client(t),
		"cluster": redistest.StartCluster(t, 3).Client(t),
	} {
		t.Run(name, func(t *testing.T) { testCacheReader(t, client) })
	}
}

func testCacheReader(t *testing.T, client rueidis.Client) {
	ctx := context.Background()
	c, err := broker.NewCache(client, broker.CacheConfig{Namespace: "rd"})
	if err != nil {
		t.Fatal(err)
	}
	const g = "900000000000000001"
	// Whole Discord objects: the cache stores them without their members
	// at the defaults and hands them back with every one.
	const userRest = `"avatar":null,"public_flags":0,"banner":null,"accent_color":null,` +
		`"avatar_decoration_data":null,"collectibles":null,"primary_guild":null}`
	const memberRest = `"avatar":null,"banner":null,"premium_since":null,"pending":false,` +
		`"communication_disabled_until":null,"avatar_decoration_data":null}`
	user1 := `{"id":"800000000000000001","username":"ann","discriminator":"0","global_name":"Ånn",` + userRest
	user2 := `{"id":"800000000000000002","username":"bob","discriminator":"1234","global_name":null,` + userRest
	member1 := `{"user":` + user1 + `,"roles":[],"nick":null,"joined_at":"2024-01-01T00:00:00+00:00","deaf":false,"mute":false,"flags":0,` + memberRest
	member2 := `{"user":` + user2 + `,"roles":["600000000000000001"],"nick":"b","joined_at":"2024-01-01T00:00:00+00:00","deaf":true,"mute":false,"flags":0,` + memberRest
	role := `{"id":"600000000000000001","name":"r","permissions":"8","position":1}`
	channel := `{"id":"700000000000000001","type":0,"name":"general"}`
	thread := `{"id":"500000000000000001","type":11,"parent_id":"700000000000000001","name":"t"}`
	voice := `{"user_id":"800000000000000001","channel_id":"700000000000000001","session_id":"x","deaf":false,"mute":false,"self_deaf":false,"self_mute":false,"self_video":false,"suppress":false}`
	presence := `{"user":{"id":"800000000000000002"},"status":"online","activities":[],"client_status":{"web":"online"}}`
	emojis := `[{"id":"1","name":"e","roles":[]}]`
	gc := `{"id":"` + g + `","name":"G","features":[],"large":false,"roles":[` + role + `],"emojis":` + emojis + `,"stickers":[],` +
		`"channels":[` + channel + `],"threads":[` + thread + `],"members":[` + member1 + `,` + member2 + `],` +
		`"voice_states":[` + voice + `],"presences":[` + presence + `]}`
	if err := c.Apply(ctx, []*broker.Event{{Bot: "a", Type: "GUILD_CREATE", Data: []byte(gc)}}, make([][]byte, 1)); err != nil {
		t.Fatal(err)
	}
	r := consumers.NewCacheReader(client, "rd")

	guild, err := r.Guild(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Guild", guild, `{"id":"`+g+`","name":"G","features":[],"large":false}`)
	withGuild := func(obj string) string {
		return `{"guild_id":"` + g + `",` + obj[1:]
	}
	ch, err := r.Channel(ctx, g, "700000000000000001")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Channel", ch, withGuild(channel))
	chs, err := r.Channels(ctx, g)
	if err != nil || len(chs) != 1 {
		t.Fatalf("Channels = %v, %v", chs, err)
	}
	if th, err := r.Thread(ctx, g, "500000000000000001"); err != nil {
		t.Error(err)
	} else {
		sameJSON(t, "Thread", th, withGuild(thread))
	}
	if ro, err := r.Role(ctx, g, "600000000000000001"); err != nil {
		t.Error(err)
	} else {
		sameJSON(t, "Role", ro, role)
	}
	if rs, err := r.Roles(ctx, g); err != nil || len(rs) != 1 {
		t.Errorf("Roles = %v, %v", rs, err)
	}
	if e, err := r.Emojis(ctx, g); err != nil || string(e) != emojis {
		t.Errorf("Emojis = %s, %v", e, err)
	}
	if s, err := r.Stickers(ctx, g); err != nil || string(s) != "[]" {
		t.Errorf("Stickers = %s, %v", s, err)
	}
	m, err := r.Member(ctx, g, "800000000000000001")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Member", m, member1)
	ms, err := r.Members(ctx, g)
	if err != nil || len(ms) != 2 {
		t.Fatalf("Members = %v, %v", ms, err)
	}
	sameJSON(t, "Members[2]", ms["800000000000000002"], member2)
	u, err := r.User(ctx, "800000000000000002")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "User", u, user2)
	vs, err := r.VoiceStates(ctx, g)
	if err != nil || len(vs) != 1 {
		t.Fatalf("VoiceStates = %v, %v", vs, err)
	}
	sameJSON(t, "VoiceState", vs["800000000000000001"], withGuild(voice))
	p, err := r.Presence(ctx, g, "800000000000000002")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "Presence", p, presence)
	if ps, err := r.Presences(ctx, g); err != nil || len(ps) != 1 {
		t.Errorf("Presences = %v, %v", ps, err)
	}
	if mg, err := r.MutualGuilds(ctx, "800000000000000001"); err != nil || !slices.Equal(mg, []string{g}) {
		t.Errorf("MutualGuilds = %v, %v", mg, err)
	}
	if bots, err := r.GuildBots(ctx, g); err != nil || !slices.Equal(bots, []string{"a"}) {
		t.Errorf("GuildBots = %v, %v", bots, err)
	}
	if un, err := r.GuildUnavailable(ctx, g); err != nil || un {
		t.Errorf("GuildUnavailable = %v, %v", un, err)
	}
	if _, err := r.Member(ctx, g, "1"); !errors.Is(err, consumers.ErrNotCached) {
		t.Errorf("Member of a stranger: err = %v, want ErrNotCached", err)
	}
	if _, err := r.Guild(ctx, "1"); !errors.Is(err, consumers.ErrNotCached) {
		t.Errorf("Guild not cached: err = %v, want ErrNotCached", err)
	}
	// the decoded member is usable with this package's types
	var typed consumers.Member
	if err := json.Unmarshal(m, &typed); err != nil || typed.User == nil || typed.User.ID != "800000000000000001" {
		t.Errorf("typed member = %+v, %v", typed, err)
	}
	if mg, err := r.MutualGuilds(ctx, "1"); err != nil || len(mg) != 0 {
		t.Errorf("MutualGuilds of a stranger = %v, %v", mg, err)
	}

	// What something else wrote is a clear error, not a crash nor a
	// wrong object.
	k := broker.NewCacheKeys("rd")
	for _, tc := range []struct {
		name       string
		key, field string
		value      string
		read       func() error
	}{
		{"user entry with a bad guild list", k.CacheUsers("800000000000000001"), "800000000000000001", `12x{"username":"a"}`, func() error {
			_, err := r.User(ctx, "800000000000000001")
			return err
		}},
		{"user object not JSON", k.CacheUsers("800000000000000001"), "800000000000000001", g + `{"username":`, func() error {
			_, err := r.Member(ctx, g, "800000000000000001")
			return err
		}},
		{"user object an array", k.CacheUsers("800000000000000002"), "800000000000000002", g + `{]`, func() error {
			_, err := r.Members(ctx, g)
			return err
		}},
		{"mutual guilds unreadable", k.CacheUsers("800000000000000002"), "800000000000000002", `,`, func() error {
			_, err := r.MutualGuilds(ctx, "800000000000000002")
			return err
		}},
		{"member not an object", k.CacheMembers(g), "800000000000000001", `[1]`, func() error {
			_, err := r.Member(ctx, g, "800000000000000001")
			return err
		}},
	} {
		if err := client.Do(ctx, client.B().Hset().Key(tc.key).FieldValue().FieldValue(tc.field, tc.value).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		if err := tc.read(); !errors.Is(err, consumers.ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tc.name, err)
		}
	}
}
