package engine

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// Re-sent fragments. A producer re-sends every fragment it did not see
// PERSISTED, on a new connection, at any time (shared/kvs-api.md §4.4,
// §11). A re-send is the same fragment of the same stream at the same
// producer time, but its bytes may differ from the stored copy:
//
//   - RELATIVE timecodes against a later producer start time give the same
//     fragment another cluster Timecode (same producer time, same frames);
//   - a copy cut short by a dead connection holds only the first frames.
//
// So a fragment is recognised by its stream, producer time and frames
// (track, offset in the fragment, payload), not by equal bytes:
//
//	same frames                     → duplicate: acknowledged with the
//	                                  stored number, stored once
//	the new one holds more frames,   → it replaces the stored copy in the
//	  the stored ones as its prefix   same synced batch (readers of the
//	                                  archive see one whole fragment)
//	the new one is a prefix of the  → duplicate of the stored one
//	  stored one
//	anything else                   → a different fragment at the same time
//
// The byte digest (Meta.Digest) is the fast path: equal digests are equal
// frames. Frames are compared only when the producer times are near and
// the digests differ, which is rare. A fragment whose producer time is
// after everything the archive holds (lsm's per-stream bound,
// MayHoldProducerTime: a new fragment, nearly always) is looked for in the
// ring only.
//
// Two boxes recording one camera. A cluster's boxes record the same
// camera at once for a few seconds around a failover (the cut-off home
// records until it learns it is cut off; membership that flaps hands the
// camera back and forth), and the copies meet when the boxes replicate to
// each other. Their producer times for one frame differ (each box anchors
// its timeline on its own sender report or arrival: a few ms, up to
// hundreds), so a copy is looked for within half a fragment of the
// fragment's producer time, or, another box's, of its server time
// (nearCopy), and frames are compared by track, key flag and payload, not
// by their offsets
// (each box rounds its own; a re-send's offsets are the same anyway). Of
// two equal copies under different numbers
// the higher number is kept, on every box whichever copy it stored first,
// so the boxes converge on one copy: an import with the higher number replaces the
// stored one, one with the lower number is not stored. The higher number
// is the newer ingest term, the box that records the camera now: a late
// fragment of the box that stopped is never inserted among fragments
// live readers were already given (HLS LIVE's media sequence), and only
// the stopped box's readers see its copy replaced. An own fragment equal
// to a stored one is a duplicate, as a re-send is (it then never reaches
// a peer). A copy that holds more frames wins over one that is a prefix
// of it, as for re-sends.

// frameRelation is how two fragments' frames compare.
type frameRelation int

const (
	framesDiffer frameRelation = iota
	framesEqual
	// framesPrefix: the first fragment's frames are a strict prefix of the
	// second's.
	framesPrefix
	// framesExtend: the second's frames are a strict prefix of the first's.
	framesExtend
)

type frame struct {
	track   uint64
	offset  int64 // ms after the cluster's timecode
	key     bool
	payload []byte
}

func frames(h *mkv.Header, media []byte, clusterLen uint32) ([]frame, error) {
	if int(clusterLen) > len(media) {
		return nil, errors.New("engine: cluster longer than the media")
	}
	var out []frame
	err := mkv.ForEachBlock(h, media[:clusterLen], func(b mkv.Block) error {
		out = append(out, frame{track: b.Track, offset: b.TimeMs - b.ClusterMs, key: b.Key, payload: b.Payload})
		return nil
	})
	return out, err
}

// copyWindow is how far from a fragment's producer time a copy of it is
// looked for: half the fragment's duration (so never its neighbour: a
// one-frame fragment's duration is 1 ms, and its copy must start at the
// same millisecond), at most 1 s.
func copyWindow(m *fragment.Meta) int64 { return min(1000, int64(m.DurationMs)/2) }

// crossBoxSkewMs is the least window for two boxes' copies (nearCopy).
const crossBoxSkewMs = 20

// nearCopy reports whether f starts near enough m to be a copy: within
// half the shorter one's duration, so that a short fragment is never
// taken for a copy of the long one after it (a static scene's encoder may
// repeat a GOP byte for byte). Near in producer time; or, for two boxes'
// copies, in server time: each box's producer time anchors on its own
// sender report or arrival, and after a hand-back the two were measured
// 716 ms apart for one frame, while both boxes received it within 83 ms
// of each other (their clocks kept by NTP).
//
// Two boxes' copies are near within crossBoxSkewMs at least: a box cut
// off right after a key frame stores a one-frame fragment (1 ms long),
// whose copy on the other box started 1 ms apart.
func nearCopy(f, m *fragment.Meta) bool {
	w := min(copyWindow(f), copyWindow(m))
	if f.Number.Node() != m.Number.Node() {
		w = max(w, crossBoxSkewMs)
	}
	d := f.ProducerMs - m.ProducerMs
	if max(d, -d) <= w {
		return true
	}
	d = f.ServerMs - m.ServerMs
	return f.Number.Node() != m.Number.Node() && max(d, -d) <= w
}

// compareFrames relates a's frames to b's. offsets: frame offsets in the
// fragment must match too (copies at one producer time); else frames match
// by track, key flag and payload alone (two boxes' copies).
func compareFrames(ha *mkv.Header, a []byte, aLen uint32, hb *mkv.Header, b []byte, bLen uint32, offsets bool) (frameRelation, error) {
	fa, err := frames(ha, a, aLen)
	if err != nil {
		return framesDiffer, err
	}
	fb, err := frames(hb, b, bLen)
	if err != nil {
		return framesDiffer, err
	}
	n := min(len(fa), len(fb))
	for i := 0; i < n; i++ {
		x, y := fa[i], fb[i]
		if x.track != y.track || (offsets && x.offset != y.offset) || x.key != y.key || !bytes.Equal(x.payload, y.payload) {
			return framesDiffer, nil
		}
	}
	switch {
	case len(fa) == len(fb):
		return framesEqual, nil
	case len(fa) < len(fb):
		return framesPrefix, nil
	default:
		return framesExtend, nil
	}
}

// resend is what findResend found.
type resend struct {
	// duplicate: the stream holds this fragment (or more of it) as stored;
	// acknowledge it with stored.Number and store nothing.
	duplicate bool
	stored    fragment.Meta
	// original is the ring's copy of a duplicate that may still be on its
	// way to disk (retained), or nil.
	original *Fragment
	// replaces are stored partial copies the new fragment supersedes.
	replaces []fragment.Meta
	// wait (imports only) is this node's partial copy of the fragment,
	// still on its way to disk (retained): look again once it is stored.
	wait *Fragment
}

// findResend looks for a copy of the fragment (meta m, header h, media) in
// the stream's ring (not yet durable) and archive.
func (e *Engine) findResend(s *stream, m *fragment.Meta, h *Header, media []byte) (resend, error) {
	return e.findCopies(s, m, h, media, true)
}

// findImportCopies is findResend for a fragment copied from a peer, which
// keeps its own number: a stored copy with a higher number, or one holding
// more frames, makes it a duplicate (not stored); stored copies with a
// lower number, or that are a prefix of it, are replaced. A partial copy
// of a fragment a producer later re-sent whole reaches this node from a
// peer before or after the whole one: the whole one wins either way.
func (e *Engine) findImportCopies(s *stream, m *fragment.Meta, h *Header, media []byte) (resend, error) {
	return e.findCopies(s, m, h, media, false)
}

// findCopies is findResend (own: the fragment is this node's, numbered
// beyond every fragment it holds) or findImportCopies (!own).
func (e *Engine) findCopies(s *stream, m *fragment.Meta, h *Header, media []byte, own bool) (resend, error) {
	var r resend
	var candidates []*Fragment
	win := max(copyWindow(m), crossBoxSkewMs) // what nearCopy may accept
	s.ring.each(func(f *Fragment) bool {
		if !nearCopy(&f.Meta, m) || f.persisted == nil || f.failed() {
			return true
		}
		if !own && f.settled() {
			return true // durable: the archive's scan below weighs it
		}
		if f.Meta.Digest == m.Digest {
			r.duplicate, r.stored, r.original = true, f.Meta, f.Retain()
			return false
		}
		candidates = append(candidates, f.Retain())
		return true
	})
	defer func() {
		for _, f := range candidates {
			f.Release()
		}
	}()
	if r.duplicate {
		return r, nil
	}
	// The archive holds nothing at a producer time after its newest (a
	// new fragment, nearly always): no scan below. An error reading the
	// bound leaves the scan to find and report it.
	archived, boundErr := e.db.MayHoldProducerTime(s.id, m.ProducerMs-win)
	archived = archived || boundErr != nil
	// Another box's copy is looked for by server time too: for an import
	// always, for an own fragment only near what was imported (a box
	// recording its cameras alone imports nothing: no scan).
	byServer := !own || s.importedServerMs.Load() >= m.ServerMs-win
	if !archived && !byServer && len(candidates) == 0 {
		return r, nil
	}
	nh, err := h.Tracks()
	if err != nil {
		return r, nil // not comparable: the fragment is stored as new
	}
	// A ring copy with the same frames, or more, is a duplicate still on
	// its way to disk. For an import that is so whatever the numbers: a
	// later comparison (the next anti-entropy round, the copy durable by
	// then) settles which copy stays. An import waits for a partial copy of
	// its own still in the ring (ImportFragment), then the archive check
	// below replaces it. A producer's re-send does not wait (Receive is on
	// the upload's path), so its partial copy still in the ring is not
	// replaced and both are stored; partial copies are made only at an idle
	// close or a body end, and are durable long before a producer's re-send
	// arrives (it waits 5 s without acks): a known gap, not a guarantee.
	for _, f := range candidates {
		fh, err := f.Header.Tracks()
		if err != nil {
			continue
		}
		rel, err := compareFrames(fh, f.Media, f.Meta.ClusterLen, nh, media, m.ClusterLen, false)
		switch {
		case err != nil:
		case rel == framesEqual || rel == framesExtend:
			r.duplicate, r.stored, r.original = true, f.Meta, f.Retain()
			return r, nil
		case rel == framesPrefix && !own:
			// This node's own partial copy, still on its way to disk:
			// the import waits for it and looks again, then replaces it.
			r.wait = f.Retain()
			return r, nil
		}
	}
	var near []fragment.Meta
	add := func(f fragment.Meta) bool {
		if f.Number != m.Number && nearCopy(&f, m) && !slices.ContainsFunc(near, func(g fragment.Meta) bool { return g.Number == f.Number }) {
			near = append(near, f)
		}
		return true
	}
	if archived {
		if err := e.db.ScanTime(s.id, fragment.ByProducerTime, m.ProducerMs-win, m.ProducerMs+win, nil, add); err != nil {
			return r, fmt.Errorf("engine: duplicate check: %w", err)
		}
	}
	if byServer {
		if err := e.db.ScanTime(s.id, fragment.ByServerTime, m.ServerMs-win, m.ServerMs+win, nil, add); err != nil {
			return r, fmt.Errorf("engine: duplicate check: %w", err)
		}
	}
	for _, f := range near {
		rel := framesEqual
		if f.Digest != m.Digest {
			rel, err = e.compareStored(s, f, nh, media, m.ClusterLen)
			if err != nil {
				e.opts.Logger.Warn("comparing a fragment with a stored copy", "number", f.Number.String(), "err", err)
				continue
			}
		}
		switch {
		case rel == framesExtend, rel == framesEqual && (own || f.Number.Compare(m.Number) > 0):
			r.duplicate, r.stored, r.replaces = true, f, nil
			return r, nil
		case rel == framesEqual, rel == framesPrefix:
			r.replaces = append(r.replaces, f)
		}
	}
	return r, nil
}

// compareStored relates a stored fragment's frames to new media's.
func (e *Engine) compareStored(s *stream, m fragment.Meta, nh *mkv.Header, media []byte, clusterLen uint32) (frameRelation, error) {
	_, stored, err := e.db.Fragment(s.id, m.Number, e.readBufs)
	if err != nil {
		if errors.Is(err, lsm.ErrNotFound) {
			return framesDiffer, nil
		}
		return framesDiffer, err
	}
	defer e.mem.Free(stored)
	sh, err := e.storedHeader(s, m.HeaderID)
	if err != nil {
		return framesDiffer, err
	}
	th, err := sh.Tracks()
	if err != nil {
		return framesDiffer, err
	}
	return compareFrames(th, stored, m.ClusterLen, nh, media, clusterLen, false)
}
