package lsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestCheckSeesWhatReplayWillIndex: after a crash that took the index's
// last commits, Check (read-only: it replays nothing) reports the store as
// the next read-write Open leaves it: the replayable fragments counted
// and checked (not their bytes counted as unreferenced), a failed put's
// voided record left out, nothing written. The same Check after that Open
// finds the same fragments, media and unreferenced bytes.
func TestCheckSeesWhatReplayWillIndex(t *testing.T) {
	live := vfs.NewCrashableMem()
	var failing atomic.Bool
	db := openStream1(t, replayOpts(failingSegmentSyncs(live, &failing), 0))
	putReplayWrites(t, db, 0, 4)
	// A put whose segment sync fails, and one chained to it: the second's
	// record is synced (in a new segment) and voided.
	failing.Store(true)
	p1, err := db.PutFragmentsAsync(1, []FragmentWrite{replayWrite(4, 4000)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Wait(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a put whose segment sync failed: %v", err)
	}
	failing.Store(false)
	voided := replayWrite(20, 4500)
	p2, err := db.PutFragmentsAsync(1, []FragmentWrite{voided}, p1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Wait(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a put chained to a failed one: %v", err)
	}
	putReplayWrites(t, db, 5, 8)
	crashed := crashNow(live)
	db.Close()

	before := checkStore(t, crashed, true)
	// The void's synced batch made the first four commits durable: the
	// three after it are the index's lost tail.
	if len(before.Problems) != 0 || before.Fragments != 7 || before.Replayable != 3 {
		t.Fatalf("read-only Check of the crash image: %+v, want 7 fragments (3 of them replayable) checked and no problems", before)
	}
	// Check wrote nothing: the index still lacks them.
	ro := replayOpts(crashed, 0)
	ro.ReadOnly = true
	d, err := Open(ro)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := d.HasFragment(1, fragment.MakeNumber(77, 1, 5)); err != nil || ok {
		t.Fatalf("after a read-only Check the index holds a replayable fragment (%v, %v)", ok, err)
	}
	d.Close()

	after := checkStore(t, crashed, false) // replays, then checks
	if len(after.Problems) != 0 || after.Replayable != 0 || after.Fragments != before.Fragments ||
		after.MediaBytes != before.MediaBytes || after.UnreferencedBytes != before.UnreferencedBytes {
		t.Fatalf("Check after replay %+v, before it (read-only) %+v: want the same fragments, media and unreferenced bytes", after, before)
	}
	if before.UnreferencedBytes < int64(len(voided.Media)) {
		t.Fatalf("%d unreferenced bytes, want at least the voided record's media (%d)", before.UnreferencedBytes, len(voided.Media))
	}
	d, err = Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, n := range []fragment.Number{fragment.MakeNumber(77, 1, 4), voided.Meta.Number} {
		if ok, err := d.HasFragment(1, n); err != nil || ok {
			t.Fatalf("failed put's fragment %s is indexed (%v, %v)", n, ok, err)
		}
	}
}

// TestReplayReadsOnPastADamagedRecord: a fragment record after the replay
// checkpoint whose payload no longer matches its CRC (a flipped byte) does
// not hide the intact, possibly acknowledged, records after it: replay
// indexes them and leaves the damaged one out, counted and logged; a
// read-only Check counts it too. A damaged record header ends the scan
// (its length is lost): the intact records after it are counted, left
// for kvsedge repair, which indexes them. The same damage on the last
// record is a torn tail: left out, not counted. Neither is a problem for
// Check, nor keeps the checkpoint: a stop can tear a record (and, with a
// volatile device cache, keep a later one).
func TestReplayReadsOnPastADamagedRecord(t *testing.T) {
	for _, c := range []struct {
		which  int // of the three replayable records: 1 the middle, 2 the last
		header bool
	}{{1, false}, {1, true}, {2, false}, {2, true}} {
		which := c.which
		t.Run(fmt.Sprintf("record %d header %v", c.which, c.header), func(t *testing.T) {
			crashed, dir := crashWithReplayableTail(t)

			// Flip a byte in the media of replayable record `which`.
			seqs, err := (&segmentStore{fs: crashed}).list(dir)
			if err != nil || len(seqs) == 0 {
				t.Fatalf("segments: %v %v", seqs, err)
			}
			var path string
			var at int64 = -1
			n := 0
			for _, q := range seqs {
				p := crashed.PathJoin(dir, segmentName(q))
				b, err := readWhole(crashed, p)
				if err != nil {
					t.Fatal(err)
				}
				for _, rec := range scanSegment(b).records {
					if rec.kind != kindFragment {
						continue
					}
					if n-3 == which {
						path, at = p, rec.offset+recordHdrLen+int64(len(rec.payload))-10
						if c.header {
							at = rec.offset + 7 // its payload length
						}
					}
					n++
				}
			}
			if n != 6 || at < 0 {
				t.Fatalf("%d fragment records in the crash image, want 6", n)
			}
			f, err := crashed.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			var flip [1]byte
			if _, err := f.ReadAt(flip[:], at); err != nil {
				t.Fatal(err)
			}
			flip[0] ^= 0x10
			if _, err := f.WriteAt(flip[:], at); err != nil {
				t.Fatal(err)
			}
			f.Close()

			// What replay indexes of the three, and what it counts.
			wantIndexed, wantDamaged, wantUnreachable := 2, 0, 0
			switch {
			case which == 1 && c.header:
				wantIndexed, wantUnreachable = 1, 1
			case which == 1:
				wantDamaged = 1
			}
			r := checkReadOnly(t, crashed)
			if r.Replayable != wantIndexed || r.ReplayDamaged != wantDamaged || r.ReplayUnreachable != wantUnreachable || len(r.Problems) != 0 {
				t.Fatalf("read-only Check: %+v, want %d replayable, %d damaged, %d unreachable, no problems", r, wantIndexed, wantDamaged, wantUnreachable)
			}

			d, err := Open(replayOpts(crashed, 0))
			if err != nil {
				t.Fatal(err)
			}
			if rep := d.Replayed(); rep.Indexed != wantIndexed || rep.Damaged != wantDamaged || rep.Unreachable != wantUnreachable {
				t.Fatalf("replayed %+v, want %d indexed, %d damaged, %d unreachable", rep, wantIndexed, wantDamaged, wantUnreachable)
			}
			for i := range 6 {
				w := replayWrite(i, int64(i)*1000)
				m, b, err := d.Fragment(1, w.Meta.Number, nil)
				if i == 3+which || i > 3+which && c.header {
					if err == nil {
						t.Fatalf("record %d is indexed: damaged, or after a damaged header", i)
					}
					continue
				}
				if err != nil || m != w.Meta || !bytes.Equal(b, w.Media) {
					t.Fatalf("fragment %d after replay: %v", i, err)
				}
			}
			// The checkpoint moved on: a clean stop leaves nothing to
			// replay.
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d, err = Open(replayOpts(crashed, 0))
			if err != nil {
				t.Fatal(err)
			}
			if rep := d.Replayed(); rep != (ReplayReport{}) {
				t.Fatalf("the next start replayed %+v, want nothing", rep)
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			// kvsedge repair indexes every intact record, those after a
			// damaged header too.
			if _, err := Repair(replayOpts(crashed, 0)); err != nil {
				t.Fatal(err)
			}
			d, err = Open(replayOpts(crashed, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			for i := range 6 {
				w := replayWrite(i, int64(i)*1000)
				if _, _, err := d.Fragment(1, w.Meta.Number, nil); (err == nil) != (i != 3+which) {
					t.Fatalf("fragment %d after repair: %v", i, err)
				}
			}
		})
	}
}

// checkReadOnly is a read-only Open's Check of the store in fs, as
// kvsedge check does it.
func checkReadOnly(t *testing.T, fs vfs.FS) CheckReport { return checkStore(t, fs, true) }

// checkStore opens the store in fs (read-only or not: then it replays)
// and checks it.
func checkStore(t *testing.T, fs vfs.FS, readOnly bool) CheckReport {
	t.Helper()
	opts := replayOpts(fs, 0)
	opts.ReadOnly = readOnly
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.Check()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// crashWithReplayableTail stores fragments 0–5 (replayWrite) in stream 1,
// the first three indexed durably (the checkpointer ran after them), and
// returns what a crash then leaves (the last three's index commits lost:
// replay's to take back) and the stream's segment directory.
func crashWithReplayableTail(t *testing.T) (*vfs.MemFS, string) {
	t.Helper()
	live := vfs.NewCrashableMem()
	db := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, db, 0, 3)
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	putReplayWrites(t, db, 3, 6)
	dir := db.segs.stream(1).dir
	crashed := crashNow(live)
	db.Close()
	return crashed, dir
}

// fragmentRecords returns the fragment records among recs.
func fragmentRecords(recs []scannedRecord) []scannedRecord {
	var out []scannedRecord
	for _, r := range recs {
		if r.kind == kindFragment {
			out = append(out, r)
		}
	}
	return out
}

// TestCheckOfAnOpenStoreReportsATailItsOpenCouldNotRead: when a read-write
// Open cannot read a stream's segments after its replay checkpoint, the
// stream is served without its last fragments and left for repair. A
// Check of that open store (engine.Check, the console's) reports it as a
// problem, not only as unreferenced bytes; once the segments read again,
// the next Open replays them and Check finds nothing wrong.
func TestCheckOfAnOpenStoreReportsATailItsOpenCouldNotRead(t *testing.T) {
	crashed, dir := crashWithReplayableTail(t)
	var failing atomic.Bool
	failing.Store(true)
	fs := errorfs.Wrap(crashed, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpOpen && strings.HasPrefix(op.Path, dir) && strings.HasSuffix(op.Path, segmentSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	d, err := Open(replayOpts(fs, 0))
	if err != nil {
		t.Fatal(err)
	}
	failing.Store(false)
	r, err := d.Check()
	if err != nil {
		t.Fatal(err)
	}
	if r.Fragments != 3 || len(r.Problems) != 1 || r.Problems[0].Stream != 1 || !strings.Contains(r.Problems[0].What, "replay checkpoint") {
		t.Errorf("Check of a store whose Open could not read stream 1's tail: %d fragments, problems %+v; want 3 fragments and that stream's tail as the one problem", r.Fragments, r.Problems)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if r := checkStore(t, fs, false); r.Fragments != 6 || len(r.Problems) != 0 {
		t.Errorf("Check after an Open that read the tail: %d fragments, problems %+v; want 6 and none", r.Fragments, r.Problems)
	}
}
