package broker

import "errors"

var (
	// ErrNoSession is returned by SessionStore.Load when no checkpoint is
	// saved for the shard.
	ErrNoSession = errors.New("no saved session")

	// ErrBadSession is wrapped by SessionStore.Load when the checkpoint hash
	// holds something feathery did not write (the error names key and field).
	ErrBadSession = errors.New("malformed session checkpoint")

	// ErrStartLimitExhausted is wrapped by IdentifyLimiter.Wait when the
	// bot's daily session starts are used up.
	ErrStartLimitExhausted = errors.New("session start limit exhausted")

	// ErrFenced is wrapped by Publisher.Publish and Flush once a batch of
	// the shard was refused because its lease has a newer fencing number:
	// another node owns the shard, this one must stop it.
	ErrFenced = errors.New("shard fenced: another node holds its lease")

	// ErrClosed is returned by Publisher methods called after Close.
	ErrClosed = errors.New("publisher closed")
)
