package fragment

// Meta is what is known of a stored fragment besides its media. The store
// keeps it in both time-index entries and at the head of the fragment value
// (lsm/FORMAT.md); the engine, the readers and the cluster pass it by value.
type Meta struct {
	Number     Number
	ProducerMs int64 // producer timestamp, epoch ms
	ServerMs   int64 // server timestamp (receipt began), epoch ms
	DurationMs uint32
	// Timecode is the cluster Timecode as the producer sent it.
	Timecode uint64
	// HeaderID names the session header (table 0x13) the media needs.
	HeaderID uint64
	// ClusterLen is the length of the Cluster at the start of the media;
	// the rest is the producer's Tags that followed it.
	ClusterLen uint32
	// MediaLen is the length of the stored media (cluster + tags).
	MediaLen uint32
	Frames   uint32
	// Digest identifies the media's content (xxHash64 of the cluster, its
	// length and frame count: engine.ContentDigest), to
	// recognise a fragment the producer sends again.
	Digest [16]byte
}

// TimeIndex selects one of the two time indexes.
type TimeIndex byte

const (
	ByProducerTime TimeIndex = 1
	ByServerTime   TimeIndex = 2
)

// TimeCursor is a position in a time index: the key after which a scan
// resumes. Its zero value starts at the range start.
type TimeCursor struct {
	Ms     int64
	Number Number
}
