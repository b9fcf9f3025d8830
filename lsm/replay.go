package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// One sync per fragment (FORMAT.md, "Write path and durability").
//
// A fragment's segment record holds everything its index entries hold
// (its meta, the numbers it replaces; its position gives the segment
// reference), so once the record is fdatasync'ed the fragment and its
// index entries are durable, in the segment. The Pebble batch that
// indexes it is then committed without a WAL sync and the fragment
// acknowledged: one device round trip less on the PERSISTED path than a
// synced commit. Pebble's log is a prefix of its commits after a crash, so
// what a crash can take from the index is a tail of the commits since its
// last sync, and replayTails takes it back from the segments at Open.
//
// The replay checkpoint (0x04, per stream) bounds that work: a position in
// the stream's segments before which every record belongs to a put that
// had resolved (its batch committed, or the put failed) when the
// checkpoint was written. checkpointer writes the checkpoints of the
// streams that appended since its last run, every Options.IndexSyncInterval,
// in a synced batch: the WAL sync that makes every commit before it
// durable. So after a crash every record before a stream's durable
// checkpoint is indexed (or was never to be: a failed put, a fragment
// retention deleted since), and Open scans only the records after it.
// Every record after it is indexed but those of puts that failed, which
// the failing put voided (0x05, synced) before it returned: replay does
// not guess which records were acknowledged.
//
// Invariant: nothing a process writes lies before its stream's durable
// checkpoint. Open numbers each stream's first new segment at least at
// the checkpoint's (seqFloor), and a clean Close deletes the checkpoints
// (none means wholly indexed), so no checkpoint outlives the process that
// could move it (an older kvsedge, run in between, never would).

// Replay checkpoint value, version 1 (0x04 <sid>): 1 | segment seq u64 |
// offset u64, where the replay scan of the stream starts.
const replayVersion1 byte = 1

// setCheckpoint stages the stream's checkpoint cp in b (key and value
// built on the stack: Pebble copies them into the batch, and the
// checkpointer's runs allocate nothing).
func setCheckpoint(b *pebble.Batch, id StreamID, cp segmentRef) error {
	var k [1 + StreamIDLen]byte
	k[0] = prefixReplay
	binary.BigEndian.PutUint32(k[1:], uint32(id))
	var v [1 + refLen]byte
	v[0] = replayVersion1
	appendRef(v[1:1], cp)
	if err := b.Set(k[:], v[:], nil); err != nil {
		return fmt.Errorf("lsm: staging a replay checkpoint: %w", err)
	}
	return nil
}

func decodeCheckpoint(key, v []byte) (segmentRef, error) {
	if len(v) != 1+refLen || v[0] != replayVersion1 {
		return segmentRef{}, &CorruptionError{Key: append([]byte(nil), key...), Reason: "replay checkpoint of unknown version or length"}
	}
	return decodeRef(v[1:]), nil
}

func (r segmentRef) before(o segmentRef) bool {
	return r.Seq < o.Seq || (r.Seq == o.Seq && r.Offset < o.Offset)
}

// checkpointer writes the replay checkpoints (and so syncs Pebble's log)
// one interval after a put resolves, at most once an interval: while
// fragments are stored, every interval; an idle store neither writes nor
// wakes.
type checkpointer struct {
	d     *DB
	every time.Duration
	// timer runs tick; armed: it is set to (kick).
	timer *time.Timer
	armed atomic.Bool
	// mu serialises runs with DeleteStream (no checkpoint of a deleted
	// stream is written after its deletion) and DeleteBefore (which
	// writes one: a run's older value must not land after it).
	mu      sync.Mutex
	written map[StreamID]segmentRef
	failing bool
	closed  bool // close ran: no checkpoint is written again
	// scratch of a run, reused: a run allocates nothing in steady state
	// (the batch comes from Pebble's pool).
	ids     []StreamID
	streams []*streamSegments
	moved   []movedCheckpoint
	// syncs counts checkpoint batches committed (tests).
	syncs int
}

func newCheckpointer(d *DB, every time.Duration) *checkpointer {
	c := &checkpointer{d: d, every: every, written: map[StreamID]segmentRef{}}
	c.timer = time.AfterFunc(time.Hour, c.tick)
	c.timer.Stop()
	return c
}

// kick arms the timer, unless it is armed: a put resolved (allocation
// free: the timer is reused).
func (c *checkpointer) kick() {
	if c.armed.CompareAndSwap(false, true) {
		c.timer.Reset(c.every)
	}
}

// tick is the timer's: a put that resolves from now on arms it again.
func (c *checkpointer) tick() {
	c.armed.Store(false)
	_ = c.run()
}

// close stops the ticks; then, every put resolved, it deletes every
// checkpoint and void in one synced batch (a store without checkpoints is
// wholly indexed: replayTails). A stream with a put still in flight (a
// caller racing Close) keeps its checkpoint, and so does one whose replay
// failed at Open (the tail it could not read is for kvsedge repair).
func (c *checkpointer) close() error {
	c.timer.Stop()
	c.mu.Lock() // a tick running holds it: close waits for it
	defer c.mu.Unlock()
	c.closed = true
	d := c.d
	// The streams that keep theirs (and their voids).
	kept := map[StreamID]segmentRef{}
	for id, cp := range d.unreplayed {
		kept[id] = cp
	}
	d.segs.mu.Lock()
	for id, ss := range d.segs.streams {
		ss.mu.Lock()
		cp, ok := ss.replayFrom()
		if ok && len(ss.inflight) > 0 && !ss.dead {
			kept[id] = cp
		}
		ss.mu.Unlock()
	}
	d.segs.mu.Unlock()
	b := d.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{prefixReplay}, []byte{prefixReplay + 1}, nil); err != nil {
		return fmt.Errorf("lsm: staging the checkpoints' deletion: %w", err)
	}
	for id, cp := range kept {
		if err := setCheckpoint(b, id, cp); err != nil {
			return err
		}
	}
	// Voids are few (failed puts): each is deleted unless its stream
	// keeps its checkpoint.
	it, err := d.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixVoid}, UpperBound: []byte{prefixVoid + 1}})
	if err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) >= 1+StreamIDLen {
			if _, keep := kept[StreamID(binary.BigEndian.Uint32(k[1:]))]; keep {
				continue
			}
		}
		if err := b.Delete(k, nil); err != nil {
			_ = it.Close()
			return fmt.Errorf("lsm: staging a void's deletion: %w", err)
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("lsm: reading the voids: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("lsm: deleting the replay checkpoints: %w", err)
	}
	return nil
}

// run writes, in one synced batch, the checkpoint of every stream whose
// checkpoint moved since it was last written. A failure is logged (once
// until the next success) and left for the next run: the fragments are
// durable in their segments either way.
func (c *checkpointer) run() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil // a tick that fired as the store closed
	}
	d := c.d
	d.segs.mu.Lock()
	ids, streams := c.ids[:0], c.streams[:0]
	for id, ss := range d.segs.streams {
		ids, streams = append(ids, id), append(streams, ss)
	}
	d.segs.mu.Unlock()
	c.ids, c.streams = ids, streams
	defer clear(c.streams) // no stream kept reachable by the scratch
	moved := c.moved[:0]
	var b *pebble.Batch
	for i, ss := range streams {
		ss.mu.Lock()
		cp, ok := ss.replayFrom()
		dead := ss.dead
		ss.mu.Unlock()
		if _, stuck := d.unreplayed[ids[i]]; !ok || dead || stuck {
			continue // a stream Open could not replay keeps its checkpoint
		}
		if w, ok := c.written[ids[i]]; ok && w == cp {
			continue
		}
		if b == nil {
			b = d.db.NewBatch()
		}
		if err := setCheckpoint(b, ids[i], cp); err != nil {
			_ = b.Close()
			return err
		}
		moved = append(moved, movedCheckpoint{ids[i], cp})
	}
	c.moved = moved
	if b == nil {
		return nil
	}
	defer b.Close()
	err := d.space.check(false)
	if err == nil {
		if err = b.Commit(pebble.Sync); err != nil {
			err = fmt.Errorf("lsm: committing replay checkpoints: %w", err)
		}
	}
	if err != nil {
		if !c.failing {
			d.opts.Logger.Warn("the index's log cannot be synced: fragments stay durable in their segments, and are indexed again from them should the box stop now; retrying",
				"error", err)
		}
		c.failing = true
		return err
	}
	if c.failing {
		d.opts.Logger.Info("the index's log is synced again")
	}
	c.failing = false
	c.syncs++
	for _, m := range moved {
		c.written[m.id] = m.cp
	}
	return nil
}

// movedCheckpoint is a checkpoint a run writes.
type movedCheckpoint struct {
	id StreamID
	cp segmentRef
}

// forget drops a deleted stream. The caller holds mu.
func (c *checkpointer) forget(id StreamID) { delete(c.written, id) }

// ReplayReport is what Open's replay found (replayTails).
type ReplayReport struct {
	// Streams whose segments held records after their checkpoint.
	Streams int
	// Indexed: fragment records after a checkpoint that the index lacked
	// and now holds (their commit did not reach the disk before the box
	// stopped).
	Indexed int
	// Voided: records left out because their put failed (0x05).
	Voided int
	// NoHeader: records left out because their session header is in
	// neither the index nor their segment (logged; kvsedge repair
	// reports them too).
	NoHeader int
	// Damaged: fragment records left out because their payload does not
	// match its CRC while intact records follow them (torn by the stop,
	// the device having kept a later write, or damaged since; logged).
	// The intact ones are indexed.
	Damaged int
	// Unreachable: segments where a torn or damaged record header, with
	// intact records after it, ended the scan (logged): those records
	// are left for kvsedge repair.
	Unreachable int
}

// Replayed returns what Open's replay found.
func (d *DB) Replayed() ReplayReport { return d.replayed }

// replayCandidate is a fragment record found after a checkpoint and not
// in the index.
type replayCandidate struct {
	meta     fragment.Meta
	replaced []fragment.Number
	ref      segmentRef // its media
	start    segmentRef // its record: where a void names it
	headers  map[uint64][2]int64
	// indexed: the index holds it; it is listed only for what it
	// replaced (meta holds its number alone).
	indexed bool
}

// readReplaced reads the k replaced numbers of the fragment record at off
// (payload length plen).
func readReplaced(f io.ReaderAt, off, plen, k int64) ([]fragment.Number, error) {
	if metaLen+2+k*fragment.NumberLen > plen {
		return nil, errBadRecord
	}
	b := make([]byte, k*fragment.NumberLen)
	if _, err := f.ReadAt(b, off+recordHdrLen+metaLen+2); err != nil {
		return nil, err
	}
	out := make([]fragment.Number, k)
	for i := range out {
		copy(out[i][:], b[i*fragment.NumberLen:])
	}
	return out, nil
}

// replayTails indexes, for every stream, the fragment records after its
// replay checkpoint that the index lacks, in one synced batch that also
// sets each stream's checkpoint to the start of its next segment (and
// seqFloor, so writing resumes there, never before it) and clears its
// voids. A stream without a checkpoint was closed cleanly, stored by a
// kvsedge that synced every commit, or rebuilt by Repair: everything in
// its segments is indexed.
func (d *DB) replayTails() error {
	recs, err := d.Streams()
	if err != nil {
		return err
	}
	b := d.db.NewBatch()
	defer b.Close()
	var rep ReplayReport
	for _, rec := range recs {
		id := rec.ID
		t, err := d.replayTail(id)
		if err != nil {
			return err
		}
		ss, seqs, floor, cp, ok := t.ss, t.seqs, t.floor, t.cp, t.checkpointed
		if ok {
			// A checkpoint after every segment (a prepared segment
			// removed, segments retention unlinked): writing still
			// begins at or after it.
			at := cp.Seq
			if cp.Offset > 0 {
				at++
			}
			if t.pending() {
				n, err := d.replayStream(b, id, ss.dir, seqs, cp, &rep)
				if err != nil {
					// The stream's other data is served; what its tail
					// holds stays in its segments for kvsedge repair,
					// and its checkpoint stays where it is.
					d.opts.Logger.Error("the fragments after a stream's replay checkpoint cannot be read: the index may lack its last fragments before the stop; run kvsedge repair with the box stopped",
						"stream", id, "error", err)
					if d.unreplayed == nil {
						d.unreplayed = map[StreamID]segmentRef{}
					}
					d.unreplayed[id] = cp
					ss.seqFloor = max(floor, at)
					continue
				}
				if n > 0 {
					rep.Streams++
				}
			}
			floor = max(floor, at)
		}
		ss.seqFloor = floor
		if next := (segmentRef{Seq: floor}); !ok || cp != next {
			if err := setCheckpoint(b, id, next); err != nil {
				return err
			}
		}
		if ok { // voids come with a checkpoint (Close deletes both)
			start, end := streamSpan(prefixVoid, id)
			if err := b.DeleteRange(start, end, nil); err != nil {
				return fmt.Errorf("lsm: staging the voids' deletion: %w", err)
			}
		}
	}
	if !b.Empty() {
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("lsm: committing the replayed index entries: %w", err)
		}
	}
	d.replayed = rep
	if rep.Indexed > 0 || rep.Voided > 0 || rep.NoHeader > 0 || rep.Damaged > 0 || rep.Unreachable > 0 {
		d.opts.Logger.Info("indexed again the fragments whose index entries the last stop lost (they were durable in their segments)",
			"fragments", rep.Indexed, "streams", rep.Streams, "voided_left_out", rep.Voided, "without_header", rep.NoHeader, "damaged_left_out", rep.Damaged, "unreachable_segments", rep.Unreachable)
	}
	return nil
}

// streamTail is what replay looks at in one stream: its segments, the
// sequence number after the newest (floor) and its checkpoint.
type streamTail struct {
	ss           *streamSegments
	seqs         []uint64
	floor        uint64
	cp           segmentRef
	checkpointed bool
}

// pending reports whether the stream's segments hold records after its
// checkpoint (replayStream scans them).
func (t streamTail) pending() bool { return t.checkpointed && t.cp.Seq < t.floor }

func (d *DB) replayTail(id StreamID) (streamTail, error) {
	t := streamTail{ss: d.segs.stream(id), floor: 1}
	seqs, err := d.segs.list(t.ss.dir)
	if err != nil {
		return t, fmt.Errorf("lsm: listing the segments of stream %d: %w", id, err)
	}
	t.seqs = seqs
	if len(seqs) > 0 {
		t.floor = seqs[len(seqs)-1] + 1
	}
	t.cp, t.checkpointed, err = d.checkpoint(id)
	return t, err
}

// checkpoint reads a stream's replay checkpoint.
func (d *DB) checkpoint(id StreamID) (segmentRef, bool, error) {
	v, closer, err := d.db.Get(replayKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return segmentRef{}, false, nil
	}
	if err != nil {
		return segmentRef{}, false, fmt.Errorf("lsm: reading the replay checkpoint of stream %d: %w", id, err)
	}
	defer closer.Close()
	r, err := decodeCheckpoint(replayKey(id), v)
	return r, err == nil, err
}

// replayStream stages into b the index entries of the stream's fragment
// records at or after cp that the index lacks, and returns how many.
func (d *DB) replayStream(b *pebble.Batch, id StreamID, dir string, seqs []uint64, cp segmentRef, rep *ReplayReport) (int, error) {
	var cands []replayCandidate
	for _, q := range seqs {
		if q < cp.Seq {
			continue
		}
		from := uint64(0)
		if q == cp.Seq {
			from = cp.Offset
		}
		found, dmg, err := d.scanTail(id, dir, q, from)
		if err != nil {
			return 0, err
		}
		if dmg.damaged > 0 {
			rep.Damaged += dmg.damaged
			d.opts.Logger.Warn("fragment records after a stream's replay checkpoint fail their CRC, with intact records after them: torn by the stop (the device kept a later write) or damaged since; they are left out, the intact ones indexed",
				"stream", id, "segment", q, "records", dmg.damaged)
		}
		if dmg.unreachable > 0 {
			rep.Unreachable += dmg.unreachable
			d.opts.Logger.Warn("a record header after a stream's replay checkpoint is torn or damaged, with intact records after it: they are not indexed (written after it, they were not acknowledged unless it was damaged since; kvsedge repair indexes them)",
				"stream", id, "segment", q)
		}
		cands = append(cands, found...)
	}
	// Every record the index lacks is indexed but a voided one (its put
	// failed) and one another record replaced (a partial copy of it);
	// replaced fragments the index holds are deleted with the replacing
	// one's entries.
	kept := make([]bool, len(cands))
	for i := range cands {
		c := &cands[i]
		if c.indexed {
			continue
		}
		voided, err := d.voided(id, c.meta.Number, c.start)
		if err != nil {
			return 0, err
		}
		if voided {
			rep.Voided++
			continue
		}
		kept[i] = true
	}
	for i := range cands {
		if !kept[i] && !cands[i].indexed {
			continue
		}
		for _, r := range cands[i].replaced {
			for j := range cands {
				if cands[j].meta.Number == r {
					kept[j] = false
				}
			}
		}
	}
	staged := map[uint64]bool{} // headers staged in b
	n := 0
	for i := range cands {
		c := &cands[i]
		if !kept[i] {
			continue
		}
		w := FragmentWrite{Meta: c.meta}
		for _, r := range c.replaced {
			if m, ok, err := d.indexedMeta(id, r); err != nil {
				return 0, err
			} else if ok {
				w.Replaces = append(w.Replaces, m)
			}
		}
		if !staged[c.meta.HeaderID] {
			has, err := d.hasHeader(id, c.meta.HeaderID)
			if err != nil {
				return 0, err
			}
			if !has {
				h, err := d.readHeaderRecord(dir, c.ref.Seq, c.headers[c.meta.HeaderID])
				if err != nil {
					rep.NoHeader++
					d.opts.Logger.Error("a fragment record the index lacks has no session header: left out (kvsedge repair reports it)",
						"stream", id, "fragment", c.meta.Number.String(), "segment", c.ref.Seq)
					continue
				}
				w.Header = h
			}
			staged[c.meta.HeaderID] = true
		}
		if err := stageFragment(b, id, &w, c.ref); err != nil {
			return 0, err
		}
		n++
	}
	rep.Indexed += n
	return n, nil
}

// scanTail reads segment q's records: the fragment records at or after
// offset from that the index lacks, whole and checked, and where each
// session header record is (offset, payload length). Nothing is written
// after a torn record in a segment (segments.go), and padding ends it.
//
// A fragment record whose header is intact but whose payload fails its
// CRC is left out and the scan reads on after it (its header gives its
// length). Torn by the stop, nothing intact follows it, unless the device
// kept a later write (then the records after it were never acknowledged:
// none was synced after it). Damaged since it was written (a flipped
// byte), the records after it may have been acknowledged (an acknowledged
// record's sync made everything before it in the segment durable, this
// one too): it must not hide them. dmg.damaged counts those that intact
// records follow.
//
// A record header that is not intact ends the scan: a torn tail or
// padding, or damage. The rest of the segment is then searched for an
// intact record header (nextRecordHeader), only to tell them apart: one
// found (dmg.unreachable) means intact records replay leaves for kvsedge
// repair. Replay does not index them: with the header's length lost, a
// record found by its magic could be one written inside another record's
// media (a producer's bytes), which a scan that follows lengths never
// meets.
func (d *DB) scanTail(id StreamID, dir string, q, from uint64) (out []replayCandidate, dmg tailDamage, err error) {
	fs := d.opts.FS
	f, err := fs.Open(fs.PathJoin(dir, segmentName(q)))
	if err != nil {
		return nil, dmg, fmt.Errorf("lsm: opening segment %d of stream %d for replay: %w", q, id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, dmg, fmt.Errorf("lsm: %w", err)
	}
	size := st.Size()
	headers := map[uint64][2]int64{}
	var (
		hdr     [recordHdrLen + metaLen + 2]byte // a record header, a fragment record's meta and count of replaced numbers
		skipped int                              // records passed over since the last intact one
	)
	// headerAt reads the record header at off into hdr, and reports
	// whether it is intact and its record within the file.
	headerAt := func(off int64) (plen int64, ok bool) {
		if _, err := f.ReadAt(hdr[:recordHdrLen], off); err != nil {
			return 0, false
		}
		if string(hdr[:4]) != recordMagic || hdr[4] != recordVersion ||
			crc32.Checksum(hdr[:14], castagnoli) != binary.BigEndian.Uint32(hdr[14:]) {
			return 0, false
		}
		plen = int64(binary.BigEndian.Uint32(hdr[6:]))
		return plen, plen <= maxRecordPayload && off+recordHdrLen+plen <= size
	}
scan:
	for off := int64(0); off+recordHdrLen <= size; {
		plen, ok := headerAt(off)
		if !ok {
			if uint64(off) < from {
				// Damage before the checkpoint, which is a record
				// boundary: what lies before it is indexed (the
				// session headers too), the scan goes on from it.
				off = int64(from)
				continue
			}
			if _, found := nextRecordHeader(f, off+1, size, headerAt); found {
				dmg.unreachable++
			}
			break
		}
		next := off + recordHdrLen + plen
		switch hdr[5] {
		case kindHeader:
			if plen >= 8 {
				var id [8]byte
				if _, err := f.ReadAt(id[:], off+recordHdrLen); err != nil {
					break scan
				}
				headers[binary.BigEndian.Uint64(id[:])] = [2]int64{off, plen}
			}
		case kindFragment:
			if uint64(off) < from || plen < metaLen+2 {
				break
			}
			if _, err := f.ReadAt(hdr[recordHdrLen:], off+recordHdrLen); err != nil {
				break scan
			}
			// What the record says is trusted once the index says the
			// same (its number indexed at this very position: its
			// entries were made from the record's verified bytes) or
			// its payload passed its CRC; a damaged number could name
			// another, indexed fragment.
			var num fragment.Number
			copy(num[:], hdr[recordHdrLen+1:])
			k := int64(binary.BigEndian.Uint16(hdr[recordHdrLen+metaLen:]))
			media := segmentRef{Seq: q, Offset: uint64(off + recordHdrLen + metaLen + 2 + k*fragment.NumberLen)}
			at, has, err := d.indexedRef(id, num)
			if err != nil {
				return nil, dmg, err
			}
			if has && at == media {
				// Indexed here. What it replaced must not come back:
				// its replaced numbers are read as they are, the
				// index vouching for the record (its payload's CRC
				// may fail on media damaged since, which reads find by
				// the digest; the veto must hold all the same).
				if k > 0 {
					r, err := readReplaced(f, off, plen, k)
					if err != nil {
						break scan
					}
					out = append(out, replayCandidate{meta: fragment.Meta{Number: num}, replaced: r, indexed: true})
				}
				break
			}
			payload := make([]byte, plen)
			if _, err := f.ReadAt(payload, off+recordHdrLen); err != nil && !errors.Is(err, io.EOF) {
				break scan
			}
			if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(hdr[10:]) {
				skipped++
				off = next
				continue
			}
			if has {
				// Indexed under the same number elsewhere (a
				// replica's retry); what it replaced must not come
				// back.
				if _, r, _, err := decodeFragmentRecord(payload); err == nil && len(r) > 0 {
					out = append(out, replayCandidate{meta: fragment.Meta{Number: num}, replaced: r, indexed: true})
				}
				break
			}
			m, replaced, mediaOff, err := decodeFragmentRecord(payload)
			if err != nil {
				break // intact but not understood: Check and Repair report it
			}
			out = append(out, replayCandidate{meta: m, replaced: replaced, headers: headers, start: segmentRef{Seq: q, Offset: uint64(off)},
				ref: segmentRef{Seq: q, Offset: uint64(off) + recordHdrLen + uint64(mediaOff)}})
		}
		dmg.damaged += skipped
		skipped = 0
		off = next
	}
	return out, dmg, nil
}

// tailDamage is what a replay scan of a segment found damaged (scanTail).
type tailDamage struct{ damaged, unreachable int }

// nextRecordHeader finds the first offset at or after from, before size,
// where headerAt finds an intact record header (the magic, then the
// header's CRC). It reads the rest of the segment at most (after a torn
// tail: a few blocks).
func nextRecordHeader(f io.ReaderAt, from, size int64, headerAt func(int64) (int64, bool)) (int64, bool) {
	const chunk = 256 << 10
	buf := make([]byte, chunk+len(recordMagic)-1)
	for at := from; at+recordHdrLen <= size; at += chunk {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-at)], at)
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, false
		}
		b := buf[:n]
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte(recordMagic))
			if j < 0 {
				break
			}
			if _, ok := headerAt(at + int64(i+j)); ok {
				return at + int64(i+j), true
			}
			i += j + 1
		}
	}
	return 0, false
}

// readHeaderRecord reads the session header out of the header record at
// loc (offset, payload length) in segment q.
func (d *DB) readHeaderRecord(dir string, q uint64, loc [2]int64) ([]byte, error) {
	if loc[1] < 8 {
		return nil, errBadRecord
	}
	fs := d.opts.FS
	f, err := fs.Open(fs.PathJoin(dir, segmentName(q)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rec := make([]byte, recordHdrLen+loc[1])
	if _, err := f.ReadAt(rec, loc[0]); err != nil {
		return nil, err
	}
	kind, payload, _, err := parseRecord(rec)
	if err != nil || kind != kindHeader {
		return nil, errBadRecord
	}
	return payload[8:], nil
}

func (d *DB) hasHeader(id StreamID, hid uint64) (bool, error) { return d.has(headerKey(id, hid)) }

// indexedMeta returns the meta of an indexed fragment.
func (d *DB) indexedMeta(id StreamID, n fragment.Number) (fragment.Meta, bool, error) {
	key := fragmentKey(nil, id, n)
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return fragment.Meta{}, false, nil
	}
	if err != nil {
		return fragment.Meta{}, false, fmt.Errorf("lsm: %w", err)
	}
	defer closer.Close()
	m, err := decodeMeta(key, v)
	return m, err == nil, err
}

// indexedRef returns where the index has fragment n's media.
func (d *DB) indexedRef(id StreamID, n fragment.Number) (segmentRef, bool, error) {
	key := fragmentKey(nil, id, n)
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return segmentRef{}, false, nil
	}
	if err != nil {
		return segmentRef{}, false, fmt.Errorf("lsm: %w", err)
	}
	defer closer.Close()
	_, ref, err := decodeFragment(key, v)
	if err != nil {
		// Damaged in the index: the record is not taken for it.
		return segmentRef{}, true, nil
	}
	return ref, true, nil
}

// voided reports whether a failed put voided fragment n's record that
// begins at r (0x05).
func (d *DB) voided(id StreamID, n fragment.Number, r segmentRef) (bool, error) {
	var kb [voidKeyLen]byte
	return d.has(voidKey(kb[:0], id, n, r))
}

// Void value, version 1 (0x05 <sid> <fragnum>): the single byte 1.
const voidVersion1 byte = 1
