// Package lsm owns kvsedge's on-disk store: one Pebble database in the data
// directory, its key schema, the schema version, and durable batch commits.
//
// It knows key layouts and nothing about what the values mean: stream records
// and (later) fragment values are opaque bytes encoded by the engine. The byte
// layout of every key is drawn in FORMAT.md beside this file; keys.go is the
// only code that builds or parses them.
//
// # Durability
//
// Every mutation goes through a Pebble batch committed with pebble.Sync, so a
// call that returns nil has reached stable storage (the WAL is fsynced).
// Pebble shares one WAL fsync among batches committed concurrently (group
// commit), so many writers do not each pay an fsync.
//
// # Concurrency
//
// A DB is safe for concurrent use. Stream ids are allocated under a mutex and
// persisted in the same batch as the stream record that first uses them, so an
// id is never handed out twice, even across crashes.
package lsm
