package lsm

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Damage found at run time, and the crash-loop breaker.
//
// Pebble reports on-disk corruption it meets (a block whose checksum does
// not match, in a read or a compaction) through EventListener.DataCorruption,
// whose default ends the process. kvsedge records it instead: the read or
// compaction that met it fails with Pebble's error (a read of one fragment
// fails; GetMedia skips it, engine.UnreadableError), the damage is counted
// and named in Health (so /readyz, /metrics and the log say it), and the
// process goes on.
//
// Pebble's Logger.Fatalf is its answer to an invariant violation or a failed
// MANIFEST or commit write; it must not return, so the process ends. To keep
// that from becoming a crash loop, Fatalf first appends a line to
// <data>/index-fatal (unix ms and the message, synced). Open reads it: after
// fatalLoopCount fatal errors within fatalWindow it opens the index
// read-only (no compaction or write runs, which are what fails fatally):
// reads are served, writes refused (ErrNoSpace's retriable errors are not
// used: ErrIndexFailed), and Health says why. ReadOnlyCanWrite turns true
// once fatalWindow has passed since the last one, so the owner reopens
// read-write and tries again: at most one crash per window, reads served in
// between. kvsedge repair removes the file.

const (
	fatalFile      = "index-fatal"
	fatalLoopCount = 2
	fatalWindow    = 10 * time.Minute
)

// ErrIndexFailed: the index is open read-only after repeated fatal errors.
var ErrIndexFailed = fmt.Errorf("lsm: the index failed fatally more than once and is open read-only (run kvsedge check)")

// corruptionLog counts corruption Pebble reported.
type corruptionLog struct {
	mu     sync.Mutex
	count  uint64
	last   string
	logged time.Time
}

func (c *corruptionLog) add(log *slog.Logger, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	c.last = what
	// One log line a minute at most: a damaged block met by every read
	// must not flood the log.
	if time.Since(c.logged) >= time.Minute {
		c.logged = time.Now()
		log.Error("the index is damaged: reads of the damaged part fail; run kvsedge check (box stopped) and kvsedge repair",
			"detail", what, "seen", c.count)
	}
}

// Health is the store's damage report.
type Health struct {
	// Corruptions counts on-disk corruption Pebble met since Open; Last
	// names the most recent.
	Corruptions    uint64
	LastCorruption string
	// UnknownMedia lists media directories (stream ids in hex) the index
	// has no stream for: the index was lost or replaced.
	UnknownMedia []string
	// FatalReadOnly is set when the index is open read-only after
	// repeated fatal errors; it names the last one.
	FatalReadOnly string
}

// Health reports damage found since Open.
func (d *DB) Health() Health {
	d.corruption.mu.Lock()
	defer d.corruption.mu.Unlock()
	return Health{Corruptions: d.corruption.count, LastCorruption: d.corruption.last,
		UnknownMedia: append([]string(nil), d.unknownMedia...), FatalReadOnly: d.fatal.last}
}

// fatalState is what Open read from the fatal file.
type fatalState struct {
	readOnly bool
	last     string
	lastAt   time.Time
}

// readFatal reads the fatal file: the fatal errors within fatalWindow.
func readFatal(path string, now time.Time) fatalState {
	f, err := os.Open(path)
	if err != nil {
		return fatalState{}
	}
	defer f.Close()
	var st fatalState
	recent := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ms, msg, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.ParseInt(ms, 10, 64)
		if !ok || err != nil {
			continue
		}
		at := time.UnixMilli(v)
		if now.Sub(at) < fatalWindow {
			recent++
			st.last, st.lastAt = msg, at
		}
	}
	st.readOnly = recent >= fatalLoopCount
	return st
}

// recordFatal appends one fatal error to the fatal file, synced.
func recordFatal(path, msg string) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 500 {
		msg = msg[:500]
	}
	fmt.Fprintf(f, "%d %s\n", time.Now().UnixMilli(), msg)
	_ = f.Sync()
	_ = f.Close()
}

// pebbleLogger routes Pebble's printf-style logging into slog; Fatalf
// records the error for the crash-loop breaker before the process ends.
type pebbleLogger struct {
	l         *slog.Logger
	fatalPath string
}

func (p pebbleLogger) Infof(format string, args ...interface{}) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...interface{}) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	if p.fatalPath != "" {
		recordFatal(p.fatalPath, msg)
	}
	p.l.Log(context.Background(), slog.LevelError+4, msg, "component", "pebble",
		"next", "the process ends; after a second fatal error within 10 minutes the index opens read-only")
	os.Exit(1)
}

// eventListener records corruption instead of ending the process, and
// rate-limits Pebble's background errors (a full disk or a damaged table
// retried by every compaction must not flood the log).
func eventListener(log *slog.Logger, c *corruptionLog) *pebble.EventListener {
	var mu sync.Mutex
	var last time.Time
	var suppressed int
	return &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) { c.add(log, info.String()) },
		BackgroundError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if time.Since(last) < time.Minute {
				suppressed++
				return
			}
			last = time.Now()
			log.Error("index background error", "component", "pebble", "err", err, "suppressed_since_last", suppressed)
			suppressed = 0
		},
	}
}
