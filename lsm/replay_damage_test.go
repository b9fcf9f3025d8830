package lsm

import (
	"bytes"
	"fmt"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Damage and tears in the records replay reads, and what a read-only
// Check says of them. From the third adversarial review (of b53ee06): the
// tests that failed then say what that version did, in the past tense.

// flipBitAt flips one bit of the byte at off in path.
func flipBitAt(t *testing.T, fs vfs.FS, path string, off int64) {
	t.Helper()
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x10
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// rewriteFile replaces the file at path with b, synced.
func rewriteFile(t *testing.T, fs vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// fragmentRecordsOf returns the records of stream 1's segments in the image.
func fragmentRecordsOf(t *testing.T, fs vfs.FS, dir string) (paths []string, recs [][]scannedRecord) {
	t.Helper()
	seqs, err := (&segmentStore{fs: fs}).list(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range seqs {
		p := fs.PathJoin(dir, segmentName(q))
		b, err := readWhole(fs, p)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		recs = append(recs, scanSegment(b).records)
	}
	return paths, recs
}

// TestReplayScansFromTheCheckpointPastDamageBeforeIt: an acknowledged
// fragment after the replay checkpoint is indexed by replay even when a
// record header before the checkpoint, in the same segment, is damaged (a
// flipped bit in an old, indexed record's header, or in the segment's
// start record). The checkpoint usually lies inside a segment, which
// scanTail walks from offset 0 to reach it; the checkpoint is a record
// boundary, so the walk goes on there. b53ee06's walk ended at the damage:
// the records after the checkpoint were neither indexed nor counted, and
// Open moved the checkpoint past them.
func TestReplayScansFromTheCheckpointPastDamageBeforeIt(t *testing.T) {
	for _, c := range []struct {
		name string
		// record index in segment (0: the start record), byte in its header
		rec  int
		byte int64
	}{{"start record header", 0, 7}, {"indexed fragment header", 2, 7}} {
		t.Run(c.name, func(t *testing.T) {
			live := vfs.NewCrashableMem()
			db := openStream1(t, replayOpts(live, 0))
			putReplayWrites(t, db, 0, 3)
			if err := db.ckpt.run(); err != nil { // fragments 0..2 durable in the index
				t.Fatal(err)
			}
			putReplayWrites(t, db, 3, 6) // acknowledged; their commits are lost
			dir := db.segs.stream(1).dir
			crashed := crashNow(live)
			db.Close()

			paths, recs := fragmentRecordsOf(t, crashed, dir)
			if len(paths) != 1 {
				t.Fatalf("%d segments, want 1", len(paths))
			}
			// records: start, header, frag0, frag1, ...
			r := recs[0][c.rec]
			if c.rec > 0 {
				r = recs[0][c.rec+1] // skip the session header record
			}
			flipBitAt(t, crashed, paths[0], r.offset+c.byte)

			cr := checkReadOnly(t, crashed)
			d, err := Open(replayOpts(crashed, 0))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			rep := d.Replayed()
			var lost []int
			for i := 3; i < 6; i++ {
				w := replayWrite(i, int64(i)*1000)
				m, b, err := d.Fragment(1, w.Meta.Number, nil)
				if err != nil || m != w.Meta || !bytes.Equal(b, w.Media) {
					lost = append(lost, i)
				}
			}
			if len(lost) > 0 || cr.Replayable != 3 {
				t.Fatalf("acknowledged fragments %v after the checkpoint are not indexed: replayed %+v; read-only Check before it: replayable %d, damaged %d, unreachable %d, problems %v",
					lost, rep, cr.Replayable, cr.ReplayDamaged, cr.ReplayUnreachable, cr.Problems)
			}
		})
	}
}

// TestCheckReportsFragmentsReplayLeavesOutForLackOfAHeader: a read-only
// Check reports the acknowledged fragments the next Open will leave out
// for lack of a session header. The crash took every commit since the
// stream's checkpoint, the first fragment's (with its session header,
// 0x13) among them, so replay takes the header from the segment's header
// record; that record's payload is damaged, so replay leaves out every
// fragment that uses it (ReplayReport.NoHeader). b53ee06's Check said
// nothing of them.
func TestCheckReportsFragmentsReplayLeavesOutForLackOfAHeader(t *testing.T) {
	live := vfs.NewCrashableMem()
	db := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, db, 0, 3) // acknowledged; their commits (and the header's) are lost
	dir := db.segs.stream(1).dir
	crashed := crashNow(live)
	db.Close()

	paths, recs := fragmentRecordsOf(t, crashed, dir)
	var hdr *scannedRecord
	for i := range recs[0] {
		if recs[0][i].kind == kindHeader {
			hdr = &recs[0][i]
		}
	}
	if hdr == nil {
		t.Fatal("no header record")
	}
	flipBitAt(t, crashed, paths[0], hdr.offset+recordHdrLen+8+2) // in the header's bytes

	cr := checkReadOnly(t, crashed)
	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rep := d.Replayed()
	if rep.NoHeader == 0 {
		t.Fatalf("replayed %+v: want the fragments left out for lack of a header", rep)
	}
	if len(cr.Problems) == 0 && cr.ReplayDamaged == 0 && cr.ReplayUnreachable == 0 {
		t.Fatalf("Open's replay left out %d acknowledged fragments (no session header): replayed %+v; the read-only Check before it reported nothing: %+v",
			rep.NoHeader, rep, cr)
	}
}

// TestReadOnlyCheckWritesNothing: a read-only Check of a crash
// image with a tail to replay (and a damaged record in it) performs no
// write operation on the file system (no create, write, sync, remove,
// rename, mkdir), and the next read-write Open replays what it counted.
func TestReadOnlyCheckWritesNothing(t *testing.T) {
	live := vfs.NewCrashableMem()
	db := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, db, 0, 2)
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	putReplayWrites(t, db, 2, 6)
	dir := db.segs.stream(1).dir
	crashed := crashNow(live)
	db.Close()
	paths, recs := fragmentRecordsOf(t, crashed, dir)
	last := recs[0][len(recs[0])-2] // fragment 4: damaged, fragment 5 intact after it
	flipBitAt(t, crashed, paths[0], last.offset+recordHdrLen+int64(len(last.payload))-5)

	var checking atomic.Bool
	var mu sync.Mutex
	var writes []string
	fs := errorfs.Wrap(crashed, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if checking.Load() && op.Kind.ReadOrWrite() == errorfs.OpIsWrite {
			mu.Lock()
			writes = append(writes, fmt.Sprintf("%v %s", op.Kind, op.Path))
			mu.Unlock()
		}
		return nil
	}))
	ro := replayOpts(fs, 0)
	ro.ReadOnly = true
	rd, err := Open(ro)
	if err != nil {
		t.Fatal(err)
	}
	checking.Store(true)
	cr, err := rd.Check()
	checking.Store(false)
	rd.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(writes) > 0 {
		t.Fatalf("a read-only Check wrote: %v", writes)
	}
	if cr.Replayable != 3 || cr.ReplayDamaged != 1 || len(cr.Problems) != 0 {
		t.Fatalf("read-only Check: %+v, want 3 replayable, 1 damaged, no problem", cr)
	}
	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if rep := d.Replayed(); rep.Indexed != 3 || rep.Damaged != 1 {
		t.Fatalf("replayed %+v after the read-only Check, want 3 indexed, 1 damaged", rep)
	}
}

// TestReplayTornAtEveryOffset: the crash image of a stream whose last
// three records' commits were lost, torn at many offsets of one of them
// (header, meta, replaced count, media, and the end), three ways: the file
// truncated there; the rest of the file zeroed from there (its size kept);
// and (for the middle record) only that record's bytes from there zeroed,
// the record after it intact (a device that kept a later write). Replay
// indexes exactly the intact records it can reach by following lengths,
// never a torn one, and counts damage only where intact records follow;
// a read-only Check before it reports the same counts, no problem, and the
// same fragments as a Check after it.
func TestReplayTornAtEveryOffset(t *testing.T) {
	base, dir := crashWithReplayableTail(t)
	paths, recs := fragmentRecordsOf(t, base, dir)
	frags := fragmentRecords(recs[0])
	if len(frags) != 6 {
		t.Fatalf("%d fragment records", len(frags))
	}
	whole, err := readWhole(base, paths[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, which := range []int{4, 5} { // the middle and the last replayable record
		rec := frags[which]
		end := rec.offset + recordHdrLen + int64(len(rec.payload))
		for cut := rec.offset; cut < end; {
			for _, mode := range []string{"truncate", "zero rest", "zero record"} {
				if mode == "zero record" && which == 5 {
					continue // the same as "zero rest"
				}
				if mode == "zero record" && cut >= rec.offset+recordHdrLen+1 && cut < rec.offset+recordHdrLen+1+fragment.NumberLen {
					// The number zeroed may become an indexed one's:
					// TestReplayVerifiesARecordBeforeTakingItForAnIndexedOne.
					continue
				}
				b := append([]byte(nil), whole...)
				switch mode {
				case "truncate":
					b = b[:cut]
				case "zero rest":
					clear(b[cut:])
				case "zero record":
					clear(b[cut:end])
				}
				fs := base.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: fixedRNG()})
				rewriteFile(t, fs, paths[0], b)

				// What following lengths reaches.
				headerTorn := cut < rec.offset+recordHdrLen
				wantIdx := []int{3, 4, 5}[:which-3]
				wantDamaged, wantUnreach := 0, 0
				if mode == "zero record" {
					if headerTorn {
						wantUnreach = 1
					} else {
						wantIdx = append(wantIdx, 5)
						wantDamaged = 1
					}
				}
				ctx := fmt.Sprintf("record %d %s at +%d", which, mode, cut-rec.offset)
				before := checkReadOnly(t, fs)
				d, err := Open(replayOpts(fs, 0))
				if err != nil {
					t.Fatal(err)
				}
				rep := d.Replayed()
				after, err := d.Check()
				if err != nil {
					t.Fatal(err)
				}
				var got []int
				for i := 3; i < 6; i++ {
					w := replayWrite(i, int64(i)*1000)
					m, med, err := d.Fragment(1, w.Meta.Number, nil)
					if err == nil {
						if m != w.Meta || !bytes.Equal(med, w.Media) {
							t.Fatalf("%s: fragment %d differs", ctx, i)
						}
						got = append(got, i)
					}
				}
				d.Close()
				if fmt.Sprint(got) != fmt.Sprint(wantIdx) || rep.Indexed != len(wantIdx) || rep.Damaged != wantDamaged || rep.Unreachable != wantUnreach {
					t.Fatalf("%s: indexed %v (replayed %+v), want %v, %d damaged, %d unreachable", ctx, got, rep, wantIdx, wantDamaged, wantUnreach)
				}
				if before.Replayable != rep.Indexed || before.ReplayDamaged != rep.Damaged || before.ReplayUnreachable != rep.Unreachable ||
					len(before.Problems) != 0 || len(after.Problems) != 0 || before.Fragments != after.Fragments ||
					before.MediaBytes != after.MediaBytes || before.UnreferencedBytes != after.UnreferencedBytes {
					t.Fatalf("%s: read-only Check %+v, replayed %+v, Check after %+v", ctx, before, rep, after)
				}
			}
			switch {
			case cut < rec.offset+recordHdrLen+metaLen+4:
				cut++
			default:
				cut += 257
			}
		}
	}
}

func fixedRNG() *rand.Rand { return rand.New(rand.NewPCG(1, 1)) }

// TestReplayVerifiesARecordBeforeTakingItForAnIndexedOne: a fragment
// record after the checkpoint whose payload fails its CRC, with intact
// records after it, is counted as damaged, even when the damage (here: the
// payload zeroed from byte 11 of its number, as a device that lost a
// sector would) makes its number an indexed fragment's (seq 4 -> seq 0).
// b53ee06 looked the number up in the index before checking the CRC, took
// the record for that indexed fragment, and counted nothing.
func TestReplayVerifiesARecordBeforeTakingItForAnIndexedOne(t *testing.T) {
	crashed, dir := crashWithReplayableTail(t)
	paths, recs := fragmentRecordsOf(t, crashed, dir)
	frags := fragmentRecords(recs[0])
	rec := frags[4]
	b, err := readWhole(crashed, paths[0])
	if err != nil {
		t.Fatal(err)
	}
	clear(b[rec.offset+recordHdrLen+1+11 : rec.offset+recordHdrLen+int64(len(rec.payload))])
	rewriteFile(t, crashed, paths[0], b)

	cr := checkReadOnly(t, crashed)
	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if rep := d.Replayed(); rep.Damaged != 1 || cr.ReplayDamaged != 1 {
		t.Fatalf("record 4's payload damaged (its number now fragment 0's), record 5 intact after it: replayed %+v, read-only Check counted %d damaged; want 1",
			rep, cr.ReplayDamaged)
	}
}

// TestReplayKeepsAPartialCopyWhoseReplacementIsDamaged: a record whose
// payload fails its CRC has no effect on what replay indexes (beyond being
// left out), and is counted as damaged. Fragment 3 is a partial copy
// (acknowledged), fragment 4 the whole one that replaces it; neither
// commit survived the stop, and one flipped bit in record 4's number
// (seq 4 -> 0, an indexed fragment's) damages it. Replay must index 3, the
// only intact copy. b53ee06 took the damaged record for fragment 0's and
// believed its replaced list: neither copy was indexed, nothing counted.
func TestReplayKeepsAPartialCopyWhoseReplacementIsDamaged(t *testing.T) {
	live := vfs.NewCrashableMem()
	db := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, db, 0, 3)
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	partial, whole := putPartialThenWhole(t, db)
	putReplayWrites(t, db, 5, 6)
	dir := db.segs.stream(1).dir
	crashed := crashNow(live)
	db.Close()
	paths, recs := fragmentRecordsOf(t, crashed, dir)
	frags := fragmentRecords(recs[0])
	// The last byte of record 4's number: 4 -> 0.
	at := frags[4].offset + recordHdrLen + 1 + fragment.NumberLen - 1
	b, err := readWhole(crashed, paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if b[at] != 4 {
		t.Fatalf("byte %d of the number is %d, want 4", at, b[at])
	}
	f, err := crashed.OpenReadWrite(paths[0], vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0}, at); err != nil {
		t.Fatal(err)
	}
	f.Close()

	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rep := d.Replayed()
	_, _, errP := d.Fragment(1, partial.Meta.Number, nil)
	_, _, errW := d.Fragment(1, whole.Meta.Number, nil)
	if errW == nil {
		t.Fatal("the damaged whole fragment is indexed")
	}
	if errP != nil || rep.Damaged != 1 {
		t.Fatalf("whole fragment 4's record damaged (its number now fragment 0's): partial copy 3, intact, not indexed (%v); replayed %+v (want 1 damaged)", errP, rep)
	}
}

// TestReplayKeepsTheVetoOfAnIndexedReplacementWithDamagedMedia: a whole
// fragment that replaced a partial copy is indexed (its commit, the
// partial's deletion with it, survived the stop), both records lie after
// the checkpoint, and the whole one's media was damaged since. Replay
// still takes its replaced numbers (the index vouches for the record at
// that position), so the partial copy does not come back beside it: a
// fragment never shows twice. (c00da4f checked the record's CRC first and,
// the CRC failing, dropped the veto.)
func TestReplayKeepsTheVetoOfAnIndexedReplacementWithDamagedMedia(t *testing.T) {
	live := vfs.NewCrashableMem()
	db := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, db, 0, 3)
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	partial, whole := putPartialThenWhole(t, db)
	// Another stream's record, in a synced batch, syncs the index's log:
	// the commits survive the crash, stream 1's checkpoint stays before
	// both records.
	if err := db.PutStream(2, []byte{1}); err != nil {
		t.Fatal(err)
	}
	dir := db.segs.stream(1).dir
	crashed := crashNow(live)
	db.Close()
	paths, recs := fragmentRecordsOf(t, crashed, dir)
	frags := fragmentRecords(recs[0])
	if len(frags) != 5 {
		t.Fatalf("%d fragment records, want 5", len(frags))
	}
	end := frags[4].offset + recordHdrLen + int64(len(frags[4].payload))
	flipBitAt(t, crashed, paths[0], end-10) // in the whole fragment's media

	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ok, err := d.HasFragment(1, partial.Meta.Number); err != nil || ok {
		t.Fatalf("the replaced partial copy is indexed again beside its replacement (%v, %v); replayed %+v", ok, err, d.Replayed())
	}
	if ok, err := d.HasFragment(1, whole.Meta.Number); err != nil || !ok {
		t.Fatalf("the replacement is not indexed (%v, %v)", ok, err)
	}
}

// putPartialThenWhole stores in stream 1 a partial copy of a fragment
// (replayWrite 3) and then the whole one that replaces it (replayWrite
// 4), at the same producer time.
func putPartialThenWhole(t *testing.T, db *DB) (partial, whole FragmentWrite) {
	t.Helper()
	partial = replayWrite(3, 3000)
	if err := db.PutFragment(1, &partial); err != nil {
		t.Fatal(err)
	}
	whole = replayWrite(4, 3000)
	whole.Replaces = []fragment.Meta{partial.Meta}
	if err := db.PutFragment(1, &whole); err != nil {
		t.Fatal(err)
	}
	return partial, whole
}
