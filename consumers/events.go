package consumers

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/bytedance/sonic"
)

// Snowflake is a Discord id. It stays a string, as Discord sends it, so no id
// is ever rounded through a float.
type Snowflake string

// discordEpoch is the first second of 2015 in Unix milliseconds.
const discordEpoch = 1420070400000

// Uint64 parses the id; ok is false when it is not a decimal number.
func (s Snowflake) Uint64() (v uint64, ok bool) {
	v, err := strconv.ParseUint(string(s), 10, 64)
	return v, err == nil
}

// Time is when the id was made (the timestamp encoded in its top 42 bits);
// the zero time when the id is not a number.
func (s Snowflake) Time() time.Time {
	v, ok := s.Uint64()
	if !ok {
		return time.Time{}
	}
	return time.UnixMilli(int64(v>>22) + discordEpoch)
}

// User is the part of a Discord user object consumers commonly need.
type User struct {
	ID            Snowflake `json:"id"`
	Username      string    `json:"username"`
	Discriminator string    `json:"discriminator,omitempty"`
	GlobalName    string    `json:"global_name,omitempty"`
	Avatar        string    `json:"avatar,omitempty"`
	Bot           bool      `json:"bot,omitempty"`
	System        bool      `json:"system,omitempty"`
}

// Member is a guild member. User is nil where Discord leaves it out (the
// member attached to MESSAGE_CREATE).
type Member struct {
	User                       *User       `json:"user,omitempty"`
	Nick                       string      `json:"nick,omitempty"`
	Avatar                     string      `json:"avatar,omitempty"`
	Roles                      []Snowflake `json:"roles"`
	JoinedAt                   *time.Time  `json:"joined_at,omitempty"`
	PremiumSince               *time.Time  `json:"premium_since,omitempty"`
	Deaf                       bool        `json:"deaf"`
	Mute                       bool        `json:"mute"`
	Flags                      int         `json:"flags"`
	Pending                    bool        `json:"pending,omitempty"`
	Permissions                string      `json:"permissions,omitempty"`
	CommunicationDisabledUntil *time.Time  `json:"communication_disabled_until,omitempty"`
}

// Role is a guild role. Permissions is a decimal bit set, kept as a string.
type Role struct {
	ID          Snowflake `json:"id"`
	Name        string    `json:"name"`
	Color       int       `json:"color"`
	Hoist       bool      `json:"hoist"`
	Position    int       `json:"position"`
	Permissions string    `json:"permissions"`
	Managed     bool      `json:"managed"`
	Mentionable bool      `json:"mentionable"`
}

// Channel is the part of a channel (or thread) object consumers commonly need.
type Channel struct {
	ID       Snowflake `json:"id"`
	Type     int       `json:"type"`
	GuildID  Snowflake `json:"guild_id,omitempty"`
	Name     string    `json:"name,omitempty"`
	Position int       `json:"position,omitempty"`
	ParentID Snowflake `json:"parent_id,omitempty"`
	Topic    string    `json:"topic,omitempty"`
	NSFW     bool      `json:"nsfw,omitempty"`
}

// Attachment is a file attached to a message.
type Attachment struct {
	ID          Snowflake `json:"id"`
	Filename    string    `json:"filename"`
	Size        int64     `json:"size"`
	URL         string    `json:"url"`
	ContentType string    `json:"content_type,omitempty"`
}

// MessageCreate is the "d" of MESSAGE_CREATE (and MESSAGE_UPDATE).
type MessageCreate struct {
	ID              Snowflake         `json:"id"`
	ChannelID       Snowflake         `json:"channel_id"`
	GuildID         Snowflake         `json:"guild_id,omitempty"`
	Author          User              `json:"author"`
	Member          *Member           `json:"member,omitempty"`
	Content         string            `json:"content"`
	Timestamp       time.Time         `json:"timestamp"`
	EditedTimestamp *time.Time        `json:"edited_timestamp,omitempty"`
	TTS             bool              `json:"tts"`
	MentionEveryone bool              `json:"mention_everyone"`
	Mentions        []User            `json:"mentions"`
	MentionRoles    []Snowflake       `json:"mention_roles"`
	Attachments     []Attachment      `json:"attachments"`
	Embeds          []json.RawMessage `json:"embeds"`
	Pinned          bool              `json:"pinned"`
	WebhookID       Snowflake         `json:"webhook_id,omitempty"`
	Type            int               `json:"type"`
	Flags           int               `json:"flags,omitempty"`
}

// MessageUpdate is the "d" of MESSAGE_UPDATE.
type MessageUpdate = MessageCreate

// MessageDelete is the "d" of MESSAGE_DELETE.
type MessageDelete struct {
	ID        Snowflake `json:"id"`
	ChannelID Snowflake `json:"channel_id"`
	GuildID   Snowflake `json:"guild_id,omitempty"`
}

// InteractionOption is one (possibly nested) option of a command.
type InteractionOption struct {
	Name    string              `json:"name"`
	Type    int                 `json:"type"`
	Value   json.RawMessage     `json:"value,omitempty"`
	Focused bool                `json:"focused,omitempty"`
	Options []InteractionOption `json:"options,omitempty"`
}

// InteractionData is the "data" of an interaction: a command's name and
// options, or a component's custom id and values.
type InteractionData struct {
	ID            Snowflake           `json:"id,omitempty"`
	Name          string              `json:"name,omitempty"`
	Type          int                 `json:"type,omitempty"`
	GuildID       Snowflake           `json:"guild_id,omitempty"`
	TargetID      Snowflake           `json:"target_id,omitempty"`
	Options       []InteractionOption `json:"options,omitempty"`
	CustomID      string              `json:"custom_id,omitempty"`
	ComponentType int                 `json:"component_type,omitempty"`
	Values        []string            `json:"values,omitempty"`
}

// InteractionCreate is the "d" of INTERACTION_CREATE. Token is the
// interaction's reply token (valid 15 minutes): needed to answer, never logged.
type InteractionCreate struct {
	ID             Snowflake        `json:"id"`
	ApplicationID  Snowflake        `json:"application_id"`
	Type           int              `json:"type"`
	Data           *InteractionData `json:"data,omitempty"`
	GuildID        Snowflake        `json:"guild_id,omitempty"`
	ChannelID      Snowflake        `json:"channel_id,omitempty"`
	Member         *Member          `json:"member,omitempty"`
	User           *User            `json:"user,omitempty"`
	Token          string           `json:"token"`
	Version        int              `json:"version"`
	AppPermissions string           `json:"app_permissions,omitempty"`
	Locale         string           `json:"locale,omitempty"`
	GuildLocale    string           `json:"guild_locale,omitempty"`
}

// Invoker is the user who triggered the interaction: Member.User in a guild,
// User in a DM; nil if the payload has neither.
func (i *InteractionCreate) Invoker() *User {
	if i.Member != nil && i.Member.User != nil {
		return i.Member.User
	}
	return i.User
}

// GuildMemberAdd is the "d" of GUILD_MEMBER_ADD: a member plus guild_id.
type GuildMemberAdd struct {
	GuildID Snowflake `json:"guild_id"`
	Member
}

// GuildMemberUpdate is the "d" of GUILD_MEMBER_UPDATE.
type GuildMemberUpdate struct {
	GuildID                    Snowflake   `json:"guild_id"`
	Roles                      []Snowflake `json:"roles"`
	User                       User        `json:"user"`
	Nick                       string      `json:"nick,omitempty"`
	Avatar                     string      `json:"avatar,omitempty"`
	JoinedAt                   *time.Time  `json:"joined_at,omitempty"`
	PremiumSince               *time.Time  `json:"premium_since,omitempty"`
	Deaf                       bool        `json:"deaf,omitempty"`
	Mute                       bool        `json:"mute,omitempty"`
	Pending                    bool        `json:"pending,omitempty"`
	CommunicationDisabledUntil *time.Time  `json:"communication_disabled_until,omitempty"`
}

// GuildMemberRemove is the "d" of GUILD_MEMBER_REMOVE.
type GuildMemberRemove struct {
	GuildID Snowflake `json:"guild_id"`
	User    User      `json:"user"`
}

// GuildCreate is part of the "d" of GUILD_CREATE: the guild's identity, its
// counts, and its channels, threads, roles and members. Fields not listed
// here are in Message.D.
type GuildCreate struct {
	ID          Snowflake  `json:"id"`
	Name        string     `json:"name"`
	Icon        string     `json:"icon,omitempty"`
	OwnerID     Snowflake  `json:"owner_id"`
	Unavailable bool       `json:"unavailable,omitempty"`
	Large       bool       `json:"large"`
	MemberCount int        `json:"member_count"`
	JoinedAt    *time.Time `json:"joined_at,omitempty"`
	Channels    []Channel  `json:"channels"`
	Threads     []Channel  `json:"threads"`
	Roles       []Role     `json:"roles"`
	Members     []Member   `json:"members"`
}

// GuildDelete is the "d" of GUILD_DELETE. Unavailable true means an outage;
// false means the bot left or was removed.
type GuildDelete struct {
	ID          Snowflake `json:"id"`
	Unavailable bool      `json:"unavailable,omitempty"`
}

// UnavailableGuild is a guild listed in READY before its GUILD_CREATE.
type UnavailableGuild struct {
	ID          Snowflake `json:"id"`
	Unavailable bool      `json:"unavailable"`
}

// Ready is the "d" of READY.
type Ready struct {
	V                int                `json:"v"`
	User             User               `json:"user"`
	Guilds           []UnavailableGuild `json:"guilds"`
	SessionID        string             `json:"session_id"`
	ResumeGatewayURL string             `json:"resume_gateway_url"`
	Shard            []int              `json:"shard,omitempty"`
	Application      struct {
		ID    Snowflake `json:"id"`
		Flags int64     `json:"flags"`
	} `json:"application"`
}

// ChannelEvent is the "d" of CHANNEL_CREATE, CHANNEL_UPDATE and CHANNEL_DELETE.
type ChannelEvent = Channel

// GuildRoleEvent is the "d" of GUILD_ROLE_CREATE and GUILD_ROLE_UPDATE.
type GuildRoleEvent struct {
	GuildID Snowflake `json:"guild_id"`
	Role    Role      `json:"role"`
}

// GuildRoleDelete is the "d" of GUILD_ROLE_DELETE.
type GuildRoleDelete struct {
	GuildID Snowflake `json:"guild_id"`
	RoleID  Snowflake `json:"role_id"`
}

// VoiceStateUpdate is the "d" of VOICE_STATE_UPDATE. ChannelID is "" when
// the user left voice.
type VoiceStateUpdate struct {
	GuildID   Snowflake `json:"guild_id,omitempty"`
	ChannelID Snowflake `json:"channel_id"`
	UserID    Snowflake `json:"user_id"`
	Member    *Member   `json:"member,omitempty"`
	SessionID string    `json:"session_id"`
	Deaf      bool      `json:"deaf"`
	Mute      bool      `json:"mute"`
	SelfDeaf  bool      `json:"self_deaf"`
	SelfMute  bool      `json:"self_mute"`
	SelfVideo bool      `json:"self_video"`
	Suppress  bool      `json:"suppress"`
}

// PresenceUpdate is the "d" of PRESENCE_UPDATE. Only User.ID is guaranteed.
type PresenceUpdate struct {
	User         User              `json:"user"`
	GuildID      Snowflake         `json:"guild_id"`
	Status       string            `json:"status"`
	Activities   []json.RawMessage `json:"activities"`
	ClientStatus map[string]string `json:"client_status"`
}

// Decode unmarshals the entry's "d" into a T, whatever the event name.
func Decode[T any](m Message) (T, error) {
	var v T
	if err := sonic.Unmarshal(m.D, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("decode %s of entry %s into %s: %w", m.T, m.ID, reflect.TypeOf(&v).Elem(), err)
	}
	return v, nil
}

// decodeEvent checks the event name, then decodes "d".
func decodeEvent[T any](m Message, names ...string) (T, error) {
	for _, n := range names {
		if m.T == n {
			return Decode[T](m)
		}
	}
	var zero T
	return zero, fmt.Errorf("decode %s of entry %s: %w: want %v", m.T, m.ID, ErrWrongEvent, names)
}

// DecodeMessageCreate decodes a MESSAGE_CREATE entry.
func DecodeMessageCreate(m Message) (MessageCreate, error) {
	return decodeEvent[MessageCreate](m, "MESSAGE_CREATE")
}

// DecodeMessageUpdate decodes a MESSAGE_UPDATE entry.
func DecodeMessageUpdate(m Message) (MessageUpdate, error) {
	return decodeEvent[MessageUpdate](m, "MESSAGE_UPDATE")
}

// DecodeMessageDelete decodes a MESSAGE_DELETE entry.
func DecodeMessageDelete(m Message) (MessageDelete, error) {
	return decodeEvent[MessageDelete](m, "MESSAGE_DELETE")
}

// DecodeInteractionCreate decodes an INTERACTION_CREATE entry.
func DecodeInteractionCreate(m Message) (InteractionCreate, error) {
	return decodeEvent[InteractionCreate](m, "INTERACTION_CREATE")
}

// DecodeGuildMemberAdd decodes a GUILD_MEMBER_ADD entry.
func DecodeGuildMemberAdd(m Message) (GuildMemberAdd, error) {
	return decodeEvent[GuildMemberAdd](m, "GUILD_MEMBER_ADD")
}

// DecodeGuildMemberUpdate decodes a GUILD_MEMBER_UPDATE entry.
func DecodeGuildMemberUpdate(m Message) (GuildMemberUpdate, error) {
	return decodeEvent[GuildMemberUpdate](m, "GUILD_MEMBER_UPDATE")
}

// DecodeGuildMemberRemove decodes a GUILD_MEMBER_REMOVE entry.
func DecodeGuildMemberRemove(m Message) (GuildMemberRemove, error) {
	return decodeEvent[GuildMemberRemove](m, "GUILD_MEMBER_REMOVE")
}

// DecodeGuildCreate decodes a GUILD_CREATE entry.
func DecodeGuildCreate(m Message) (GuildCreate, error) {
	return decodeEvent[GuildCreate](m, "GUILD_CREATE")
}

// DecodeGuildDelete decodes a GUILD_DELETE entry.
func DecodeGuildDelete(m Message) (GuildDelete, error) {
	return decodeEvent[GuildDelete](m, "GUILD_DELETE")
}

// DecodeReady decodes a READY entry.
func DecodeReady(m Message) (Ready, error) {
	return decodeEvent[Ready](m, "READY")
}

// DecodeChannel decodes a CHANNEL_CREATE, CHANNEL_UPDATE or CHANNEL_DELETE entry.
func DecodeChannel(m Message) (Channel, error) {
	return decodeEvent[Channel](m, "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE")
}

// DecodeGuildRole decodes a GUILD_ROLE_CREATE or GUILD_ROLE_UPDATE entry.
func DecodeGuildRole(m Message) (GuildRoleEvent, error) {
	return decodeEvent[GuildRoleEvent](m, "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE")
}

// DecodeGuildRoleDelete decodes a GUILD_ROLE_DELETE entry.
func DecodeGuildRoleDelete(m Message) (GuildRoleDelete, error) {
	return decodeEvent[GuildRoleDelete](m, "GUILD_ROLE_DELETE")
}

// DecodeVoiceStateUpdate decodes a VOICE_STATE_UPDATE entry.
func DecodeVoiceStateUpdate(m Message) (VoiceStateUpdate, error) {
	return decodeEvent[VoiceStateUpdate](m, "VOICE_STATE_UPDATE")
}

// DecodePresenceUpdate decodes a PRESENCE_UPDATE entry.
func DecodePresenceUpdate(m Message) (PresenceUpdate, error) {
	return decodeEvent[PresenceUpdate](m, "PRESENCE_UPDATE")
}

// DecodeBefore unmarshals the entry's before image (the cached object before
// an UPDATE/DELETE event). ok is false when the entry has none.
func DecodeBefore[T any](m Message) (v T, ok bool, err error) {
	if len(m.Before) == 0 {
		return v, false, nil
	}
	if err := sonic.Unmarshal(m.Before, &v); err != nil {
		var zero T
		return zero, false, fmt.Errorf("decode before image of %s entry %s into %s: %w", m.T, m.ID, reflect.TypeOf(&v).Elem(), err)
	}
	return v, true, nil
}
