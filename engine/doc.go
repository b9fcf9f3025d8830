// Package engine is kvsedge's core: the stream registry with Kinesis Video
// Streams semantics (names, ARNs, versions, statuses, retention, tags, and the
// per-stream image-generation, notification, storage and edge
// configurations) and the media data path on top of the lsm store, which
// the engine opens (Open, Options.Store) and closes (Close): fragments in
// (IngestSession), fragments out (Cursor, Fragment, ListFragments), the hot
// ring, retention by time, the capacity controller (bytes per stream,
// minimum free disk, delete-oldest or refuse-new, holds, the fill forecast)
// and the import of replicas from peers. No caller of the engine imports lsm
// (internal/archtest checks it): fragment values are internal/fragment's,
// store figures are StoreStats.
//
// The engine knows nothing of HTTP, RTSP or serf. Callers (serve, ingest,
// cluster) hand it validated values and get domain errors back (ErrStreamNotFound,
// ErrVersionMismatch, …); mapping them to KVS error codes is the caller's job.
// Its sub-package mkv holds the Matroska code every path shares.
//
// Files by job:
//
//	engine.go     Engine, Open/Close, the registry (create, update, delete)
//	options.go    Options, StoreOptions (the lsm store Open opens)
//	stream.go     StreamInfo and its on-disk record (lsm/FORMAT.md, 0x02)
//	arn.go        stream ARNs
//	edge.go       edge configurations and status; Changes
//	ingest.go     IngestSession: numbering, duplicate check, Persist
//	fragment.go   Fragment and Header (shared, reference-counted)
//	media.go      MediaMemory: the media buffers and their one budget;
//	              media_linux.go (mmap) / media_other.go (Go slices)
//	ring.go       the per-stream hot ring, sized in seconds (no stored
//	              fragment while nobody reads it), and shedding
//	live.go       the live tap: frames to live subscribers (WebRTC) as
//	              they arrive, before their fragment completes; a frame's
//	              one shared attachment (WHEP's RTP payloads); WaitStored,
//	              so live sends keep out of the newest fragment's persist
//	read.go       reads: Fragment, Cursor, ListFragments, Recent, the
//	              header cache
//	retention.go  retention by time
//	capacity.go   the capacity controller
//	replica.go    imports from peers: stream records, tombstones, fragments
//	ackgate.go    AckGate: what PERSISTED waits on after Persist (the
//	              cluster's replicated durability), IngestSession.AckReady
//	upload.go     upload progress to an upstream KVS (internal/uplink),
//	              Fragment.WaitStored, DeleteUploaded, media lost before
//	              upload
//	check.go      CheckStore, RepairStore (the box stopped); StoreHealth
//	              and StoreAlarm (engine.go) report damage at run time
//	metrics.go    counters and the PERSISTED latency (Stats); stats.go:
//	              the store's figures, its write steps timed (StoreStats)
//	clock.go      Clock; errors.go: the errors callers branch on
//
// # Consistency
//
// Every registry mutation is written to the store with a synced write before
// it becomes visible in memory, under writeMu, so a reader never sees a
// change that a crash could undo, and concurrent creates of one name have
// exactly one winner.
//
// # Media data path
//
//	producer bytes ─▶ mkv.Reader ─▶ IngestSession.StartFragment  (number, server time)
//	             (each block) ─▶ IngestSession.LiveFrame      (live tap: WebRTC viewers see it now)
//	                             ─▶ IngestSession.Receive        (dedup, ring: live readers see it)
//	                             ─▶ IngestSession.Persist        (segment sync, then one synced batch ⇒ PERSISTED)
//
// A fragment's media buffer is written once by the reader and then shared,
// read-only and reference-counted (Fragment.Retain/Release), by the hot
// ring, the persister and every reader; the last Release frees it. Readers
// (Cursor) walk the archive, then the ring, then wait for live fragments,
// by fragment number, so the seams have no gap or duplicate.
//
// # Media memory
//
// Every media byte the engine holds is in a buffer of one MediaMemory
// (media.go) and counted against one box-wide budget (Options.Media,
// media.memory_budget_mib): fragments being assembled (a PutMedia reader's
// mkv.Buffers, a camera's fragment builder, a replica's frame reader),
// fragments in the hot rings, fragments queued for Persist, and fragments
// read back from the archive for readers. On Linux the buffers are mmap'ed
// outside the Go heap, so the garbage collector neither scans nor doubles
// them: RSS is the live media plus a small constant, and GOMEMLIMIT bounds
// only the metadata heap.
//
// Who frees: the assembler owns a buffer until it hands it to Receive or
// ImportFragment (which own it from then on, whatever the outcome; Receive
// seals it: complete, read-only, a large one cut to size); a buffer
// dropped before that is freed by its assembler (mkv.Reader.Close,
// mkv.FragmentBuilder.Discard, MediaMemory.Free). A Fragment frees its
// buffer with the last Release. Archive reads take buffers of their exact
// size (lsm.Buffers), freed the same way.
//
// When the budget is hit: the rings shed settled fragments, the biggest
// ring first, beyond their newest fragment, then the newest too (ring.go);
// a fragment still being persisted is never dropped. Still no room: the
// oldest fragment still arriving waits a little (Options.Media.GrowWait),
// so one upload always completes; every other request is refused with
// ErrMemoryFull — PutMedia answers ERROR 5000 (retriable: the producer
// re-sends the fragment), a camera drops the fragment and records from its
// next key frame, a reader's call fails. Uploads and replicas are refused
// first, then cameras, reads last (each class's share of the budget,
// media.go). Refusals are counted (MediaStats), logged at most every 10 s,
// and /readyz reports them.
//
// The hot ring keeps each stream's newest Options.RingDuration of video
// (its bytes follow the stream's bitrate), within an optional byte cap
// (Options.RingBytesPerStream); readers further behind read the archive.
// A stream that archives and that no reader has used for a minute keeps
// no fragment in the ring once it is stored (ring.go): unwatched cameras,
// the usual case on a recorder, hold only the fragment they are
// assembling.
//
// # Durability order (what a crash at each step leaves)
//
//  1. The stream's ingest term is synced (lsm.PutTerm) before the first
//     fragment number of the term is handed out. Crash after: the next
//     process picks a larger term; numbers are never reused.
//  2. BUFFERING and RECEIVED are sent before anything about the fragment
//     is durable. Crash after: the fragment is lost; the producer, lacking
//     PERSISTED, re-sends it.
//  3. Persist appends the fragment's record (its media and every index
//     entry's content) to the stream's segment file and fdatasyncs it,
//     then commits one batch (the fragment record pointing into the
//     segment, both time-index entries, the session header on first use)
//     without a WAL sync: the synced record already holds them, and
//     lsm.Open indexes again the records whose batch a crash took
//     (lsm/replay.go; the WAL is synced within a second). With a sync
//     window (StoreOptions.SyncWindow) the append is not synced at once:
//     when the window ends every segment written in it is synced, then
//     the window's batches are committed as one batch, and nothing of the
//     window is committed if a segment sync failed. Crash before the
//     segment sync: at most unreferenced segment bytes; after it: the
//     fragment is indexed, at the next Open if not before, unless its put
//     failed (then it voided the record before Persist returned: the
//     producer's re-send is the copy kept).
//  4. PERSISTED is sent after Persist returned and AckReady's channel
//     closed: at once without an AckGate; with the cluster's replicated
//     durability, once a replica holds the fragment durably too (or the
//     gate fell back to local acks; it never fails a fragment). Persist
//     tells the gate (AckGate.Durable) under persistMu shared; the gate
//     calls nothing of the engine there. Crash after the sync but
//     before the ack: the fragment is stored; the re-sent copy is
//     recognised (same producer timestamp and content digest) and
//     acknowledged with the stored number instead of being stored twice.
//
// PersistAll stores consecutive fragments of a session with one segment
// sync and one synced batch (an upload that queued them during a sync).
// PersistAsync is PersistAll in two halves for PutMedia: the media is
// written in the caller, the syncs, the commit and the accounting run in
// the background (holding persistMu shared until the fragments are stored
// or not), chained to the previous run, whose index is committed first
// (and the run is not stored if that one failed); so a run's media is
// written while the run before it syncs, and each run's PERSISTED still
// follows its own syncs and the runs before it.
// A Persist costs one fdatasync (the segment's); a sync window shares the
// segment syncs of a window, at the cost of up to one window before
// PERSISTED. lsm/FORMAT.md has the store's side.
//
// # Locks
//
// The whole lock order, for the engine and the lsm store it calls into, top
// to bottom. A goroutine holding a lock may take only locks below it in
// this list, never one above:
//
//	Engine.writeMu          registry mutations (create, update, edge changes,
//	                        delete, ImportStream, ImportTombstone), each
//	                        across its check and its synced write
//	Engine.cap.mu           the capacity controller's state and report; held
//	                        for a whole SweepCapacity, its deletions included
//	stream.importMu         the check for an existing copy and the storing
//	                        (ImportFragment) or publishing (Receive) of a
//	                        fragment: one fetched twice, or finished by two
//	                        uploads at once, is stored once
//	stream.persistMu (RW)   shared: every store write or delete of the
//	                        stream's fragments (Persist, ImportFragment,
//	                        retention's and capacity's DeleteBefore), with its
//	                        check of deleted; exclusive: DeleteStream removing
//	                        the data, the first capacity sweep counting bytes
//	stream.ingest.mu        numbering (term, seq, lastServerMs, stale) and the
//	                        active IngestSession; held across the synced term
//	                        write (lsm.PutTerm)
//	Engine.mu (RW)          the registry maps byName, byID, tombs
//	Engine.headers.mu       the session-header cache
//	ring.mu                 one stream's hot ring: frags, bytes, notify, waited, closed
//	liveTap.mu              one stream's live tap: subscribers, kept GOP,
//	                        the chunk being filled (never held with ring.mu)
//	MediaMemory.mu          the media buffers: spans, free lists, counts
//	                        (a ring's Release frees under ring.mu)
//	lsm DB.mu               the next stream id
//	lsm syncGroup.flushMu   one sync-window flush at a time
//	lsm syncGroup.mu        the pending window: batch, dirty segments, waiters
//	lsm checkpointer.mu     one replay-checkpoint run at a time; held by
//	                        lsm DeleteStream across its batch and media removal,
//	                        and by DeleteBefore across its checkpoint and batch
//	lsm segmentStore.mu     the map of the streams' segment sets
//	lsm streamSegments.mu   one stream's segment files (append, roll, sync,
//	                        unlink); held across fdatasync of a page-cache
//	                        segment, not of a direct one (lsm syncDirty)
//	lsm spaceGuard.mu       the disk-full guard's state (a leaf)
//
// The nestings the code has (holder → taken):
//
//	writeMu    → mu, DB.mu (stream ids), ring.mu, and in DeleteStream
//	             ingest.mu, released, then persistMu
//	cap.mu     → mu, ring.mu, persistMu
//	importMu   → ring.mu, headers.mu and the lsm segment read locks (a
//	             stored copy compared, resend.go), persistMu
//	persistMu  → headers.mu, ingest.mu and ring.mu (ImportFragment); the lsm
//	             segment and sync-window locks (PutFragment, DeleteBefore)
//	ingest.mu  → ring.mu (a new term)
//	flushMu    → syncGroup.mu, streamSegments.mu
//	checkpointer.mu → segmentStore.mu, streamSegments.mu (one at a time),
//	             the space guard's mu (its check before a commit)
//	segmentStore.mu → streamSegments.mu (Close)
//
// liveTap.mu is a leaf but for MediaMemory.mu (a chunk taken or freed);
// IngestSession.LiveFrame takes headers.mu (the session's header, first
// use) before it, never under it.
// Engine.mu, headers.mu, MediaMemory.mu and DB.mu are leaves: nothing is
// taken while one is held; ring.mu is one but for MediaMemory.mu (a
// Release that frees; ring.each's callbacks take no lock), so no engine
// leaf is held across a call into lsm. A media allocation that sheds
// (MediaMemory's shed callback, Engine.shedRings) holds no lock and takes
// Engine.mu, then each ring.mu in turn; it may run under importMu or
// persistMu (an archive read comparing a re-send, resend.go), which are
// above both. lsm never calls back into the engine.
// writeMu and cap.mu are never held together, nor writeMu and importMu.
//
// Waits that act as locks: with a sync window, PutFragment waits for the
// window's flush while its caller holds persistMu shared, so DeleteStream
// and the first capacity count (exclusive) can wait up to one window; the
// flush takes only lsm locks, so it always completes. A PersistAsync's
// background half holds persistMu shared and waits for the previous run's
// lsm half (lsm locks only) and outcome, never for its caller, so a
// DeleteStream waiting for persistMu does not wait for the upload's next
// call. sync.Once
// (IngestSession.end under ingest.mu, Header.Tracks) runs leaf code only.
// Lock-free state: a stream's snapshot (stream.info, replaced whole), deleted,
// bytes, denied, Engine.full, Header.stored and Fragment references are
// atomics. deleted is set before DeleteStream takes persistMu exclusively
// and is read under persistMu shared, so nothing is stored for a stream
// after its data is gone. Callbacks the engine passes through
// (ScanFragments, FragmentNumbers) run with no engine lock held.
//
// # Replicas
//
// replica.go takes in what the cluster package copies from peers: stream
// records (ImportStream, ordered by StreamInfo.Modified), deletions
// (ImportTombstone) and fragments (ImportFragment: stored under their own
// numbers with the same sync order as above, checked against their meta,
// at most once; the same frames under two numbers, as two boxes record
// them around a failover, are kept once: resend.go). Numbers this node hands out afterwards are larger than
// every fragment it holds, so a stream's numbers keep increasing when its
// ingest moves between nodes.
package engine
