package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// metaVersion1 layout (big-endian), 1+14+8+8+4+8+8+4+4+4+16 = 79 bytes:
//
//	version u8 | fragnum | producer ms i64 | server ms i64 | duration u32 |
//	timecode u64 | header id u64 | cluster len u32 | media len u32 |
//	frames u32 | digest [16]
const metaVersion1 byte = 1

// metaLen is the encoded size of a metaVersion1 record.
const metaLen = 79

func appendMeta(dst []byte, m *fragment.Meta) []byte {
	dst = append(dst, metaVersion1)
	dst = append(dst, m.Number[:]...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.ProducerMs))
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.ServerMs))
	dst = binary.BigEndian.AppendUint32(dst, m.DurationMs)
	dst = binary.BigEndian.AppendUint64(dst, m.Timecode)
	dst = binary.BigEndian.AppendUint64(dst, m.HeaderID)
	dst = binary.BigEndian.AppendUint32(dst, m.ClusterLen)
	dst = binary.BigEndian.AppendUint32(dst, m.MediaLen)
	dst = binary.BigEndian.AppendUint32(dst, m.Frames)
	return append(dst, m.Digest[:]...)
}

func decodeMeta(key, b []byte) (fragment.Meta, error) {
	var m fragment.Meta
	if len(b) < metaLen || b[0] != metaVersion1 {
		return m, &CorruptionError{Key: append([]byte(nil), key...), Reason: "fragment meta of unknown version or length"}
	}
	b = b[1:]
	copy(m.Number[:], b[:fragment.NumberLen])
	b = b[fragment.NumberLen:]
	m.ProducerMs = int64(binary.BigEndian.Uint64(b[0:]))
	m.ServerMs = int64(binary.BigEndian.Uint64(b[8:]))
	m.DurationMs = binary.BigEndian.Uint32(b[16:])
	m.Timecode = binary.BigEndian.Uint64(b[20:])
	m.HeaderID = binary.BigEndian.Uint64(b[28:])
	m.ClusterLen = binary.BigEndian.Uint32(b[36:])
	m.MediaLen = binary.BigEndian.Uint32(b[40:])
	m.Frames = binary.BigEndian.Uint32(b[44:])
	copy(m.Digest[:], b[48:64])
	return m, nil
}

// Term returns the stream's last ingest term and node (0, 0 if none).
func (d *DB) Term(id StreamID) (uint64, uint16, error) {
	v, closer, err := d.db.Get(termKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("lsm: reading term of stream %d: %w", id, err)
	}
	defer closer.Close()
	if len(v) != 11 || v[0] != 1 {
		return 0, 0, &CorruptionError{Key: termKey(id), Reason: "term record of unknown version"}
	}
	return binary.BigEndian.Uint64(v[1:]), binary.BigEndian.Uint16(v[9:]), nil
}

// PutTerm durably records that node ingests the stream under term. It must
// return before any fragment numbered in the term is acknowledged.
func (d *DB) PutTerm(id StreamID, term uint64, node uint16) error {
	if err := d.space.check(false); err != nil {
		return err
	}
	v := make([]byte, 0, 11)
	v = append(v, 1)
	v = binary.BigEndian.AppendUint64(v, term)
	v = binary.BigEndian.AppendUint16(v, node)
	if err := d.db.Set(termKey(id), v, pebble.Sync); err != nil {
		return fmt.Errorf("lsm: writing term of stream %d: %w", id, err)
	}
	return nil
}

// FragmentWrite is one fragment to store.
type FragmentWrite struct {
	Meta fragment.Meta
	// Header is the session header's bytes, written under Meta.HeaderID
	// when not nil (idempotent: the same id always holds the same bytes).
	Header []byte
	Media  []byte
	// Replaces are stored fragments of the stream that this one supersedes
	// (partial copies of it, engine/resend.go): their fragment record and
	// both index entries are deleted in the same batch, so the index holds
	// one or the other, never both. Their media stays in its segment until
	// retention removes the segment.
	Replaces []fragment.Meta
}

// PutFragment stores a fragment: its record (its media, its meta, what it
// replaces) is appended to the stream's segment and fdatasync'ed, then
// one batch with its index entries (the fragment record pointing into the
// segment, both time-index entries and, if given, its header) is
// committed without a WAL sync (replay.go: Open indexes again from the
// segment what a crash takes of it). When it returns nil the fragment is
// durable and may be acknowledged PERSISTED.
func (d *DB) PutFragment(id StreamID, w *FragmentWrite) error {
	return d.PutFragments(id, []FragmentWrite{*w})
}

// PutFragments stores consecutive fragments of one stream with one pair of
// syncs: every media is appended to the stream's segments, the segments
// written are fdatasync'ed once each (a segment closed at a roll on the
// way was synced as it closed), then one batch with all their index
// entries is committed (not synced: replay.go). The order of syncs is
// PutFragment's (FORMAT.md): no index entry is committed before the media
// it points at is durable, and the batch is all or nothing. When it
// returns nil every fragment is durable; an error means none is indexed.
func (d *DB) PutFragments(id StreamID, ws []FragmentWrite) error {
	var p PendingPut // on the stack: no allocation per call
	if ok, err := d.appendFragments(&p, id, ws); !ok {
		return err
	}
	return p.finish(nil)
}

// PendingPut is a PutFragmentsAsync whose syncs and commit run in the
// background.
type PendingPut struct {
	d   *DB
	id  StreamID
	b   *pebble.Batch
	ss  *streamSegments
	gen uint64 // the last append's count (streamSegments.written)
	// The segments written, in order: the first len(seqs) in seqs (no
	// allocation: a PutFragments' PendingPut stays on the stack), the
	// rest in more.
	seqs  [4]uint64
	nseq  int
	more  []uint64
	done  chan struct{}
	err   error
	group bool
	// first is where the put's first record began (tracked: it is in
	// the stream's inflight list until unpin).
	first   segmentRef
	tracked bool
	// records: each fragment record appended (its number and where it
	// begins), for the voids of a failed put: the first len(records)
	// here, the rest in moreRecords (a put of up to 8 fragments, a PutMedia run,
	// allocates nothing; the caller's slice is not kept, so it stays on
	// the caller's stack).
	records     [8]appendedRecord
	moreRecords []appendedRecord
	nrecords    int
}

// appendedRecord is a fragment record a put appended.
type appendedRecord struct {
	n     fragment.Number
	start segmentRef
}

// addRecord notes the next fragment record appended.
func (p *PendingPut) addRecord(r appendedRecord) {
	if p.nrecords < len(p.records) {
		p.records[p.nrecords] = r
	} else {
		p.moreRecords = append(p.moreRecords, r)
	}
	p.nrecords++
}

// record returns the i-th fragment record appended.
func (p *PendingPut) record(i int) appendedRecord {
	if i < len(p.records) {
		return p.records[i]
	}
	return p.moreRecords[i-len(p.records)]
}

// PutFragmentsAsync is PutFragments in two halves, so that an upload can
// write its next fragments while the previous ones sync: it appends every
// media now, in the caller, and returns; the segment sync and the
// commit run in the background, and Wait returns their outcome, which is
// PutFragments': nil when every fragment is durable, otherwise none is
// indexed. prev, if not nil, is the previous PendingPut of the same
// stream (whose media was appended before this one's): this one's index
// is committed only after prev's is durable, and not at all when prev
// failed (it then returns prev's error), so the index holds the stream's
// fragments in the order they were put, never a later one without an
// earlier one of the same upload. This one's segment sync may run while
// prev's commit does; the order of syncs for each fragment is unchanged
// (its media durable, then its index entries, then Wait returns nil:
// FORMAT.md).
func (d *DB) PutFragmentsAsync(id StreamID, ws []FragmentWrite, prev *PendingPut) (*PendingPut, error) {
	p := &PendingPut{done: make(chan struct{})}
	if ok, err := d.appendFragments(p, id, ws); err != nil {
		return nil, err
	} else if !ok {
		if prev != nil {
			p.err = prev.Wait()
		}
		close(p.done)
		return p, nil
	}
	d.pending.Add(1)
	go func() {
		defer d.pending.Done()
		p.err = p.finish(prev)
		close(p.done)
	}()
	return p, nil
}

// Wait waits for the put's syncs and commit and returns their outcome.
func (p *PendingPut) Wait() error {
	<-p.done
	return p.err
}

// appendFragments is PutFragments' first half, into p: the media
// appended without a sync, the index batch staged. false: nothing to
// store (and nil), or the error.
func (d *DB) appendFragments(p *PendingPut, id StreamID, ws []FragmentWrite) (bool, error) {
	if len(ws) == 0 {
		return false, nil
	}
	if err := d.space.check(true); err != nil {
		return false, err
	}
	size := 256
	for i := range ws {
		size += len(ws[i].Header) + 4*metaLen + 128
	}
	start := time.Now()
	b := d.db.NewBatchWithSize(size)
	ss := d.segs.stream(id)
	p.d, p.id, p.b, p.ss, p.group = d, id, b, ss, d.group != nil
	for i := range ws {
		ss.mu.Lock()
		ref, gen, err := d.segs.appendLocked(id, ss, &ws[i])
		if err == nil {
			p.gen = gen
			if p.addSeq(ref.Seq) {
				ss.pin(ref.Seq) // until finish: retention keeps it
			}
			if !p.tracked {
				// The replay checkpoint stays at or before it until the
				// put resolves (replay.go).
				p.first, p.tracked = ss.lastStart, true
				ss.inflight = append(ss.inflight, p.first)
			}
			// The fragment record's own start (after its header's
			// record, if one went first): what replay's scan sees.
			p.addRecord(appendedRecord{n: ws[i].Meta.Number,
				start: segmentRef{Seq: ref.Seq, Offset: ref.Offset - uint64(recordHdrLen+metaLen+2+fragment.NumberLen*len(ws[i].Replaces))}})
		}
		ss.mu.Unlock()
		if err == nil {
			d.bounds.raise(id, ws[i].Meta.ProducerMs) // before the entries can commit
			err = stageFragment(b, id, &ws[i], ref)
		}
		if err != nil {
			if p.tracked {
				// The fragments appended before the failure: the
				// segment's close synced their records. The failed
				// append's record is torn or missing, and replay's scan
				// of the segment ends at it.
				d.voidPut(p, err)
			}
			p.unpin()
			_ = b.Close()
			return false, err
		}
	}
	d.phases.append.Observe(time.Since(start))
	return true, nil
}

// addSeq notes that segment q was written (after the ones noted) and
// reports whether it is new to p.
func (p *PendingPut) addSeq(q uint64) bool {
	switch {
	case p.nseq > 0 && p.seq(p.nseq-1) == q:
		return false
	case p.nseq < len(p.seqs):
		p.seqs[p.nseq] = q
		p.nseq++
	default:
		p.more = append(p.more, q)
		p.nseq++
	}
	return true
}

// unpin lets retention unlink the segments p wrote (once its commit is
// durable, or it failed).
func (p *PendingPut) unpin() {
	p.ss.mu.Lock()
	for i := range p.nseq {
		p.ss.unpin(p.seq(i))
	}
	if p.tracked {
		p.ss.resolved(p.first)
	}
	p.ss.mu.Unlock()
	if p.tracked && p.d.ckpt != nil {
		p.d.ckpt.kick() // the checkpoint moved
	}
}

// seq returns the i-th segment written.
func (p *PendingPut) seq(i int) uint64 {
	if i < len(p.seqs) {
		return p.seqs[i]
	}
	return p.more[i-len(p.seqs)]
}

// finish is PutFragments' second half: the segments written synced, then
// (after prev's commit, if prev is given) the index batch committed. When
// that fails, the put's records are voided before the error is returned.
func (p *PendingPut) finish(prev *PendingPut) error {
	err := p.syncAndCommit(prev)
	if err != nil && !errors.Is(err, errClosed) {
		p.d.voidPut(p, err)
	}
	return err
}

// voidPut records, synced, that the records p appended must never be
// indexed (0x05: replay.go), before the caller learns of the failure: a
// record whose sync succeeded, or that a later sync (a segment's close)
// made durable, would otherwise be indexed by Open's replay after a crash,
// beside the re-send the producer made meanwhile under another number. A
// void names the record (its number and position), not the number alone:
// a replicated fragment's retry keeps its number, and must not be voided
// with the failed attempt. A store closing (errClosed) needs none:
// nothing is re-sent before the next Open, whose replay comes first. A
// void that cannot be written is logged; the put fails either way.
func (d *DB) voidPut(p *PendingPut, cause error) {
	id := p.id
	b := d.db.NewBatch()
	defer b.Close()
	var k [voidKeyLen]byte
	for i := range p.nrecords {
		r := p.record(i)
		if err := b.Set(voidKey(k[:0], id, r.n, r.start), []byte{voidVersion1}, nil); err != nil {
			d.opts.Logger.Error("a failed put's records cannot be voided", "stream", id, "error", err)
			return
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		d.opts.Logger.Error("a failed put's records cannot be voided: should the box stop before the next index sync, the next start may index them beside the producer's re-send",
			"stream", id, "fragments", p.nrecords, "put_error", cause, "error", err)
	}
}

// syncAndCommit is finish but for the voiding.
func (p *PendingPut) syncAndCommit(prev *PendingPut) error {
	defer p.b.Close()
	defer p.unpin() // after the commit (or its failure)
	last := p.seq(p.nseq - 1)
	if p.group {
		// Segments closed by a roll before the last one were synced as
		// they closed; the window syncs the last.
		for i := range p.nseq - 1 {
			if err := p.ss.checkSynced(p.seq(i)); err != nil {
				return err
			}
		}
		if prev != nil {
			if err := prev.Wait(); err != nil {
				return err
			}
		}
		return p.d.group.commit(p.ss, last, p.gen, p.b)
	}
	start := time.Now()
	for i := range p.nseq {
		if err := p.ss.syncDirty(p.seq(i), p.gen); err != nil {
			return err
		}
	}
	p.d.phases.mediaSync.Observe(time.Since(start))
	if prev != nil {
		if err := prev.Wait(); err != nil {
			return err
		}
	}
	start = time.Now()
	// Not synced: the fragment records just synced in its segments hold
	// these entries, and Open replays them should the commit not reach
	// the disk (replay.go); the checkpointer syncs the log within a
	// second.
	if err := p.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("lsm: committing fragment: %w", err)
	}
	p.d.phases.indexCommit.Observe(time.Since(start))
	return nil
}

// stageFragment adds one fragment's index entries (its record pointing at
// ref, both time-index entries, its header if given, the deletion of what
// it replaces) to b.
func stageFragment(b *pebble.Batch, id StreamID, w *FragmentWrite, ref segmentRef) error {
	var kb [64]byte
	meta := appendMeta(make([]byte, 0, metaLen+refLen), &w.Meta)
	if w.Header != nil {
		hv := make([]byte, 0, 1+len(w.Header))
		hv = append(append(hv, 1), w.Header...)
		if err := b.Set(headerKey(id, w.Meta.HeaderID), hv, nil); err != nil {
			return fmt.Errorf("lsm: staging header: %w", err)
		}
	}
	if err := b.Set(fragmentKey(kb[:0], id, w.Meta.Number), appendRef(meta, ref), nil); err != nil {
		return fmt.Errorf("lsm: staging fragment: %w", err)
	}
	if err := b.Set(timeKey(kb[:0], prefixProducerIdx, id, w.Meta.ProducerMs, w.Meta.Number), meta, nil); err != nil {
		return fmt.Errorf("lsm: staging index: %w", err)
	}
	if err := b.Set(timeKey(kb[:0], prefixServerIdx, id, w.Meta.ServerMs, w.Meta.Number), meta, nil); err != nil {
		return fmt.Errorf("lsm: staging index: %w", err)
	}
	for _, old := range w.Replaces {
		for _, k := range [][]byte{fragmentKey(nil, id, old.Number), timeKey(nil, prefixProducerIdx, id, old.ProducerMs, old.Number),
			timeKey(nil, prefixServerIdx, id, old.ServerMs, old.Number)} {
			if err := b.Delete(k, nil); err != nil {
				return fmt.Errorf("lsm: staging replacement: %w", err)
			}
		}
	}
	return nil
}

// Header returns a stored session header.
func (d *DB) Header(id StreamID, hid uint64) ([]byte, error) {
	v, closer, err := d.db.Get(headerKey(id, hid))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("lsm: reading header: %w", err)
	}
	defer closer.Close()
	if len(v) < 1 || v[0] != 1 {
		return nil, &CorruptionError{Key: headerKey(id, hid), Reason: "header of unknown version"}
	}
	return append([]byte(nil), v[1:]...), nil
}

// Buffers hands out the buffers fragment media is read into (the
// engine's media memory); nil means the Go heap.
type Buffers interface {
	// Alloc returns an empty buffer with room for n bytes.
	Alloc(n int) ([]byte, error)
	// Free takes back a buffer from Alloc that is not handed on.
	Free(b []byte)
}

// Fragment reads one fragment; its media is read into a buffer from bufs
// (its exact size) and is the caller's.
func (d *DB) Fragment(id StreamID, n fragment.Number, bufs Buffers) (fragment.Meta, []byte, error) {
	var kb [32]byte
	key := fragmentKey(kb[:0], id, n)
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return fragment.Meta{}, nil, ErrNotFound
	}
	if err != nil {
		return fragment.Meta{}, nil, fmt.Errorf("lsm: reading fragment: %w", err)
	}
	m, ref, err := decodeFragment(key, v)
	closer.Close()
	if err != nil {
		return m, nil, err
	}
	media, err := d.readMediaInto(id, key, &m, ref, bufs)
	if errors.Is(err, fs.ErrNotExist) && d.goneSince(key) {
		return fragment.Meta{}, nil, ErrNotFound
	}
	return m, media, err
}

// goneSince reports whether the fragment record at key, read a moment
// ago, is gone now: retention deleted it, and its segment unlinked, since
// (the deleting batch is synced before its segments are unlinked), so a
// missing segment file means gone, not damaged.
func (d *DB) goneSince(key []byte) bool {
	_, closer, err := d.db.Get(key)
	if err == nil {
		closer.Close()
	}
	return errors.Is(err, pebble.ErrNotFound)
}

// HasFragment reports whether the stream holds fragment n.
func (d *DB) HasFragment(id StreamID, n fragment.Number) (bool, error) {
	var kb [32]byte
	return d.has(fragmentKey(kb[:0], id, n))
}

// has reports whether the index holds key.
func (d *DB) has(key []byte) (bool, error) {
	_, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lsm: %w", err)
	}
	closer.Close()
	return true, nil
}

// decodeFragment splits a 0x10 value into its meta and segment reference.
func decodeFragment(key, v []byte) (fragment.Meta, segmentRef, error) {
	m, err := decodeMeta(key, v)
	if err != nil {
		return m, segmentRef{}, err
	}
	if len(v) != metaLen+refLen {
		return m, segmentRef{}, &CorruptionError{Key: append([]byte(nil), key...), Reason: "fragment record of the wrong length"}
	}
	return m, decodeRef(v[metaLen:]), nil
}

// readMedia reads a fragment's media from its segment and checks it
// against the digest recorded with it.
func (d *DB) readMedia(id StreamID, key []byte, m *fragment.Meta, ref segmentRef, dst []byte) ([]byte, error) {
	media, err := d.segs.read(id, ref, int(m.MediaLen), dst)
	if err != nil {
		return nil, err
	}
	if m.ClusterLen > m.MediaLen || xxhash.Sum64(media[:m.ClusterLen]) != binary.BigEndian.Uint64(m.Digest[:8]) {
		return nil, &CorruptionError{Key: append([]byte(nil), key...), Reason: fmt.Sprintf("media in segment %d at %d does not match its digest", ref.Seq, ref.Offset)}
	}
	return media, nil
}

// readMediaInto is readMedia into a buffer from bufs, which it frees on
// error.
func (d *DB) readMediaInto(id StreamID, key []byte, m *fragment.Meta, ref segmentRef, bufs Buffers) ([]byte, error) {
	if bufs == nil {
		return d.readMedia(id, key, m, ref, nil)
	}
	dst, err := bufs.Alloc(int(m.MediaLen))
	if err != nil {
		return nil, err
	}
	media, err := d.readMedia(id, key, m, ref, dst)
	if err != nil {
		bufs.Free(dst)
	}
	return media, err
}

// NextFragment returns the first fragment numbered after `after` and
// before `before` (zero: no bound), with its media read into a buffer
// from bufs (as Fragment). ok is false when there is none. One that
// retention deletes while it is read is passed over, as if already gone.
func (d *DB) NextFragment(id StreamID, after, before fragment.Number, bufs Buffers) (m fragment.Meta, media []byte, ok bool, err error) {
	for {
		m, media, ok, err = d.nextFragment(id, after, before, bufs)
		if !errors.Is(err, errGoneWhileRead) {
			return m, media, ok, err
		}
		// Retention took it while it was read: the next one is next.
		after = m.Number
	}
}

// errGoneWhileRead: nextFragment's fragment was deleted by retention
// between reading its record and its media.
var errGoneWhileRead = errors.New("lsm: fragment deleted while read")

func (d *DB) nextFragment(id StreamID, after, before fragment.Number, bufs Buffers) (m fragment.Meta, media []byte, ok bool, err error) {
	lower := fragmentKey(nil, id, after.Next())
	var upper []byte
	if before.IsZero() {
		_, upper = streamSpan(prefixFragment, id)
	} else {
		upper = fragmentKey(nil, id, before)
	}
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return m, nil, false, fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	if !it.First() {
		return m, nil, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return m, nil, false, fmt.Errorf("lsm: reading fragment: %w", err)
	}
	key := append([]byte(nil), it.Key()...)
	m, ref, err := decodeFragment(key, v)
	if err != nil {
		return m, nil, false, err
	}
	media, err = d.readMediaInto(id, key, &m, ref, bufs)
	if errors.Is(err, fs.ErrNotExist) && d.goneSince(key) {
		return m, nil, false, errGoneWhileRead
	}
	return m, media, err == nil, err
}

// LastFragment returns the meta of the stream's newest stored fragment.
func (d *DB) LastFragment(id StreamID) (fragment.Meta, bool, error) { return d.endFragment(id, true) }

// endFragment returns the meta of the stream's newest (last) or oldest
// stored fragment.
func (d *DB) endFragment(id StreamID, last bool) (fragment.Meta, bool, error) {
	lower, upper := streamSpan(prefixFragment, id)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fragment.Meta{}, false, fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	ok := false
	if last {
		ok = it.Last()
	} else {
		ok = it.First()
	}
	if !ok {
		return fragment.Meta{}, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return fragment.Meta{}, false, err
	}
	m, err := decodeMeta(it.Key(), v)
	return m, err == nil, err
}

// ScanTime calls fn for fragments whose timestamp in index idx lies in
// [startMs, endMs], in (timestamp, number) order, starting after cursor
// when cursor is not nil, until fn returns false. It has no limit of its
// own: fn decides when to stop.
func (d *DB) ScanTime(id StreamID, idx fragment.TimeIndex, startMs, endMs int64, cursor *fragment.TimeCursor, fn func(fragment.Meta) bool) error {
	lower := timePrefix(nil, indexPrefix(idx), id, startMs)
	if cursor != nil {
		k := timeKey(nil, indexPrefix(idx), id, cursor.Ms, cursor.Number)
		k = append(k, 0) // just after the cursor's key
		if bytes.Compare(k, lower) > 0 {
			lower = k
		}
	}
	upper := timePrefix(nil, indexPrefix(idx), id, endMs)
	upper = append(upper, bytes.Repeat([]byte{0xFF}, fragment.NumberLen+1)...)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	return scanIndex(it, false, fn)
}

// ScanTimeBackward is ScanTime from the newest entry down: fragments whose
// timestamp in index idx lies in [startMs, endMs], in descending
// (timestamp, number) order, until fn returns false.
func (d *DB) ScanTimeBackward(id StreamID, idx fragment.TimeIndex, startMs, endMs int64, fn func(fragment.Meta) bool) error {
	lower := timePrefix(nil, indexPrefix(idx), id, startMs)
	upper := timePrefix(nil, indexPrefix(idx), id, endMs)
	upper = append(upper, bytes.Repeat([]byte{0xFF}, fragment.NumberLen+1)...)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	return scanIndex(it, true, fn)
}

// scanIndex calls fn with the fragment meta of each time-index entry of
// it, forward or backward, until fn returns false.
func scanIndex(it *pebble.Iterator, backward bool, fn func(fragment.Meta) bool) error {
	next, ok := it.Next, it.First()
	if backward {
		next, ok = it.Prev, it.Last()
	}
	for ; ok; ok = next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("lsm: reading index: %w", err)
		}
		m, err := decodeMeta(it.Key(), v)
		if err != nil {
			return err
		}
		if !fn(m) {
			return nil
		}
	}
	return it.Error()
}

// LastAtOrBefore returns the fragment with the latest timestamp ≤ ms in
// index idx.
func (d *DB) LastAtOrBefore(id StreamID, idx fragment.TimeIndex, ms int64) (fragment.Meta, bool, error) {
	lower, _ := streamSpan(indexPrefix(idx), id)
	upper := timePrefix(nil, indexPrefix(idx), id, ms)
	upper = append(upper, bytes.Repeat([]byte{0xFF}, fragment.NumberLen+1)...)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fragment.Meta{}, false, fmt.Errorf("lsm: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return fragment.Meta{}, false, it.Error()
	}
	v, err := it.ValueAndErr()
	if err != nil {
		return fragment.Meta{}, false, err
	}
	m, err := decodeMeta(it.Key(), v)
	return m, err == nil, err
}

// DeleteBefore removes every fragment whose server timestamp is before
// cutoffMs, in synced batches of point deletions (deleteBatchBefore), each
// with the stream's replay checkpoint; a run that finds nothing writes
// nothing. It returns how many fragments went and their media bytes. The
// batches are synced before any segment is unlinked, so no index entry
// outlives its media (FORMAT.md, "Retention").
func (d *DB) DeleteBefore(id StreamID, cutoffMs int64) (int, int64, error) {
	if d.space.readOnly {
		return 0, 0, ErrNoSpace
	}
	var (
		n     int
		bytes int64
	)
	for {
		bn, bb, err := d.deleteBatchBefore(id, cutoffMs)
		n, bytes = n+bn, bytes+bb
		if err != nil {
			return n, bytes, err
		}
		if bn < retentionBatch {
			break
		}
	}
	if n == 0 {
		return 0, 0, nil
	}
	// Segments wholly before the first remaining fragment go.
	// The smallest segment the oldest remaining fragments use. Segment
	// order follows number order except where two uploads of the stream
	// overlapped (briefly, at a reconnect), so the first few thousand
	// fragments settle it. Any doubt keeps every segment.
	keep := uint64(1 << 63)
	lower, upper := streamSpan(prefixFragment, id)
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return n, bytes, fmt.Errorf("lsm: %w", err)
	}
	for ok, seen := it.First(), 0; ok && seen < 4096; ok, seen = it.Next(), seen+1 {
		v, err := it.ValueAndErr()
		if err != nil || len(v) != metaLen+refLen {
			_ = it.Close()
			return n, bytes, fmt.Errorf("lsm: unreadable fragment record while deleting: keeping every segment: %v", err)
		}
		keep = min(keep, decodeRef(v[metaLen:]).Seq)
	}
	if err := it.Close(); err != nil {
		return n, bytes, fmt.Errorf("lsm: %w", err)
	}
	if _, err := d.segs.removeBefore(id, keep); err != nil {
		return n, bytes, err
	}
	return n, bytes, nil
}

// retentionBatch bounds one retention batch (and the memory of its keys).
const retentionBatch = 4096

// deleteBatchBefore deletes up to retentionBatch of the oldest fragments
// (by server time) before cutoffMs: their fragment record and both index
// entries, by point deletions, in one synced batch. Deleting exactly the
// scanned entries keeps the three tables in step whatever the order of
// numbers and times (imported gap fills arrive late).
func (d *DB) deleteBatchBefore(id StreamID, cutoffMs int64) (int, int64, error) {
	var (
		n     int
		bytes int64
		keys  [][]byte
	)
	err := d.ScanTime(id, fragment.ByServerTime, -1<<63, cutoffMs-1, nil, func(m fragment.Meta) bool {
		n++
		bytes += int64(m.MediaLen)
		keys = append(keys,
			fragmentKey(nil, id, m.Number),
			timeKey(nil, prefixServerIdx, id, m.ServerMs, m.Number),
			timeKey(nil, prefixProducerIdx, id, m.ProducerMs, m.Number))
		return n < retentionBatch
	})
	if err != nil || n == 0 {
		return 0, 0, err
	}
	b := d.db.NewBatch()
	defer b.Close()
	for _, k := range keys {
		if err := b.Delete(k, nil); err != nil {
			return 0, 0, err
		}
	}
	// The stream's replay checkpoint, in the same batch: records the
	// batch deletes are before it (they were indexed), so Open does not
	// take them back (replay.go). Under the checkpointer's lock, so that
	// a run of it that read an older checkpoint does not commit it after
	// this one; none after the checkpointer closed (Close deleted them
	// all: the store is wholly indexed).
	c := d.ckpt
	if c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	ss := d.segs.stream(id)
	ss.mu.Lock()
	cp, ok := ss.replayFrom()
	ss.mu.Unlock()
	_, stuck := d.unreplayed[id]
	ok = ok && !stuck && c != nil && !c.closed
	if ok {
		if err := setCheckpoint(b, id, cp); err != nil {
			return 0, 0, err
		}
	}
	// Synced, so no index entry can outlive the segments unlinked after.
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, 0, fmt.Errorf("lsm: retention delete: %w", err)
	}
	if ok {
		c.written[id] = cp
	}
	return n, bytes, nil
}
