package lsm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestRetentionKeepsSegmentOfPendingPut: a pipelined put whose media went
// to a segment that a later put rolled away from is not yet indexed while
// it syncs and waits for the put before it; retention that deletes every
// indexed fragment of the stream (keep: none remains) must not unlink
// that segment, or the put's commit indexes media that is gone (and the
// upload acknowledges it PERSISTED).
func TestRetentionKeepsSegmentOfPendingPut(t *testing.T) {
	d, err := Open(prepOptions(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id := createTestStream(t, d)
	// Fragments 0-3 (server times 0-6000 ms) indexed in segment 1, which
	// holds five.
	for i := range 4 {
		w := prepFragment(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
	}
	first := d.ActiveSegment(id)
	// The run before (a put still committing), held back.
	before := &PendingPut{done: make(chan struct{})}
	runN, err := d.PutFragmentsAsync(id, []FragmentWrite{prepFragment(4)}, before)
	if err != nil {
		t.Fatal(err)
	}
	// The next run rolls to a new segment.
	runN1, err := d.PutFragmentsAsync(id, []FragmentWrite{prepFragment(5)}, runN)
	if err != nil {
		t.Fatal(err)
	}
	if d.ActiveSegment(id) == first {
		t.Fatal("the second run did not roll")
	}
	// Retention: every indexed fragment (0-3) is older than the cutoff.
	if n, _, err := d.DeleteBefore(id, 7000); err != nil || n != 4 {
		t.Fatalf("retention: %d fragments, %v", n, err)
	}
	close(before.done)
	if err := runN.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := runN1.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{4, 5} {
		w := prepFragment(i)
		if _, b, err := d.Fragment(id, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
			t.Fatalf("fragment %d, stored and indexed, does not read back: %v", i, err)
		}
	}
	// Committed, the puts no longer hold the segment: once its fragments
	// go, it goes.
	if n, _, err := d.DeleteBefore(id, 11000); err != nil || n != 2 {
		t.Fatalf("retention: %d fragments, %v", n, err)
	}
	seqs, err := d.segs.list(d.segs.stream(id).dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range seqs {
		if q == first {
			t.Fatalf("segment %d kept after its fragments went (segments %v)", first, seqs)
		}
	}
}

// TestRepairTornPreparedSegment: a crash while the next segment was being
// prepared leaves after the active segment (whose last append was not
// synced: a torn tail) a segment with a torn start record. Repair labels
// the active segment's torn tail as the newest segment's (written as the
// box stopped), not as damage, indexes every fragment, and Check finds no
// problem.
func TestRepairTornPreparedSegment(t *testing.T) {
	fs := vfs.NewMem()
	opts := prepOptions(fs)
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	id := createTestStream(t, d)
	for i := range 3 {
		w := prepFragment(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
	}
	a := d.ActiveSegment(id)
	dir := d.segs.stream(id).dir
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := fs.OpenReadWrite(fs.PathJoin(dir, segmentName(a)), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(recordMagic+"torn record"), st.Size()); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := fs.Create(fs.PathJoin(dir, segmentName(a+1)), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write(segmentStartRecord(id, a+1, []byte("s"))[:7]); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fragments != 3 || len(rep.Aside) != 1 || !strings.Contains(rep.Aside[0].Why, "newest segment") {
		t.Fatalf("repair: %d fragments, aside %+v", rep.Fragments, rep.Aside)
	}
	d, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if r, err := d.Check(); err != nil || len(r.Problems) > 0 || r.Fragments != 3 {
		t.Fatalf("check: %+v %v", r, err)
	}
}
