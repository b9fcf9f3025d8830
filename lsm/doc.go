// Package lsm owns kvsedge's on-disk store: one Pebble database in the data
// directory's index/ (the index: its key schema, the schema version,
// durable batch commits), the per-stream media segment files it points
// into, whose records describe every fragment again so the index can be
// rebuilt from them (Repair), and the checks of both (Check, Health).
//
// It owns the key layouts and the disk encodings: the 79-byte fragment meta
// record, the fragment table and its segment references, the two time
// indexes, ingest terms, tombstones and deletion markers. They are the
// store's alone (peers exchange fragments in cluster's own encoding,
// cluster/FORMAT.md). The value types themselves
// (fragment.Number, fragment.Meta, fragment.TimeIndex, fragment.TimeCursor)
// live in the leaf package internal/fragment, shared with every layer.
// Stream records, session headers and media are opaque bytes to it. The byte
// layout of every key and value it owns, the order of syncs and what a crash
// at each step leaves are in FORMAT.md beside this file; keys.go is the only
// code that builds or parses keys.
//
// Files by job:
//
//	options.go    Options (cache, memtable, SegmentBytes, SyncWindow) and
//	              their defaults and limits
//	db.go         Open (schema check, orphan media: removed only with a
//	              deletion marker, never media the index cannot account
//	              for), Close, the session key, CorruptionError
//	keys.go       table prefixes, key builders and parsers, StreamID
//	streams.go    stream records, stream id allocation, DeleteStream
//	fragments.go  the fragment meta encoding, ingest terms, PutFragment(s),
//	              PutFragmentsAsync,
//	              session headers, the fragment reads, the time indexes
//	              (ScanTime, ScanTimeBackward, LastAtOrBefore), retention deletes
//	              (DeleteBefore)
//	segments.go   media segment files: append, roll (a swap to the next
//	              segment prepared in the background once the active one
//	              is 3/4 full, else inline), preallocate, read, unlink; an
//	              unused prepared segment removed at the next start
//	segdirect.go  O_DIRECT appends through block-aligned stage buffers
//	              (segdirect_linux.go; elsewhere ordinary writes)
//	segrecord.go  the records every segment byte is in (segment start,
//	              session header, fragment), their CRCs and the scan
//	layout.go     the data directory: index/, finishing an interrupted
//	              repair swap, moving an old layout's index into index/
//	check.go      Check: the index (with, read-only, what replay would
//	              add) against the segments
//	repair.go     Repair: a new index from the old one's readable part and
//	              the segment records; nothing deleted, damage set aside
//	health.go     damage met at run time (Health), Pebble's logger and
//	              event listener, the crash-loop breaker for Fatalf
//	space.go      the disk-full guard and the reserve file (the free space
//	              read by fstatfs on the open directory: space_linux.go)
//	producerbound.go  each stream's newest producer time as an upper
//	              bound (MayHoldProducerTime: a re-send check needs no
//	              index scan for a fragment after everything stored)
//	groupsync.go  the sync window (Options.SyncWindow) for SD cards
//	replay.go     one sync per fragment: the replay checkpoints, the
//	              checkpointer that writes them (the WAL's sync), and
//	              Open's replay of the records after them
//	compactsched.go  Pebble's compaction scheduler for the store: the
//	              default's grants, without its ten wakes a second
//	replica.go    what replication reads and writes: the numbers listing
//	              (FragmentNumbers), tombstones
//	usage.go      stored bytes, disk bytes, FirstFragment, write figures
//	              and the time of each write step (Stats), segment rolls (SegmentRolls, ActiveSegment), dropping
//	              idle streams' prepared segments (DropIdlePreparedSegments)
//
// # Durability
//
// Every mutation is a Pebble write committed with pebble.Sync (the WAL is
// fsynced), so a call that returns nil has reached stable storage, with
// three exceptions: the removal of a deletion marker after DeleteStream and
// segment unlinks, which only tidy up (FORMAT.md says what a crash
// leaves), and the index batches of fragments. A fragment's segment record
// holds all its index entries, and is fdatasync'ed before its batch is
// committed, without a WAL sync: when PutFragment returns the fragment and
// its entries are durable in the segment, one device round trip sooner
// than a synced commit would allow. What a crash takes of those commits,
// Open takes back from the records after each stream's replay checkpoint,
// which the checkpointer writes (and so syncs the WAL) every
// Options.IndexSyncInterval while fragments are stored, but those a failed
// put voided before returning its error (replay.go).
// PutFragments stores consecutive fragments of a stream with one media
// sync and one commit, and PutFragmentsAsync does so in the background,
// chained to the previous put of the stream (committed after it, not at
// all if it failed), so that an upload appends its next fragments while
// the previous ones sync. With Options.SyncWindow the fragments finishing
// within a window also share their segment syncs and one index commit
// (groupsync.go), at the cost of up to one window before PutFragment
// returns.
//
// # Concurrency
//
// A DB is safe for concurrent use. Stream ids are allocated under a mutex
// and persisted in the same batch as the stream record that first uses
// them, so no two stored streams ever share an id, even across crashes (an
// id allocated but never written may be handed out again after a restart:
// nothing was stored under it). Appends to one stream's segments are
// serialised by that stream's mutex, which a direct segment's fdatasync
// does not hold (segments.go, syncDirty), and neither does the preparation
// of its next segment (a goroutine that takes no lsm lock but the space
// guard's; a roll, retention, DeleteStream and Close wait for it under the
// stream's mutex). lsm's locks (DB.mu, the sync window's
// flushMu and mu, the segment store's mu and each stream's segment mu) are
// taken after every engine lock and never call back into the engine; the
// whole lock order, lsm's included, is written once in the engine package
// comment.
package lsm
