package discordtest

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"time"
)

// discordEpoch is the first millisecond of 2015, the origin of snowflake times.
const discordEpoch = 1420070400000

// coll is an ordered set of entities keyed by id. Removal swaps the last
// element in, so the order stays deterministic for a seed.
type coll[T any] struct {
	keys []string
	vals []T
	pos  map[string]int
}

func newColl[T any]() *coll[T] {
	return &coll[T]{pos: map[string]int{}}
}

func (c *coll[T]) get(id string) (T, bool) {
	i, ok := c.pos[id]
	if !ok {
		var zero T
		return zero, false
	}
	return c.vals[i], true
}

func (c *coll[T]) len() int   { return len(c.keys) }
func (c *coll[T]) at(i int) T { return c.vals[i] }

func (c *coll[T]) set(id string, v T) {
	if i, ok := c.pos[id]; ok {
		c.vals[i] = v
		return
	}
	c.pos[id] = len(c.keys)
	c.keys = append(c.keys, id)
	c.vals = append(c.vals, v)
}

func (c *coll[T]) del(id string) {
	i, ok := c.pos[id]
	if !ok {
		return
	}
	last := len(c.keys) - 1
	if i != last {
		c.keys[i], c.vals[i] = c.keys[last], c.vals[last]
		c.pos[c.keys[i]] = i
	}
	var zero T
	c.vals[last] = zero
	c.keys, c.vals = c.keys[:last], c.vals[:last]
	delete(c.pos, id)
}

type user struct {
	ID            string  `json:"id"`
	Username      string  `json:"username"`
	Discriminator string  `json:"discriminator"`
	GlobalName    *string `json:"global_name"`
	Avatar        *string `json:"avatar"`
	Bot           bool    `json:"bot,omitempty"`
	PublicFlags   int     `json:"public_flags"`

	raw    []byte
	guilds int // how many guilds this user is a member of
}

func (u *user) json() []byte {
	if u.raw == nil {
		u.raw = mustJSON(u)
	}
	return u.raw
}

type member struct {
	User                       *user    `json:"user,omitempty"`
	Nick                       *string  `json:"nick"`
	Avatar                     *string  `json:"avatar"`
	Roles                      []string `json:"roles"`
	JoinedAt                   string   `json:"joined_at"`
	PremiumSince               *string  `json:"premium_since"`
	Deaf                       bool     `json:"deaf"`
	Mute                       bool     `json:"mute"`
	Flags                      int      `json:"flags"`
	Pending                    bool     `json:"pending"`
	CommunicationDisabledUntil *string  `json:"communication_disabled_until"`

	raw, rawNoUser []byte
}

// json is the member object with its nested user (GUILD_CREATE, chunks).
func (m *member) json() []byte {
	if m.raw == nil {
		m.raw = mustJSON(m)
	}
	return m.raw
}

// jsonNoUser is the member object without user (MESSAGE_CREATE, TYPING_START).
func (m *member) jsonNoUser() []byte {
	if m.rawNoUser == nil {
		c := *m
		c.User = nil
		m.rawNoUser = mustJSON(&c)
	}
	return m.rawNoUser
}

func (m *member) touch() { m.raw, m.rawNoUser = nil, nil }

type role struct {
	ID           string  `json:"id"`
	Name         string  `json:"name"`
	Color        int     `json:"color"`
	Hoist        bool    `json:"hoist"`
	Icon         *string `json:"icon"`
	UnicodeEmoji *string `json:"unicode_emoji"`
	Position     int     `json:"position"`
	Permissions  string  `json:"permissions"`
	Managed      bool    `json:"managed"`
	Mentionable  bool    `json:"mentionable"`
	Flags        int     `json:"flags"`
}

type overwrite struct {
	ID    string `json:"id"`
	Type  int    `json:"type"`
	Allow string `json:"allow"`
	Deny  string `json:"deny"`
}

type threadMeta struct {
	Archived            bool   `json:"archived"`
	AutoArchiveDuration int    `json:"auto_archive_duration"`
	ArchiveTimestamp    string `json:"archive_timestamp"`
	Locked              bool   `json:"locked"`
}

type channel struct {
	ID                   string      `json:"id"`
	Type                 int         `json:"type"`
	GuildID              string      `json:"guild_id"`
	Position             int         `json:"position"`
	PermissionOverwrites []overwrite `json:"permission_overwrites"`
	Name                 string      `json:"name"`
	Topic                *string     `json:"topic,omitempty"`
	NSFW                 bool        `json:"nsfw"`
	LastMessageID        *string     `json:"last_message_id"`
	RateLimitPerUser     int         `json:"rate_limit_per_user"`
	ParentID             *string     `json:"parent_id"`
	Bitrate              int         `json:"bitrate,omitempty"`
	UserLimit            int         `json:"user_limit,omitempty"`
	Flags                int         `json:"flags"`
	// Threads only.
	OwnerID        string      `json:"owner_id,omitempty"`
	MessageCount   int         `json:"message_count,omitempty"`
	MemberCount    int         `json:"member_count,omitempty"`
	ThreadMetadata *threadMeta `json:"thread_metadata,omitempty"`
}

type emoji struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Roles         []string `json:"roles"`
	RequireColons bool     `json:"require_colons"`
	Managed       bool     `json:"managed"`
	Animated      bool     `json:"animated"`
	Available     bool     `json:"available"`
}

type sticker struct {
	ID          string  `json:"id"`
	Name        string  `json:"name"`
	Tags        string  `json:"tags"`
	Type        int     `json:"type"`
	FormatType  int     `json:"format_type"`
	Description *string `json:"description"`
	Available   bool    `json:"available"`
	GuildID     string  `json:"guild_id"`
}

type voiceState struct {
	GuildID                 string  `json:"guild_id,omitempty"`
	ChannelID               *string `json:"channel_id"`
	UserID                  string  `json:"user_id"`
	SessionID               string  `json:"session_id"`
	Deaf                    bool    `json:"deaf"`
	Mute                    bool    `json:"mute"`
	SelfDeaf                bool    `json:"self_deaf"`
	SelfMute                bool    `json:"self_mute"`
	SelfVideo               bool    `json:"self_video"`
	Suppress                bool    `json:"suppress"`
	RequestToSpeakTimestamp *string `json:"request_to_speak_timestamp"`
}

type activity struct {
	Name      string `json:"name"`
	Type      int    `json:"type"`
	CreatedAt int64  `json:"created_at"`
}

type clientStatus struct {
	Desktop string `json:"desktop,omitempty"`
	Mobile  string `json:"mobile,omitempty"`
	Web     string `json:"web,omitempty"`
}

type presenceUser struct {
	ID string `json:"id"`
}

type presence struct {
	User         presenceUser `json:"user"`
	GuildID      string       `json:"guild_id,omitempty"`
	Status       string       `json:"status"`
	Activities   []activity   `json:"activities"`
	ClientStatus clientStatus `json:"client_status"`
}

// guildInfo is the guild object without its lists.
type guildInfo struct {
	ID                          string   `json:"id"`
	Name                        string   `json:"name"`
	Icon                        *string  `json:"icon"`
	Splash                      *string  `json:"splash"`
	DiscoverySplash             *string  `json:"discovery_splash"`
	OwnerID                     string   `json:"owner_id"`
	AfkChannelID                *string  `json:"afk_channel_id"`
	AfkTimeout                  int      `json:"afk_timeout"`
	VerificationLevel           int      `json:"verification_level"`
	DefaultMessageNotifications int      `json:"default_message_notifications"`
	ExplicitContentFilter       int      `json:"explicit_content_filter"`
	Features                    []string `json:"features"`
	MFALevel                    int      `json:"mfa_level"`
	ApplicationID               *string  `json:"application_id"`
	SystemChannelID             *string  `json:"system_channel_id"`
	SystemChannelFlags          int      `json:"system_channel_flags"`
	RulesChannelID              *string  `json:"rules_channel_id"`
	MaxMembers                  int      `json:"max_members"`
	VanityURLCode               *string  `json:"vanity_url_code"`
	Description                 *string  `json:"description"`
	Banner                      *string  `json:"banner"`
	PremiumTier                 int      `json:"premium_tier"`
	PremiumSubscriptionCount    int      `json:"premium_subscription_count"`
	PreferredLocale             string   `json:"preferred_locale"`
	PublicUpdatesChannelID      *string  `json:"public_updates_channel_id"`
	NSFWLevel                   int      `json:"nsfw_level"`
	PremiumProgressBarEnabled   bool     `json:"premium_progress_bar_enabled"`
	SafetyAlertsChannelID       *string  `json:"safety_alerts_channel_id"`
}

type guild struct {
	idNum     uint64
	info      guildInfo
	infoRaw   []byte
	joinedAt  string
	channels  *coll[*channel]
	threads   *coll[*channel]
	roles     *coll[*role]
	emojis    *coll[*emoji]
	stickers  *coll[*sticker]
	members   *coll[*member]
	voice     *coll[*voiceState]
	presences *coll[*presence]
	// lastAllMembers is when the last "all members" op 8 was answered.
	lastAllMembers time.Time
	// recent holds the last messages sent in the guild, for MESSAGE_UPDATE,
	// MESSAGE_DELETE and reactions.
	recent     [16]recentMessage
	recentNext int
}

type recentMessage struct {
	id, channelID, authorID string
}

// shardOf is the shard the guild belongs to for a shard count.
func (g *guild) shardOf(shards int) int {
	if shards <= 0 {
		return 0
	}
	return int((g.idNum >> 22) % uint64(shards))
}

func (g *guild) infoJSON() []byte {
	if g.infoRaw == nil {
		g.infoRaw = mustJSON(&g.info)
	}
	return g.infoRaw
}

// pickChannel returns a random channel of type typ, or nil.
func (g *guild) pickChannel(r *rand.Rand, typ int) *channel {
	n := g.channels.len()
	if n == 0 {
		return nil
	}
	start := r.IntN(n)
	for i := 0; i < n; i++ {
		c := g.channels.at((start + i) % n)
		if c.Type == typ {
			return c
		}
	}
	return nil
}

type world struct {
	rng    *rand.Rand
	clock  int64 // virtual milliseconds since the Unix epoch for new ids
	inc    int64
	guilds *coll[*guild]
	users  *coll[*user]
	bot    *user
	appID  string
	names  int
}

// newID returns the next snowflake of the virtual clock.
func (w *world) newID() string {
	w.inc++
	if w.inc >= 4096 {
		w.inc = 0
		w.clock++
	}
	return strconv.FormatInt(((w.clock-discordEpoch)<<22)|(1<<17)|w.inc, 10)
}

// snowflakeTime is the creation time encoded in a snowflake.
func snowflakeTime(id string) time.Time {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return time.Unix(0, 0).UTC()
	}
	return time.UnixMilli(int64(n>>22) + discordEpoch).UTC()
}

func isoTime(id string) string {
	return snowflakeTime(id).Format("2006-01-02T15:04:05.000000+00:00")
}

var (
	adjectives = []string{"quiet", "brave", "rusty", "lucky", "swift", "mellow", "sunny", "cosmic", "tiny", "grand"}
	nouns      = []string{"otter", "falcon", "comet", "maple", "harbor", "pixel", "tundra", "lantern", "orbit", "meadow"}
	statuses   = []string{"online", "idle", "dnd", "offline"}
	games      = []string{"Chess", "Minecraft", "Factorio", "Tetris", "Celeste"}
)

func (w *world) name() string {
	w.names++
	return adjectives[w.rng.IntN(len(adjectives))] + "-" + nouns[w.rng.IntN(len(nouns))] + "-" + strconv.Itoa(w.names)
}

func strp(s string) *string { return &s }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("discordtest: encode model: " + err.Error()) // the model's types always encode
	}
	return b
}

func (w *world) newUser(bot bool) *user {
	id := w.newID()
	n := w.name()
	u := &user{ID: id, Username: n, Discriminator: "0", Bot: bot}
	if !bot && w.rng.IntN(2) == 0 {
		u.GlobalName = strp("The " + n)
	}
	w.users.set(id, u)
	return u
}

func (w *world) newMember(g *guild, u *user) *member {
	m := &member{User: u, Roles: []string{}, JoinedAt: isoTime(w.newID())}
	if g.roles.len() > 1 && w.rng.IntN(2) == 0 {
		r := g.roles.at(1 + w.rng.IntN(g.roles.len()-1))
		m.Roles = append(m.Roles, r.ID)
	}
	u.guilds++
	g.members.set(u.ID, m)
	return m
}

func (w *world) newRole(g *guild) *role {
	r := &role{ID: w.newID(), Name: "role-" + w.name(), Color: w.rng.IntN(0xffffff),
		Position: g.roles.len(), Permissions: strconv.Itoa(1 << w.rng.IntN(40)), Mentionable: w.rng.IntN(2) == 0}
	g.roles.set(r.ID, r)
	return r
}

func (w *world) newChannel(g *guild, typ int, parent *string) *channel {
	c := &channel{ID: w.newID(), Type: typ, GuildID: g.info.ID, Position: g.channels.len(),
		PermissionOverwrites: []overwrite{}, Name: w.name(), ParentID: parent}
	switch typ {
	case 0:
		c.Topic = strp("about " + c.Name)
	case 2:
		c.Bitrate, c.UserLimit = 64000, 0
	}
	g.channels.set(c.ID, c)
	return c
}

func (w *world) newEmoji(g *guild) *emoji {
	e := &emoji{ID: w.newID(), Name: "e_" + strconv.Itoa(w.names), Roles: []string{}, RequireColons: true, Available: true}
	w.names++
	g.emojis.set(e.ID, e)
	return e
}

func (w *world) newThread(g *guild, parent *channel, owner string) *channel {
	id := w.newID()
	t := &channel{ID: id, Type: 11, GuildID: g.info.ID, PermissionOverwrites: nil, Name: "thread-" + w.name(),
		ParentID: strp(parent.ID), OwnerID: owner, MemberCount: 1,
		ThreadMetadata: &threadMeta{AutoArchiveDuration: 1440, ArchiveTimestamp: isoTime(id)}}
	g.threads.set(t.ID, t)
	return t
}

func newWorld(cfg Config) *world {
	w := &world{
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x9e3779b97f4a7c15)),
		guilds: newColl[*guild](),
		users:  newColl[*user](),
	}
	w.clock = 1577836800000 + w.rng.Int64N(365*24*3600*1000) // somewhere in 2020
	w.bot = w.newUser(true)
	if cfg.BotUserID != "" {
		w.users.del(w.bot.ID)
		w.bot.ID = cfg.BotUserID
		w.users.set(w.bot.ID, w.bot)
	}
	w.bot.Username = "feathery-fake-bot"
	w.appID = cfg.ApplicationID
	if w.appID == "" {
		w.appID = w.bot.ID
	}
	pool := make([]*user, 0, cfg.Guilds*cfg.MembersPerGuild/2+cfg.MembersPerGuild)
	for i := 0; i < cap(pool); i++ {
		pool = append(pool, w.newUser(w.rng.IntN(10) == 0))
	}
	for i := 0; i < cfg.Guilds; i++ {
		w.clock += 1 + w.rng.Int64N(5000) // spread guild ids over shards
		w.newGuild(cfg, pool)
	}
	return w
}

func (w *world) newGuild(cfg Config, pool []*user) *guild {
	id := w.newID()
	g := &guild{
		channels: newColl[*channel](), threads: newColl[*channel](), roles: newColl[*role](),
		emojis: newColl[*emoji](), stickers: newColl[*sticker](), members: newColl[*member](),
		voice: newColl[*voiceState](), presences: newColl[*presence](),
	}
	g.info = guildInfo{ID: id, Name: "guild-" + w.name(), AfkTimeout: 300, Features: []string{},
		MaxMembers: 500000, PreferredLocale: "en-US"}
	g.joinedAt = isoTime(id)
	g.idNum, _ = strconv.ParseUint(id, 10, 64)
	// @everyone has the guild's id.
	g.roles.set(id, &role{ID: id, Name: "@everyone", Permissions: "104324673"})
	for i := 0; i < 3; i++ {
		w.newRole(g)
	}
	cat := w.newChannel(g, 4, nil)
	general := w.newChannel(g, 0, strp(cat.ID))
	for i := 0; i < 2; i++ {
		w.newChannel(g, 0, strp(cat.ID))
	}
	w.newChannel(g, 2, strp(cat.ID))
	w.newChannel(g, 2, strp(cat.ID))
	g.info.SystemChannelID = strp(general.ID)
	for i := 0; i < 2; i++ {
		w.newEmoji(g)
	}
	st := &sticker{ID: w.newID(), Name: "sticker-" + w.name(), Tags: "smile", Type: 2, FormatType: 1, Available: true, GuildID: id}
	g.stickers.set(st.ID, st)

	w.newMember(g, w.bot)
	for g.members.len() < cfg.MembersPerGuild && len(pool) > 0 {
		u := pool[w.rng.IntN(len(pool))]
		if _, ok := g.members.get(u.ID); ok {
			if g.members.len() >= len(pool) { // pool too small: make a new user
				u = w.newUser(false)
			} else {
				continue
			}
		}
		w.newMember(g, u)
	}
	g.info.OwnerID = g.members.at(g.members.len() - 1).User.ID
	for i := 0; i < g.members.len(); i++ {
		m := g.members.at(i)
		if m.User.ID != w.bot.ID && w.rng.IntN(2) == 0 {
			g.presences.set(m.User.ID, w.newPresence(m.User.ID))
		}
	}
	if g.members.len() > 1 {
		m := g.members.at(1)
		vc := g.pickChannel(w.rng, 2)
		g.voice.set(m.User.ID, &voiceState{ChannelID: strp(vc.ID), UserID: m.User.ID, SessionID: w.sessionID()})
	}
	w.newThread(g, general, g.info.OwnerID)
	w.guilds.set(id, g)
	return g
}

func (w *world) newPresence(userID string) *presence {
	p := &presence{User: presenceUser{ID: userID}, Status: statuses[w.rng.IntN(3)], Activities: []activity{}}
	if w.rng.IntN(3) == 0 {
		p.Activities = append(p.Activities, activity{Name: games[w.rng.IntN(len(games))], CreatedAt: w.clock})
	}
	p.ClientStatus.Desktop = p.Status
	return p
}

func (w *world) sessionID() string {
	const hex = "0123456789abcdef"
	b := make([]byte, 32)
	for i := range b {
		b[i] = hex[w.rng.IntN(16)]
	}
	return string(b)
}

// shardOf is the shard a guild belongs to for a shard count.
func shardOf(guildID string, shards int) int {
	n, err := strconv.ParseUint(guildID, 10, 64)
	if err != nil || shards <= 0 {
		return 0
	}
	return int((n >> 22) % uint64(shards))
}

// guildCreate encodes a full GUILD_CREATE d for g.
func (w *world) guildCreate(g *guild) []byte {
	info := g.infoJSON()
	b := make([]byte, 0, 1024+g.members.len()*300)
	b = append(b, info[:len(info)-1]...)
	b = append(b, `,"joined_at":"`...)
	b = append(b, g.joinedAt...)
	b = append(b, `","large":`...)
	b = strconv.AppendBool(b, g.members.len() > 250)
	b = append(b, `,"unavailable":false,"member_count":`...)
	b = strconv.AppendInt(b, int64(g.members.len()), 10)
	b = append(b, `,"roles":`...)
	b = appendColl(b, g.roles, func(b []byte, r *role) []byte { return append(b, mustJSON(r)...) })
	b = append(b, `,"emojis":`...)
	b = appendColl(b, g.emojis, func(b []byte, e *emoji) []byte { return append(b, mustJSON(e)...) })
	b = append(b, `,"stickers":`...)
	b = appendColl(b, g.stickers, func(b []byte, s *sticker) []byte { return append(b, mustJSON(s)...) })
	b = append(b, `,"channels":`...)
	b = appendColl(b, g.channels, func(b []byte, c *channel) []byte { return append(b, mustJSON(c)...) })
	b = append(b, `,"threads":`...)
	b = appendColl(b, g.threads, func(b []byte, c *channel) []byte { return append(b, mustJSON(c)...) })
	b = append(b, `,"members":`...)
	b = appendColl(b, g.members, func(b []byte, m *member) []byte { return append(b, m.json()...) })
	b = append(b, `,"voice_states":`...)
	b = appendColl(b, g.voice, func(b []byte, v *voiceState) []byte { return append(b, mustJSON(v)...) })
	b = append(b, `,"presences":`...)
	b = appendColl(b, g.presences, func(b []byte, p *presence) []byte { return append(b, mustJSON(p)...) })
	b = append(b, `,"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[]}`...)
	return b
}

func appendColl[T any](b []byte, c *coll[T], f func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i := 0; i < c.len(); i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = f(b, c.at(i))
	}
	return append(b, ']')
}

// World is the fake's model, as raw JSON, keyed by id. See the package
// documentation for the shape of each object.
type World struct {
	// Guilds maps a guild id to its state.
	Guilds map[string]GuildState `json:"guilds"`
	// Users maps a user id to the user object, for every user that is a
	// member of at least one guild.
	Users map[string]json.RawMessage `json:"users"`
	// BotUserID is the bot's user id.
	BotUserID string `json:"bot_user_id"`
}

// GuildState is one guild of the World.
type GuildState struct {
	// Guild is the guild object without the lists GUILD_CREATE carries
	// (roles, emojis, stickers, channels, threads, members, voice_states,
	// presences) and without joined_at/large/member_count.
	Guild json.RawMessage `json:"guild"`
	// Channels and Threads are channel objects with guild_id, by id.
	Channels map[string]json.RawMessage `json:"channels"`
	Threads  map[string]json.RawMessage `json:"threads"`
	// Roles, Emojis and Stickers by id.
	Roles    map[string]json.RawMessage `json:"roles"`
	Emojis   map[string]json.RawMessage `json:"emojis"`
	Stickers map[string]json.RawMessage `json:"stickers"`
	// Members by user id: the member object with its nested user.
	Members map[string]json.RawMessage `json:"members"`
	// VoiceStates by user id, as in GUILD_CREATE (no guild_id, no member).
	VoiceStates map[string]json.RawMessage `json:"voice_states"`
	// Presences by user id, as in GUILD_CREATE (no guild_id).
	Presences map[string]json.RawMessage `json:"presences"`
}

func collMap[T any](c *coll[T], f func(T) []byte) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage, c.len())
	for i := 0; i < c.len(); i++ {
		m[c.keys[i]] = append(json.RawMessage(nil), f(c.at(i))...)
	}
	return m
}

func (w *world) snapshot() World {
	out := World{Guilds: map[string]GuildState{}, Users: map[string]json.RawMessage{}, BotUserID: w.bot.ID}
	for i := 0; i < w.guilds.len(); i++ {
		g := w.guilds.at(i)
		out.Guilds[g.info.ID] = GuildState{
			Guild:       append(json.RawMessage(nil), g.infoJSON()...),
			Channels:    collMap(g.channels, func(c *channel) []byte { return mustJSON(c) }),
			Threads:     collMap(g.threads, func(c *channel) []byte { return mustJSON(c) }),
			Roles:       collMap(g.roles, func(r *role) []byte { return mustJSON(r) }),
			Emojis:      collMap(g.emojis, func(e *emoji) []byte { return mustJSON(e) }),
			Stickers:    collMap(g.stickers, func(s *sticker) []byte { return mustJSON(s) }),
			Members:     collMap(g.members, func(m *member) []byte { return m.json() }),
			VoiceStates: collMap(g.voice, func(v *voiceState) []byte { return mustJSON(v) }),
			Presences:   collMap(g.presences, func(p *presence) []byte { return mustJSON(p) }),
		}
		for j := 0; j < g.members.len(); j++ {
			u := g.members.at(j).User
			out.Users[u.ID] = append(json.RawMessage(nil), u.json()...)
		}
	}
	return out
}
