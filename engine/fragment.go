package engine

import (
	"sync"
	"sync/atomic"

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
// Ownership: Media is written once (by the PutMedia reader or a camera's
// fragmenter) and never modified afterwards; every holder (the ring, the
// persister, each reader) holds a reference taken with Retain and dropped
// with Release. When the last reference goes, a pooled buffer returns to
// the pool, so a holder must not touch Media after its Release.
type Fragment struct {
	Meta   fragment.Meta
	Header *Header
	Media  []byte
	// ReceivedMs is when this node had the whole fragment (epoch ms): on
	// ingest, when its last byte arrived; for a replica, when it was
	// stored. Zero for fragments read back from the archive.
	ReceivedMs int64

	refs   atomic.Int32
	pooled bool
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

// Media buffers are pooled by size class (64 KiB doubling up to 8 MiB),
// so steady-state ingest reuses the buffers of fragments that left the
// ring and every reader, and a fragment's buffer is not much larger than
// the fragment: the ring's byte budget then matches the memory it holds.
const (
	minMediaClass     = 64 << 10
	mediaClasses      = 8 // 64 KiB … 8 MiB
	maxPooledMediaCap = minMediaClass << (mediaClasses - 1)
)

var mediaPools [mediaClasses]sync.Pool

// mediaClass is the smallest class whose size is at least n.
func mediaClass(n int) int {
	c, size := 0, minMediaClass
	for size < n && c < mediaClasses-1 {
		c, size = c+1, size<<1
	}
	return c
}

// NewMediaBuffer returns an empty buffer for a fragment's media of about
// 1 MiB, to be handed back through a Fragment built by Receive.
func NewMediaBuffer() []byte { return NewMediaBufferFor(1 << 20) }

// NewMediaBufferFor returns an empty buffer with room for at least n bytes
// (the caller's guess: for a camera, its previous fragment's size).
func NewMediaBufferFor(n int) []byte {
	if n > maxPooledMediaCap {
		return make([]byte, 0, n) // larger than any pool class: not pooled
	}
	c := mediaClass(n)
	if b, ok := mediaPools[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, minMediaClass<<c)
}

// PutMediaBuffer hands back a buffer from NewMediaBuffer that will not be
// given to Receive (a fragment dropped before it was received).
func PutMediaBuffer(b []byte) { putMediaBuffer(b) }

func putMediaBuffer(b []byte) {
	if cap(b) < minMediaClass || cap(b) > maxPooledMediaCap {
		return
	}
	// The class whose size this buffer can hold in full.
	c := mediaClass(cap(b))
	if minMediaClass<<c > cap(b) {
		c--
	}
	b = b[:0]
	mediaPools[c].Put(&b)
}
