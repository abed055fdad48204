package gateway

import "errors"

// ConnectionEnd says why one connection of a shard ended, for metrics
// (ManagerConfig.OnConnectionEnd).
type ConnectionEnd struct {
	Bot   string
	Shard int
	// CloseCode is the code of the gateway's close frame; 0 when the
	// connection ended without one.
	CloseCode int
	// InvalidSession is set when the gateway sent INVALID_SESSION;
	// Resumable is its d.
	InvalidSession, Resumable bool
}

// reportEnd tells OnConnectionEnd why the connection ended.
func (s *shard) reportEnd(err error) {
	f := s.m.cfg.OnConnectionEnd
	if f == nil || err == nil {
		return
	}
	end := ConnectionEnd{Bot: s.bot.cfg.Name, Shard: s.id}
	var ce *CloseError
	var inv *invalidSessionError
	switch {
	case errors.As(err, &ce):
		end.CloseCode = ce.Code
	case errors.As(err, &inv):
		end.InvalidSession, end.Resumable = true, inv.resumable
	}
	f(end)
}
