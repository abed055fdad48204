package broker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/bytedance/sonic"
	"github.com/redis/rueidis"

	"github.com/feathery/feathery/broker/keyspace"
	"github.com/feathery/feathery/luascripts"
)

// CacheEntities are the names of what the cache can keep, for
// CacheBotConfig.Entities.
var CacheEntities = []string{
	"guilds", "channels", "threads", "roles", "emojis", "stickers",
	"members", "users", "voice_states", "presences",
}

type cacheEntity uint16

const (
	entGuilds cacheEntity = 1 << iota
	entChannels
	entThreads
	entRoles
	entEmojis
	entStickers
	entMembers
	entUsers
	entVoiceStates
	entPresences

	entAll = entGuilds | entChannels | entThreads | entRoles | entEmojis | entStickers |
		entMembers | entUsers | entVoiceStates | entPresences
)

func parseCacheEntities(names []string) (cacheEntity, error) {
	if names == nil {
		return entAll, nil
	}
	var e cacheEntity
	for _, n := range names {
		i := -1
		for j, x := range CacheEntities {
			if x == n {
				i = j
			}
		}
		if i < 0 {
			return 0, fmt.Errorf("unknown cache entity %q (want one of %s)", n, strings.Join(CacheEntities, ", "))
		}
		e |= 1 << i
	}
	return e, nil
}

// CacheConfig configures the cache writer.
type CacheConfig struct {
	// Namespace prefixes every cache key; default DefaultCacheNamespace.
	// Bots share it (one cache) unless given their own.
	Namespace string
	// Bots holds per-bot settings; a bot not listed is cached under
	// Namespace with every entity.
	Bots map[string]CacheBotConfig
	// Logger receives skipped-payload warnings; nil discards.
	Logger *slog.Logger
}

// CacheBotConfig is the cache setting of one bot.
type CacheBotConfig struct {
	// Disabled: the bot's events do not touch the cache.
	Disabled bool
	// Namespace gives the bot its own cache; "" = CacheConfig.Namespace.
	Namespace string
	// Entities lists what is kept (names of CacheEntities); nil = all.
	// User objects and mutual guilds ("users") come from member
	// objects, so they need "members" too.
	Entities []string
}

// CacheStats counts what Apply did.
type CacheStats struct {
	// Events is the number of events that changed the cache.
	Events uint64
	// Skipped counts events whose payload could not be read (logged).
	Skipped uint64
	// Reloads counts script (re)loads after NOSCRIPT.
	Reloads uint64
	// Garbage counts cached values that were not JSON when an event read
	// them as its before image: the event went out without one (each key
	// is logged once, see garbageLog).
	Garbage uint64
}

// Cache keeps Discord state in Redis through the cache scripts. It
// implements CacheWriter; it is safe for concurrent use.
type Cache struct {
	client rueidis.Client
	def    botCache
	bots   atomic.Pointer[map[string]*botCache] // swapped whole by Reconfigure
	log    *slog.Logger

	loaded  atomic.Bool
	events  atomic.Uint64
	skipped atomic.Uint64
	reloads atomic.Uint64
	garbage atomic.Uint64
	badKeys onceLog // cached values that are not JSON
	refusal onceLog // scripts Redis refused, by event type and error
}

type botCache struct {
	keys CacheKeys
	ent  cacheEntity
	off  bool
}

// NewCache returns the cache writer over client.
func NewCache(client rueidis.Client, cfg CacheConfig) (*Cache, error) {
	if client == nil {
		return nil, fmt.Errorf("new cache: no redis client")
	}
	if err := CheckCacheNamespace(cfg.Namespace); err != nil {
		return nil, fmt.Errorf("new cache: %w", InField("namespace", err))
	}
	c := &Cache{
		client: client,
		def:    botCache{keys: NewCacheKeys(cfg.Namespace), ent: entAll},
		log:    cfg.Logger,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	bots, err := c.botCaches(cfg)
	if err != nil {
		return nil, fmt.Errorf("new cache: %w", err)
	}
	c.bots.Store(&bots)
	return c, nil
}

// Reconfigure puts new per-bot settings (entities, namespace, on or off)
// in force for the batches applied from now on. cfg.Namespace (the
// default one) and Logger cannot change; an invalid cfg changes nothing.
func (c *Cache) Reconfigure(cfg CacheConfig) error {
	if cfg.Namespace != "" && NewCacheKeys(cfg.Namespace).Namespace() != c.def.keys.Namespace() {
		return fmt.Errorf("reconfigure cache: namespace: cannot change from %q while running", c.def.keys.Namespace())
	}
	bots, err := c.botCaches(cfg)
	if err != nil {
		return fmt.Errorf("reconfigure cache: %w", err)
	}
	c.bots.Store(&bots)
	return nil
}

// botCaches builds the per-bot settings of cfg.
func (c *Cache) botCaches(cfg CacheConfig) (map[string]*botCache, error) {
	bots := make(map[string]*botCache, len(cfg.Bots))
	for name, bc := range cfg.Bots {
		if err := bc.Validate(); err != nil {
			return nil, fmt.Errorf("bot %q: %w", name, err)
		}
		ent, _ := parseCacheEntities(bc.Entities) // checked by Validate
		ns := bc.Namespace
		if ns == "" {
			ns = c.def.keys.Namespace()
		}
		bots[name] = &botCache{keys: NewCacheKeys(ns), ent: ent, off: bc.Disabled}
	}
	return bots, nil
}

// Validate checks a bot's cache setting; errors are FieldErrors in the
// names of feathery.yaml under the bot's cache section.
func (bc CacheBotConfig) Validate() error {
	if err := CheckCacheNamespace(bc.Namespace); err != nil {
		return InField("namespace", err)
	}
	for i, n := range bc.Entities {
		if !slices.Contains(CacheEntities, n) {
			return fieldErr("entities["+strconv.Itoa(i)+"]", "unknown entity %s (want one of %s)", quoteShort(n), strings.Join(CacheEntities, ", "))
		}
	}
	if bc.Entities != nil && slices.Contains(bc.Entities, "users") && !slices.Contains(bc.Entities, "members") {
		return fieldErr("entities", "users come from member objects: list members too")
	}
	return nil
}

// CheckCacheNamespace reports whether ns can prefix cache keys.
func CheckCacheNamespace(ns string) error {
	if strings.ContainsAny(ns, "{} \t\r\n") {
		return fmt.Errorf("%s: no spaces or braces", quoteShort(ns))
	}
	return nil
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Events: c.events.Load(), Skipped: c.skipped.Load(), Reloads: c.reloads.Load(), Garbage: c.garbage.Load()}
}

func (c *Cache) bot(name string) *botCache {
	if b, ok := (*c.bots.Load())[name]; ok {
		return b
	}
	return &c.def
}

// CacheHandles reports whether events of type t change the cache (those a
// cache_only filter may keep from the streams).
func CacheHandles(t string) bool {
	_, ok := cacheKinds[t]
	return ok
}

type cacheKind uint8

const (
	kNone cacheKind = iota
	kGuildCreate
	kGuildUpdate
	kGuildDelete
	kChannelSet
	kChannelDel
	kThreadSet
	kThreadDel
	kThreadSync
	kRoleSet
	kRoleDel
	kMemberAdd
	kMemberUpdate
	kMemberRemove
	kMemberChunk
	kEmojis
	kStickers
	kVoice
	kPresence
	kUserUpdate
)

var cacheKinds = map[string]cacheKind{
	"GUILD_CREATE": kGuildCreate, "GUILD_UPDATE": kGuildUpdate, "GUILD_DELETE": kGuildDelete,
	"CHANNEL_CREATE": kChannelSet, "CHANNEL_UPDATE": kChannelSet, "CHANNEL_DELETE": kChannelDel,
	"THREAD_CREATE": kThreadSet, "THREAD_UPDATE": kThreadSet, "THREAD_DELETE": kThreadDel,
	"THREAD_LIST_SYNC":  kThreadSync,
	"GUILD_ROLE_CREATE": kRoleSet, "GUILD_ROLE_UPDATE": kRoleSet, "GUILD_ROLE_DELETE": kRoleDel,
	"GUILD_MEMBER_ADD": kMemberAdd, "GUILD_MEMBER_UPDATE": kMemberUpdate,
	"GUILD_MEMBER_REMOVE": kMemberRemove, "GUILD_MEMBERS_CHUNK": kMemberChunk,
	"GUILD_EMOJIS_UPDATE": kEmojis, "GUILD_STICKERS_UPDATE": kStickers,
	"VOICE_STATE_UPDATE": kVoice, "PRESENCE_UPDATE": kPresence, "USER_UPDATE": kUserUpdate,
}

// beforeKind says how an event's before image is made from the replies.
type beforeKind uint8

const (
	bNone     beforeKind = iota
	bGuild               // phase-1 reply of a guild script
	bString              // phase-1 bulk reply (entity, list)
	bMember              // phase-1 member + phase-2 user
	bUser                // phase-2 user reply
	bPresence            // phase-1 bulk reply with {"user":{"id"}} put back
)

// cacheOp is the plan for one event.
type cacheOp struct {
	kind   cacheKind
	bc     *botCache
	guild  string
	before beforeKind
	// g is the handle of the event's phase-1 (guild slot) reply, noRef =
	// none.
	g int
	// joins are users the payload shows as members (id, user JSON).
	joins []luascripts.CacheField
	// leave is a user the event ends the membership of ("" = none).
	leave string
	// update is a USER_UPDATE user (id, JSON).
	update luascripts.CacheField
	// u0, u1 is the range of the event's phase-2 (user slot) replies.
	u0, u1 int
	// src is the event's phase-1 single-object operation (for naming the
	// key of a before image that is not JSON).
	src luascripts.CacheOp
}

// Apply updates the cache for evs, one shard's events in order, and fills
// before[i] with the cached object evs[i] replaced or removed (UPDATE,
// DELETE and REMOVE events; nil when nothing was cached). Per-guild calls go
// in one pipelined round trip, then the per-user calls they lead to in a
// second; the single-object operations of a phase share cache_ops calls
// (see cachePipe). A payload that cannot be read is logged and leaves the
// cache alone; an error means Redis failed, and applying the batch again is
// safe.
func (c *Cache) Apply(ctx context.Context, evs []*Event, before [][]byte) error {
	if len(before) < len(evs) {
		return fmt.Errorf("apply cache: %d before slots for %d events", len(before), len(evs))
	}
	ops := make([]cacheOp, len(evs))
	p1 := newCachePipe(c.client)
	b := p1.b
	for i, ev := range evs {
		before[i] = nil
		op := &ops[i]
		op.g = noRef
		pl, err := c.plan(b, op, ev)
		if err != nil {
			c.skipped.Add(1)
			c.log.Warn("cache: skip event payload", "bot", ev.Bot, "shard", ev.Shard, "seq", ev.Seq, "type", ev.Type, "err", err)
			ops[i] = cacheOp{g: noRef}
			continue
		}
		if op.kind != kNone {
			c.events.Add(1)
		}
		if pl.kind != 0 {
			op.g = p1.add(op.guild, pl)
			op.src = pl.op
		}
	}
	res1, err := c.do(ctx, p1)
	if err != nil {
		return err
	}
	p1.read(res1)
	if err := c.unavailable(p1); err != nil {
		return err
	}
	p2 := newCachePipe(c.client)
	var urefs []int
	var done rueidis.Commands // phase 3: SREMs of pending user leaves
	for i := range ops {
		op := &ops[i]
		op.u0 = len(urefs)
		if op.g >= 0 && c.failed(p1.opErr(op.g), evs[i]) {
			op.kind, op.before = kNone, bNone
		}
		if op.kind == kNone || op.bc.ent&entUsers == 0 || op.bc.ent&entMembers == 0 {
			op.u1 = op.u0
			continue
		}
		keys := op.bc.keys
		user := func(uid string, uop luascripts.CacheUserOp, guild, js string) {
			urefs = append(urefs, p2.add("u"+keyspace.UserBucket(uid), batched(luascripts.CacheOpUser(keys.CacheUsers(uid), uop, uid, guild, js))))
		}
		if op.leave != "" {
			user(op.leave, luascripts.CacheUserLeave, op.guild, "")
		}
		for _, j := range op.joins {
			user(j.ID, luascripts.CacheUserJoin, op.guild, j.JSON)
		}
		if op.update.ID != "" && op.kind == kUserUpdate {
			user(op.update.ID, luascripts.CacheUserUpdate, "", op.update.JSON)
		}
		if op.g >= 0 && (op.kind == kGuildCreate || op.kind == kGuildUpdate || op.kind == kGuildDelete) {
			_, _, ids, err := luascripts.ParseCacheGuild(p1.result(op.g))
			if err != nil {
				return fmt.Errorf("apply cache: read %s reply (seq %d): %w", evs[i].Type, evs[i].Seq, err)
			}
			for _, uid := range ids {
				user(uid, luascripts.CacheUserLeave, op.guild, "")
			}
			if len(ids) > 0 {
				done = append(done, luascripts.CachePendingLeavesDone(c.client.B(), cacheGuildKeys(keys, op.guild), ids))
			}
		}
		op.u1 = len(urefs)
	}
	res2, err := c.do(ctx, p2)
	if err != nil {
		return err
	}
	p2.read(res2)
	if err := c.unavailable(p2); err != nil {
		return err
	}
	// Phase 3: the user leaves the guild scripts recorded are applied; drop
	// their records. Until then a retried batch (or the guild's next
	// GUILD_CREATE, UPDATE or DELETE) applies them again.
	if len(done) > 0 {
		for _, r := range c.client.DoMulti(ctx, done...) {
			if err := r.Error(); err != nil {
				return fmt.Errorf("apply cache: clear pending user leaves: %w", err)
			}
		}
	}
	for i := range ops {
		op := &ops[i]
		for _, r := range urefs[op.u0:op.u1] {
			if c.failed(p2.opErr(r), evs[i]) {
				op.before = bNone // a partial effect: no trustworthy before image
				break
			}
		}
		if op.before == bNone {
			continue
		}
		ur := noRef
		if op.u1 > op.u0 {
			ur = urefs[op.u0]
		}
		v, err := c.beforeImage(op, evs[i], p1, p2, ur)
		if err != nil {
			return fmt.Errorf("apply cache: read %s reply (seq %d): %w", evs[i].Type, evs[i].Seq, err)
		}
		before[i] = v
	}
	return nil
}

// unavailable fails a phase whose cache_ops calls had an operation fail for
// a reason other than a refusal (see refused): Redis is unavailable, the
// batch is retried.
func (c *Cache) unavailable(p *cachePipe) error {
	for i := range p.calls {
		pc := &p.calls[i]
		if pc.ops == nil || pc.err != nil {
			continue
		}
		for j := range pc.replies {
			if err := pc.replies[j].Error(); err != nil && !rueidis.IsRedisNil(err) && !refused(err) {
				return fmt.Errorf("apply cache: %w", err)
			}
		}
	}
	return nil
}

// beforeImage makes op's before image from the replies. A cached value
// that is not JSON (written by something else than feathery) is never
// handed on: it is counted, logged once per key, and the image left out.
func (c *Cache) beforeImage(op *cacheOp, ev *Event, p1, p2 *cachePipe, user int) ([]byte, error) {
	switch op.before {
	case bGuild:
		s, ok, _, err := luascripts.ParseCacheGuild(p1.result(op.g))
		if !ok || err != nil {
			return nil, err
		}
		if !c.isJSON(s, ev, op.bc.keys.CacheGuild(op.guild), "") {
			return nil, nil
		}
		return []byte(s), nil
	case bString, bPresence:
		s, ok, err := p1.before(op.g)
		if !ok || err != nil {
			return nil, err
		}
		key, field := op.src.Target()
		if !c.isJSON(s, ev, key, field) {
			return nil, nil
		}
		if op.before == bPresence {
			return withFirst("user", []byte(`{"id":"`+op.update.ID+`"}`), []byte(s)), nil
		}
		return []byte(s), nil
	case bMember:
		m, ok, err := p1.before(op.g)
		if !ok || err != nil {
			return nil, err
		}
		key, uid := op.src.Target()
		v, err := keyspace.ExpandMember([]byte(m), nil)
		if err != nil {
			c.notJSON(ev, key, uid)
			return nil, nil
		}
		if user < 0 {
			return v, nil
		}
		s, uok, err := p2.before(user)
		if err != nil || !uok {
			return v, err
		}
		u, err := keyspace.ExpandUser(uid, []byte(s))
		if err != nil {
			c.notJSON(ev, op.bc.keys.CacheUsers(uid), uid)
			return v, nil
		}
		return withFirst("user", u, v), nil
	case bUser:
		if user < 0 {
			return nil, nil
		}
		s, ok, err := p2.before(user)
		if !ok || err != nil {
			return nil, err
		}
		v, err := keyspace.ExpandUser(op.update.ID, []byte(s))
		if err != nil {
			c.notJSON(ev, op.bc.keys.CacheUsers(op.update.ID), op.update.ID)
			return nil, nil
		}
		return v, nil
	}
	return nil, nil
}

// isJSON reports whether v, read from key (field), is valid JSON; if not it
// counts and logs it.
func (c *Cache) isJSON(v string, ev *Event, key, field string) bool {
	if sonic.ValidString(v) {
		return true
	}
	c.notJSON(ev, key, field)
	return false
}

// notJSON counts and logs a cached value (key, field) that could not be
// read as the JSON the layout holds there.
func (c *Cache) notJSON(ev *Event, key, field string) {
	c.garbage.Add(1)
	c.badKeys.garbage(c.log, key, field, ev)
}

// do sends p's commands in one pipeline. When the server lost the scripts
// (NOSCRIPT, on its own or inside a transaction's reply), it loads them and
// sends again from the start of the first call that was not run; calls are
// idempotent, so those after it running twice is safe.
func (c *Cache) do(ctx context.Context, p *cachePipe) ([]rueidis.RedisResult, error) {
	cmds := p.build()
	if len(cmds) == 0 {
		return nil, nil
	}
	if !c.loaded.Load() {
		if err := luascripts.LoadCacheScripts(ctx, c.client); err != nil {
			return nil, fmt.Errorf("apply cache: %w", err)
		}
		c.loaded.Store(true)
	}
	res := c.client.DoMulti(ctx, cmds...)
	for attempt := 0; ; attempt++ {
		first := -1
		var firstErr error
		for i, r := range res {
			if lost, from := p.noScript(i, r); lost {
				first, firstErr = from, r.Error()
				if firstErr == nil {
					firstErr = fmt.Errorf("NOSCRIPT inside a transaction")
				}
				break
			}
		}
		if first < 0 {
			break
		}
		if attempt == 2 {
			return nil, fmt.Errorf("apply cache: scripts missing after reload: %w", firstErr)
		}
		c.reloads.Add(1)
		if err := luascripts.LoadCacheScripts(ctx, c.client); err != nil {
			return nil, fmt.Errorf("apply cache: %w", err)
		}
		again := c.client.DoMulti(ctx, cmds[first:]...)
		res = append(res[:first], again...)
	}
	for _, r := range res {
		if err := r.Error(); err != nil && !rueidis.IsRedisNil(err) && !refused(err) {
			return nil, fmt.Errorf("apply cache: %w", err)
		}
	}
	return res, nil
}

// refused reports whether err is Redis refusing one script call for good —
// a script error, WRONGTYPE because something else wrote a cache key — as
// opposed to Redis being unavailable (connection, LOADING, BUSY, TRYAGAIN,
// CLUSTERDOWN, redirects, OOM), which fails the batch so it is retried.
// A refused call is logged and its event left out of the cache: retrying
// would refuse again and stall the shard. A transaction Redis discarded
// (EXECABORT: a command refused while queueing, e.g. for memory) is retried.
func refused(err error) bool {
	re, ok := rueidis.IsRedisErr(err)
	if !ok || re.IsLoading() || re.IsTryAgain() || re.IsClusterDown() || re.IsNoScript() {
		return false
	}
	if _, redirect := re.IsRedirect(); redirect {
		return false
	}
	msg := re.Error()
	for _, p := range []string{"BUSY", "OOM", "MASTERDOWN", "READONLY", "NOREPLICAS", "NOAUTH", "NOPERM", "EXECABORT"} {
		if strings.HasPrefix(msg, p) {
			return false
		}
	}
	return true
}

// failed reports whether err (a call's or operation's) is a refusal and,
// if so, logs it.
func (c *Cache) failed(err error, ev *Event) bool {
	if err == nil || rueidis.IsRedisNil(err) {
		return false
	}
	c.skipped.Add(1)
	c.refusal.warn(c.log, ev.Type+" "+err.Error(), "cache: redis refused the event's script (logged once per event type and error)",
		"bot", ev.Bot, "shard", ev.Shard, "seq", ev.Seq, "type", ev.Type, "err", err)
	return true
}

// listDrop are the lists a guild object is stored without: those with
// keys of their own, and GUILD_CREATE's extras that their own events (not
// cached) would leave stale.
func listDrop(k string) bool {
	switch k {
	case "roles", "emojis", "stickers", "channels", "threads", "members", "voice_states", "presences",
		"stage_instances", "guild_scheduled_events", "soundboard_sounds":
		return true
	}
	return false
}

// dropNewlyCreated drops THREAD_CREATE's event flag from the thread.
func dropNewlyCreated(k string) bool { return k == "newly_created" }

func dropGuildID(k string) bool        { return k == "guild_id" }
func dropMember(k string) bool         { return k == "member" }
func dropUserAndGuildID(k string) bool { return k == "user" || k == "guild_id" }

// compactMember drops what a cached member is stored without: guild_id,
// the user when users are cached apart, and members at their defaults
// (keyspace.MemberDefaults).
func compactMember(users bool) func(k string, v []byte) bool {
	if users {
		return func(k string, v []byte) bool {
			return k == "user" || k == "guild_id" || keyspace.IsMemberDefault(k, v)
		}
	}
	return func(k string, v []byte) bool { return k == "guild_id" || keyspace.IsMemberDefault(k, v) }
}

// compactUser drops what a cached user is stored without: "id" and
// members at their defaults (keyspace.UserDefaults).
func compactUser(k string, v []byte) bool { return keyspace.IsUserDefault(k, v) }

// plan reads ev and fills op; it returns the event's per-guild call (nil if
// none).
func (c *Cache) plan(b rueidis.Builder, op *cacheOp, ev *Event) (planned, error) {
	kind, ok := cacheKinds[ev.Type]
	if !ok {
		return planned{}, nil
	}
	bc := c.bot(ev.Bot)
	if bc.off {
		return planned{}, nil
	}
	if !sonic.Valid(ev.Data) {
		return planned{}, fmt.Errorf("payload is not valid JSON")
	}
	d := ev.Data
	op.kind, op.bc = kind, bc
	keys := bc.keys
	ent := bc.ent
	var err error
	if kind == kUserUpdate {
		id, err := idField(d, "id")
		if err != nil {
			return planned{}, err
		}
		op.update = luascripts.CacheField{ID: id, JSON: rueidis.BinaryString(d)}
		op.before = bUser
		return planned{}, nil
	}
	if kind == kGuildCreate || kind == kGuildUpdate || kind == kGuildDelete {
		op.guild, err = idField(d, "id")
	} else {
		op.guild, err = idField(d, "guild_id")
	}
	if err != nil {
		if kind == kChannelSet || kind == kChannelDel {
			op.kind = kNone // a DM channel: not cached
			return planned{}, nil
		}
		return planned{}, err
	}
	g := op.guild
	gq := `"` + g + `"`
	members := ent&entMembers != 0
	users := members && ent&entUsers != 0
	switch kind {
	case kGuildCreate, kGuildUpdate:
		return c.planGuild(b, op, ev, d, gq, users)
	case kGuildDelete:
		op.before = bGuild
		return single(luascripts.CacheGuildDelete(b, cacheGuildKeys(keys, g), ev.Bot, isTrue(fieldOr(d, "unavailable")))), nil
	case kChannelSet, kChannelDel, kThreadSet, kThreadDel:
		hash, on := keys.CacheChannels(g), ent&entChannels != 0
		if kind == kThreadSet || kind == kThreadDel {
			hash, on = keys.CacheThreads(g), ent&entThreads != 0
		}
		if !on {
			op.kind = kNone
			return planned{}, nil
		}
		id, err := idField(d, "id")
		if err != nil {
			return planned{}, err
		}
		if strings.HasSuffix(ev.Type, "_UPDATE") || strings.HasSuffix(ev.Type, "_DELETE") {
			op.before = bString
		}
		if kind == kChannelDel || kind == kThreadDel {
			return batched(luascripts.CacheOpEntityDel(hash, id)), nil
		}
		js := rueidis.BinaryString(d)
		if kind == kThreadSet {
			t, err := strip(d, dropNewlyCreated)
			if err != nil {
				return planned{}, err
			}
			js = string(t)
		}
		return batched(luascripts.CacheOpEntitySet(hash, id, js)), nil
	case kThreadSync:
		if ent&entThreads == 0 {
			op.kind = kNone
			return planned{}, nil
		}
		var parents []string
		pr, hasParents := field(d, "channel_ids")
		if hasParents && !isNull(pr) {
			if err := eachElem(pr, func(e []byte) error {
				id, err := snowflake(e)
				parents = append(parents, id)
				return err
			}); err != nil {
				return planned{}, fmt.Errorf("channel_ids: %w", err)
			}
		} else {
			hasParents = false
		}
		threads, err := objects(fieldOr(d, "threads"), "id", func(k string) bool { return false }, gq)
		if err != nil {
			return planned{}, fmt.Errorf("threads: %w", err)
		}
		return single(luascripts.CacheThreadSync(b, keys.CacheThreads(g), !hasParents, parents, threads)), nil
	case kRoleSet, kRoleDel:
		if ent&entRoles == 0 {
			op.kind = kNone
			return planned{}, nil
		}
		if kind == kRoleSet {
			role, ok := field(d, "role")
			if !ok {
				return planned{}, fmt.Errorf("no role")
			}
			id, err := idField(role, "id")
			if err != nil {
				return planned{}, fmt.Errorf("role: %w", err)
			}
			if ev.Type == "GUILD_ROLE_UPDATE" {
				op.before = bString
			}
			return batched(luascripts.CacheOpEntitySet(keys.CacheRoles(g), id, rueidis.BinaryString(role))), nil
		}
		id, err := idField(d, "role_id")
		if err != nil {
			return planned{}, err
		}
		op.before = bString
		return batched(luascripts.CacheOpEntityDel(keys.CacheRoles(g), id)), nil
	case kMemberAdd, kMemberUpdate, kMemberRemove:
		if !members {
			op.kind = kNone
			return planned{}, nil
		}
		user, uid, err := userOf(d)
		if err != nil {
			return planned{}, err
		}
		if kind != kMemberAdd {
			op.before = bMember
		}
		if kind == kMemberRemove {
			op.leave = uid
			return batched(luascripts.CacheOpMember(keys.CacheMembers(g), keys.CachePresences(g), luascripts.CacheMemberRemove, uid, "")), nil
		}
		drop := dropGuildID
		if users {
			drop = dropUserAndGuildID
			u, err := stripKV(user, compactUser)
			if err != nil {
				return planned{}, fmt.Errorf("user: %w", err)
			}
			op.joins = []luascripts.CacheField{{ID: uid, JSON: rueidis.BinaryString(u)}}
		}
		if kind == kMemberUpdate {
			// The keys of the update, defaults included, go with it: a
			// cached member going back to a default loses its value.
			m, err := strip(d, drop)
			if err != nil {
				return planned{}, err
			}
			mk := quotedKeys(m)
			if mk != "" {
				if m, err = stripKV(d, compactMember(users)); err != nil {
					return planned{}, err
				}
			}
			return batched(luascripts.CacheOpMemberMerge(keys.CacheMembers(g), uid, string(m), mk)), nil
		}
		m, err := stripKV(d, compactMember(users))
		if err != nil {
			return planned{}, err
		}
		return batched(luascripts.CacheOpMember(keys.CacheMembers(g), keys.CachePresences(g), luascripts.CacheMemberSet, uid, string(m))), nil
	case kMemberChunk:
		if !members {
			op.kind = kNone
			return planned{}, nil
		}
		ms, joins, err := memberList(fieldOr(d, "members"), users)
		if err != nil {
			return planned{}, fmt.Errorf("members: %w", err)
		}
		op.joins = joins
		var ps []luascripts.CacheField
		if ent&entPresences != 0 {
			if ps, err = presenceList(fieldOr(d, "presences")); err != nil {
				return planned{}, fmt.Errorf("presences: %w", err)
			}
		}
		return single(luascripts.CacheMemberChunk(b, keys.CacheMembers(g), keys.CachePresences(g), ms, ps)), nil
	case kEmojis, kStickers:
		name, key, on := "emojis", keys.CacheEmojis(g), ent&entEmojis != 0
		if kind == kStickers {
			name, key, on = "stickers", keys.CacheStickers(g), ent&entStickers != 0
		}
		if !on {
			op.kind = kNone
			return planned{}, nil
		}
		list, ok := field(d, name)
		if !ok || len(list) == 0 || list[0] != '[' {
			return planned{}, fmt.Errorf("no %s array", name)
		}
		op.before = bString
		return batched(luascripts.CacheOpListSet(key, rueidis.BinaryString(list))), nil
	case kVoice:
		if ent&entVoiceStates == 0 {
			op.kind = kNone
			return planned{}, nil
		}
		uid, err := idField(d, "user_id")
		if err != nil {
			return planned{}, err
		}
		op.before = bString
		if isNull(fieldOr(d, "channel_id")) {
			return batched(luascripts.CacheOpEntityDel(keys.CacheVoiceStates(g), uid)), nil
		}
		v, err := strip(d, dropMember)
		if err != nil {
			return planned{}, err
		}
		return batched(luascripts.CacheOpEntitySet(keys.CacheVoiceStates(g), uid, string(v))), nil
	case kPresence:
		if ent&entPresences == 0 {
			op.kind = kNone
			return planned{}, nil
		}
		_, uid, err := userOf(d)
		if err != nil {
			return planned{}, err
		}
		op.before = bPresence
		op.update.ID = uid // for the before image only; presences do not touch users
		if st, _ := field(d, "status"); string(st) == `"offline"` {
			return batched(luascripts.CacheOpEntityDel(keys.CachePresences(g), uid)), nil
		}
		p, err := strip(d, dropUserAndGuildID)
		if err != nil {
			return planned{}, err
		}
		return batched(luascripts.CacheOpEntitySet(keys.CachePresences(g), uid, string(p))), nil
	}
	return planned{}, nil
}

// fieldOr is field without the found flag (nil when absent).
func fieldOr(b []byte, name string) []byte {
	v, _ := field(b, name)
	return v
}

// planGuild plans GUILD_CREATE and GUILD_UPDATE.
func (c *Cache) planGuild(b rueidis.Builder, op *cacheOp, ev *Event, d []byte, gq string, users bool) (planned, error) {
	ent := op.bc.ent
	keys := cacheGuildKeys(op.bc.keys, op.guild)
	a := luascripts.CacheGuildArgs{Mode: luascripts.CacheGuildCreate, Bot: ev.Bot}
	if op.kind == kGuildUpdate {
		a.Mode = luascripts.CacheGuildUpdate
		op.before = bGuild
	} else if isTrue(fieldOr(d, "unavailable")) {
		a.Mode = luascripts.CacheGuildUnavailable
		return single(luascripts.CacheGuild(b, keys, a)), nil
	}
	if ent&entGuilds != 0 {
		g, err := strip(d, listDrop)
		if err != nil {
			return planned{}, err
		}
		a.Guild = string(g)
		if op.kind == kGuildUpdate {
			a.GuildKeys = quotedKeys(g)
		}
	}
	a.Partial = isTrue(fieldOr(d, "large"))
	section := func(on bool, name, idKey string, drop func(string) bool, inject string) (luascripts.CacheSection, error) {
		raw, ok := field(d, name)
		if !on || !ok || isNull(raw) {
			return luascripts.CacheSection{}, nil
		}
		fs, err := objects(raw, idKey, drop, inject)
		if err != nil {
			return luascripts.CacheSection{}, fmt.Errorf("%s: %w", name, err)
		}
		return luascripts.CacheSection{Replace: true, Fields: fs}, nil
	}
	never := func(string) bool { return false }
	var err error
	if a.Channels, err = section(ent&entChannels != 0, "channels", "id", never, gq); err != nil {
		return planned{}, err
	}
	if a.Threads, err = section(ent&entThreads != 0, "threads", "id", never, gq); err != nil {
		return planned{}, err
	}
	if a.Roles, err = section(ent&entRoles != 0, "roles", "id", never, ""); err != nil {
		return planned{}, err
	}
	if a.VoiceStates, err = section(ent&entVoiceStates != 0, "voice_states", "user_id", dropMember, gq); err != nil {
		return planned{}, err
	}
	list := func(on bool, name string) (luascripts.CacheList, error) {
		raw, ok := field(d, name)
		if !on || !ok || isNull(raw) {
			return luascripts.CacheList{}, nil
		}
		if raw[0] != '[' {
			return luascripts.CacheList{}, fmt.Errorf("%s is not an array", name)
		}
		return luascripts.CacheList{Replace: true, JSON: rueidis.BinaryString(raw)}, nil
	}
	if a.Emojis, err = list(ent&entEmojis != 0, "emojis"); err != nil {
		return planned{}, err
	}
	if a.Stickers, err = list(ent&entStickers != 0, "stickers"); err != nil {
		return planned{}, err
	}
	if op.kind == kGuildCreate {
		if raw, ok := field(d, "members"); ok && ent&entMembers != 0 && !isNull(raw) {
			ms, joins, err := memberList(raw, users)
			if err != nil {
				return planned{}, fmt.Errorf("members: %w", err)
			}
			a.Members = luascripts.CacheSection{Replace: true, Fields: ms}
			op.joins = joins
		}
		if raw, ok := field(d, "presences"); ok && ent&entPresences != 0 && !isNull(raw) {
			ps, err := presenceList(raw)
			if err != nil {
				return planned{}, fmt.Errorf("presences: %w", err)
			}
			a.Presences = luascripts.CacheSection{Replace: true, Fields: ps}
		}
	}
	return single(luascripts.CacheGuild(b, keys, a)), nil
}

// objects splits a JSON array of objects into (id, JSON) fields: idKey
// names the id member, drop the members left out, and inject (a quoted
// guild id, or "") is added as "guild_id" where missing.
func objects(arr []byte, idKey string, drop func(string) bool, inject string) ([]luascripts.CacheField, error) {
	if isNull(arr) {
		return nil, nil
	}
	var out []luascripts.CacheField
	err := eachElem(arr, func(e []byte) error {
		id, err := idField(e, idKey)
		if err != nil {
			return err
		}
		var js []byte
		if inject != "" {
			js, err = strip(e, drop, [2]string{"guild_id", inject})
		} else {
			js, err = strip(e, drop)
		}
		if err != nil {
			return err
		}
		out = append(out, luascripts.CacheField{ID: id, JSON: rueidis.BinaryString(js)})
		return nil
	})
	return out, err
}

// userOf returns the "user" object of obj and that user's id.
func userOf(obj []byte) (user []byte, uid string, err error) {
	user, ok := field(obj, "user")
	if !ok {
		return nil, "", fmt.Errorf("no user")
	}
	uid, err = idField(user, "id")
	if err != nil {
		return nil, "", fmt.Errorf("user: %w", err)
	}
	return user, uid, nil
}

// memberList splits member objects into (user id, member JSON without
// user) and, when users are cached, (user id, user JSON) joins.
func memberList(arr []byte, users bool) (ms, joins []luascripts.CacheField, err error) {
	return userKeyedList(arr, "member", compactMember(users), users)
}

// presenceList splits presences into (user id, presence JSON without user
// and guild_id).
func presenceList(arr []byte) ([]luascripts.CacheField, error) {
	ps, _, err := userKeyedList(arr, "presence", func(k string, _ []byte) bool { return dropUserAndGuildID(k) }, false)
	return ps, err
}

// userKeyedList splits the objects of the array arr, each with a "user",
// into (user id, object without the members drop names) and, with joins,
// (user id, user JSON compact). what names an element in errors.
func userKeyedList(arr []byte, what string, drop func(string, []byte) bool, joins bool) (out, users []luascripts.CacheField, err error) {
	if isNull(arr) {
		return nil, nil, nil
	}
	err = eachElem(arr, func(e []byte) error {
		user, uid, err := userOf(e)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		v, err := stripKV(e, drop)
		if err != nil {
			return err
		}
		out = append(out, luascripts.CacheField{ID: uid, JSON: rueidis.BinaryString(v)})
		if joins {
			u, err := stripKV(user, compactUser)
			if err != nil {
				return fmt.Errorf("%s: user: %w", what, err)
			}
			users = append(users, luascripts.CacheField{ID: uid, JSON: rueidis.BinaryString(u)})
		}
		return nil
	})
	return out, users, err
}
