package engine

import "time"

// Clock is the engine's source of wall-clock time. Tests inject a fake.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the operating system's clock.
var SystemClock Clock = systemClock{}
