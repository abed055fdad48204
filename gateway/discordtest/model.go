package discordtest

// registerModelEvents adds the generators of events that change the model.
func registerModelEvents() {}

// applyLocked applies an injected dispatch to the model when it is an event
// the model knows; it returns the event's guild id and the before image.
func (s *Server) applyLocked(t string, d []byte) (guild string, before []byte, err error) {
	return "", nil, nil
}

func (c *gwConn) requestMembers(d []byte) {}
