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

	// ErrClosed is returned by Publisher methods called after Close.
	ErrClosed = errors.New("publisher closed")
)
