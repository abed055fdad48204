package gateway

import (
	"context"
	"errors"
	"sync"
)

// ErrNoSession is returned by SessionStore.Load when no session is saved.
var ErrNoSession = errors.New("no saved session")

// Session is a shard's resume checkpoint.
type Session struct {
	ID         string
	Seq        int64
	ResumeURL  string
	ShardCount int
	Intents    uint64
}

// SessionStore loads the checkpoints that the Sink wrote, so that a shard
// started by a new process resumes instead of identifying.
//
// A shard calls Load once before it first connects. It discards a session
// whose ShardCount or Intents differ from its own and calls Delete. It calls
// Delete as well when Discord ends the session (INVALID_SESSION false, close
// codes 4007/4009), so a restart does not try to resume a dead session.
type SessionStore interface {
	Load(ctx context.Context, bot string, shard int) (Session, error)
	Delete(ctx context.Context, bot string, shard int) error
}

// MemorySessionStore is a SessionStore kept in memory. Its Checkpoint method
// is what a Sink calls once an event is durable.
type MemorySessionStore struct {
	mu       sync.Mutex
	sessions map[memKey]Session
}

type memKey struct {
	bot   string
	shard int
}

// NewMemorySessionStore returns an empty store.
func NewMemorySessionStore() *MemorySessionStore {
	return &MemorySessionStore{sessions: make(map[memKey]Session)}
}

// Load returns the saved session of (bot, shard) or ErrNoSession.
func (m *MemorySessionStore) Load(_ context.Context, bot string, shard int) (Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[memKey{bot, shard}]
	if !ok {
		return Session{}, ErrNoSession
	}
	return s, nil
}

// Delete forgets the session of (bot, shard).
func (m *MemorySessionStore) Delete(_ context.Context, bot string, shard int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, memKey{bot, shard})
	return nil
}

// Checkpoint records s for (bot, shard). Within one session the seq never
// goes back; a different session id replaces the old one.
func (m *MemorySessionStore) Checkpoint(bot string, shard int, s Session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := memKey{bot, shard}
	if old, ok := m.sessions[k]; ok && old.ID == s.ID && old.Seq > s.Seq {
		return
	}
	m.sessions[k] = s
}
