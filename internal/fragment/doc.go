// Package fragment holds the value types every layer shares for a stored
// fragment: its Number (term, node, sequence; ordered bytewise), its Meta
// (timestamps, duration, lengths, frame count, digest), and the two time
// indexes with a cursor into them.
//
// It is a leaf: it imports only the standard library, so lsm (which stores
// these values), engine (which serves them) and serve and cluster (which put
// them on the wire) share one definition without importing each other. The
// encodings are not here: the disk encoding belongs to lsm (lsm/FORMAT.md),
// the node-to-node encoding to cluster (cluster/FORMAT.md), the decimal wire
// form of a Number here (AppendDecimal, ParseNumber) because KVS clients see
// it as FragmentNumber.
package fragment
