package broker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
)

// SessionStore loads the checkpoints the Publisher's publish script writes
// (hash Keys.Session with fields session, seq, resume_url, shards,
// intents). It implements gateway.SessionStore once cmd/ converts Session.
type SessionStore struct {
	c    rueidis.Client
	keys Keys
}

// NewSessionStore returns a store reading through c with the key layout
// keys.
func NewSessionStore(c rueidis.Client, keys Keys) *SessionStore {
	return &SessionStore{c: c, keys: keys}
}

// Load returns the checkpoint of (bot, shard), ErrNoSession when none is
// saved, or an error wrapping ErrBadSession that names the key and field
// when the hash holds something else (with what could be read of it, so
// the dropped session can be named).
func (s *SessionStore) Load(ctx context.Context, bot string, shard int) (Session, error) {
	key := s.keys.Session(bot, shard)
	m, err := s.c.Do(ctx, s.c.B().Hgetall().Key(key).Build()).AsStrMap()
	if err != nil {
		return Session{}, fmt.Errorf("load session %s: %w", key, err)
	}
	if len(m) == 0 {
		return Session{}, ErrNoSession
	}
	return parseSession(key, m)
}

func parseSession(key string, m map[string]string) (Session, error) {
	bad := func(field, why string) error {
		return fmt.Errorf("load session %s: field %s: %s: %w", key, field, why, ErrBadSession)
	}
	var sess Session
	id, ok := m["session"]
	if !ok || id == "" {
		return Session{}, bad("session", "missing or empty")
	}
	sess.ID = id
	v, ok := m["seq"]
	if !ok {
		return sess, bad("seq", "missing")
	}
	seq, err := strconv.ParseInt(v, 10, 64)
	if err != nil || seq < 0 {
		return sess, bad("seq", fmt.Sprintf("%q is not a non-negative integer", v))
	}
	sess.Seq = seq
	sess.ResumeURL = m["resume_url"]
	if v, ok := m["shards"]; ok && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return sess, bad("shards", fmt.Sprintf("%q is not a non-negative integer", v))
		}
		sess.ShardCount = n
	}
	if v, ok := m["intents"]; ok && v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return sess, bad("intents", fmt.Sprintf("%q is not an unsigned integer", v))
		}
		sess.Intents = n
	}
	return sess, nil
}

// Delete forgets the checkpoint of (bot, shard).
func (s *SessionStore) Delete(ctx context.Context, bot string, shard int) error {
	key := s.keys.Session(bot, shard)
	if err := s.c.Do(ctx, s.c.B().Del().Key(key).Build()).Error(); err != nil {
		return fmt.Errorf("delete session %s: %w", key, err)
	}
	return nil
}
