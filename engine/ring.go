package engine

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// ring is a stream's hot ring: its most recent fragments, in fragment-number
// order, covering the last dur of video (Options.RingDuration: sized in
// seconds, so a stream's ring follows its bitrate), within an optional
// byte cap and the box-wide media budget (media.go), which may make it
// shed fragments early (shed).
//
// A fragment leaves the ring only once its Persist has finished (so it is
// in the archive, or known lost): a reader behind the ring then finds it
// in the archive, and a re-sent copy is recognised. The persist queues
// are bounded, so this bounds the overrun.
//
// A ring no reader has used for ringIdleAfter (no cursor read from it, no
// fragment was fetched from it by number) keeps no fragment once it is
// stored, if the stream archives its fragments (dropUnread, when a
// Persist settles): a camera nobody watches costs only the fragment it is
// assembling, not the ring's seconds. Its first reader finds what came
// before in the archive (a disk read: segments are written around the
// page cache; a reader starting at "now" starts after the archive's
// newest fragment), and the ring fills back to its duration as fragments
// arrive. A stream that keeps nothing (retention 0) has only its ring,
// which keeps its seconds.
//
// Invariant: the fragments in frags are every fragment of the stream
// numbered from frags[0] to the newest that was received (none is
// skipped), so a reader positioned inside the ring needs nothing from the
// archive. Every fragment numbered at or below floor has left the ring
// (or never entered it): push refuses those, so the ring stays contiguous
// even after shed or dropUnread emptied it. While the ring is read the
// newest fragment is kept whatever its age; only shed under memory
// pressure takes it.
type ring struct {
	mu     sync.Mutex
	frags  []*Fragment
	bytes  int
	ms     int64 // the fragments' summed durations
	dur    int64 // ms of video kept
	budget int   // byte cap (0: none)
	floor  fragment.Number
	// notify is closed (and replaced) when a fragment is added and a
	// reader took it (waited: waitChanLocked), and when the stream goes away,
	// waking readers at the live edge. A ring nobody waits on makes no
	// channel per fragment.
	notify chan struct{}
	waited bool
	closed bool
	clock  Clock
	// lastRead is when a reader last used the ring (unix ns; 0: never).
	lastRead atomic.Int64
}

// ringIdleAfter is how long a ring goes unread before it keeps no stored
// fragment.
const ringIdleAfter = time.Minute

func newRing(dur time.Duration, budget int, clock Clock) *ring {
	return &ring{dur: dur.Milliseconds(), budget: budget, notify: make(chan struct{}), clock: clock}
}

// read notes that a reader uses the ring.
func (r *ring) read() { r.lastRead.Store(r.clock.Now().UnixNano()) }

// unread reports a ring no reader has used for ringIdleAfter.
func (r *ring) unread() bool {
	return r.clock.Now().UnixNano()-r.lastRead.Load() > int64(ringIdleAfter)
}

// keepMs is the video the ring keeps now: its duration while read, else
// none beyond the newest fragment (which dropUnread takes once stored).
func (r *ring) keepMs() int64 {
	if r.unread() {
		return 0
	}
	return r.dur
}

// dropUnread empties an unread ring of its settled fragments, the newest
// included (the stream archives them: called when a Persist settled).
// The floor keeps the ring contiguous, as after shed.
func (r *ring) dropUnread() {
	if !r.unread() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.frags) > 0 && r.frags[0].settled() {
		r.evictLocked()
	}
}

// push adds f (taking over one reference) in number order and evicts what
// is beyond the ring's duration (with archived, while it is read) and
// cap. It reports whether f went in: a
// fragment older than the whole ring (or than what already left it), or
// one the ring already holds, does not (it is released at once); readers
// find it in the archive. Fragments normally arrive in order and are
// appended; a replica's gap fill (replica.go) or a fragment numbered
// before a peer's newer one lands in its place, so the ring stays sorted
// and readers positioned before it see it.
func (r *ring) push(f *Fragment, archived bool) bool {
	r.mu.Lock()
	i := len(r.frags)
	for i > 0 && r.frags[i-1].Meta.Number.Compare(f.Meta.Number) > 0 {
		i--
	}
	if r.closed || (i > 0 && r.frags[i-1].Meta.Number == f.Meta.Number) || (i == 0 && len(r.frags) > 0) ||
		(!r.floor.IsZero() && f.Meta.Number.Compare(r.floor) <= 0) {
		r.mu.Unlock()
		f.Release()
		return false
	}
	r.frags = slices.Insert(r.frags, i, f)
	r.bytes += len(f.Media)
	r.ms += int64(f.Meta.DurationMs)
	keep := r.dur
	if archived {
		keep = r.keepMs()
	}
	for len(r.frags) > 1 && r.frags[0].settled() && r.over(keep) {
		r.evictLocked()
	}
	if r.waited {
		close(r.notify)
		r.notify, r.waited = make(chan struct{}), false
	}
	r.mu.Unlock()
	return true
}

// over reports whether the ring holds more than it keeps: the fragments
// after the oldest already cover keep ms, or the bytes are over the cap.
// REQUIRES: r.mu held, len(r.frags) > 1.
func (r *ring) over(keep int64) bool {
	return r.ms-int64(r.frags[0].Meta.DurationMs) >= keep || (r.budget > 0 && r.bytes > r.budget)
}

// evictLocked drops the oldest fragment. REQUIRES: r.mu held, frags not
// empty, frags[0] settled.
func (r *ring) evictLocked() int {
	old := r.frags[0]
	// Shifted down, not resliced: the backing array is kept, so pushes
	// in steady state append without allocating (a ring is tens of
	// fragments).
	copy(r.frags, r.frags[1:])
	r.frags[len(r.frags)-1] = nil
	r.frags = r.frags[:len(r.frags)-1]
	r.bytes -= len(old.Media)
	r.ms -= int64(old.Meta.DurationMs)
	if old.Meta.Number.Compare(r.floor) > 0 {
		r.floor = old.Meta.Number
	}
	n := cap(old.Media)
	old.Release()
	return n
}

// shed drops settled fragments, oldest first, until need bytes are
// released: those beyond the newest, and with hard the newest too. A
// fragment still being persisted (and all after it) stays. It reports
// the bytes released from the ring (memory returns once readers let go
// too).
func (r *ring) shed(need int64, hard bool) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for n < need && len(r.frags) > 0 && (len(r.frags) > 1 || hard) && r.frags[0].settled() {
		n += int64(r.evictLocked())
	}
	return n
}

// waitChanLocked is the channel closed at the next push (or close).
// REQUIRES: r.mu held.
func (r *ring) waitChanLocked() <-chan struct{} {
	r.waited = true
	return r.notify
}

// heldBytes is the media the ring holds.
func (r *ring) heldBytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// remove drops fragment n (a partial copy a whole re-send replaced), so
// readers that have not reached it never see it.
func (r *ring) remove(n fragment.Number) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, f := range r.frags {
		if f.Meta.Number == n {
			r.bytes -= len(f.Media)
			r.ms -= int64(f.Meta.DurationMs)
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
	r.frags, r.bytes, r.ms = nil, 0, 0
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
	n := 0
	for _, s := range e.allStreams() {
		n += s.ring.heldBytes()
	}
	return n
}

// shedRings makes room in the media memory (its shed callback): the rings
// give back settled fragments, the biggest ring first, beyond their newest
// fragment, and with hard the newest too, until need bytes are released.
// It reports the bytes released.
func (e *Engine) shedRings(need int64, hard bool) int64 {
	streams := e.allStreams()
	held := make([]int, len(streams))
	for i, s := range streams {
		held[i] = s.ring.heldBytes()
	}
	order := make([]int, len(streams))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return held[b] - held[a] })
	var n int64
	for _, i := range order {
		if n >= need || held[i] == 0 {
			break
		}
		n += streams[i].ring.shed(need-n, hard)
	}
	if n > 0 {
		e.mem.shedBytes.Add(uint64(n))
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
