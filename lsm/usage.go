package lsm

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/latency"
)

// StreamMediaBytes sums the media length of the stream's stored fragments
// (what the index accounts for). It reads the fragment table once; callers
// keep a running count after that.
func (d *DB) StreamMediaBytes(id StreamID) (int64, int, error) {
	lower, upper := streamSpan(prefixFragment, id)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return 0, 0, fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	var total int64
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, fmt.Errorf("lsm: %w", err)
		}
		m, err := decodeMeta(it.Key(), v)
		if err != nil {
			return 0, 0, err
		}
		total += int64(m.MediaLen)
		n++
	}
	return total, n, it.Error()
}

// FirstFragment returns the meta of the stream's oldest stored fragment.
func (d *DB) FirstFragment(id StreamID) (fragment.Meta, bool, error) { return d.endFragment(id, false) }

// MediaDiskBytes is what the media segment files take on disk, whether or
// not the index accounts for them.
func (d *DB) MediaDiskBytes() (int64, error) { return d.segs.diskBytes() }

// StoreStats are the store's write figures since Open. engine.StoreStats
// has the same fields (a conversion, not a copy by hand).
type StoreStats struct {
	// MediaBytes were appended to segments; IndexBytesIn were written to
	// Pebble by the store (batches).
	MediaBytes, IndexBytesIn int64
	// WALBytes, FlushBytes and CompactionBytes are what Pebble wrote.
	WALBytes, FlushBytes, CompactionBytes int64
	// Compactions and Flushes count Pebble's background work.
	Compactions, Flushes int64
	// CacheHits and CacheMisses are the block cache's.
	CacheHits, CacheMisses int64
	// MemtableBytes is the memtables' current size.
	MemtableBytes uint64
	// ReplayedFragments were indexed at Open from their segment records:
	// their index commits had not reached the disk when the box stopped
	// (lsm/replay.go).
	ReplayedFragments int64
	// Append, MediaSync and IndexCommit time the steps of storing
	// fragments, in their order (FORMAT.md): the media appended to its
	// segment (per put), the segments fdatasync'ed, the index batch
	// committed (not synced: lsm/replay.go; per put, per window with a
	// sync window). What a PERSISTED ack waits for is mostly their sum.
	Append, MediaSync, IndexCommit latency.Snapshot
}

// writePhases are StoreStats' Append, MediaSync and IndexCommit.
type writePhases struct {
	append, mediaSync, indexCommit latency.Histogram
}

// Stats returns the store's figures.
func (d *DB) Stats() StoreStats {
	m := d.db.Metrics()
	t := m.Total()
	return StoreStats{
		MediaBytes:        d.segs.written.Load(),
		IndexBytesIn:      int64(m.WAL.BytesIn),
		WALBytes:          int64(m.WAL.BytesWritten),
		FlushBytes:        int64(m.Flush.WriteThroughput.Bytes),
		CompactionBytes:   int64(t.TableBytesCompacted),
		Compactions:       m.Compact.Count,
		Flushes:           m.Flush.Count,
		CacheHits:         m.BlockCache.Hits,
		CacheMisses:       m.BlockCache.Misses,
		MemtableBytes:     m.MemTable.Size,
		ReplayedFragments: int64(d.replayed.Indexed),
		Append:            d.phases.append.Snapshot(),
		MediaSync:         d.phases.mediaSync.Snapshot(),
		IndexCommit:       d.phases.indexCommit.Snapshot(),
	}
}

// SegmentRolls counts the segment rolls since Open: prepared ones (the
// next segment was ready: a swap on the write path) and inline ones (the
// segment was made on the write path: a stream's first in a process, a
// failed preparation, Options.InlineRolls).
func (d *DB) SegmentRolls() (prepared, inline int64) {
	return d.segs.rollsPrepared.Load(), d.segs.rollsInline.Load()
}

// DropIdlePreparedSegments removes the prepared next segment of every
// stream that appended nothing for idle (a camera gone offline keeps no
// preallocated segment) and returns how many went; the stream's next roll,
// if it is written again, is inline or prepared anew.
func (d *DB) DropIdlePreparedSegments(idle time.Duration) int {
	return d.segs.dropIdlePrepared(idle)
}

// ActiveSegment returns the seq of the stream's active segment (0: none
// yet in this process), so measurements can tell which writes rolled.
func (d *DB) ActiveSegment(id StreamID) uint64 {
	ss := d.segs.stream(id)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.active == nil {
		return 0
	}
	return ss.activeSeq
}
