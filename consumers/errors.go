package consumers

import "errors"

var (
	// ErrWrongEvent: a typed decoder was given an entry of another event.
	ErrWrongEvent = errors.New("wrong event type")
	// ErrConfig: a GroupConfig is not usable; the wrapping error names the field.
	ErrConfig = errors.New("invalid group config")
)
