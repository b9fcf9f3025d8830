// Package engine is kvsedge's core: the stream registry with Kinesis Video
// Streams semantics (names, ARNs, versions, statuses, retention, tags, and the
// per-stream image-generation, notification and storage configurations) and
// the media data path on top of the lsm store: fragments in (IngestSession),
// fragments out (Cursor, Fragment, ListFragments), the hot ring,
// retention by time (retention.go), the capacity controller (capacity.go:
// bytes per stream, minimum free disk, delete-oldest or refuse-new, holds,
// the fill forecast) and the import of replicas from peers (replica.go).
//
// The engine knows nothing of HTTP, RTSP or serf. Callers (serve, ingest,
// cluster) hand it validated values and get domain errors back (ErrStreamNotFound,
// ErrVersionMismatch, …); mapping them to KVS error codes is the caller's job.
// Its sub-package mkv holds the Matroska code every path shares.
//
// # Consistency
//
// Every mutation is written to the store with a synced batch before it becomes
// visible in memory, under the registry lock, so a reader never sees a change
// that a crash could undo, and concurrent creates of one name have exactly one
// winner.
//
// # Media data path
//
//	producer bytes ─▶ mkv.Reader ─▶ IngestSession.StartFragment  (number, server time)
//	                             ─▶ IngestSession.Receive        (dedup, ring: live readers see it)
//	                             ─▶ IngestSession.Persist        (one synced batch ⇒ PERSISTED)
//
// A fragment's media buffer is written once by the reader and then shared,
// read-only and reference-counted (Fragment.Retain/Release), by the hot
// ring, the persister and every reader; the last Release returns it to a
// pool. Readers (Cursor) walk the archive, then the ring, then wait for live
// fragments, by fragment number, so the seams have no gap or duplicate.
//
// # Durability order (what a crash at each step leaves)
//
//  1. The stream's ingest term is synced (lsm.PutTerm) before the first
//     fragment number of the term is handed out. Crash after: the next
//     process picks a larger term; numbers are never reused.
//  2. BUFFERING and RECEIVED are sent before anything about the fragment
//     is durable. Crash after: the fragment is lost; the producer, lacking
//     PERSISTED, re-sends it.
//  3. Persist appends the media to the stream's segment file and
//     fdatasyncs it, then commits one batch (the fragment record pointing
//     into the segment, both time-index entries, the session header on
//     first use) with a WAL fsync. Crash before the batch is durable: the
//     index has nothing of the fragment (unreferenced segment bytes are
//     harmless); the batch is all or nothing.
//  4. PERSISTED is sent after the sync. Crash after the sync but before the
//     ack: the fragment is stored; the re-sent copy is recognised (same
//     producer timestamp and content digest) and acknowledged with the
//     stored number instead of being stored twice.
//
// Concurrent streams' Persist calls share WAL fsyncs (Pebble group commit).
//
// # Replicas
//
// replica.go takes in what the cluster package copies from peers: stream
// records (ImportStream, ordered by StreamInfo.Modified), deletions
// (ImportTombstone) and fragments (ImportFragment: stored under their own
// numbers with the same sync order as above, checked against their meta,
// at most once). Numbers this node hands out afterwards are larger than
// every fragment it holds, so a stream's numbers keep increasing when its
// ingest moves between nodes.
package engine
