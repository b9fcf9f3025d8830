package engine

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Header is a session header (EBML header, Segment start, Info, Tracks) as
// GetMedia chunks begin with it. Immutable once built.
type Header struct {
	ID  uint64 // lsm header id: a hash of Raw
	Raw []byte
	// stored reports that the header is durable in the store, so fragments
	// after the first need not write it again.
	stored atomic.Bool

	parseOnce sync.Once
	parsed    *mkv.Header
	parseErr  error
}

// Tracks is Raw parsed (once per header, however many readers ask).
func (h *Header) Tracks() (*mkv.Header, error) {
	h.parseOnce.Do(func() { h.parsed, h.parseErr = mkv.ParseHeader(h.Raw) })
	return h.parsed, h.parseErr
}

// Fragment is one fragment shared by the hot ring and every reader.
//
// Ownership: Media is written once (by the PutMedia reader, a camera's
// fragment builder, a replica's reader or an archive read) and never
// modified afterwards; every holder (the ring, the persister, each reader)
// holds a reference taken with Retain and dropped with Release. When the
// last reference goes, a buffer of the engine's media memory (media.go)
// is freed, so a holder must not touch Media after its Release.
type Fragment struct {
	Meta   fragment.Meta
	Header *Header
	Media  []byte
	// ReceivedMs is when this node had the whole fragment (epoch ms): on
	// ingest, when its last byte arrived; for a replica, when it was
	// stored. Zero for fragments read back from the archive.
	ReceivedMs int64
	// receivedAt is ReceivedMs to the engine clock's full precision
	// (with its monotonic reading when the clock is the real one): the
	// PERSISTED latency is measured from it. Zero but on ingest.
	receivedAt time.Time

	refs atomic.Int32
	// mem frees Media with the last Release; nil for a buffer of the Go
	// heap (tests), left to the garbage collector.
	mem *MediaMemory
	// persisted is closed when the ingest session's Persist finished, with
	// persistErr its result; nil for fragments read from the archive.
	persisted  chan struct{}
	persistErr error
	// replaces are stored partial copies this fragment supersedes
	// (resend.go), deleted when it is stored.
	replaces []fragment.Meta
}

// failed reports a fragment whose storing finished with an error (it may
// still be in the ring; it is not in the archive).
func (f *Fragment) failed() bool {
	if f.persisted == nil {
		return false
	}
	select {
	case <-f.persisted:
		return f.persistErr != nil
	default:
		return false
	}
}

// settled reports a fragment whose Persist has finished (or that never
// had one: archived fragments).
func (f *Fragment) settled() bool {
	if f.persisted == nil {
		return true
	}
	select {
	case <-f.persisted:
		return true
	default:
		return false
	}
}

// Retain takes a reference.
func (f *Fragment) Retain() *Fragment {
	f.refs.Add(1)
	return f
}

// Release drops a reference; the last one frees the media.
func (f *Fragment) Release() {
	switch n := f.refs.Add(-1); {
	case n == 0:
		if f.mem != nil {
			f.mem.Free(f.Media)
		}
		f.Media = nil
	case n < 0:
		panic("engine: Fragment released more often than retained") // a bug in kvsedge, never input-driven
	}
}

// NewMediaBuffer returns an empty Go-heap buffer of 1 MiB, outside the
// media budget: for tests that build fragments by hand. The engine's own
// paths take buffers from its MediaMemory (Engine.Media).
func NewMediaBuffer() []byte { return NewMediaBufferFor(1 << 20) }

// NewMediaBufferFor is NewMediaBuffer with room for n bytes.
func NewMediaBufferFor(n int) []byte { return make([]byte, 0, n) }
