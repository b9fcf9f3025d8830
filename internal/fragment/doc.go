// Package fragment holds the value types every layer shares for a stored
// fragment: its Number (term, node, sequence; ordered bytewise), its Meta
// (number, producer and server timestamps, duration, cluster timecode,
// session header id, cluster and media lengths, frame count, content
// digest), and the two time indexes (TimeIndex) with a cursor into them
// (TimeCursor).
//
// Files: number.go (Number, its fields, order and decimal wire form),
// meta.go (Meta, TimeIndex, TimeCursor).
//
// It is a leaf: it imports only the standard library, so lsm (which stores
// these values), engine (which serves them), and serve, cluster and ingest
// (which put them on the wire or hand them on) share one definition without
// any of them importing lsm. The encodings are not here:
// the disk encoding belongs to lsm (lsm/FORMAT.md), the node-to-node
// encoding to cluster (cluster/FORMAT.md), the content digest to engine
// (engine.ContentDigest: xxHash64 of the cluster, its length and frame
// count); the decimal wire form of a Number is here (AppendDecimal, String,
// ParseNumber) because KVS clients see it as FragmentNumber.
package fragment
