package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// span is a byte range [off, end) of a segment.
type span struct{ off, end uint64 }

// Problem is one thing Check found wrong.
type Problem struct {
	Stream StreamID
	// Number is the fragment concerned (zero for a stream or the index).
	Number fragment.Number
	What   string
}

// CheckReport is what Check found: counts of what is sound, and problems.
type CheckReport struct {
	Streams, Fragments int
	MediaBytes         int64
	// SegmentFiles and SegmentBytes are the media segment files on disk;
	// UnreferencedBytes are segment bytes no fragment record points at
	// (media of fragments retention removed from a segment still in use,
	// replaced partial copies, or written before a crash): normal in
	// small amounts, all of it if the index was lost.
	SegmentFiles                    int
	SegmentBytes, UnreferencedBytes int64
	// Replayable counts fragment records after a stream's replay
	// checkpoint that the index lacks (the box stopped before the index
	// synced them: replay.go). The next read-write Open indexes them;
	// Check, which writes nothing, checks them as that Open will index
	// them (they are in Fragments and MediaBytes).
	Replayable int
	// ReplayDamaged and ReplayUnreachable are, after the checkpoints,
	// fragment records that fail their CRC with intact records after
	// them, and segments where a torn or damaged record header hides
	// intact records (ReplayReport's Damaged and Unreachable): torn by an
	// unclean stop (then not acknowledged) or damaged since. Not counted
	// as problems: a stop with a volatile device cache makes them.
	ReplayDamaged, ReplayUnreachable int
	Problems                         []Problem
}

// Check verifies the whole store, reading everything once: every fragment
// record decodes, has both time-index entries, and its media reads back
// from its segment matching its digest; every time-index entry has its
// fragment record; Pebble's own block checksums are verified by reading
// every key. It writes nothing. Segment bytes not referenced by any record
// are counted.
//
// A store opened read-only has not replayed (replay.go): Check reads it
// through an indexed batch holding what replay would index, never
// committed, so it checks the store as the next read-write Open leaves it.
// A store opened read-write reports each stream whose tail its Open could
// not read (left for repair) as a problem.
func (d *DB) Check() (CheckReport, error) {
	var r CheckReport
	recs, err := d.Streams()
	if err != nil {
		r.Problems = append(r.Problems, Problem{What: "the stream registry cannot be read: " + err.Error()})
		return r, nil
	}
	r.Streams = len(recs)
	var rd pebble.Reader = d.db
	if d.ReadOnly() {
		vb := d.db.NewIndexedBatch()
		defer vb.Close()
		var rep ReplayReport
		for _, rec := range recs {
			noHeader := rep.NoHeader
			t, err := d.replayTail(rec.ID)
			if err == nil && t.pending() {
				_, err = d.replayStream(vb, rec.ID, t.ss.dir, t.seqs, t.cp, &rep)
			}
			if err != nil {
				r.Problems = append(r.Problems, Problem{Stream: rec.ID, What: "the fragments after its replay checkpoint cannot be read (the next start logs this too; kvsedge repair indexes what is intact): " + err.Error()})
			}
			if n := rep.NoHeader - noHeader; n > 0 {
				r.Problems = append(r.Problems, Problem{Stream: rec.ID, What: fmt.Sprintf("%d fragments after its replay checkpoint have no session header in the index or their segment: the next start leaves them out (kvsedge repair reports them)", n)})
			}
		}
		r.Replayable = rep.Indexed
		r.ReplayDamaged, r.ReplayUnreachable = rep.Damaged, rep.Unreachable
		rd = vb
	} else {
		// A read-write Open that could not read a stream's tail left it
		// for repair (replayTails): its last fragments may be missing
		// from the index, and its bytes count as unreferenced below.
		for _, rec := range recs {
			if cp, stuck := d.unreplayed[rec.ID]; stuck {
				r.Problems = append(r.Problems, Problem{Stream: rec.ID, What: fmt.Sprintf("the fragments after its replay checkpoint (segment %d, offset %d) could not be read when the store opened: the index may lack its last fragments; kvsedge repair, with the box stopped, indexes what is intact", cp.Seq, cp.Offset)})
			}
		}
	}
	for _, rec := range recs {
		id := rec.ID
		used := map[uint64][]span{}
		lower, upper := streamSpan(prefixFragment, id)
		it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return r, fmt.Errorf("lsm: %w", err)
		}
		var buf []byte
		for ok := it.First(); ok; ok = it.Next() {
			key := append([]byte(nil), it.Key()...)
			v, err := it.ValueAndErr()
			if err != nil {
				r.Problems = append(r.Problems, Problem{Stream: id, What: "a fragment record cannot be read from the index: " + err.Error()})
				continue
			}
			m, ref, err := decodeFragment(key, v)
			if err != nil {
				r.Problems = append(r.Problems, Problem{Stream: id, What: "a fragment record is damaged: " + err.Error()})
				continue
			}
			r.Fragments++
			for _, idx := range []byte{prefixProducerIdx, prefixServerIdx} {
				ms := m.ProducerMs
				if idx == prefixServerIdx {
					ms = m.ServerMs
				}
				iv, closer, err := rd.Get(timeKey(nil, idx, id, ms, m.Number))
				switch {
				case errors.Is(err, pebble.ErrNotFound):
					r.Problems = append(r.Problems, Problem{Stream: id, Number: m.Number, What: fmt.Sprintf("missing from the %s index (it will not be listed)", indexName(idx))})
				case err != nil:
					r.Problems = append(r.Problems, Problem{Stream: id, Number: m.Number, What: "its index entry cannot be read: " + err.Error()})
				default:
					if !bytes.Equal(iv, v[:metaLen]) {
						r.Problems = append(r.Problems, Problem{Stream: id, Number: m.Number, What: fmt.Sprintf("its %s index entry disagrees with its record", indexName(idx))})
					}
					closer.Close()
				}
			}
			media, err := d.readMedia(id, key, &m, ref, buf[:0])
			if err != nil {
				r.Problems = append(r.Problems, Problem{Stream: id, Number: m.Number, What: "its media is unreadable: " + err.Error()})
			} else {
				buf = media
				r.MediaBytes += int64(m.MediaLen)
			}
			used[ref.Seq] = append(used[ref.Seq], span{ref.Offset, ref.Offset + uint64(m.MediaLen)})
		}
		if err := it.Close(); err != nil {
			r.Problems = append(r.Problems, Problem{Stream: id, What: "the index of its fragments is damaged: " + err.Error()})
		}
		// Index entries without a record.
		for _, idx := range []byte{prefixProducerIdx, prefixServerIdx} {
			lo, hi := streamSpan(idx, id)
			it, err := rd.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
			if err != nil {
				return r, fmt.Errorf("lsm: %w", err)
			}
			for ok := it.First(); ok; ok = it.Next() {
				k := it.Key()
				if len(k) < fragment.NumberLen {
					continue
				}
				var n fragment.Number
				copy(n[:], k[len(k)-fragment.NumberLen:])
				if _, closer, err := rd.Get(fragmentKey(nil, id, n)); errors.Is(err, pebble.ErrNotFound) {
					r.Problems = append(r.Problems, Problem{Stream: id, Number: n, What: fmt.Sprintf("listed in the %s index without a fragment record (its media cannot be found)", indexName(idx))})
				} else if err == nil {
					closer.Close()
				}
			}
			if err := it.Close(); err != nil {
				r.Problems = append(r.Problems, Problem{Stream: id, What: fmt.Sprintf("the %s index is damaged: %v", indexName(idx), err)})
			}
		}
		// Segment bytes the records account for.
		ss := d.segs.stream(id)
		seqs, err := d.segs.list(ss.dir)
		if err != nil {
			r.Problems = append(r.Problems, Problem{Stream: id, What: "its media directory cannot be listed: " + err.Error()})
			continue
		}
		for _, seq := range seqs {
			st, err := d.opts.FS.Stat(d.opts.FS.PathJoin(ss.dir, segmentName(seq)))
			if err != nil {
				r.Problems = append(r.Problems, Problem{Stream: id, What: fmt.Sprintf("segment %d cannot be read: %v", seq, err)})
				continue
			}
			r.SegmentFiles++
			size := st.Size()
			r.SegmentBytes += size
			if unref, framed := d.framedUnreferenced(ss.dir, seq, used[seq]); framed {
				r.UnreferencedBytes += unref
				delete(used, seq)
				continue
			}
			spans := used[seq]
			sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
			var covered, reach uint64
			for _, s := range spans {
				if s.end > reach {
					covered += s.end - max(s.off, reach)
					reach = s.end
				}
			}
			r.UnreferencedBytes += max(size-int64(covered), 0)
			delete(used, seq)
		}
		for seq := range used {
			r.Problems = append(r.Problems, Problem{Stream: id, What: fmt.Sprintf("segment %d, which fragment records point at, is missing", seq)})
		}
	}
	// Every other key: Pebble verifies each block's checksum as it reads.
	it, err := rd.NewIter(&pebble.IterOptions{})
	if err != nil {
		return r, fmt.Errorf("lsm: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if _, err := it.ValueAndErr(); err != nil {
			r.Problems = append(r.Problems, Problem{What: "an index entry cannot be read: " + err.Error()})
		}
	}
	if err := it.Close(); err != nil {
		r.Problems = append(r.Problems, Problem{What: "the index is damaged: " + err.Error()})
	}
	return r, nil
}

func indexName(prefix byte) string {
	if prefix == prefixServerIdx {
		return "server-time"
	}
	return "producer-time"
}

// framedUnreferenced counts the bytes of a segment with records
// (segrecord.go) that are in no record the index uses: the segment's start
// and header records count as used, a fragment record when a fragment
// record points at its media. framed is false for a segment without
// records (the caller counts spans instead).
func (d *DB) framedUnreferenced(dir string, seq uint64, spans []span) (unref int64, framed bool) {
	b, err := readWhole(d.opts.FS, d.opts.FS.PathJoin(dir, segmentName(seq)))
	if err != nil {
		return 0, false
	}
	sc := scanSegment(b)
	if !sc.framed {
		return 0, false
	}
	starts := make(map[uint64]bool, len(spans))
	for _, s := range spans {
		starts[s.off] = true
	}
	used := int64(0)
	for _, rec := range sc.records {
		switch rec.kind {
		case kindSegmentStart, kindHeader:
			used += int64(recordHdrLen + len(rec.payload))
		case kindFragment:
			if _, _, off, err := decodeFragmentRecord(rec.payload); err == nil && starts[uint64(rec.offset)+recordHdrLen+uint64(off)] {
				used += int64(recordHdrLen + len(rec.payload))
			}
		}
	}
	return int64(len(b)) - used - sc.padding, true
}

func readWhole(fs vfs.FS, path string) ([]byte, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && len(b) > 0 {
		return nil, err
	}
	return b, nil
}
