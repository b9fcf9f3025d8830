package lsm

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// syncGroup implements Options.SyncWindow: PutFragment appends its media
// without a sync and hands its index batch here; a window after the first
// such fragment, the group fdatasyncs every segment written to in the
// window, then commits all the window's index batches in one Pebble batch
// (not synced, as PutFragment's: replay.go), then lets every PutFragment
// of the window return. The order is the one PutFragment keeps alone
// (records durable before the index that points at them; FORMAT.md), so a
// crash leaves the same states; only more fragments share each segment
// sync, which spares the flash of SD cards, at the cost of up to one
// window of ack latency.
type syncGroup struct {
	db     *pebble.DB
	window time.Duration
	phases *writePhases

	mu      sync.Mutex
	batch   *pebble.Batch
	waiters []waiter
	armed   bool
	closed  bool
	// syncs counts group syncs (tests, metrics).
	syncs uint64
	// flushMu serialises flushes, so Close can wait for one in flight.
	flushMu sync.Mutex
}

func newSyncGroup(db *pebble.DB, window time.Duration, phases *writePhases) *syncGroup {
	return &syncGroup{db: db, window: window, phases: phases}
}

// commit adds b (after its media was appended to ss without a sync) to the
// current window and waits for the window's syncs.
// waiter is one fragment of the window: where its media went, and where
// to report.
type waiter struct {
	ss   *streamSegments
	seq  uint64
	gen  uint64 // the fragment's append count (streamSegments.written)
	done chan error
}

func (g *syncGroup) commit(ss *streamSegments, seq, gen uint64, b *pebble.Batch) error {
	done := make(chan error, 1)
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return errClosed
	}
	if g.batch == nil {
		g.batch = g.db.NewBatch()
	}
	if err := g.batch.Apply(b, nil); err != nil {
		g.mu.Unlock()
		return fmt.Errorf("lsm: staging fragment: %w", err)
	}
	g.waiters = append(g.waiters, waiter{ss: ss, seq: seq, gen: gen, done: done})
	if !g.armed {
		g.armed = true
		time.AfterFunc(g.window, g.flush)
	}
	g.mu.Unlock()
	return <-done
}

// flush syncs the window's segments, then commits its index batch,
// and reports the result to every fragment of the window.
func (g *syncGroup) flush() {
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	g.mu.Lock()
	if g.batch == nil { // flushed by close already
		g.mu.Unlock()
		return
	}
	batch, waiters := g.batch, g.waiters
	g.batch, g.waiters, g.armed = nil, nil, false
	g.syncs++
	g.mu.Unlock()
	// Sync every segment written in the window (a stream's first waiter
	// syncs all its appends so far; the rest find theirs synced); a
	// fragment whose segment failed gets that error, and then the batch
	// is not committed (its index entries would point at lost media).
	// One after another: each fdatasync makes its own device flush, and
	// running them at once (a goroutine per stream, tried) measured no
	// faster on this project's VM (BenchmarkSyncWindowFlush, 3 runs
	// each, alternated): 8 streams' segments took 3.7-5.4 ms a window
	// one after another, 3.7-4.5 ms at once; one fdatasync 0.6-1.0 ms.
	var err error
	failed := make([]error, len(waiters))
	start := time.Now()
	for i, w := range waiters {
		if e := w.ss.syncDirty(w.seq, w.gen); e != nil {
			failed[i] = e
			if err == nil {
				err = e
			}
		}
	}
	if err == nil {
		g.phases.mediaSync.Observe(time.Since(start))
		start = time.Now()
		// Not synced, as PutFragments' commit (replay.go).
		if e := batch.Commit(pebble.NoSync); e != nil {
			err = fmt.Errorf("lsm: committing fragments: %w", e)
		} else {
			g.phases.indexCommit.Observe(time.Since(start))
		}
	}
	_ = batch.Close()
	for i, w := range waiters {
		switch {
		case failed[i] != nil:
			w.done <- failed[i]
		case err != nil:
			// Another fragment's media was lost: the window's batch was
			// not committed, so this one is not stored either.
			w.done <- err
		default:
			w.done <- nil
		}
	}
}

// errClosed: the store was closed.
var errClosed = errors.New("lsm: the store is closed")

// close flushes a pending window at once (its fragments are then durable
// or get the error) and refuses later commits; a timer that fires later
// finds nothing to do.
func (g *syncGroup) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.flush()
}

// GroupSyncs is how many group syncs ran (0 without a sync window).
func (d *DB) GroupSyncs() uint64 {
	if d.group == nil {
		return 0
	}
	d.group.mu.Lock()
	defer d.group.mu.Unlock()
	return d.group.syncs
}
