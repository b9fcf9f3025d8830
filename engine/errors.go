package engine

import "errors"

// Errors that callers branch on. serve maps them to KVS error codes.
var (
	ErrStreamNotFound     = errors.New("engine: stream not found")
	ErrStreamExists       = errors.New("engine: stream already exists")
	ErrVersionMismatch    = errors.New("engine: version mismatch")
	ErrTooManyTags        = errors.New("engine: too many tags")
	ErrTooManyStreams     = errors.New("engine: stream limit reached")
	ErrInvalidRetention   = errors.New("engine: invalid data retention change")
	ErrNoDataRetention    = errors.New("engine: stream has no data retention")
	ErrStreamNotActive    = errors.New("engine: stream is not active")
	ErrConfigNotFound     = errors.New("engine: configuration not found")
	ErrInvalidStreamARN   = errors.New("engine: malformed stream ARN")
	ErrStreamNameRequired = errors.New("engine: stream name or ARN required")
)
