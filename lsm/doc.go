// Package lsm owns kvsedge's on-disk store: one Pebble database in the data
// directory (the index: its key schema, the schema version, durable batch
// commits) and the per-stream media segment files it points into.
//
// It owns the key layouts, fragment numbers (FragNum: term | node | seq and
// their fixed-width decimal form), the fragment meta record and the time
// indexes; stream records, session headers and media are opaque bytes to it.
// The byte layout of every key and value it owns is drawn in FORMAT.md beside
// this file; keys.go is the only code that builds or parses keys.
//
// Files by job: db.go (open, schema, orphan media: removed only with a
// deletion marker, never media the index cannot account for), streams.go,
// fragments.go (the fragment table, time indexes, retention deletes),
// segments.go (media segment files), groupsync.go (the sync window for SD
// cards), replica.go (numbers listing, meta encoding for peers,
// tombstones), usage.go (stored bytes, disk bytes, write figures).
//
// # Durability
//
// Every mutation goes through a Pebble batch committed with pebble.Sync, so a
// call that returns nil has reached stable storage (the WAL is fsynced);
// fragment media is fdatasync'ed in its segment before the batch that
// indexes it.
// Pebble shares one WAL fsync among batches committed concurrently (group
// commit), so many writers do not each pay an fsync.
//
// # Concurrency
//
// A DB is safe for concurrent use. Stream ids are allocated under a mutex and
// persisted in the same batch as the stream record that first uses them, so an
// id is never handed out twice, even across crashes.
package lsm
