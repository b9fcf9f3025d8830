package lsm

import (
	"math"
	"sync"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// producerBounds keeps, per stream, an upper bound of the producer times
// in its index (0x11), so that the engine's re-send check can tell a
// fragment newer than everything stored without an index scan
// (MayHoldProducerTime): a camera's or an upload's new fragments, nearly
// all of them, then cost no iterator, no key buffers.
//
// Invariant: once a stream's bound is known, every producer time in its
// index is ≤ it. appendFragments raises the bound before it stages a
// fragment's index entries, so before their batch commits (a bound raised
// for a batch that then fails is still a bound): a producer time reaches
// the index only after the bound covers it. The bound is first read from
// the index under the stream's entry lock, and raising takes it too, so a
// fragment is either raised before the read (its time is in the entry,
// which the read only raises) or after it (it raises the known bound).
// Deletions leave the bound where it was (still a bound: the check then
// scans, as it always did). DeleteStream forgets the stream (its id is
// never reused). The map's lock is held only to find an entry: one
// stream's first read (a seek) holds up no other stream's writes.
type producerBounds struct {
	mu sync.Mutex
	m  map[StreamID]*producerBound
}

type producerBound struct {
	mu    sync.Mutex
	known bool  // max includes the index's newest producer time
	max   int64 // math.MinInt64: nothing raised or read
}

// entry returns the stream's bound, made if absent.
func (pb *producerBounds) entry(id StreamID) *producerBound {
	pb.mu.Lock()
	defer pb.mu.Unlock()
	b := pb.m[id]
	if b == nil {
		if pb.m == nil {
			pb.m = make(map[StreamID]*producerBound)
		}
		b = &producerBound{max: math.MinInt64}
		pb.m[id] = b
	}
	return b
}

// raise notes that a fragment at producer time ms is being staged for id.
func (pb *producerBounds) raise(id StreamID, ms int64) {
	b := pb.entry(id)
	b.mu.Lock()
	b.max = max(b.max, ms)
	b.mu.Unlock()
}

func (pb *producerBounds) forget(id StreamID) {
	pb.mu.Lock()
	delete(pb.m, id)
	pb.mu.Unlock()
}

// MayHoldProducerTime reports whether the stream's index may hold a
// fragment at producer time ms: false only when ms is after every producer
// time in it (the bound above). The first call for a stream in a process
// reads the index's newest producer time (one seek). An error reading it
// answers true, with the error (and the next call reads again).
func (d *DB) MayHoldProducerTime(id StreamID, ms int64) (bool, error) {
	b := d.bounds.entry(id)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.known {
		newest, ok, err := d.LastAtOrBefore(id, fragment.ByProducerTime, math.MaxInt64)
		if err != nil {
			return true, err
		}
		if ok {
			b.max = max(b.max, newest.ProducerMs)
		}
		b.known = true
	}
	return ms <= b.max, nil
}
