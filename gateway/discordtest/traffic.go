package discordtest

import (
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// genEvent is one generated dispatch.
type genEvent struct {
	t      string
	d      []byte
	before []byte
	// guild, when set, is the guild the event is about instead of the one
	// the generator was given (a guild the bot just joined).
	guild *guild
	// noContent builds the d for sessions without MESSAGE_CONTENT; nil when
	// d is the same for them.
	noContent func() []byte
}

// generator makes one event in g, updating the model; ok=false when the
// guild cannot have that event now (the traffic loop picks another).
type generator struct {
	intent uint64
	gen    func(s *Server, g *guild) (genEvent, bool)
}

// generators is every event the live traffic can make.
var generators map[string]generator

func knownEvents() []string {
	out := make([]string, 0, len(generators))
	for k := range generators {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type mixTable struct {
	names []string
	cum   []float64
	total float64
}

func newMixTable(m map[string]float64) (mixTable, error) {
	strict := m != nil
	if m == nil {
		m = DefaultMix()
	}
	var t mixTable
	for _, name := range knownEvents() {
		w, ok := m[name]
		if !ok || w == 0 {
			continue
		}
		t.total += w
		t.names = append(t.names, name)
		t.cum = append(t.cum, t.total)
	}
	for name := range m {
		if _, ok := generators[name]; !ok && strict {
			return t, fmt.Errorf("mix %s: unknown event (known: %v)", name, knownEvents())
		}
	}
	return t, nil
}

func (t mixTable) pick(x float64) string {
	x *= t.total
	i := sort.SearchFloat64s(t.cum, x)
	if i >= len(t.names) {
		i = len(t.names) - 1
	}
	return t.names[i]
}

// maxPending bounds the dispatches queued on connections; beyond it the
// traffic loop waits for the writers instead of buffering without bound.
const maxPending = 20000

// trafficLoop generates live dispatches at the configured rate.
func (s *Server) trafficLoop() {
	defer s.wg.Done()
	const tick = 5 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	var debt float64
	for {
		s.mu.Lock()
		rate, epoch := s.rate, s.rateEpoch
		s.mu.Unlock()
		if rate == 0 || len(s.mix.names) == 0 {
			select {
			case <-s.quit:
				return
			case <-s.rateChanged:
				last, debt = time.Now(), 0
				continue
			}
		}
		select {
		case <-s.quit:
			return
		case <-s.rateChanged:
			continue
		case <-t.C:
		}
		now := time.Now()
		debt += rate * now.Sub(last).Seconds()
		last = now
		if limit := rate/10 + 1; debt > limit {
			debt = limit // at most 100ms of backlog
		}
		if s.pending.Load() > maxPending {
			continue
		}
		n := int(debt)
		debt -= float64(n)
		// The rate read above may be stale by now: generateAt stops as soon
		// as SetRate has changed it, so once SetRate returns no event is
		// made at the old rate.
		s.generateAt(n, epoch)
	}
}

// generate makes n live events over the live sessions and returns how
// many it made (fewer when no session is live).
func (s *Server) generate(n int) int {
	return s.generateAt(n, -1)
}

// generateAt is generate for the traffic loop: when epoch is not -1 it
// stops, checked under s.mu before each batch, once s.rateEpoch differs
// (SetRate was called since the loop read the rate).
func (s *Server) generateAt(n int, epoch int64) int {
	made := 0
	for made < n {
		s.mu.Lock()
		if epoch != -1 && s.rateEpoch != epoch {
			s.mu.Unlock()
			return made
		}
		now := time.Now()
		if !s.pruneLiveLocked(now) {
			s.mu.Unlock()
			return made
		}
		batch := min(n-made, 256)
		for i := 0; i < batch; i++ {
			if s.generateOneLocked(now) {
				made++
			}
		}
		s.mu.Unlock()
	}
	return made
}

// pruneLiveLocked drops ended sessions from s.live and lists the shard
// counts in use; false when no session is live.
func (s *Server) pruneLiveLocked(now time.Time) bool {
	live := s.live[:0]
	s.liveCounts = s.liveCounts[:0]
	for _, ss := range s.live {
		if !ss.alive(now, s.cfg.ResumeWindow) {
			continue
		}
		live = append(live, ss)
		known := false
		for _, n := range s.liveCounts {
			known = known || n == ss.shards
		}
		if !known {
			s.liveCounts = append(s.liveCounts, ss.shards)
		}
	}
	clear(s.live[len(live):])
	s.live = live
	return len(live) > 0
}

// generateOneLocked makes one event for a random live session; false when
// none could be made (no guilds, no intent for the picked events).
func (s *Server) generateOneLocked(now time.Time) bool {
	w := s.world
	live := s.live
	for attempt := 0; attempt < 64; attempt++ {
		ss := live[w.rng.IntN(len(live))]
		s.refreshGuildsLocked(ss)
		if len(ss.guilds) == 0 {
			continue
		}
		g := ss.guilds[w.rng.IntN(len(ss.guilds))]
		name := s.mix.pick(w.rng.Float64())
		gen := generators[name]
		if gen.intent != 0 && ss.intents&gen.intent == 0 {
			continue
		}
		ev, ok := gen.gen(s, g)
		if !ok {
			continue
		}
		if ev.guild != nil {
			g = ev.guild
		}
		s.deliverLocked(ev, g, gen.intent, now)
		return true
	}
	return false
}

// deliverLocked sends ev to every live session that sees g and has the
// event's intent (usually one; more while shard counts overlap).
func (s *Server) deliverLocked(ev genEvent, g *guild, intent uint64, now time.Time) {
	s.events++
	s.bcast = s.events
	defer func() { s.bcast = 0 }()
	var noContent []byte
	for _, n := range s.liveCounts {
		for _, ss := range s.shardSessions[g.shardOf(n)] {
			if ss.shards != n || !ss.alive(now, s.cfg.ResumeWindow) || (intent != 0 && ss.intents&intent == 0) {
				continue
			}
			d := ev.d
			if ev.noContent != nil && ss.intents&intentMessageContent == 0 {
				if noContent == nil {
					noContent = ev.noContent()
				}
				d = noContent
			}
			s.sendLocked(ss, ev.t, d, g.info.ID, ev.before)
		}
	}
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func appendKV(b []byte, key, val string) []byte {
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":"`...)
	b = append(b, val...)
	return append(b, '"')
}

var words = []string{"hello", "there", "anyone", "up", "for", "a", "game", "tonight", "nice", "build", "lol", "gg", "who", "broke", "prod"}

func (w *world) sentence(n int) string {
	b := make([]byte, 0, 8*n)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, words[w.rng.IntN(len(words))]...)
	}
	return string(b)
}

// pickMember returns a random member other than the bot, or nil.
func (w *world) pickMember(g *guild) *member {
	n := g.members.len()
	if n < 2 {
		return nil
	}
	for i := 0; i < 4; i++ {
		m := g.members.at(w.rng.IntN(n))
		if m.User.ID != w.bot.ID {
			return m
		}
	}
	return nil
}

func genMessage(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	ch := g.pickChannel(w.rng, 0)
	if ch == nil {
		return genEvent{}, false
	}
	m := w.pickMember(g)
	if m == nil {
		return genEvent{}, false
	}
	id := w.newID()
	variant := w.rng.IntN(100)
	var content string
	webhook := ""
	mention := false
	switch {
	case variant < 40:
		content = w.sentence(1 + w.rng.IntN(8))
	case variant < 65:
		content = s.cfg.Prefixes[w.rng.IntN(len(s.cfg.Prefixes))] + w.sentence(1+w.rng.IntN(3))
	case variant < 75:
		content, mention = "<@"+w.bot.ID+"> "+w.sentence(1+w.rng.IntN(4)), true
	case variant < 90:
		for i := 0; i < 8; i++ {
			if c := g.members.at(w.rng.IntN(g.members.len())); c.User.Bot && c.User.ID != w.bot.ID {
				m = c
				break
			}
		}
		content = s.cfg.Prefixes[0] + w.sentence(2)
	default:
		webhook = w.newID()
		content = w.sentence(3)
	}
	build := func(content string) []byte {
		b := make([]byte, 0, 900)
		b = append(b, `{"type":0,"tts":false,"timestamp":"`...)
		b = append(b, isoTime(id)...)
		b = append(b, `","pinned":false,"mentions":[`...)
		if mention {
			b = append(b, w.bot.json()...)
		}
		b = append(b, `],"mention_roles":[],"mention_everyone":false,`...)
		if webhook == "" {
			b = append(b, `"member":`...)
			b = append(b, m.jsonNoUser()...)
			b = append(b, `,"author":`...)
			b = append(b, m.User.json()...)
		} else {
			b = appendKV(b, "webhook_id", webhook)
			b = append(b, `,"author":{"id":"`...)
			b = append(b, webhook...)
			b = append(b, `","username":"Captain Hook","discriminator":"0000","avatar":null,"bot":true}`...)
		}
		b = append(b, `,`...)
		b = appendKV(b, "id", id)
		b = append(b, `,"flags":0,"embeds":[],"edited_timestamp":null,"content":`...)
		b = appendString(b, content)
		b = append(b, `,"components":[],`...)
		b = appendKV(b, "channel_id", ch.ID)
		b = append(b, `,"attachments":[],`...)
		b = appendKV(b, "guild_id", g.info.ID)
		return append(b, '}')
	}
	author := m.User.ID
	if webhook != "" {
		author = webhook
	}
	g.recent[g.recentNext%len(g.recent)] = recentMessage{id: id, channelID: ch.ID, authorID: author}
	g.recentNext++
	ev := genEvent{t: "MESSAGE_CREATE", d: build(content)}
	if !mention {
		ev.noContent = func() []byte { return build("") }
	}
	return ev, true
}

// pickRecent returns a recent message of g, if any.
func (w *world) pickRecent(g *guild) (recentMessage, bool) {
	n := min(g.recentNext, len(g.recent))
	if n == 0 {
		return recentMessage{}, false
	}
	r := g.recent[w.rng.IntN(n)]
	return r, r.id != ""
}

func genMessageUpdate(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	r, ok := w.pickRecent(g)
	if !ok {
		return genEvent{}, false
	}
	build := func(content string) []byte {
		b := []byte(`{"type":0,`)
		b = appendKV(b, "id", r.id)
		b = append(b, ',')
		b = appendKV(b, "channel_id", r.channelID)
		b = append(b, ',')
		b = appendKV(b, "guild_id", g.info.ID)
		b = append(b, `,"content":`...)
		b = appendString(b, content)
		b = append(b, `,"edited_timestamp":"`...)
		b = append(b, isoTime(w.newID())...)
		b = append(b, `","author":{"id":"`...)
		b = append(b, r.authorID...)
		return append(b, `"}}`...)
	}
	content := "edited: " + w.sentence(3)
	return genEvent{t: "MESSAGE_UPDATE", d: build(content), noContent: func() []byte { return build("") }}, true
}

func genMessageDelete(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	r, ok := w.pickRecent(g)
	if !ok {
		return genEvent{}, false
	}
	for i := range g.recent {
		if g.recent[i].id == r.id {
			g.recent[i] = recentMessage{}
		}
	}
	b := []byte(`{`)
	b = appendKV(b, "id", r.id)
	b = append(b, ',')
	b = appendKV(b, "channel_id", r.channelID)
	b = append(b, ',')
	b = appendKV(b, "guild_id", g.info.ID)
	return genEvent{t: "MESSAGE_DELETE", d: append(b, '}')}, true
}

func genReactionAdd(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	r, ok := w.pickRecent(g)
	m := w.pickMember(g)
	if !ok || m == nil {
		return genEvent{}, false
	}
	b := []byte(`{"type":0,"burst":false,`)
	b = appendKV(b, "user_id", m.User.ID)
	b = append(b, ',')
	b = appendKV(b, "message_id", r.id)
	b = append(b, ',')
	b = appendKV(b, "message_author_id", r.authorID)
	b = append(b, `,"member":`...)
	b = append(b, m.json()...)
	if g.emojis.len() > 0 && w.rng.IntN(2) == 0 {
		e := g.emojis.at(w.rng.IntN(g.emojis.len()))
		b = append(b, `,"emoji":{"id":"`...)
		b = append(b, e.ID...)
		b = append(b, `","name":`...)
		b = appendString(b, e.Name)
		b = append(b, '}')
	} else {
		b = append(b, `,"emoji":{"id":null,"name":"👍"}`...)
	}
	b = append(b, ',')
	b = appendKV(b, "channel_id", r.channelID)
	b = append(b, ',')
	b = appendKV(b, "guild_id", g.info.ID)
	return genEvent{t: "MESSAGE_REACTION_ADD", d: append(b, '}')}, true
}

func genTyping(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	ch := g.pickChannel(w.rng, 0)
	m := w.pickMember(g)
	if ch == nil || m == nil {
		return genEvent{}, false
	}
	b := make([]byte, 0, 400)
	b = append(b, '{')
	b = appendKV(b, "user_id", m.User.ID)
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, snowflakeTime(w.newID()).Unix(), 10)
	b = append(b, `,"member":`...)
	b = append(b, m.json()...)
	b = append(b, ',')
	b = appendKV(b, "channel_id", ch.ID)
	b = append(b, ',')
	b = appendKV(b, "guild_id", g.info.ID)
	return genEvent{t: "TYPING_START", d: append(b, '}')}, true
}

func genPresence(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	m := w.pickMember(g)
	if m == nil {
		return genEvent{}, false
	}
	var before []byte
	if old, ok := g.presences.get(m.User.ID); ok {
		before = mustJSON(old)
	}
	p := w.newPresence(m.User.ID)
	if w.rng.IntN(5) == 0 {
		p.Status, p.ClientStatus = "offline", clientStatus{}
	}
	if p.Status == "offline" {
		g.presences.del(m.User.ID)
	} else {
		g.presences.set(m.User.ID, p)
	}
	p.GuildID = g.info.ID
	d := mustJSON(p)
	p.GuildID = ""
	return genEvent{t: "PRESENCE_UPDATE", d: d, before: before}, true
}

func genInteraction(s *Server, g *guild) (genEvent, bool) {
	w := s.world
	ch := g.pickChannel(w.rng, 0)
	m := w.pickMember(g)
	if ch == nil || m == nil {
		return genEvent{}, false
	}
	id := w.newID()
	b := make([]byte, 0, 1200)
	b = append(b, `{"version":1,"type":2,"token":"interaction-token-`...)
	b = append(b, id...)
	b = append(b, `","member":`...)
	b = append(b, m.json()...)
	b = append(b, `,"locale":"en-US","guild_locale":"en-US","entitlements":[],"context":0,"authorizing_integration_owners":{"0":"`...)
	b = append(b, g.info.ID...)
	b = append(b, `"},"app_permissions":"2248473465835073",`...)
	b = appendKV(b, "id", id)
	b = append(b, `,"data":{"type":1,"name":"ping","id":"`...)
	b = append(b, w.appID...)
	b = append(b, `"},"channel":`...)
	b = append(b, mustJSON(ch)...)
	b = append(b, ',')
	b = appendKV(b, "channel_id", ch.ID)
	b = append(b, ',')
	b = appendKV(b, "application_id", w.appID)
	b = append(b, ',')
	b = appendKV(b, "guild_id", g.info.ID)
	return genEvent{t: "INTERACTION_CREATE", d: append(b, '}')}, true
}

func init() {
	generators = map[string]generator{
		"MESSAGE_CREATE":     {intentGuildMessages, genMessage},
		"TYPING_START":       {intentGuildTyping, genTyping},
		"PRESENCE_UPDATE":    {intentGuildPresences, genPresence},
		"INTERACTION_CREATE": {0, genInteraction},
		// Not in DefaultMix: opt in through Config.Mix.
		"MESSAGE_UPDATE":       {intentGuildMessages, genMessageUpdate},
		"MESSAGE_DELETE":       {intentGuildMessages, genMessageDelete},
		"MESSAGE_REACTION_ADD": {intentGuildReactions, genReactionAdd},
	}
	registerModelEvents()
}
