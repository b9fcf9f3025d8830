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
//   - Camera ownership (view.go): Owns says whether this node records a
//     stream's camera now — its home, with quorum held for the settle
//     time — so that a dead home's cameras move to the next node within
//     seconds and a node cut off from a majority stops. A returning home
//     waits the settle time, so the camera has a gap of about that long
//     rather than two recorders. Two nodes record one camera at once only
//     until failure detection settles, or for the whole of an even split
//     (two boxes cut apart: both record; nothing is lost).
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
