// Package cluster joins kvsedge boxes of one site into a peer cluster.
//
// It owns membership (hashicorp/serf, embedded: seeds, gossip encryption,
// each node's API URL, hardware profile and free capacity as serf tags)
// and placement (rendezvous hashing over the live members: every node
// computes the same home node and replicas for a stream without a
// coordinator). Media never travels over serf; serf carries membership
// and small notifications only (shared/library-notes.md: events over
// about 1 KB are not gossiped).
//
// Replication of archives between nodes and failover of camera recording
// are not built yet (issue 6); cluster talks to the engine, never the
// reverse.
package cluster
