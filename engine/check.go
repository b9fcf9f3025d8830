package engine

import (
	"fmt"
	"log/slog"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// CheckProblem is one thing CheckStore found wrong, in plain words.
type CheckProblem struct {
	// Stream is the stream's name ("" for the index as a whole).
	Stream string
	// Number is the fragment concerned (zero when none).
	Number fragment.Number
	What   string
}

// CheckReport is what CheckStore found.
type CheckReport struct {
	Streams, Fragments              int
	MediaBytes                      int64
	SegmentFiles                    int
	SegmentBytes, UnreferencedBytes int64
	// Replayable: fragments stored before an unclean stop whose index
	// entries the stop lost; the next start indexes them from their
	// segments (lsm replay). They are checked, and counted in Fragments.
	Replayable int
	// ReplayDamaged and ReplayUnreachable: after the checkpoints, records
	// torn by an unclean stop or damaged since, with intact records after
	// them (lsm.CheckReport's); the next start leaves them out, and the
	// records after a torn header too (kvsedge repair indexes those).
	ReplayDamaged, ReplayUnreachable int
	Problems                         []CheckProblem
}

// CheckStore opens the store in opts.Dir read-only (nothing is written)
// and verifies it (lsm's Check: every fragment's record, index entries and
// media digest; Pebble's block checksums; segment bytes accounted for).
// The caller makes sure no server has the store open.
func CheckStore(opts StoreOptions, log *slog.Logger) (CheckReport, error) {
	lo := opts.lsmOptions(log)
	lo.ReadOnly = true
	db, err := lsm.Open(lo)
	if err != nil {
		return CheckReport{}, err
	}
	defer db.Close()
	r, err := db.Check()
	if err != nil {
		return CheckReport{}, err
	}
	names := map[lsm.StreamID]string{}
	if recs, err := db.Streams(); err == nil {
		for _, rec := range recs {
			if info, err := decodeRecord(rec.ID, rec.Value); err == nil {
				names[rec.ID] = info.Name
			} else {
				r.Problems = append(r.Problems, lsm.Problem{Stream: rec.ID, What: "its stream record is damaged: " + err.Error()})
			}
		}
	}
	out := CheckReport{Streams: r.Streams, Fragments: r.Fragments, MediaBytes: r.MediaBytes, SegmentFiles: r.SegmentFiles,
		SegmentBytes: r.SegmentBytes, UnreferencedBytes: r.UnreferencedBytes, Replayable: r.Replayable,
		ReplayDamaged: r.ReplayDamaged, ReplayUnreachable: r.ReplayUnreachable}
	for _, p := range r.Problems {
		name := names[p.Stream]
		if name == "" && p.Stream != 0 {
			name = fmt.Sprintf("stream #%d", p.Stream)
		}
		out.Problems = append(out.Problems, CheckProblem{Stream: name, Number: p.Number, What: p.What})
	}
	return out, nil
}

// ErrStoreDamaged: Open failed because the index is damaged (RepairStore
// rebuilds it).
var ErrStoreDamaged = lsm.ErrDamaged

// RepairReport is what RepairStore did (lsm.RepairReport, with stream
// names).
type RepairReport struct {
	lsm.RepairReport
	// StreamNames are the names of the streams indexed now.
	StreamNames []string
}

// RepairStore rebuilds the index of the store in opts.Dir from what the old
// index still reads and from the segment files' records, moving the old
// index aside and copying bytes it cannot index to lost+found; it never
// deletes media (lsm.Repair). The caller makes sure no server has the
// store open.
func RepairStore(opts StoreOptions, log *slog.Logger) (RepairReport, error) {
	lo := opts.lsmOptions(log)
	lo.SameFrames = sameFrames
	r, err := lsm.Repair(lo)
	if err != nil {
		return RepairReport{RepairReport: r}, err
	}
	out := RepairReport{RepairReport: r}
	lo.ReadOnly = true
	if db, err := lsm.Open(lo); err == nil {
		if recs, err := db.Streams(); err == nil {
			for _, rec := range recs {
				if info, err := decodeRecord(rec.ID, rec.Value); err == nil {
					out.StreamNames = append(out.StreamNames, info.Name)
				}
			}
		}
		_ = db.Close()
	}
	return out, nil
}

// sameFrames is lsm.Options.SameFrames: the two copies hold the same
// frames, or one's frames are a prefix of the other's (what findResend
// takes for a re-send of a stored fragment).
func sameFrames(a, b lsm.FrameCopy) bool {
	if a.Frames == 0 || b.Frames == 0 {
		return false // an empty fragment is a prefix of any: not a copy
	}
	ha, err := mkv.ParseHeader(a.Header)
	if err != nil {
		return false
	}
	hb, err := mkv.ParseHeader(b.Header)
	if err != nil {
		return false
	}
	rel, err := compareFrames(ha, a.Cluster, uint32(len(a.Cluster)), hb, b.Cluster, uint32(len(b.Cluster)), true)
	return err == nil && rel != framesDiffer
}
