package gateway

import (
	"errors"
	"fmt"
)

// ErrFatal is wrapped by the error of a shard that stopped for good because
// Discord refused it (bad token, invalid shard, sharding required, invalid
// API version, invalid or disallowed intents).
var ErrFatal = errors.New("fatal gateway error")

// closeAction is what a shard does after the gateway closed its connection.
type closeAction uint8

const (
	actionResume     closeAction = iota + 1 // reconnect and RESUME
	actionNewSession                        // forget the session, reconnect and IDENTIFY
	actionFatal                             // stop the shard
)

// closeCode describes one gateway close code (protocol.md §A.8).
type closeCode struct {
	Name   string
	Action closeAction
}

// closeCodes is the decision table for the gateway's close codes. Codes not
// listed (including 1000/1001 and connection drops) resume.
var closeCodes = map[int]closeCode{
	4000: {"unknown error", actionResume},
	4001: {"unknown opcode", actionResume},
	4002: {"decode error", actionResume},
	4003: {"not authenticated", actionNewSession},
	4004: {"authentication failed", actionFatal},
	4005: {"already authenticated", actionResume},
	4007: {"invalid seq", actionNewSession},
	4008: {"rate limited", actionResume},
	4009: {"session timed out", actionNewSession},
	4010: {"invalid shard", actionFatal},
	4011: {"sharding required", actionFatal},
	4012: {"invalid API version", actionFatal},
	4013: {"invalid intents", actionFatal},
	4014: {"disallowed intents", actionFatal},
}

// CloseError is the close frame the gateway ended a connection with.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	name := "close"
	if c, ok := closeCodes[e.Code]; ok {
		name = c.Name
	}
	if e.Reason != "" {
		return fmt.Sprintf("gateway closed the connection with %d (%s): %s", e.Code, name, e.Reason)
	}
	return fmt.Sprintf("gateway closed the connection with %d (%s)", e.Code, name)
}

func (e *CloseError) action() closeAction {
	if c, ok := closeCodes[e.Code]; ok {
		return c.Action
	}
	return actionResume
}

// clientCloseCode is what a shard closes its own connections with: on
// shutdown, zombie detection, bad frames and Sink errors. It is 4000, in the
// private range, because 1000 and 1001 end the session; Discord keeps a
// session resumable after any other code, which is what lets the next
// process RESUME.
const clientCloseCode = 4000

// ErrUnknownShard is returned for a bot or shard this manager does not run.
var ErrUnknownShard = errors.New("no such shard here")

// ErrShardRevoked says this process may no longer run a shard: another
// process owns it now (a fleet's lease moved). A Sink's Publish error or
// ManagerConfig.Admit's wrapping it stops that shard only: its connection
// closes with a resumable code, nothing is flushed (the Sink refuses), the
// other shards carry on.
var ErrShardRevoked = errors.New("shard revoked: another process owns it")
