package broker

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
)

// A generator of Discord-shaped payloads for the cache tests and benchmark.
// Ids are above 2^53 so a snowflake turned into a float would show.

const (
	wGuildBase   = 900000000000000001
	wUserBase    = 800000000000000001
	wChannelBase = 700000000000000001
	wRoleBase    = 600000000000000001
	wThreadBase  = 500000000000000001
)

func wid(base, i int) string { return strconv.FormatInt(int64(base+i), 10) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

type obj = map[string]any

func wUser(u, variant int) obj {
	return obj{
		"id": wid(wUserBase, u), "username": fmt.Sprintf("user%d", u), "discriminator": "0",
		"global_name": fmt.Sprintf("Ünïcødé 🎉 %d.%d", u, variant), "avatar": nil, "bot": false,
		"public_flags": 0,
	}
}

func wMember(u, variant int, roles []string, withGuild string) obj {
	if roles == nil {
		roles = []string{}
	}
	m := obj{
		"user": wUser(u, variant), "nick": nil, "roles": roles,
		"joined_at": "2024-03-01T12:00:00.000000+00:00", "premium_since": nil,
		"deaf": false, "mute": false, "flags": 0, "pending": false,
	}
	if variant%2 == 1 {
		m["nick"] = fmt.Sprintf("nick %d", variant)
	}
	if withGuild != "" {
		m["guild_id"] = withGuild
	}
	return m
}

func wChannel(g string, c, variant int, withGuild bool) obj {
	ch := obj{
		"id": wid(wChannelBase, c), "type": 0, "name": fmt.Sprintf("chan-%d-%d", c, variant),
		"position": variant, "permission_overwrites": []any{}, "nsfw": false, "topic": nil,
		"parent_id": nil, "rate_limit_per_user": 0,
	}
	if withGuild {
		ch["guild_id"] = g
	}
	return ch
}

func wThread(g string, t, parent, variant int) obj {
	return obj{
		"id": wid(wThreadBase, t), "type": 11, "guild_id": g, "parent_id": wid(wChannelBase, parent),
		"name": fmt.Sprintf("thread-%d-%d", t, variant), "owner_id": wid(wUserBase, 0),
		"thread_metadata": obj{"archived": false, "auto_archive_duration": 1440, "locked": false},
		"message_count":   variant, "member_count": 1,
	}
}

func wRole(r, variant int) obj {
	return obj{
		"id": wid(wRoleBase, r), "name": fmt.Sprintf("role %d v%d", r, variant), "color": 0,
		"colors": obj{"primary_color": 0, "secondary_color": nil, "tertiary_color": nil},
		"hoist":  false, "position": r, "permissions": "1071698660929", "managed": false,
		"mentionable": false, "flags": 0, "icon": nil, "unicode_emoji": nil,
	}
}

func wEmojis(g string, n, variant int) []any {
	out := []any{}
	for i := 0; i < n; i++ {
		out = append(out, obj{"id": wid(wRoleBase+1000, i), "name": fmt.Sprintf("e%d_%d", i, variant),
			"roles": []string{}, "require_colons": true, "managed": false, "animated": false, "available": true})
	}
	return out
}

func wVoice(g string, u, c int, withGuild bool) obj {
	v := obj{
		"user_id": wid(wUserBase, u), "channel_id": wid(wChannelBase, c), "session_id": fmt.Sprintf("vs%d", u),
		"deaf": false, "mute": false, "self_deaf": false, "self_mute": true, "self_video": false,
		"suppress": false, "request_to_speak_timestamp": nil,
	}
	if withGuild {
		v["guild_id"] = g
	}
	return v
}

func wPresence(g string, u int, status string, withGuild bool) obj {
	p := obj{
		"user": obj{"id": wid(wUserBase, u)}, "status": status,
		"activities": []any{}, "client_status": obj{"desktop": status},
	}
	if withGuild {
		p["guild_id"] = g
	}
	return p
}

// wGuildCreate is a GUILD_CREATE of guild gi with the members users.
func wGuildCreate(gi, variant int, users []int, large bool) string {
	g := wid(wGuildBase, gi)
	var members, voice, pres []any
	for _, u := range users {
		members = append(members, wMember(u, variant, []string{wid(wRoleBase, u%3)}, ""))
		if u%4 == 0 {
			voice = append(voice, wVoice(g, u, 1, false))
		}
		if u%2 == 0 {
			pres = append(pres, wPresence(g, u, "online", false))
		}
	}
	if members == nil {
		members = []any{}
	}
	if voice == nil {
		voice = []any{}
	}
	if pres == nil {
		pres = []any{}
	}
	chans := []any{wChannel(g, 1, variant, false), wChannel(g, 2, variant, false)}
	roles := []any{wRole(0, variant), wRole(1, variant), wRole(2, variant)}
	return mustJSON(obj{
		"id": g, "name": fmt.Sprintf("Gùild %d v%d", gi, variant), "icon": nil, "owner_id": wid(wUserBase, 0),
		"features": []string{}, "afk_timeout": 300, "verification_level": 1, "premium_tier": 0,
		"joined_at": "2024-01-01T00:00:00.000000+00:00", "large": large, "unavailable": false,
		"member_count": len(users), "roles": roles, "emojis": wEmojis(g, 2, variant), "stickers": []any{},
		"channels": chans, "threads": []any{wThread(g, 1, 1, variant)}, "members": members,
		"voice_states": voice, "presences": pres, "stage_instances": []any{},
		"guild_scheduled_events": []any{}, "soundboard_sounds": []any{},
	})
}

// wEvent is one generated dispatch.
type wEvent struct {
	T string
	D string
}

// wRandomEvent draws a random cache-affecting dispatch over a small world
// (guilds 0..2, users 0..11, channels 1..4, threads 1..3, roles 0..3).
func wRandomEvent(r *rand.Rand) wEvent {
	gi := r.IntN(3)
	g := wid(wGuildBase, gi)
	u := r.IntN(12)
	v := r.IntN(1000)
	switch r.IntN(22) {
	case 0, 1:
		var users []int
		for x := 0; x < 12; x++ {
			if r.IntN(2) == 0 {
				users = append(users, x)
			}
		}
		return wEvent{"GUILD_CREATE", wGuildCreate(gi, v, users, r.IntN(3) == 0)}
	case 2:
		return wEvent{"GUILD_UPDATE", mustJSON(obj{"id": g, "name": fmt.Sprintf("renamed %d", v), "roles": []any{wRole(0, v)},
			"emojis": wEmojis(g, r.IntN(3), v), "features": []string{}, "description": nil})}
	case 3:
		d := obj{"id": g}
		if r.IntN(2) == 0 {
			d["unavailable"] = true
		}
		return wEvent{"GUILD_DELETE", mustJSON(d)}
	case 4:
		return wEvent{"CHANNEL_CREATE", mustJSON(wChannel(g, 1+r.IntN(4), v, true))}
	case 5:
		return wEvent{"CHANNEL_UPDATE", mustJSON(wChannel(g, 1+r.IntN(4), v, true))}
	case 6:
		return wEvent{"CHANNEL_DELETE", mustJSON(wChannel(g, 1+r.IntN(4), v, true))}
	case 7:
		return wEvent{"THREAD_CREATE", mustJSON(wThread(g, 1+r.IntN(3), 1+r.IntN(4), v))}
	case 8:
		return wEvent{"THREAD_DELETE", mustJSON(obj{"id": wid(wThreadBase, 1+r.IntN(3)), "guild_id": g, "parent_id": wid(wChannelBase, 1), "type": 11})}
	case 9:
		d := obj{"guild_id": g, "threads": []any{wThread(g, 1+r.IntN(3), 2, v)}, "members": []any{}}
		if r.IntN(2) == 0 {
			d["channel_ids"] = []string{wid(wChannelBase, 1+r.IntN(4)), wid(wChannelBase, 2)}
		}
		return wEvent{"THREAD_LIST_SYNC", mustJSON(d)}
	case 10:
		return wEvent{"GUILD_ROLE_CREATE", mustJSON(obj{"guild_id": g, "role": wRole(r.IntN(4), v)})}
	case 11:
		return wEvent{"GUILD_ROLE_UPDATE", mustJSON(obj{"guild_id": g, "role": wRole(r.IntN(4), v)})}
	case 12:
		return wEvent{"GUILD_ROLE_DELETE", mustJSON(obj{"guild_id": g, "role_id": wid(wRoleBase, r.IntN(4))})}
	case 13:
		return wEvent{"GUILD_MEMBER_ADD", mustJSON(wMember(u, v, nil, g))}
	case 14:
		d := obj{"guild_id": g, "user": wUser(u, v), "roles": []string{wid(wRoleBase, v%4)}, "nick": fmt.Sprintf("n%d", v),
			"joined_at": "2024-03-01T12:00:00.000000+00:00", "avatar": nil}
		if r.IntN(2) == 0 {
			d["pending"] = false
		}
		return wEvent{"GUILD_MEMBER_UPDATE", mustJSON(d)}
	case 15:
		return wEvent{"GUILD_MEMBER_REMOVE", mustJSON(obj{"guild_id": g, "user": wUser(u, v)})}
	case 16:
		var ms, ps []any
		for x := 0; x < 1+r.IntN(5); x++ {
			uu := r.IntN(12)
			ms = append(ms, wMember(uu, v, []string{}, ""))
			if x%2 == 0 {
				ps = append(ps, wPresence(g, uu, "idle", false))
			}
		}
		d := obj{"guild_id": g, "members": ms, "chunk_index": 0, "chunk_count": 1}
		if ps != nil {
			d["presences"] = ps
		}
		return wEvent{"GUILD_MEMBERS_CHUNK", mustJSON(d)}
	case 17:
		return wEvent{"GUILD_EMOJIS_UPDATE", mustJSON(obj{"guild_id": g, "emojis": wEmojis(g, r.IntN(3), v)})}
	case 18:
		return wEvent{"GUILD_STICKERS_UPDATE", mustJSON(obj{"guild_id": g, "stickers": []any{}})}
	case 19:
		vs := wVoice(g, u, 1+r.IntN(2), true)
		if r.IntN(3) == 0 {
			vs["channel_id"] = nil
		}
		vs["member"] = wMember(u, v, nil, "")
		return wEvent{"VOICE_STATE_UPDATE", mustJSON(vs)}
	case 20:
		return wEvent{"PRESENCE_UPDATE", mustJSON(wPresence(g, u, []string{"online", "idle", "dnd", "offline"}[r.IntN(4)], true))}
	default:
		return wEvent{"USER_UPDATE", mustJSON(wUser(u, v))}
	}
}
