package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// Replication support. The engine does not know where copies come from:
// the cluster package moves stream records, tombstones and fragments
// between nodes and hands them in here. What the engine guarantees:
//
//   - An imported fragment keeps its number and timestamps, is stored with
//     the same durability order as an ingested one (segment fdatasync, then
//     one synced index batch), and is stored at most once; a copy of its
//     frames under another number is kept once, the same on every box
//     (resend.go: the higher number, or the one with more frames).
//   - Fragment numbers this node hands out afterwards are larger than any
//     fragment it holds: ingest starts a new term when a fragment numbered
//     beyond the current term arrives from a peer (a takeover, or a
//     producer that switched nodes), so numbers stay increasing per stream
//     when ingest moves between nodes.
//   - A session learns when a peer's fragment numbered beyond this node's
//     was imported, with its producer start (IngestSession.PeerAhead):
//     the camera that covered for a returning home stops there.
//   - Imported fragments newer than the ring's newest go to the ring too,
//     so live readers on a replica follow the stream; older ones (gap
//     fills) go to the archive only.

// ErrBadReplica: a fragment from a peer whose bytes do not match its meta.
var ErrBadReplica = errors.New("engine: replicated fragment does not match its meta")

// Streams returns every stream's snapshot, by name.
func (e *Engine) Streams() []*StreamInfo {
	out, _ := e.ListStreams("", "", 0)
	return out
}

// Tombstones returns the ARNs of deleted streams and when they were
// deleted (epoch ms).
func (e *Engine) Tombstones() map[string]int64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[string]int64, len(e.mu.tombs))
	for k, v := range e.mu.tombs {
		out[k] = v
	}
	return out
}

// ImportTombstone applies a peer's deletion: the stream with this ARN, if
// held, is deleted with its data, and the ARN is never imported again.
func (e *Engine) ImportTombstone(arn string, atMs int64) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.mu.RLock()
	_, known := e.mu.tombs[arn]
	e.mu.RUnlock()
	if known {
		return nil
	}
	s, info, err := e.lookup(StreamRef{ARN: arn})
	if errors.Is(err, ErrStreamNotFound) {
		if err := e.db.PutTombstone(arn, atMs); err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		e.mu.Lock()
		e.mu.tombs[arn] = atMs
		e.mu.Unlock()
		return nil
	}
	if err != nil {
		return err
	}
	defer e.notifyChange()
	e.opts.Logger.Info("stream deleted on a peer", "stream", info.Name)
	return e.deleteLocked(s, info, atMs)
}

// ImportStream applies a peer's copy of a stream record. A stream this
// node does not know is created with the peer's ARN, creation time and
// version; a known one (same ARN) takes the peer's copy when its Modified
// is later, keeping this node's own edge sync and recorder status. It
// reports whether anything changed. A record whose name this node holds
// under another ARN (two nodes created the name during a partition) is
// refused with ErrStreamExists: each node keeps its own until an operator
// deletes one.
func (e *Engine) ImportStream(in *StreamInfo) (bool, error) {
	if in == nil || in.Name == "" || in.ARN == "" {
		return false, errors.New("engine: imported stream record without name or ARN")
	}
	if p, err := ParseARN(in.ARN); err != nil || p.Name != in.Name {
		return false, fmt.Errorf("engine: imported stream record %q with ARN %q", in.Name, in.ARN)
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.mu.RLock()
	_, gone := e.mu.tombs[in.ARN]
	s := e.mu.byName[in.Name]
	count := len(e.mu.byName)
	e.mu.RUnlock()
	if gone {
		return false, nil
	}
	next := in.clone()
	next.Status = StatusActive
	if s == nil {
		if count >= e.opts.MaxStreams {
			return false, fmt.Errorf("%w: %d streams", ErrTooManyStreams, count)
		}
		id, err := e.db.AllocStreamID()
		if err != nil {
			return false, fmt.Errorf("engine: %w", err)
		}
		next.ID = id
		if next.Edge != nil {
			next.Edge.SyncStatus, next.Edge.FailedStatusDetails = EdgeSyncing, ""
			next.Edge.RecorderStatus, next.Edge.RecorderDetails = "", ""
		}
		if err := e.persist(next); err != nil {
			return false, err
		}
		st := e.newStream(id, next)
		e.mu.Lock()
		e.mu.byName[next.Name] = st
		e.mu.byID[id] = st
		e.mu.Unlock()
		e.notifyChange()
		e.opts.Logger.Info("stream copied from a peer", "stream", next.Name, "sid", id)
		return true, nil
	}
	cur := s.info.Load()
	if cur.ARN != in.ARN {
		return false, fmt.Errorf("%w: %s is %s here and %s on a peer", ErrStreamExists, in.Name, cur.ARN, in.ARN)
	}
	if in.Modified <= cur.Modified {
		return false, nil
	}
	next.ID = cur.ID
	if next.Edge != nil && cur.Edge != nil {
		next.Edge.SyncStatus, next.Edge.FailedStatusDetails = cur.Edge.SyncStatus, cur.Edge.FailedStatusDetails
		next.Edge.RecorderStatus, next.Edge.RecorderDetails = cur.Edge.RecorderStatus, cur.Edge.RecorderDetails
		next.Edge.RecorderCollected, next.Edge.RecorderUpdated = cur.Edge.RecorderCollected, cur.Edge.RecorderUpdated
	}
	if err := e.persist(next); err != nil {
		return false, err
	}
	s.info.Store(next)
	e.notifyChange()
	if next.DataRetentionInHours < cur.DataRetentionInHours {
		e.KickRetention()
	}
	return true, nil
}

// LastFragmentNumber is the number of the newest fragment the stream holds
// (ring or archive); zero when it holds none.
func (e *Engine) LastFragmentNumber(ref StreamRef) (fragment.Number, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return fragment.Number{}, err
	}
	n := s.ring.newest()
	last, ok, err := e.db.LastFragment(s.id)
	if err != nil {
		return n, fmt.Errorf("engine: %w", err)
	}
	if ok && last.Number.Compare(n) > 0 {
		n = last.Number
	}
	return n, nil
}

// FragmentNumbers calls fn with the numbers of the stream's stored
// fragments after `after`, in order, until fn returns false.
func (e *Engine) FragmentNumbers(ref StreamRef, after fragment.Number, fn func(fragment.Number) bool) error {
	s, _, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if err := e.db.FragmentNumbers(s.id, after, fn); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// ImportFragment stores a fragment copied from a peer under its own number
// and timestamps. media should come from the engine's media memory
// (Media().Alloc with MediaUpload; the engine owns it from here on, whatever
// the outcome); header is the fragment's session header. It reports
// whether the fragment was new. The media is checked against the meta's
// lengths and content digest, the header against its id.
func (e *Engine) ImportFragment(ref StreamRef, meta fragment.Meta, header, media []byte) (stored bool, err error) {
	s, info, err := e.lookup(ref)
	if err != nil {
		e.mem.Free(media)
		return false, err
	}
	if int(meta.MediaLen) != len(media) || meta.ClusterLen > meta.MediaLen || meta.Number.IsZero() ||
		digest(media[:meta.ClusterLen], int(meta.Frames)) != meta.Digest || xxhash.Sum64(header) != meta.HeaderID {
		e.mem.Free(media)
		return false, fmt.Errorf("%w: %s of %s", ErrBadReplica, meta.Number, info.Name)
	}
	if info.DataRetentionInHours == 0 {
		e.mem.Free(media) // such streams keep nothing, here or on the home node
		return false, nil
	}
	if e.full.Load() {
		e.mem.Free(media)
		return false, ErrStorageFull
	}
	// A copy held here still on its way to disk (this fragment, or its
	// frames under this node's own number, in the ring) makes it a
	// duplicate: the caller tells the fragment's home (or a node about to
	// delete its copy: cluster's pull) that it is durable here, so it
	// returns once that copy is, with the copy's error if storing it
	// failed. A partial copy of this node's own still on its way to disk
	// is waited for the same way, then the import looks again (again: it
	// replaces the stored partial copy then). The wait comes after the
	// locks are released (the copy's Persist takes persistMu) and is
	// bounded (a session that neither stores nor abandons what it received
	// would hold the caller for good): past it the import fails, and the
	// replicator tries again later.
	var wait *Fragment
	again := false
	defer func() {
		if wait == nil {
			return
		}
		ok := waitStored(wait)
		var failed error
		if ok {
			failed = wait.persistErr
		}
		wait.Release()
		switch {
		case !ok:
			if again {
				e.mem.Free(media)
			}
			stored, err = false, fmt.Errorf("engine: a copy of %s here is not stored after %v", meta.Number, importWait)
		case again:
			stored, err = e.ImportFragment(ref, meta, header, media)
		case failed != nil:
			stored, err = false, fmt.Errorf("engine: the copy of %s stored here failed: %w", meta.Number, failed)
		}
	}()
	s.importMu.Lock()
	defer s.importMu.Unlock()
	if f := s.ring.find(meta.Number); f != nil {
		if !f.failed() {
			wait = f
			e.mem.Free(media)
			return false, nil
		}
		f.Release() // its storing here failed: the peer's copy is stored
	}
	s.persistMu.RLock()
	defer s.persistMu.RUnlock()
	if s.deleted.Load() {
		e.mem.Free(media)
		return false, ErrStreamDeleted
	}
	if ok, err := e.db.HasFragment(s.id, meta.Number); err != nil || ok {
		e.mem.Free(media)
		if err != nil {
			return false, fmt.Errorf("engine: %w", err)
		}
		return false, nil
	}
	hdr := e.headerFor(s, meta.HeaderID, header)
	// A copy already here under another number (a partial copy a
	// producer later re-sent whole, the same frames another box recorded
	// at a failover: resend.go) makes this one a duplicate or is replaced
	// by it, so that every box keeps the same one.
	rs, err := e.findImportCopies(s, &meta, hdr, media)
	if err != nil {
		e.mem.Free(media)
		return false, err
	}
	if rs.wait != nil {
		wait, again = rs.wait, true // media stays ours: the retry stores it
		return false, nil
	}
	if rs.duplicate {
		wait = rs.original
		e.mem.Free(media)
		return false, nil
	}
	w := lsm.FragmentWrite{Meta: meta, Media: media, Replaces: rs.replaces}
	if !hdr.stored.Load() {
		w.Header = hdr.Raw
	}
	if err := e.db.PutFragment(s.id, &w); err != nil {
		e.mem.Free(media)
		return false, fmt.Errorf("engine: storing replicated fragment %s: %w", meta.Number, err)
	}
	hdr.stored.Store(true)
	for {
		if v := s.importedServerMs.Load(); meta.ServerMs <= v || s.importedServerMs.CompareAndSwap(v, meta.ServerMs) {
			break
		}
	}
	s.bytes.Add(int64(len(media)))
	for _, old := range rs.replaces {
		s.bytes.Add(-int64(old.MediaLen))
		s.ring.remove(old.Number)
	}
	e.metrics.fragmentsImported.Add(1)
	e.metrics.bytesImported.Add(uint64(len(media)))

	st := &s.ingest
	st.mu.Lock()
	if meta.Number.Compare(fragment.MakeNumber(st.term, e.opts.NodeID, st.seq)) >= 0 {
		st.stale = true // the next number this node hands out needs a new term
		if st.active != nil && meta.Number.Node() != e.opts.NodeID && meta.ProducerMs > 0 &&
			(st.peerAheadMs == 0 || meta.ProducerMs < st.peerAheadMs) {
			st.peerAheadMs, st.peerAhead = meta.ProducerMs, meta.Number // IngestSession.PeerAhead
		}
	}
	st.lastServerMs = max(st.lastServerMs, meta.ServerMs)
	st.mu.Unlock()

	media, owned := e.mem.seal(media)
	frag := &Fragment{Meta: meta, Header: hdr, Media: media, persisted: make(chan struct{}),
		ReceivedMs: e.opts.Clock.Now().UnixMilli()}
	if owned {
		frag.mem = e.mem
	}
	close(frag.persisted)
	// One reference, the ring's: one older than the ring is released at
	// once. The stream archives (retention > 0, above).
	frag.refs.Store(1)
	s.ring.push(frag, true)
	return true, nil
}

// importWait bounds how long ImportFragment waits for a copy of this
// node's own to be stored.
const importWait = 30 * time.Second

// waitStored waits, at most importWait, until f's Persist has finished
// (at once for a fragment without one), and reports whether it has.
func waitStored(f *Fragment) bool {
	if f.persisted == nil {
		return true
	}
	t := time.NewTimer(importWait)
	defer t.Stop()
	select {
	case <-f.persisted:
		return true
	case <-t.C:
		return false
	}
}

// ContentDigest is the Meta.Digest of a fragment whose cluster is cluster
// and holds frames frames, as ImportFragment checks it.
func ContentDigest(cluster []byte, frames int) [16]byte { return digest(cluster, frames) }

// DropCopy deletes the stream's stored fragments up to upTo (by server
// time, which follows number order): a node's copy of a stream it no
// longer holds, once its holders have every fragment (cluster). Media on
// hold (the kvsedge:hold tag) is kept. It returns how many went.
func (e *Engine) DropCopy(ref StreamRef, upTo fragment.Number) (int, error) {
	s, info, err := e.lookup(ref)
	if err != nil {
		return 0, err
	}
	m, err := e.db.FragmentMeta(s.id, upTo)
	if errors.Is(err, lsm.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("engine: %w", err)
	}
	cutoff, allowed := deletionCutoff(info, m.ServerMs+1)
	if !allowed {
		return 0, nil
	}
	s.persistMu.RLock()
	n, b, err := e.db.DeleteBefore(s.id, cutoff)
	s.persistMu.RUnlock()
	s.bytes.Add(-b)
	if err != nil {
		return n, fmt.Errorf("engine: %w", err)
	}
	return n, nil
}
