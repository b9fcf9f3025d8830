package lsm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
)

// pebbleLogger routes Pebble's printf-style logging into slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	p.l.Log(context.Background(), slog.LevelError+4, fmt.Sprintf(format, args...), "component", "pebble")
	os.Exit(1)
}
