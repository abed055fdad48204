package luascripts

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"
)

var (
	//go:embed fleet_heartbeat.lua
	fleetHeartbeatSrc string
	//go:embed fleet_leave.lua
	fleetLeaveSrc string

	fleetHeartbeatScript = rueidis.NewLuaScript(fleetHeartbeatSrc)
	fleetLeaveScript     = rueidis.NewLuaScript(fleetLeaveSrc)
)

// FleetMember is one live member of a bot's fleet.
type FleetMember struct {
	ID string
	// Expires is the server time (unix ms) the membership ends without a
	// new heartbeat.
	Expires int64
	// Details is the JSON the member stored with its heartbeat.
	Details string
}

// FleetHeartbeat records node's heartbeat (membership for ttl, with
// details) in the members sorted set and details hash (one hash slot),
// drops expired members and returns the server time (unix ms) and the live
// members in id order.
func FleetHeartbeat(ctx context.Context, c rueidis.Client, membersKey, detailsKey, node string, ttl time.Duration, details string) (now int64, members []FleetMember, err error) {
	vals, err := fleetHeartbeatScript.Exec(ctx, c, []string{membersKey, detailsKey}, []string{node, msArg(ttl), details}).AsStrSlice()
	if err != nil {
		return 0, nil, fmt.Errorf("run fleet_heartbeat script: %w", err)
	}
	if len(vals) < 1 || (len(vals)-1)%3 != 0 {
		return 0, nil, fmt.Errorf("run fleet_heartbeat script: reply has %d values, want 1+3n", len(vals))
	}
	now, err = strconv.ParseInt(vals[0], 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("run fleet_heartbeat script: server time %q is not an integer", vals[0])
	}
	for i := 1; i < len(vals); i += 3 {
		exp, err := strconv.ParseInt(vals[i+1], 10, 64)
		if err != nil {
			return 0, nil, fmt.Errorf("read fleet member %q: expiry %q is not an integer", vals[i], vals[i+1])
		}
		members = append(members, FleetMember{ID: vals[i], Expires: exp, Details: vals[i+2]})
	}
	return now, members, nil
}

// FleetLeave removes node from the members sorted set and details hash and
// reports whether it was a member.
func FleetLeave(ctx context.Context, c rueidis.Client, membersKey, detailsKey, node string) (bool, error) {
	n, err := fleetLeaveScript.Exec(ctx, c, []string{membersKey, detailsKey}, []string{node}).AsInt64()
	if err != nil {
		return false, fmt.Errorf("run fleet_leave script: %w", err)
	}
	return n == 1, nil
}
