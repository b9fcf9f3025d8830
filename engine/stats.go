package engine

// StoreStats are the store's write figures since Open: what the engine
// gave it and what it and Pebble wrote.
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
	// fragments, in their order: the media appended to its segment (per
	// put), the segments fdatasync'ed, the index batch committed (not
	// synced: lsm/replay.go; per put, per window with a sync window).
	// What a PERSISTED ack waits for is mostly their sum.
	Append, MediaSync, IndexCommit Latency
}

// StoreStats returns the store's write figures.
func (e *Engine) StoreStats() StoreStats { return StoreStats(e.db.Stats()) }

// WriteAmplification is bytes written to disk over bytes the store was
// given (media + index), 0 before anything was written.
func (s StoreStats) WriteAmplification() float64 {
	in := s.MediaBytes + s.IndexBytesIn
	if in == 0 {
		return 0
	}
	return float64(s.MediaBytes+s.WALBytes+s.FlushBytes+s.CompactionBytes) / float64(in)
}
