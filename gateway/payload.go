package gateway

import (
	"encoding/json"
	"fmt"
	"runtime"
	"strconv"
)

// Gateway opcodes.
const (
	opDispatch       = 0
	opHeartbeat      = 1
	opIdentify       = 2
	opResume         = 6
	opReconnect      = 7
	opRequestMembers = 8
	opInvalidSession = 9
	opHello          = 10
	opHeartbeatACK   = 11
)

// maxSendPayload is Discord's limit for a payload a client sends (close
// code 4002 above it).
const maxSendPayload = 4096

type identifyProperties struct {
	OS      string `json:"os"`
	Browser string `json:"browser"`
	Device  string `json:"device"`
}

type identifyData struct {
	Token          string             `json:"token"`
	Properties     identifyProperties `json:"properties"`
	LargeThreshold int                `json:"large_threshold,omitempty"`
	Shard          [2]int             `json:"shard"`
	Presence       json.RawMessage    `json:"presence,omitempty"`
	Intents        uint64             `json:"intents"`
}

type outgoing[T any] struct {
	Op int `json:"op"`
	D  T   `json:"d"`
}

// identifyPayload builds IDENTIFY (op 2). It holds the token: never log it.
func identifyPayload(b *BotConfig, shard, count int) ([]byte, error) {
	p, err := json.Marshal(outgoing[identifyData]{Op: opIdentify, D: identifyData{
		Token:          b.Token,
		Properties:     identifyProperties{OS: runtime.GOOS, Browser: "feathery", Device: "feathery"},
		LargeThreshold: b.LargeThreshold,
		Shard:          [2]int{shard, count},
		Presence:       b.Presence,
		Intents:        b.Intents,
	}})
	if err != nil {
		// The token is a plain string; only Presence can fail here.
		return nil, fmt.Errorf("encode identify: invalid presence JSON")
	}
	if len(p) > maxSendPayload {
		return nil, fmt.Errorf("encode identify: payload of %d bytes over Discord's %d", len(p), maxSendPayload)
	}
	return p, nil
}

type resumeData struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int64  `json:"seq"`
}

// resumePayload builds RESUME (op 6). It holds the token: never log it.
func resumePayload(token, session string, seq int64) ([]byte, error) {
	p, err := json.Marshal(outgoing[resumeData]{Op: opResume, D: resumeData{Token: token, SessionID: session, Seq: seq}})
	if err != nil {
		return nil, fmt.Errorf("encode resume: %w", err)
	}
	return p, nil
}

// appendHeartbeat appends {"op":1,"d":seq} (null before the first dispatch).
func appendHeartbeat(b []byte, seq int64) []byte {
	b = append(b, `{"op":1,"d":`...)
	if seq > 0 {
		b = strconv.AppendInt(b, seq, 10)
	} else {
		b = append(b, "null"...)
	}
	return append(b, '}')
}

// appendRequestMembers appends a Request Guild Members (op 8) asking for
// every member of guild.
func appendRequestMembers(b []byte, guild uint64) []byte {
	b = append(b, `{"op":8,"d":{"guild_id":"`...)
	b = strconv.AppendUint(b, guild, 10)
	return append(b, `","query":"","limit":0}}`...)
}

// knownEvents interns the dispatch names Discord sends, so Event.Type costs
// no allocation.
var knownEvents = func() map[string]string {
	names := []string{
		"READY", "RESUMED", "APPLICATION_COMMAND_PERMISSIONS_UPDATE",
		"AUTO_MODERATION_RULE_CREATE", "AUTO_MODERATION_RULE_UPDATE", "AUTO_MODERATION_RULE_DELETE", "AUTO_MODERATION_ACTION_EXECUTION",
		"CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "CHANNEL_PINS_UPDATE", "CHANNEL_INFO",
		"THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE", "THREAD_LIST_SYNC", "THREAD_MEMBER_UPDATE", "THREAD_MEMBERS_UPDATE",
		"ENTITLEMENT_CREATE", "ENTITLEMENT_UPDATE", "ENTITLEMENT_DELETE",
		"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE", "GUILD_AUDIT_LOG_ENTRY_CREATE", "GUILD_BAN_ADD", "GUILD_BAN_REMOVE",
		"GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE", "GUILD_INTEGRATIONS_UPDATE",
		"GUILD_MEMBER_ADD", "GUILD_MEMBER_REMOVE", "GUILD_MEMBER_UPDATE", "GUILD_MEMBERS_CHUNK",
		"GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE",
		"GUILD_SCHEDULED_EVENT_CREATE", "GUILD_SCHEDULED_EVENT_UPDATE", "GUILD_SCHEDULED_EVENT_DELETE",
		"GUILD_SCHEDULED_EVENT_USER_ADD", "GUILD_SCHEDULED_EVENT_USER_REMOVE",
		"GUILD_SOUNDBOARD_SOUND_CREATE", "GUILD_SOUNDBOARD_SOUND_UPDATE", "GUILD_SOUNDBOARD_SOUND_DELETE",
		"GUILD_SOUNDBOARD_SOUNDS_UPDATE", "SOUNDBOARD_SOUNDS",
		"INTEGRATION_CREATE", "INTEGRATION_UPDATE", "INTEGRATION_DELETE", "INTERACTION_CREATE",
		"INVITE_CREATE", "INVITE_DELETE",
		"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK",
		"MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "MESSAGE_REACTION_REMOVE_ALL", "MESSAGE_REACTION_REMOVE_EMOJI",
		"MESSAGE_POLL_VOTE_ADD", "MESSAGE_POLL_VOTE_REMOVE",
		"PRESENCE_UPDATE", "RATE_LIMITED",
		"STAGE_INSTANCE_CREATE", "STAGE_INSTANCE_UPDATE", "STAGE_INSTANCE_DELETE",
		"SUBSCRIPTION_CREATE", "SUBSCRIPTION_UPDATE", "SUBSCRIPTION_DELETE",
		"TYPING_START", "USER_UPDATE", "VOICE_CHANNEL_EFFECT_SEND", "VOICE_CHANNEL_STATUS_UPDATE",
		"VOICE_CHANNEL_START_TIME_UPDATE", "VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE", "WEBHOOKS_UPDATE",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}()

// eventName returns t as a string, interned when it is a known event name.
func eventName(t []byte) string {
	if s, ok := knownEvents[string(t)]; ok {
		return s
	}
	return string(t)
}
