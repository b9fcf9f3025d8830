package engine

import (
	"sync"
	"sync/atomic"

	"github.com/kvsedge/kvsedge/lsm"
)

// Header is a session header (EBML header, Segment start, Info, Tracks) as
// GetMedia chunks begin with it. Immutable once built.
type Header struct {
	ID  uint64 // lsm header id: a hash of Raw
	Raw []byte
	// stored reports that the header is durable in the store, so fragments
	// after the first need not write it again.
	stored atomic.Bool
}

// Fragment is one fragment shared by the hot ring and every reader.
//
// Ownership: Media is written once (by the PutMedia reader or a camera's
// fragmenter) and never modified afterwards; every holder (the ring, the
// persister, each reader) holds a reference taken with Retain and dropped
// with Release. When the last reference goes, a pooled buffer returns to
// the pool, so a holder must not touch Media after its Release.
type Fragment struct {
	Meta   lsm.FragmentMeta
	Header *Header
	Media  []byte

	refs   atomic.Int32
	pooled bool
	// persisted is closed when the ingest session's Persist finished, with
	// persistErr its result; nil for fragments read from the archive.
	persisted  chan struct{}
	persistErr error
}

// Retain takes a reference.
func (f *Fragment) Retain() *Fragment {
	f.refs.Add(1)
	return f
}

// Release drops a reference.
func (f *Fragment) Release() {
	switch n := f.refs.Add(-1); {
	case n == 0 && f.pooled:
		putMediaBuffer(f.Media)
		f.Media = nil
	case n < 0:
		panic("engine: Fragment released more often than retained") // a bug in kvsedge, never input-driven
	}
}

// Media buffers are pooled: steady-state ingest reuses the buffers of
// fragments that left the ring and every reader.
const (
	mediaBufferCap    = 1 << 20
	maxPooledMediaCap = 8 << 20
)

var mediaPool = sync.Pool{New: func() any {
	b := make([]byte, 0, mediaBufferCap)
	return &b
}}

// NewMediaBuffer returns an empty buffer for a fragment's media, to be
// handed back through a Fragment built by Receive.
func NewMediaBuffer() []byte {
	return (*mediaPool.Get().(*[]byte))[:0]
}

func putMediaBuffer(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledMediaCap {
		return
	}
	b = b[:0]
	mediaPool.Put(&b)
}
