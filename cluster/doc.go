// Package cluster joins kvsedge boxes of one site into a peer cluster, so
// that losing a box loses no recorded video and recording goes on.
//
// What it owns:
//
//   - Membership (cluster.go): hashicorp/serf, embedded; seeds, gossip
//     encryption, each node's API URL, node id, hardware profile and free
//     capacity as serf tags; a snapshot of the members known, so a restart
//     remembers them; quorum (joined, and at least half of the members that
//     did not leave alive). Media never travels over serf
//     (shared/library-notes.md: events over about 1 KB are not gossiped).
//   - Placement: rendezvous hashing over the alive members gives every
//     stream a home (which records its camera and is its PUT_MEDIA
//     endpoint) and replicas, the same on every node, without a
//     coordinator. The replication factor is the stream's
//     kvsedge:replication-factor tag, else the configured default (2).
//   - Replication (replicator.go): every node pulls; nothing is pushed.
//     Each node copies every peer's stream records and tombstones; for each
//     stream it holds, it tails every other holder for the fragments that
//     holder ingested (in order, live), and compares fragment numbers with
//     them (anti-entropy) to fetch what it lacks, after restarts and
//     partitions too. Imported fragments keep their numbers and
//     timestamps (engine.ImportFragment).
//   - Replicated durability (durability.go): the engine's AckGate. With
//     the stream's kvsedge:durability tag (or cluster.durability) at
//     replicated — the default when the cluster has two boxes or more —
//     the home sends PERSISTED only once a replica reported the fragment
//     durable (a "durable" peer request right after its ImportFragment
//     synced); with no replica alive, or none confirming within
//     cluster.ack_timeout, the stream falls back to local acks, says so
//     (kvsedge replication, /readyz alarm "durability", /metrics, the log)
//     and returns to replicated acks once a replica caught up. The order
//     of syncs, what a crash at each step leaves and when a replica counts
//     as caught up are in durability.go.
//   - The node-to-node path (peer.go, FORMAT.md): HTTP routes under
//     /kvsedge-peer/v1/ on each node's API listener, signed with a key
//     derived from the gossip key; also the forward route that serve uses
//     to answer reads of streams this node does not hold.
//   - The fragment frames replication moves media in (frame.go,
//     FORMAT.md "Fragment stream"): cluster's own encoding, versioned and
//     independent of the store's on-disk layout (cluster does not import
//     lsm), so boxes of two releases keep replicating during a rolling
//     upgrade. A frame of a newer version is refused and its peer skipped
//     (ErrFrameVersion), never misread.
//   - Camera ownership (view.go, Owns: the camera gate): a stream's
//     camera is recorded by its home, with quorum, so that a dead home's
//     cameras move to the next node within seconds and a node cut off
//     from a majority stops. A home records only while at least half of
//     the other boxes reach its API back (peer routes reach and ping,
//     asked at most once a second), so a box that can send but not
//     receive (a one-way cut, whose gossip flaps and may keep a quorum in
//     view) stops, and never takes its cameras back while cut off. Hand-back
//     is make before break: a returning home records at once, and the box
//     that covered goes on (cutting at every key frame, holding its
//     fragments back) until the home's first fragment is copied to it
//     (it holds the stream, so it tails the home); it then drops its own
//     fragments from that fragment's first key frame on (found by its
//     bytes, else by producer time) and stops (ingest/output.go), so
//     readers see every frame once, with numbers increasing in producer
//     time. Incremental anti-entropy starts one comparison back, so the
//     fragments it stored after copying the home's are found. Two nodes record one camera at
//     once only until failure detection settles, during a hand-back, or
//     for the whole of an even split (two boxes cut apart without a
//     witness: both record; nothing is lost).
//   - Copies outside the placement (cleanup.go): a box that stood in as a
//     replica for a failed holder deletes its copy once the holder is
//     back (cluster.drop_copies_after, default 1 min) and every holder
//     holds every fragment it has: a holder that does not list some is
//     asked to pull them first (the pull route), and stores them or
//     finds it holds a copy of their frames.
//
// Replication itself is pulled and asynchronous; with replicated
// durability PERSISTED waits for it, so a box whose disk dies loses no
// acknowledged fragment (TestClusterDiskDeath). With local durability, or
// while a stream has fallen back, PERSISTED means durable on the node that
// ingested the fragment; its replicas have it within the replication lag
// (kvsedge replication; BenchmarkClusterReplication), and a box whose disk
// dies loses what it had not yet replicated, at most that lag. Camera
// fragments are never waited for (nothing acknowledges them) but are
// counted the same way.
//
// Data flows one way: cluster calls the engine; the engine knows nothing of
// serf or of peers.
package cluster
