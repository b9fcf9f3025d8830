package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"syscall"

	"github.com/cespare/xxhash/v2"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// Ingest errors.
var (
	// ErrSuperseded: a newer ingest session of the same stream started
	// (KVS accepts the newest PutMedia). The older session may complete
	// the fragment it started; it may start no other.
	ErrSuperseded = errors.New("engine: a newer ingest session replaced this one")
	// ErrStreamDeleted: the stream was deleted during ingest or reading.
	ErrStreamDeleted = errors.New("engine: stream deleted")
)

// ingestState is a stream's fragment-numbering state. Fragment numbers are
// term | node | seq (fragment.Number); the term is chosen and synced once per
// process per stream, before the first number of the term is handed out.
type ingestState struct {
	mu           sync.Mutex
	term         uint64
	seq          uint32
	lastServerMs int64
	active       *IngestSession
	// stale: a fragment numbered at or beyond (term, node, seq) came from a
	// peer, so the next number needs a new term (replica.go).
	stale bool
	// peerAheadMs: the earliest producer start of such a fragment from
	// another node since the active session began (0: none), the point at
	// which a peer took the stream over (PeerAhead); peerAhead its number.
	peerAheadMs int64
	peerAhead   fragment.Number
}

// IngestSession is one producer connection (a PutMedia upload or a
// camera) feeding a stream. Its methods are called from one goroutine,
// except Persist, which a separate persister goroutine may call.
type IngestSession struct {
	e    *Engine
	s    *stream
	done chan struct{}
	once sync.Once
	// headers maps the reader's header to the engine's (with its id).
	headers map[*mkv.Header]*Header
}

// BeginIngest starts an ingest session on a stream. An older session of
// the same stream ends (its Done channel closes): KVS accepts the newest
// PutMedia, because a producer that reconnects may leave a dead socket
// behind.
func (e *Engine) BeginIngest(ref StreamRef) (*IngestSession, error) {
	s, info, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	if info.Status != StatusActive {
		return nil, fmt.Errorf("%w: %s", ErrStreamNotActive, info.Name)
	}
	sess := &IngestSession{e: e, s: s, done: make(chan struct{}), headers: make(map[*mkv.Header]*Header)}
	st := &s.ingest
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.term == 0 || st.stale {
		if err := e.newTermLocked(s); err != nil {
			return nil, err
		}
	}
	if st.active != nil {
		st.active.end()
	}
	st.active = sess
	st.peerAheadMs, st.peerAhead = 0, fragment.Number{}
	return sess, nil
}

// PeerAhead reports whether, since this session began, a fragment another
// node numbered beyond this node's numbers was copied here (a peer records
// the stream in a newer term: the home took its camera back), and the
// earliest such fragment: its number and producer start (epoch ms), the
// camera's time from which the peer holds the stream (ingest's hand-back).
func (sess *IngestSession) PeerAhead() (fragment.Number, int64, bool) {
	st := &sess.s.ingest
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.peerAhead, st.peerAheadMs, st.peerAheadMs != 0
}

// newTermLocked picks term = max(now ms, stored term + 1) and syncs it.
// REQUIRES: s.ingest.mu held.
func (e *Engine) newTermLocked(s *stream) error {
	stored, _, err := e.db.Term(s.id)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	term := uint64(e.opts.Clock.Now().UnixMilli())
	if term <= stored {
		term = stored + 1
	}
	// Server timestamps stay non-decreasing in number order across
	// restarts too (retention relies on it), even if the clock went back.
	// Numbers stay above every fragment held, including those another
	// node numbered (a takeover).
	if last, ok, err := e.db.LastFragment(s.id); err != nil {
		return fmt.Errorf("engine: %w", err)
	} else if ok {
		s.ingest.lastServerMs = max(s.ingest.lastServerMs, last.ServerMs)
		term = max(term, last.Number.Term()+1)
	}
	if n := s.ring.newest(); !n.IsZero() {
		term = max(term, n.Term()+1)
	}
	if err := e.db.PutTerm(s.id, term, e.opts.NodeID); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	s.ingest.term, s.ingest.seq, s.ingest.stale = term, 0, false
	return nil
}

func (sess *IngestSession) end() {
	sess.once.Do(func() { close(sess.done) })
}

// Done is closed when the session was superseded or its stream deleted.
func (sess *IngestSession) Done() <-chan struct{} { return sess.done }

// Close ends the session.
func (sess *IngestSession) Close() {
	st := &sess.s.ingest
	st.mu.Lock()
	if st.active == sess {
		st.active = nil
	}
	st.mu.Unlock()
	sess.end()
}

// MarkTagged records that the stream's producer ends its fragments with
// the AWS_KINESISVIDEO_END_OF_FRAGMENT tag.
func (sess *IngestSession) MarkTagged() { sess.s.tagged.Store(true) }

// Tagged reports whether the stream's producer was seen ending fragments
// with the tag (on any upload).
func (sess *IngestSession) Tagged() bool { return sess.s.tagged.Load() }

// Buffers is what this session's fragments are assembled in: the
// engine's media memory, as class c (MediaUpload for PutMedia, MediaCamera
// for cameras). A fragment refused for lack of room raises the stream's
// FragmentSizeHint to what it had reached.
func (sess *IngestSession) Buffers(c MediaClass) mkv.Buffers {
	return &streamBuffers{mediaBuffers: mediaBuffers{m: sess.e.mem, c: c}, s: sess.s}
}

// FragmentSizeHint is the size to expect of the stream's next fragment:
// its last one's, or what a refused one had reached (0: unknown). A
// reader takes its first buffer that large, so a fragment too big for the
// room left waits for it (or is refused) before its producer sends it.
func (sess *IngestSession) FragmentSizeHint() int {
	n := sess.s.sizeHint.Load()
	return int(n + n/8)
}

type streamBuffers struct {
	mediaBuffers
	s *stream
}

func (b *streamBuffers) Grow(buf []byte, n int) ([]byte, error) {
	g, err := b.mediaBuffers.Grow(buf, n)
	if err != nil {
		if want := int64(len(buf) + n); want > b.s.sizeHint.Load() {
			b.s.sizeHint.Store(want)
		}
	}
	return g, err
}

// Persists reports whether fragments are stored (retention > 0): KVS sends
// PERSISTED acks only then.
func (sess *IngestSession) Persists() bool {
	return sess.s.info.Load().DataRetentionInHours > 0
}

// StartFragment numbers a fragment whose first bytes just arrived and
// stamps its server time (non-decreasing per stream, so number order and
// server-time order agree).
func (sess *IngestSession) StartFragment() (fragment.Number, int64, error) {
	st := &sess.s.ingest
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := sess.checkLocked(); err != nil {
		return fragment.Number{}, 0, err
	}
	if err := sess.e.admit(sess.s); err != nil {
		return fragment.Number{}, 0, err
	}
	if st.seq == ^uint32(0) || st.stale {
		if err := sess.e.newTermLocked(sess.s); err != nil {
			return fragment.Number{}, 0, err
		}
	}
	n := fragment.MakeNumber(st.term, sess.e.opts.NodeID, st.seq)
	st.seq++
	now := sess.e.opts.Clock.Now().UnixMilli()
	if now < st.lastServerMs {
		now = st.lastServerMs
	}
	st.lastServerMs = now
	return n, now, nil
}

// checkLocked reports why the session may not go on. REQUIRES: ingest.mu.
func (sess *IngestSession) checkLocked() error {
	if sess.s.deleted.Load() {
		return ErrStreamDeleted
	}
	if sess.s.ingest.active != sess {
		return ErrSuperseded
	}
	return nil
}

// Received is the result of Receive.
type Received struct {
	// Fragment is the stored fragment (retained for the caller: pass it to
	// Persist, or Release it).
	Fragment *Fragment
	// Duplicate: the stream already holds this fragment (same producer
	// timestamp and content, re-sent after a reconnect); Fragment is then
	// nil and Meta is the stored one, to acknowledge with its number once
	// AwaitDurable returns.
	Duplicate bool
	Meta      fragment.Meta
	// original is the ring's copy of a duplicate that may still be on its
	// way to disk (retained), or nil when it came from the archive.
	original *Fragment
}

// Release lets go of what a Received holds without waiting (the upload
// failed before this fragment).
func (r *Received) Release() {
	if r.original != nil {
		r.original.Release()
		r.original = nil
	}
}

// AwaitDurable waits until the fragment a duplicate repeats is durable
// (its own session's Persist finished) and reports that Persist's error.
func (r *Received) AwaitDurable() error {
	if r.original == nil {
		return nil
	}
	<-r.original.persisted
	err := r.original.persistErr
	r.original.Release()
	r.original = nil
	return err
}

// Receive takes a complete fragment: checks it is not a re-sent copy,
// builds its metadata and publishes it to the hot ring, so live readers
// see it before it is durable. f.Buf should come from the engine's media
// memory (Buffers; a Go-heap buffer nobody else uses works too, outside
// the budget); the engine owns it from here on, whatever the outcome.
func (sess *IngestSession) Receive(num fragment.Number, serverMs, producerMs int64, f *mkv.Fragment) (Received, error) {
	hdr := sess.header(f.Header)
	meta := fragment.Meta{
		Number:     num,
		ProducerMs: producerMs,
		ServerMs:   serverMs,
		DurationMs: uint32(max(f.Duration().Milliseconds(), 1)),
		Timecode:   f.Timecode,
		HeaderID:   hdr.ID,
		ClusterLen: uint32(f.ClusterLen),
		MediaLen:   uint32(len(f.Buf)),
		Frames:     uint32(f.Frames),
		Digest:     digest(f.Buf[:f.ClusterLen], f.Frames),
	}
	// The check for a copy and the publication to the ring are one step
	// per stream: two uploads finishing the same fragment at once (a
	// re-send and the superseded upload completing it) must not both find
	// nothing and both store it. Imports take the same lock.
	sess.s.importMu.Lock()
	defer sess.s.importMu.Unlock()
	mem := sess.e.mem
	rs, err := sess.e.findResend(sess.s, &meta, hdr, f.Buf)
	if err != nil {
		mem.Free(f.Buf)
		return Received{}, err
	}
	if rs.duplicate {
		mem.Free(f.Buf)
		return Received{Duplicate: true, Meta: rs.stored, original: rs.original}, nil
	}
	// A superseded session may still complete the fragment it numbered
	// before the newer one began (both uploads proceed to a fragment
	// boundary: shared/kvs-api.md §4.4); only a deleted stream refuses it.
	if sess.s.deleted.Load() {
		mem.Free(f.Buf)
		return Received{}, ErrStreamDeleted
	}
	// Complete: a large buffer is cut to the fragment, and from here on
	// the buffer is shared read-only.
	media, owned := mem.seal(f.Buf)
	f.Buf = nil
	sess.s.sizeHint.Store(int64(len(media)))
	now := sess.e.opts.Clock.Now()
	frag := &Fragment{Meta: meta, Header: hdr, Media: media, persisted: make(chan struct{}),
		ReceivedMs: now.UnixMilli(), receivedAt: now, replaces: rs.replaces}
	if owned {
		frag.mem = mem
	}
	frag.refs.Store(2) // the ring's and the caller's
	sess.s.live.received(frag)
	sess.s.ring.push(frag, sess.s.info.Load().DataRetentionInHours > 0)
	sess.e.metrics.fragmentsReceived.Add(1)
	sess.e.metrics.bytesReceived.Add(uint64(len(media)))
	return Received{Fragment: frag, Meta: meta}, nil
}

// Persist stores a received fragment durably (one synced batch: media,
// both time-index entries and, the first time, its header) and releases
// the caller's reference. For a stream without retention it only
// releases. When it returns nil the fragment may be acknowledged
// PERSISTED.
func (sess *IngestSession) Persist(f *Fragment) error {
	return sess.PersistAll([]*Fragment{f})
}

// PersistAll is Persist of consecutive received fragments of the session,
// in order, with one pair of syncs for all (lsm.DB.PutFragments: their
// media synced once, then one synced batch of their index entries). It
// releases the caller's reference of each. The outcome is the same for
// every one: when it returns nil all may be acknowledged PERSISTED;
// otherwise none is stored.
func (sess *IngestSession) PersistAll(fs []*Fragment) (err error) {
	defer func() { sess.settle(fs, err) }()
	if !sess.Persists() || len(fs) == 0 {
		return nil
	}
	sess.s.persistMu.RLock()
	defer sess.s.persistMu.RUnlock()
	if sess.s.deleted.Load() {
		return ErrStreamDeleted
	}
	var ws [2]lsm.FragmentWrite // on the stack for a camera's one fragment
	if err := sess.e.db.PutFragments(sess.s.id, sess.writes(ws[:0], fs)); err != nil {
		return sess.persistFailed(fs, err)
	}
	sess.stored(fs)
	return nil
}

// PendingPersist is a PersistAsync in flight.
type PendingPersist struct {
	put  *lsm.PendingPut // nil: nothing reached the store
	done chan struct{}
	err  error
}

// Wait waits until the fragments are stored (nil: all may be acknowledged
// PERSISTED) or not (none is stored) and returns the outcome.
func (p *PendingPersist) Wait() error {
	<-p.done
	return p.err
}

// Done is closed when Wait no longer waits.
func (p *PendingPersist) Done() <-chan struct{} { return p.done }

// PersistAsync is PersistAll in two halves, so that an upload writes its
// next fragments while the previous ones sync (lsm.DB.PutFragmentsAsync):
// the media is written before it returns; the syncs, the commit and what
// PersistAll does after them run in the background, and Wait returns the
// outcome, PersistAll's. prev, if not nil, is the session's previous
// PersistAsync: these fragments are committed only after prev's, and not
// at all when prev failed (they get its error). The slice fs is not kept.
func (sess *IngestSession) PersistAsync(fs []*Fragment, prev *PendingPersist) *PendingPersist {
	fs = slices.Clone(fs)
	p := &PendingPersist{done: make(chan struct{})}
	fail := func(err error) *PendingPersist {
		p.err = err
		sess.settle(fs, err)
		close(p.done)
		return p
	}
	var after *lsm.PendingPut
	if prev != nil {
		if after = prev.put; after == nil {
			// Nothing of prev reached the store: its outcome is known.
			if err := prev.Wait(); err != nil {
				return fail(err)
			}
		}
	}
	if !sess.Persists() || len(fs) == 0 {
		return fail(nil)
	}
	sess.s.persistMu.RLock()
	if sess.s.deleted.Load() {
		sess.s.persistMu.RUnlock()
		return fail(ErrStreamDeleted)
	}
	put, err := sess.e.db.PutFragmentsAsync(sess.s.id, sess.writes(nil, fs), after)
	if err != nil {
		sess.s.persistMu.RUnlock()
		return fail(sess.persistFailed(fs, err))
	}
	p.put = put
	go func() {
		// persistMu stays shared until the fragments are stored or not
		// (never held for the caller: a deletion waiting for it must not
		// wait for the caller's next call).
		err := put.Wait()
		if prev != nil {
			<-prev.done // accounted for, and told to the gate, in order
		}
		if err != nil {
			err = sess.persistFailed(fs, err)
		} else {
			sess.stored(fs)
		}
		sess.s.persistMu.RUnlock()
		p.err = err
		sess.settle(fs, err)
		close(p.done)
	}()
	return p
}

// writes appends the store writes of fs to dst.
func (sess *IngestSession) writes(dst []lsm.FragmentWrite, fs []*Fragment) []lsm.FragmentWrite {
	for _, f := range fs {
		w := lsm.FragmentWrite{Meta: f.Meta, Media: f.Media, Replaces: f.replaces}
		if !f.Header.stored.Load() {
			// Each one carries it (the same bytes under the same key): a
			// segment rolled within the batch gets its own header record.
			w.Header = f.Header.Raw
		}
		dst = append(dst, w)
	}
	return dst
}

// persistFailed wraps the store's error for fs (and kicks the capacity
// controller on a full disk).
func (sess *IngestSession) persistFailed(fs []*Fragment, err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		sess.e.KickCapacity()
	}
	if len(fs) == 1 {
		return fmt.Errorf("engine: persisting fragment %s: %w", fs[0].Meta.Number, err)
	}
	return fmt.Errorf("engine: persisting fragments %s to %s: %w", fs[0].Meta.Number, fs[len(fs)-1].Meta.Number, err)
}

// stored accounts for fs once the store holds them (under persistMu,
// shared).
func (sess *IngestSession) stored(fs []*Fragment) {
	now := sess.e.opts.Clock.Now()
	for _, f := range fs {
		f.Header.stored.Store(true)
		sess.s.bytes.Add(int64(len(f.Media)))
		for _, old := range f.replaces {
			sess.s.bytes.Add(-int64(old.MediaLen))
			sess.s.ring.remove(old.Number)
			sess.e.opts.Logger.Info("a re-sent fragment replaced its partial copy", "stream", sess.s.info.Load().Name,
				"partial", old.Number.String(), "frames", old.Frames, "whole", f.Meta.Number.String(), "whole_frames", f.Meta.Frames)
		}
		sess.e.metrics.fragmentsPersisted.Add(1)
		sess.e.metrics.bytesPersisted.Add(uint64(len(f.Media)))
		sess.durable(f)
		if !f.receivedAt.IsZero() {
			// Monotonic with the real clock; a step backwards of another
			// clock counts as no latency.
			sess.e.metrics.persistLatency.Observe(max(0, now.Sub(f.receivedAt)))
		}
	}
}

// settle tells whoever waits for fs (a re-sent copy) the outcome and
// releases the caller's reference of each.
func (sess *IngestSession) settle(fs []*Fragment, err error) {
	for _, f := range fs {
		f.persistErr = err
		close(f.persisted)
		f.Release()
	}
	if err == nil && len(fs) > 0 && sess.Persists() {
		sess.s.ring.dropUnread() // stored: an unread ring need not hold them
	}
	sess.e.mem.Kick() // settled: the ring may give them up for room
}

// Abandon gives up on storing a received fragment: whoever waits for it
// (a re-sent copy) learns err, and the caller's reference is released.
// The fragment stays in the ring for live readers but is no longer taken
// for the stored copy of a re-send.
func (sess *IngestSession) Abandon(f *Fragment, err error) {
	f.persistErr = err
	close(f.persisted)
	f.Release()
	sess.e.mem.Kick()
}

// header returns the engine header for a reader header, computing its id
// once per session (and sharing it across sessions with the same bytes).
func (sess *IngestSession) header(h *mkv.Header) *Header {
	if eh, ok := sess.headers[h]; ok {
		return eh
	}
	eh := sess.e.headerFor(sess.s, xxhash.Sum64(h.Raw), h.Raw)
	sess.headers[h] = eh
	return eh
}

// digest identifies a cluster's content: its xxHash64, length and frame
// count (16 bytes). It decides only whether a re-sent fragment with the
// same producer timestamp is the one stored, not integrity.
func digest(cluster []byte, frames int) (d [16]byte) {
	binary.BigEndian.PutUint64(d[0:], xxhash.Sum64(cluster))
	binary.BigEndian.PutUint32(d[8:], uint32(len(cluster)))
	binary.BigEndian.PutUint32(d[12:], uint32(frames))
	return d
}

// Stopped reports whether the engine ended the session.
func (sess *IngestSession) Stopped() bool {
	select {
	case <-sess.done:
		return true
	default:
		return false
	}
}

// Err is why the session cannot go on (nil while it can).
func (sess *IngestSession) Err() error {
	st := &sess.s.ingest
	st.mu.Lock()
	defer st.mu.Unlock()
	return sess.checkLocked()
}
