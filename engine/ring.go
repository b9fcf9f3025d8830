package engine

import (
	"sync"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// ring is a stream's hot ring: its most recent fragments, in fragment-number
// order, within a byte budget. A fragment leaves the ring only once its
// Persist has finished (so it is in the archive, or known lost): a reader
// behind the ring then finds it in the archive, and a re-sent copy is
// recognised. The persist queues are bounded, so this bounds the overrun. Invariant: the fragments in frags are every
// fragment of the stream numbered from frags[0] to the newest that was
// received (none is skipped), so a reader positioned inside the ring
// needs nothing from the archive. The newest fragment is always kept, even
// over budget.
type ring struct {
	mu     sync.Mutex
	frags  []*Fragment
	bytes  int
	budget int
	// notify is closed (and replaced) whenever a fragment is added or the
	// stream goes away, waking readers at the live edge.
	notify chan struct{}
	closed bool
}

func newRing(budget int) *ring {
	return &ring{budget: budget, notify: make(chan struct{})}
}

// push adds f (taking over one reference) in number order and evicts over
// budget. It reports whether f went in: a fragment older than the whole
// ring, or one the ring already holds, does not (it is released at once);
// readers find it in the archive. Fragments normally arrive in order and
// are appended; a replica's gap fill (replica.go) or a fragment numbered
// before a peer's newer one lands in its place, so the ring stays sorted
// and readers positioned before it see it.
func (r *ring) push(f *Fragment) bool {
	r.mu.Lock()
	i := len(r.frags)
	for i > 0 && r.frags[i-1].Meta.Number.Compare(f.Meta.Number) > 0 {
		i--
	}
	if r.closed || (i > 0 && r.frags[i-1].Meta.Number == f.Meta.Number) || (i == 0 && len(r.frags) > 0) {
		r.mu.Unlock()
		f.Release()
		return false
	}
	r.frags = append(r.frags, nil)
	copy(r.frags[i+1:], r.frags[i:])
	r.frags[i] = f
	r.bytes += len(f.Media)
	for len(r.frags) > 1 && r.bytes > r.budget && r.frags[0].settled() {
		old := r.frags[0]
		r.frags[0] = nil
		r.frags = r.frags[1:]
		r.bytes -= len(old.Media)
		old.Release()
	}
	close(r.notify)
	r.notify = make(chan struct{})
	r.mu.Unlock()
	return true
}

// remove drops fragment n (a partial copy a whole re-send replaced), so
// readers that have not reached it never see it.
func (r *ring) remove(n fragment.Number) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, f := range r.frags {
		if f.Meta.Number == n {
			r.bytes -= len(f.Media)
			copy(r.frags[i:], r.frags[i+1:])
			r.frags[len(r.frags)-1] = nil
			r.frags = r.frags[:len(r.frags)-1]
			f.Release()
			return
		}
	}
}

// close drops every fragment and wakes readers for good.
func (r *ring) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	for _, f := range r.frags {
		f.Release()
	}
	r.frags, r.bytes = nil, 0
	close(r.notify)
}

// firstAfterLocked returns the first fragment numbered after n, or nil.
// REQUIRES: r.mu held.
func (r *ring) firstAfterLocked(n fragment.Number) *Fragment {
	// Readers are usually at the live edge: search from the end.
	i := len(r.frags)
	for i > 0 && r.frags[i-1].Meta.Number.Compare(n) > 0 {
		i--
	}
	if i < len(r.frags) {
		return r.frags[i]
	}
	return nil
}

// find returns the fragment numbered n, retained, or nil.
func (r *ring) find(n fragment.Number) *Fragment {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.frags {
		if f.Meta.Number == n {
			return f.Retain()
		}
	}
	return nil
}

// newest returns the newest fragment's number (zero if empty).
func (r *ring) newest() fragment.Number {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.frags) == 0 {
		return fragment.Number{}
	}
	return r.frags[len(r.frags)-1].Meta.Number
}

// each calls fn for every fragment under the lock (for small scans: the
// duplicate check and time lookups of ring-only streams).
func (r *ring) each(fn func(*Fragment) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.frags {
		if !fn(f) {
			return
		}
	}
}

// RingBytes is the media held by every stream's hot ring.
func (e *Engine) RingBytes() int {
	e.mu.RLock()
	streams := make([]*stream, 0, len(e.mu.byID))
	for _, s := range e.mu.byID {
		streams = append(streams, s)
	}
	e.mu.RUnlock()
	n := 0
	for _, s := range streams {
		s.ring.mu.Lock()
		n += s.ring.bytes
		s.ring.mu.Unlock()
	}
	return n
}

// unsettledBytes is the media of fragments received but not yet stored
// (in-progress data the capacity controller counts).
func (r *ring) unsettledBytes() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, f := range r.frags {
		if !f.settled() {
			n += int64(len(f.Media))
		}
	}
	return n
}
