// Package engine is kvsedge's core: the stream registry with Kinesis Video
// Streams semantics (names, ARNs, versions, statuses, retention, tags, and the
// per-stream image-generation, notification and storage configurations), on
// top of the lsm store.
//
// The engine knows nothing of HTTP, RTSP or serf. Callers (serve, ingest,
// cluster) hand it validated values and get domain errors back (ErrStreamNotFound,
// ErrVersionMismatch, …); mapping them to KVS error codes is the caller's job.
//
// # Consistency
//
// Every mutation is written to the store with a synced batch before it becomes
// visible in memory, under the registry lock, so a reader never sees a change
// that a crash could undo, and concurrent creates of one name have exactly one
// winner.
package engine
