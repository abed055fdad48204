package discordtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// registerModelEvents adds the generators of events that change the model.
func registerModelEvents() {
	for name, g := range map[string]generator{
		"GUILD_MEMBER_ADD":    {intentGuildMembers, genMemberAdd},
		"GUILD_MEMBER_UPDATE": {intentGuildMembers, genMemberUpdate},
		"GUILD_MEMBER_REMOVE": {intentGuildMembers, genMemberRemove},
		"CHANNEL_CREATE":      {intentGuilds, genChannelCreate},
		"CHANNEL_UPDATE":      {intentGuilds, genChannelUpdate},
		"CHANNEL_DELETE":      {intentGuilds, genChannelDelete},
		"GUILD_ROLE_CREATE":   {intentGuilds, genRoleCreate},
		"GUILD_ROLE_UPDATE":   {intentGuilds, genRoleUpdate},
		"GUILD_ROLE_DELETE":   {intentGuilds, genRoleDelete},
		"VOICE_STATE_UPDATE":  {intentGuildVoiceStates, genVoiceState},
		"GUILD_UPDATE":        {intentGuilds, genGuildUpdate},
		"GUILD_EMOJIS_UPDATE": {intentGuildExpressions, genEmojisUpdate},
		"THREAD_CREATE":       {intentGuilds, genThreadCreate},
		"THREAD_UPDATE":       {intentGuilds, genThreadUpdate},
		"THREAD_DELETE":       {intentGuilds, genThreadDelete},
		"GUILD_CREATE":        {intentGuilds, genGuildCreate},
		"GUILD_DELETE":        {intentGuilds, genGuildDelete},
	} {
		generators[name] = g
	}
}

// withGuildID appends "guild_id" to a JSON object.
func withGuildID(obj []byte, guildID string) []byte {
	b := make([]byte, 0, len(obj)+32)
	b = append(b, obj[:len(obj)-1]...)
	if len(obj) > 2 {
		b = append(b, ',')
	}
	b = appendKV(b, "guild_id", guildID)
	return append(b, '}')
}

func genMemberAdd(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.members.len() >= 4*s.cfg.MembersPerGuild {
		return genEvent{}, false
	}
	u := w.newUser(w.rng.IntN(10) == 0)
	m := w.newMember(g, u)
	return genEvent{t: "GUILD_MEMBER_ADD", d: withGuildID(m.json(), g.info.ID)}, true
}

func genMemberUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	m := w.pickMember(g)
	if m == nil {
		return genEvent{}, false
	}
	before := m.json()
	if w.rng.IntN(3) == 0 {
		m.Nick = nil
	} else {
		m.Nick = strp("nick-" + w.name())
	}
	if g.roles.len() > 1 && w.rng.IntN(2) == 0 {
		r := g.roles.at(1 + w.rng.IntN(g.roles.len()-1)).ID
		roles := make([]string, 0, len(m.Roles)+1)
		had := false
		for _, id := range m.Roles {
			if id == r {
				had = true
				continue
			}
			roles = append(roles, id)
		}
		if !had {
			roles = append(roles, r)
		}
		m.Roles = roles
	}
	m.touch()
	return genEvent{t: "GUILD_MEMBER_UPDATE", d: withGuildID(m.json(), g.info.ID), before: before}, true
}

func (w *world) removeMember(g *guild, userID string) {
	m, ok := g.members.get(userID)
	if !ok {
		return
	}
	g.members.del(userID)
	g.presences.del(userID)
	g.voice.del(userID)
	m.User.guilds--
	if m.User.guilds <= 0 && m.User != w.bot {
		w.users.del(userID)
	}
}

func genMemberRemove(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.members.len() <= 2 {
		return genEvent{}, false
	}
	m := w.pickMember(g)
	if m == nil || m.User.ID == g.info.OwnerID {
		return genEvent{}, false
	}
	if _, inVoice := g.voice.get(m.User.ID); inVoice {
		return genEvent{}, false
	}
	before := m.json()
	w.removeMember(g, m.User.ID)
	b := []byte(`{"user":`)
	b = append(b, m.User.json()...)
	b = append(b, ',')
	b = appendKV(b, "guild_id", g.info.ID)
	return genEvent{t: "GUILD_MEMBER_REMOVE", d: append(b, '}'), before: before}, true
}

func genChannelCreate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.channels.len() >= 40 {
		return genEvent{}, false
	}
	var parent *string
	if cat := g.pickChannel(w.rng, 4); cat != nil {
		parent = strp(cat.ID)
	}
	typ := 0
	if w.rng.IntN(3) == 0 {
		typ = 2
	}
	c := w.newChannel(g, typ, parent)
	return genEvent{t: "CHANNEL_CREATE", d: mustJSON(c)}, true
}

func genChannelUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.channels.len() == 0 {
		return genEvent{}, false
	}
	c := g.channels.at(w.rng.IntN(g.channels.len()))
	before := mustJSON(c)
	c.Name = w.name()
	if c.Type == 0 {
		c.Topic = strp(w.sentence(4))
		c.RateLimitPerUser = w.rng.IntN(3) * 5
	}
	return genEvent{t: "CHANNEL_UPDATE", d: mustJSON(c), before: before}, true
}

func genChannelDelete(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	n := g.channels.len()
	if n == 0 {
		return genEvent{}, false
	}
	c := g.channels.at(w.rng.IntN(n))
	count := 0
	for i := 0; i < n; i++ {
		if g.channels.at(i).Type == c.Type {
			count++
		}
	}
	if c.Type == 4 || count <= 1 || (g.info.SystemChannelID != nil && *g.info.SystemChannelID == c.ID) {
		return genEvent{}, false
	}
	for i := 0; i < g.threads.len(); i++ {
		if p := g.threads.at(i).ParentID; p != nil && *p == c.ID {
			return genEvent{}, false
		}
	}
	for i := 0; i < g.voice.len(); i++ {
		if v := g.voice.at(i).ChannelID; v != nil && *v == c.ID {
			return genEvent{}, false
		}
	}
	d := mustJSON(c)
	g.channels.del(c.ID)
	return genEvent{t: "CHANNEL_DELETE", d: d, before: d}, true
}

func roleEvent(guildID string, r *role) []byte {
	b := []byte(`{`)
	b = appendKV(b, "guild_id", guildID)
	b = append(b, `,"role":`...)
	b = append(b, mustJSON(r)...)
	return append(b, '}')
}

func genRoleCreate(s *Server, g *guild) (genEvent, bool) {
	if g.roles.len() >= 25 {
		return genEvent{}, false
	}
	r := s.world.newRole(g)
	return genEvent{t: "GUILD_ROLE_CREATE", d: roleEvent(g.info.ID, r)}, true
}

func genRoleUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.roles.len() < 2 {
		return genEvent{}, false
	}
	r := g.roles.at(1 + w.rng.IntN(g.roles.len()-1))
	before := mustJSON(r)
	r.Name = "role-" + w.name()
	r.Color = w.rng.IntN(0xffffff)
	r.Hoist = !r.Hoist
	return genEvent{t: "GUILD_ROLE_UPDATE", d: roleEvent(g.info.ID, r), before: before}, true
}

func genRoleDelete(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.roles.len() < 3 {
		return genEvent{}, false
	}
	r := g.roles.at(1 + w.rng.IntN(g.roles.len()-1))
	for i := 0; i < g.members.len(); i++ {
		for _, id := range g.members.at(i).Roles {
			if id == r.ID {
				return genEvent{}, false // only unassigned roles go
			}
		}
	}
	before := mustJSON(r)
	g.roles.del(r.ID)
	b := []byte(`{`)
	b = appendKV(b, "guild_id", g.info.ID)
	b = append(b, ',')
	b = appendKV(b, "role_id", r.ID)
	return genEvent{t: "GUILD_ROLE_DELETE", d: append(b, '}'), before: before}, true
}

func genVoiceState(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	m := w.pickMember(g)
	if m == nil {
		return genEvent{}, false
	}
	var before []byte
	old, in := g.voice.get(m.User.ID)
	var v voiceState
	if in {
		before = mustJSON(old)
		v = *old
	} else {
		vc := g.pickChannel(w.rng, 2)
		if vc == nil {
			return genEvent{}, false
		}
		v = voiceState{ChannelID: strp(vc.ID), UserID: m.User.ID, SessionID: w.sessionID()}
	}
	switch {
	case in && w.rng.IntN(2) == 0:
		v.ChannelID = nil // leaves
		g.voice.del(m.User.ID)
	case in:
		v.SelfMute = !v.SelfMute
		if vc := g.pickChannel(w.rng, 2); vc != nil {
			v.ChannelID = strp(vc.ID)
		}
		nv := v
		g.voice.set(m.User.ID, &nv)
	default:
		nv := v
		g.voice.set(m.User.ID, &nv)
	}
	v.GuildID = g.info.ID
	d := mustJSON(&v)
	b := make([]byte, 0, len(d)+400)
	b = append(b, d[:len(d)-1]...)
	b = append(b, `,"member":`...)
	b = append(b, m.json()...)
	return genEvent{t: "VOICE_STATE_UPDATE", d: append(b, '}'), before: before}, true
}

func genGuildUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	before := g.infoJSON()
	g.info.Name = "guild-" + w.name()
	g.info.Description = strp(w.sentence(5))
	g.info.AfkTimeout = []int{60, 300, 900}[w.rng.IntN(3)]
	g.infoRaw = nil
	info := g.infoJSON()
	b := make([]byte, 0, len(info)+512)
	b = append(b, info[:len(info)-1]...)
	b = append(b, `,"roles":`...)
	b = appendColl(b, g.roles, func(b []byte, r *role) []byte { return append(b, mustJSON(r)...) })
	b = append(b, `,"emojis":`...)
	b = appendColl(b, g.emojis, func(b []byte, e *emoji) []byte { return append(b, mustJSON(e)...) })
	b = append(b, `,"stickers":`...)
	b = appendColl(b, g.stickers, func(b []byte, s *sticker) []byte { return append(b, mustJSON(s)...) })
	return genEvent{t: "GUILD_UPDATE", d: append(b, '}'), before: before}, true
}

func emojiList(g *guild) []byte {
	return appendColl(nil, g.emojis, func(b []byte, e *emoji) []byte { return append(b, mustJSON(e)...) })
}

func genEmojisUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	before := emojiList(g)
	if g.emojis.len() > 0 && (g.emojis.len() >= 20 || w.rng.IntN(2) == 0) {
		g.emojis.del(g.emojis.keys[w.rng.IntN(g.emojis.len())])
	} else {
		w.newEmoji(g)
	}
	b := []byte(`{`)
	b = appendKV(b, "guild_id", g.info.ID)
	b = append(b, `,"emojis":`...)
	b = append(b, emojiList(g)...)
	return genEvent{t: "GUILD_EMOJIS_UPDATE", d: append(b, '}'), before: before}, true
}

func genThreadCreate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.threads.len() >= 20 {
		return genEvent{}, false
	}
	parent := g.pickChannel(w.rng, 0)
	m := w.pickMember(g)
	if parent == nil || m == nil {
		return genEvent{}, false
	}
	t := w.newThread(g, parent, m.User.ID)
	d := mustJSON(t)
	b := append(d[:len(d)-1:len(d)-1], `,"newly_created":true}`...)
	return genEvent{t: "THREAD_CREATE", d: b}, true
}

func genThreadUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.threads.len() == 0 {
		return genEvent{}, false
	}
	t := g.threads.at(w.rng.IntN(g.threads.len()))
	before := mustJSON(t)
	t.Name = "thread-" + w.name()
	t.MessageCount += 1 + w.rng.IntN(5)
	return genEvent{t: "THREAD_UPDATE", d: mustJSON(t), before: before}, true
}

func genThreadDelete(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if g.threads.len() == 0 {
		return genEvent{}, false
	}
	t := g.threads.at(w.rng.IntN(g.threads.len()))
	before := mustJSON(t)
	g.threads.del(t.ID)
	b := []byte(`{`)
	b = appendKV(b, "id", t.ID)
	b = append(b, ',')
	b = appendKV(b, "guild_id", g.info.ID)
	b = append(b, ',')
	b = appendKV(b, "parent_id", *t.ParentID)
	b = append(b, `,"type":11}`...)
	return genEvent{t: "THREAD_DELETE", d: b, before: before}, true
}

// genGuildCreate: the bot joins a new guild (not in DefaultMix).
func genGuildCreate(s *Server, _ *guild) (genEvent, bool) {
	w := s.world
	if w.guilds.len() >= 2*max(1, s.cfg.Guilds) {
		return genEvent{}, false
	}
	w.clock += 1 + w.rng.Int64N(5000)
	g := w.newGuild(s.cfg, w.users.vals)
	s.guildsVer++
	return genEvent{t: "GUILD_CREATE", d: w.guildCreate(g), guild: g}, true
}

// genGuildDelete: the bot leaves (or is removed from) g (not in DefaultMix).
func genGuildDelete(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	if w.guilds.len() <= max(1, s.cfg.Guilds/2) {
		return genEvent{}, false
	}
	before := g.infoJSON()
	w.removeGuild(g)
	s.guildsVer++
	b := []byte(`{`)
	b = appendKV(b, "id", g.info.ID)
	return genEvent{t: "GUILD_DELETE", d: append(b, '}'), before: before}, true
}

func (w *world) removeGuild(g *guild) {
	for g.members.len() > 0 {
		w.removeMember(g, g.members.keys[0])
	}
	w.guilds.del(g.info.ID)
}

// guildCreateD is a GUILD_CREATE's d as the model reads it.
type guildCreateD struct {
	guildInfo
	JoinedAt    string        `json:"joined_at"`
	Unavailable bool          `json:"unavailable"`
	Roles       []*role       `json:"roles"`
	Emojis      []*emoji      `json:"emojis"`
	Stickers    []*sticker    `json:"stickers"`
	Channels    []*channel    `json:"channels"`
	Threads     []*channel    `json:"threads"`
	Members     []*member     `json:"members"`
	VoiceStates []*voiceState `json:"voice_states"`
	Presences   []*presence   `json:"presences"`
}

// applyGuildCreate puts an injected GUILD_CREATE into the model, replacing
// the guild if it was known.
func (s *Server) applyGuildCreate(d []byte) (string, error) {
	w := s.world
	var gc guildCreateD
	if err := json.Unmarshal(d, &gc); err != nil {
		return "", fmt.Errorf("decode guild: %w", err)
	}
	if gc.ID == "" {
		return "", errors.New("d needs id")
	}
	if gc.Unavailable {
		return gc.ID, nil // an outage notice: the model keeps what it had
	}
	id, err := strconv.ParseUint(gc.ID, 10, 64)
	if err != nil {
		return "", fmt.Errorf("guild id %q is not a snowflake", gc.ID)
	}
	if old, ok := w.guilds.get(gc.ID); ok {
		w.removeGuild(old)
	}
	g := &guild{idNum: id, info: gc.guildInfo, joinedAt: gc.JoinedAt,
		channels: newColl[*channel](), threads: newColl[*channel](), roles: newColl[*role](),
		emojis: newColl[*emoji](), stickers: newColl[*sticker](), members: newColl[*member](),
		voice: newColl[*voiceState](), presences: newColl[*presence]()}
	if g.info.Features == nil {
		g.info.Features = []string{}
	}
	for _, r := range gc.Roles {
		if r != nil && r.ID != "" {
			g.roles.set(r.ID, r)
		}
	}
	for _, e := range gc.Emojis {
		if e != nil && e.ID != "" {
			g.emojis.set(e.ID, e)
		}
	}
	for _, st := range gc.Stickers {
		if st != nil && st.ID != "" {
			g.stickers.set(st.ID, st)
		}
	}
	for _, c := range gc.Channels {
		if c != nil && c.ID != "" {
			c.GuildID = gc.ID
			g.channels.set(c.ID, c)
		}
	}
	for _, c := range gc.Threads {
		if c != nil && c.ID != "" {
			c.GuildID = gc.ID
			g.threads.set(c.ID, c)
		}
	}
	for _, m := range gc.Members {
		if m == nil || m.User == nil || m.User.ID == "" {
			continue
		}
		if m.Roles == nil {
			m.Roles = []string{}
		}
		m.User = w.upsertUser(m.User)
		m.User.guilds++
		m.touch()
		g.members.set(m.User.ID, m)
	}
	for _, v := range gc.VoiceStates {
		if v != nil && v.UserID != "" {
			v.GuildID = ""
			g.voice.set(v.UserID, v)
		}
	}
	for _, p := range gc.Presences {
		if p != nil && p.User.ID != "" {
			p.GuildID = ""
			if p.Activities == nil {
				p.Activities = []activity{}
			}
			g.presences.set(p.User.ID, p)
		}
	}
	w.guilds.set(gc.ID, g)
	s.guildsVer++
	return gc.ID, nil
}

// errUnknownGuild is returned when an injected model event names a guild
// the model does not have.
var errUnknownGuild = errors.New("guild not in the model")

// applyLocked applies an injected dispatch to the model when it is an event
// the model knows; it returns the event's guild id and the before image.
// Events the model does not know pass unchanged (guild from d.guild_id).
func (s *Server) applyLocked(t string, d []byte) (string, []byte, error) {
	w := s.world
	var head struct {
		GuildID string   `json:"guild_id"`
		ID      string   `json:"id"`
		User    *user    `json:"user"`
		Role    *role    `json:"role"`
		RoleID  string   `json:"role_id"`
		Emojis  []*emoji `json:"emojis"`
		Type    *int     `json:"type"`
		Status  string   `json:"status"`
	}
	if d[0] != '{' {
		return "", nil, nil // not an object: nothing to model
	}
	if err := json.Unmarshal(d, &head); err != nil {
		return "", nil, fmt.Errorf("decode d: %w", err)
	}
	guildID := head.GuildID
	switch t {
	case "GUILD_UPDATE", "GUILD_DELETE", "GUILD_CREATE":
		guildID = head.ID
	}
	if t == "GUILD_CREATE" {
		id, err := s.applyGuildCreate(d)
		return id, nil, err
	}
	if _, modelled := modelEvents[t]; !modelled {
		return guildID, nil, nil
	}
	g, ok := w.guilds.get(guildID)
	if !ok {
		return guildID, nil, fmt.Errorf("%w: guild_id %q", errUnknownGuild, guildID)
	}
	need := func(cond bool, what string) error {
		if !cond {
			return fmt.Errorf("d needs %s", what)
		}
		return nil
	}
	switch t {
	case "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE":
		var m member
		if err := json.Unmarshal(d, &m); err != nil {
			return guildID, nil, fmt.Errorf("decode member: %w", err)
		}
		if err := need(m.User != nil && m.User.ID != "", "user.id"); err != nil {
			return guildID, nil, err
		}
		var before []byte
		old, had := g.members.get(m.User.ID)
		if had {
			if t == "GUILD_MEMBER_UPDATE" {
				before = old.json()
			}
			if m.JoinedAt == "" {
				m.JoinedAt = old.JoinedAt
			}
		}
		if m.Roles == nil {
			m.Roles = []string{}
		}
		m.User = w.upsertUser(m.User)
		if !had {
			m.User.guilds++
		}
		m.touch()
		g.members.set(m.User.ID, &m)
		return guildID, before, nil
	case "GUILD_MEMBER_REMOVE":
		if err := need(head.User != nil && head.User.ID != "", "user.id"); err != nil {
			return guildID, nil, err
		}
		var before []byte
		if old, ok := g.members.get(head.User.ID); ok {
			before = old.json()
		}
		w.removeMember(g, head.User.ID)
		return guildID, before, nil
	case "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE":
		if err := need(head.ID != "", "id"); err != nil {
			return guildID, nil, err
		}
		var c channel
		if err := json.Unmarshal(d, &c); err != nil {
			return guildID, nil, fmt.Errorf("decode channel: %w", err)
		}
		into := g.channels
		if strings.HasPrefix(t, "THREAD_") || (c.Type >= 10 && c.Type <= 12) {
			into = g.threads
		}
		var before []byte
		old, had := into.get(head.ID)
		if had {
			before = mustJSON(old)
		}
		if strings.HasSuffix(t, "_DELETE") {
			into.del(head.ID)
			return guildID, before, nil
		}
		if !strings.HasSuffix(t, "_UPDATE") {
			before = nil
		}
		into.set(c.ID, &c)
		return guildID, before, nil
	case "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE":
		if err := need(head.Role != nil && head.Role.ID != "", "role.id"); err != nil {
			return guildID, nil, err
		}
		var before []byte
		if old, ok := g.roles.get(head.Role.ID); ok && t == "GUILD_ROLE_UPDATE" {
			before = mustJSON(old)
		}
		g.roles.set(head.Role.ID, head.Role)
		return guildID, before, nil
	case "GUILD_ROLE_DELETE":
		if err := need(head.RoleID != "", "role_id"); err != nil {
			return guildID, nil, err
		}
		var before []byte
		if old, ok := g.roles.get(head.RoleID); ok {
			before = mustJSON(old)
		}
		g.roles.del(head.RoleID)
		return guildID, before, nil
	case "PRESENCE_UPDATE":
		var p presence
		if err := json.Unmarshal(d, &p); err != nil {
			return guildID, nil, fmt.Errorf("decode presence: %w", err)
		}
		if err := need(p.User.ID != "", "user.id"); err != nil {
			return guildID, nil, err
		}
		var before []byte
		if old, ok := g.presences.get(p.User.ID); ok {
			before = mustJSON(old)
		}
		p.GuildID = ""
		if p.Activities == nil {
			p.Activities = []activity{}
		}
		if p.Status == "offline" {
			g.presences.del(p.User.ID)
		} else {
			g.presences.set(p.User.ID, &p)
		}
		return guildID, before, nil
	case "VOICE_STATE_UPDATE":
		var v voiceState
		if err := json.Unmarshal(d, &v); err != nil {
			return guildID, nil, fmt.Errorf("decode voice state: %w", err)
		}
		if err := need(v.UserID != "", "user_id"); err != nil {
			return guildID, nil, err
		}
		var before []byte
		if old, ok := g.voice.get(v.UserID); ok {
			before = mustJSON(old)
		}
		v.GuildID = ""
		if v.ChannelID == nil {
			g.voice.del(v.UserID)
		} else {
			g.voice.set(v.UserID, &v)
		}
		return guildID, before, nil
	case "GUILD_UPDATE":
		var info guildInfo
		if err := json.Unmarshal(d, &info); err != nil {
			return guildID, nil, fmt.Errorf("decode guild: %w", err)
		}
		before := g.infoJSON()
		if info.Features == nil {
			info.Features = []string{}
		}
		g.info, g.infoRaw = info, nil
		return guildID, before, nil
	case "GUILD_DELETE":
		var del struct {
			Unavailable bool `json:"unavailable"`
		}
		_ = json.Unmarshal(d, &del)
		before := g.infoJSON()
		if del.Unavailable {
			return guildID, before, nil // an outage: the model keeps the guild
		}
		w.removeGuild(g)
		s.guildsVer++
		return guildID, before, nil
	case "GUILD_EMOJIS_UPDATE":
		if head.Emojis == nil {
			return guildID, nil, errors.New("d needs emojis")
		}
		before := emojiList(g)
		g.emojis = newColl[*emoji]()
		for _, e := range head.Emojis {
			if e != nil && e.ID != "" {
				g.emojis.set(e.ID, e)
			}
		}
		return guildID, before, nil
	}
	return guildID, nil, nil
}

var modelEvents = map[string]struct{}{
	"GUILD_MEMBER_ADD": {}, "GUILD_MEMBER_UPDATE": {}, "GUILD_MEMBER_REMOVE": {},
	"CHANNEL_CREATE": {}, "CHANNEL_UPDATE": {}, "CHANNEL_DELETE": {},
	"THREAD_CREATE": {}, "THREAD_UPDATE": {}, "THREAD_DELETE": {},
	"GUILD_ROLE_CREATE": {}, "GUILD_ROLE_UPDATE": {}, "GUILD_ROLE_DELETE": {},
	"PRESENCE_UPDATE": {}, "VOICE_STATE_UPDATE": {}, "GUILD_UPDATE": {}, "GUILD_DELETE": {},
	"GUILD_EMOJIS_UPDATE": {},
}

// upsertUser stores u in the users map; an existing user is updated in
// place so every member that points at it sees the change.
func (w *world) upsertUser(u *user) *user {
	old, ok := w.users.get(u.ID)
	if !ok {
		u.raw = nil
		w.users.set(u.ID, u)
		return u
	}
	guilds := old.guilds
	*old = *u
	old.guilds, old.raw = guilds, nil
	for i := 0; i < w.guilds.len(); i++ {
		if m, ok := w.guilds.at(i).members.get(u.ID); ok {
			m.touch()
		}
	}
	return old
}

type memberRequest struct {
	GuildID   string          `json:"guild_id"`
	Query     *string         `json:"query"`
	Limit     *int            `json:"limit"`
	Presences bool            `json:"presences"`
	UserIDs   json.RawMessage `json:"user_ids"`
	Nonce     string          `json:"nonce"`
}

// chunkSize is the most members one GUILD_MEMBERS_CHUNK carries.
const chunkSize = 1000

// requestMembers answers op 8 with GUILD_MEMBERS_CHUNKs (or RATE_LIMITED).
func (c *gwConn) requestMembers(d []byte) {
	s := c.s
	var req memberRequest
	if err := json.Unmarshal(d, &req); err != nil {
		c.refuseKind(4001, "invalid_payload", "request guild members: "+err.Error())
		return
	}
	var ids []string
	if len(req.UserIDs) > 0 && string(req.UserIDs) != "null" {
		if req.UserIDs[0] == '[' {
			if err := json.Unmarshal(req.UserIDs, &ids); err != nil {
				c.refuseKind(4001, "invalid_payload", "request guild members: user_ids: "+err.Error())
				return
			}
		} else {
			var one string
			if err := json.Unmarshal(req.UserIDs, &one); err != nil {
				c.refuseKind(4001, "invalid_payload", "request guild members: user_ids: "+err.Error())
				return
			}
			ids = []string{one}
		}
		if len(ids) > 100 {
			c.refuseKind(4001, "invalid_payload", fmt.Sprintf("request guild members: %d user_ids, at most 100", len(ids)))
			return
		}
	}
	switch {
	case req.GuildID == "":
		c.refuseKind(4001, "invalid_payload", "request guild members: guild_id required")
		return
	case ids == nil && req.Query == nil:
		c.refuseKind(4001, "invalid_payload", "request guild members: query or user_ids required")
		return
	case req.Query != nil && req.Limit == nil:
		c.refuseKind(4001, "invalid_payload", "request guild members: limit required with query")
		return
	}
	nonce := req.Nonce
	if len(nonce) > 32 {
		nonce = ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := c.sess
	if ss == nil || ss.conn != c {
		return
	}
	g, ok := s.world.guilds.get(req.GuildID)
	if !ok || g.shardOf(ss.shards) != ss.shard {
		s.violationLocked(ss.shard, "request_members_unknown_guild", "guild "+req.GuildID+" is not on this shard")
		return
	}
	now := time.Now()
	all := ids == nil && *req.Query == "" && *req.Limit == 0
	if all {
		if wait := s.cfg.MemberRequestInterval - now.Sub(g.lastAllMembers); !g.lastAllMembers.IsZero() && wait > 0 {
			b := []byte(`{"opcode":8,"retry_after":`)
			b = strconv.AppendFloat(b, wait.Seconds(), 'f', 3, 64)
			b = append(b, `,"meta":{`...)
			b = appendKV(b, "guild_id", g.info.ID)
			if nonce != "" {
				b = append(b, ',')
				b = append(b, `"nonce":`...)
				b = appendString(b, nonce)
			}
			b = append(b, `}}`...)
			s.sendLocked(ss, "RATE_LIMITED", b, g.info.ID, nil)
			return
		}
		g.lastAllMembers = now
	}
	var found []*member
	var notFound []string
	switch {
	case ids != nil:
		for _, id := range ids {
			if m, ok := g.members.get(id); ok {
				found = append(found, m)
			} else {
				notFound = append(notFound, id)
			}
		}
	default:
		q := strings.ToLower(*req.Query)
		limit := *req.Limit
		if q != "" && (limit <= 0 || limit > 100) {
			limit = 100
		}
		for i := 0; i < g.members.len(); i++ {
			m := g.members.at(i)
			name := strings.ToLower(m.User.Username)
			nick := ""
			if m.Nick != nil {
				nick = strings.ToLower(*m.Nick)
			}
			if q == "" || strings.HasPrefix(name, q) || (nick != "" && strings.HasPrefix(nick, q)) {
				found = append(found, m)
				if limit > 0 && len(found) >= limit {
					break
				}
			}
		}
	}
	count := max(1, (len(found)+chunkSize-1)/chunkSize)
	for i := 0; i < count; i++ {
		part := found[min(i*chunkSize, len(found)):min((i+1)*chunkSize, len(found))]
		b := make([]byte, 0, 128+len(part)*300)
		b = append(b, '{')
		b = appendKV(b, "guild_id", g.info.ID)
		b = append(b, `,"members":[`...)
		for j, m := range part {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, m.json()...)
		}
		b = append(b, `],"chunk_index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"chunk_count":`...)
		b = strconv.AppendInt(b, int64(count), 10)
		if ids != nil && i == 0 {
			b = append(b, `,"not_found":`...)
			b = append(b, mustJSON(append([]string{}, notFound...))...)
		}
		if req.Presences {
			b = append(b, `,"presences":[`...)
			k := 0
			for _, m := range part {
				if p, ok := g.presences.get(m.User.ID); ok {
					if k > 0 {
						b = append(b, ',')
					}
					b = append(b, mustJSON(p)...)
					k++
				}
			}
			b = append(b, ']')
		}
		if nonce != "" {
			b = append(b, `,"nonce":`...)
			b = appendString(b, nonce)
		}
		s.sendLocked(ss, "GUILD_MEMBERS_CHUNK", append(b, '}'), g.info.ID, nil)
	}
}
