package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// prepFragment is fragment i of a test stream: 200 KB of media (five fit
// a 1 MiB segment), its digest set so reads check it.
func prepFragment(i int) FragmentWrite {
	m := bytes.Repeat([]byte{byte(i), byte(i >> 8), 0x5A}, 200_000/3)
	meta := fragment.Meta{Number: fragment.MakeNumber(7, 1, uint32(i)), ProducerMs: int64(i) * 2000, ServerMs: int64(i) * 2000,
		DurationMs: 2000, HeaderID: 9, ClusterLen: uint32(len(m)), MediaLen: uint32(len(m)), Frames: 50}
	binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
	w := FragmentWrite{Meta: meta, Media: m}
	if i == 0 {
		w.Header = []byte("header")
	}
	return w
}

func prepOptions(fs vfs.FS) Options {
	return Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SegmentBytes: 1 << 20}
}

// waitPrepared writes fragments from *i on until the stream has a
// prepared segment, waits for its preparation and returns its seq and
// error.
func waitPrepared(t *testing.T, d *DB, id StreamID, i *int) (uint64, error) {
	t.Helper()
	ss := d.segs.stream(id)
	for range 20 {
		ss.mu.Lock()
		p := ss.next
		ss.mu.Unlock()
		if p != nil {
			<-p.done
			return p.seq, p.err
		}
		w := prepFragment(*i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatalf("fragment %d: %v", *i, err)
		}
		*i++
	}
	t.Fatal("no segment was prepared")
	return 0, nil
}

func checkClean(t *testing.T, d *DB, fragments int) CheckReport {
	t.Helper()
	r, err := d.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) > 0 || r.Fragments != fragments || r.UnreferencedBytes != 0 {
		t.Fatalf("check: %d fragments (want %d), %d unreferenced bytes, problems %v", r.Fragments, fragments, r.UnreferencedBytes, r.Problems)
	}
	return r
}

func readsBack(t *testing.T, d *DB, id StreamID, n int) {
	t.Helper()
	for i := range n {
		w := prepFragment(i)
		if _, b, err := d.Fragment(id, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
			t.Fatalf("fragment %d: %v", i, err)
		}
	}
}

// TestPreparedSegmentRolls: a stream written past 3/4 of its segment gets
// its next one prepared, and its rolls are swaps (only the first segment
// of the process is made inline). A crash image taken while a prepared,
// unused segment exists (its start record synced, nothing else) opens with
// every fragment; Check counts the segment as neither damage nor
// unreferenced bytes; Repair, with the index kept and with the index lost,
// indexes every fragment and sets nothing aside; the first roll after the
// restart removes the unused segment and writing goes on after it.
func TestPreparedSegmentRolls(t *testing.T) {
	live := vfs.NewCrashableMem()
	d, err := Open(prepOptions(live))
	if err != nil {
		t.Fatal(err)
	}
	id := createTestStream(t, d)
	i := 0
	for ; i < 16; i++ {
		w := prepFragment(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
	}
	if prepared, inline := d.SegmentRolls(); inline != 1 || prepared < 2 {
		t.Fatalf("16 fragments of 200 KB in 1 MiB segments: %d prepared rolls, %d inline; want ≥ 2 and 1", prepared, inline)
	}
	seq, err := waitPrepared(t, d, id, &i)
	if err != nil {
		t.Fatalf("preparing segment %d: %v", seq, err)
	}
	dir := d.segs.stream(id).dir
	seqs, _ := d.segs.list(dir)
	if seqs[len(seqs)-1] != seq {
		t.Fatalf("segments %v, the prepared one %d not the newest", seqs, seq)
	}
	checkClean(t, d, i)

	crashed := live.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if after, _ := d.segs.list(dir); after[len(after)-1] == seq {
		t.Fatal("Close left the unused prepared segment")
	}

	opts := prepOptions(crashed)
	d, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	readsBack(t, d, id, i)
	if after, _ := d.segs.list(dir); after[len(after)-1] != seq {
		t.Fatalf("the crash image lacks the prepared segment %d: %v", seq, after)
	}
	r := checkClean(t, d, i)
	if r.SegmentFiles != len(seqs) {
		t.Fatalf("check saw %d segment files, want %d", r.SegmentFiles, len(seqs))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	for _, lost := range []bool{false, true} {
		if lost {
			if err := crashed.RemoveAll("/data/" + indexDirName); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := Repair(opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Aside) > 0 || rep.Fragments != i || rep.Streams != 1 || rep.SegmentFiles != len(seqs) {
			t.Fatalf("repair (index lost: %v): %+v", lost, rep)
		}
		if lost && rep.FromSegments != i {
			t.Fatalf("repair of a lost index took %d fragments from the segments, want %d", rep.FromSegments, i)
		}
	}

	// A torn tail on the newest segment written to (the one before the
	// prepared one) is named as such, not as damage.
	tail := crashed.PathJoin(dir, segmentName(seq-1))
	st, err := crashed.Stat(tail)
	if err != nil {
		t.Fatal(err)
	}
	f, err := crashed.OpenReadWrite(tail, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xAB}, 100), st.Size()); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	rep, err := Repair(opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Aside) != 1 || rep.Aside[0].Bytes != 100 || !strings.Contains(rep.Aside[0].Why, "as the box stopped") || rep.Fragments != i {
		t.Fatalf("repair with a torn tail before the prepared segment: %+v", rep)
	}

	d, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	readsBack(t, d, id, i)
	w := prepFragment(i)
	if err := d.PutFragment(id, &w); err != nil {
		t.Fatal(err)
	}
	i++
	after, _ := d.segs.list(dir)
	if after[len(after)-1] != seq+1 || after[len(after)-2] == seq {
		t.Fatalf("after the restart's first write: segments %v; want the unused %d removed and writing in %d", after, seq, seq+1)
	}
	readsBack(t, d, id, i)
	r, err = d.Check()
	if err != nil || len(r.Problems) > 0 || r.Fragments != i || r.UnreferencedBytes != 100 {
		t.Fatalf("check after the restart: %+v %v (want only the torn tail's 100 bytes unreferenced)", r, err)
	}
}

// failFS fails the creation of segment files with ENOSPC while fail is
// set (a full disk, or no inode left) and reports avail bytes free.
type failFS struct {
	vfs.FS
	fail  *atomic.Bool
	avail *atomic.Int64
}

func (f failFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if f.fail.Load() && strings.HasSuffix(name, segmentSuffix) {
		return nil, &iofsError{name}
	}
	return f.FS.Create(name, c)
}

type iofsError struct{ name string }

func (e *iofsError) Error() string { return "create " + e.name + ": no space left on device" }
func (e *iofsError) Unwrap() error { return syscall.ENOSPC }

func (f failFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	return vfs.DiskUsage{AvailBytes: uint64(f.avail.Load()), TotalBytes: 1 << 30}, nil
}

// TestPrepareFailureRollsInline: a disk without room for another
// preallocated segment beside the space guard's margins gets no prepared
// segments and rolls inline, every write stored; a preparation that fails
// (segment files cannot be created) costs no write that fits the current
// segment, and the roll then fails only the write that needed it, which
// succeeds once the disk has room again.
func TestPrepareFailureRollsInline(t *testing.T) {
	fail, avail := new(atomic.Bool), new(atomic.Int64)
	avail.Store(lowWater + 2<<20) // media allowed; no room for lowWater+restoreSlack+1 MiB
	d, err := Open(prepOptions(failFS{FS: vfs.NewMem(), fail: fail, avail: avail}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id := createTestStream(t, d)
	i := 0
	for ; i < 16; i++ {
		w := prepFragment(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatalf("fragment %d on a nearly full disk: %v", i, err)
		}
	}
	if prepared, inline := d.SegmentRolls(); prepared != 0 || inline < 3 {
		t.Fatalf("nearly full disk: %d prepared rolls, %d inline; want 0 and ≥ 3", prepared, inline)
	}

	avail.Store(1 << 30)
	// Write until a roll, then make segment files impossible to create.
	p0, i0 := d.SegmentRolls()
	for range 10 {
		w := prepFragment(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
		i++
		if p, in := d.SegmentRolls(); p+in > p0+i0 {
			break
		}
	}
	fail.Store(true)
	fit := 0
	var rollErr error
	for range 10 {
		w := prepFragment(i)
		if rollErr = d.PutFragment(id, &w); rollErr != nil {
			break
		}
		i++
		fit++
	}
	if fit < 3 || !errors.Is(rollErr, syscall.ENOSPC) {
		t.Fatalf("with segment files failing: %d writes stored before the roll (want ≥ 3: they fit), the roll's error %v (want ENOSPC)", fit, rollErr)
	}
	fail.Store(false)
	w := prepFragment(i) // the producer re-sends it
	if err := d.PutFragment(id, &w); err != nil {
		t.Fatalf("after room came back: %v", err)
	}
	i++
	readsBack(t, d, id, i)
	checkClean(t, d, i)
}

// TestPreparedSegmentDropped: retention that removes every fragment of a
// stream drops its prepared segment too (the active one stays, writing
// goes on), and DeleteStream removes it with the rest.
func TestPreparedSegmentDropped(t *testing.T) {
	d, id, seq, i := openPrepared(t)
	ss := d.segs.stream(id)
	if n, _, err := d.DeleteBefore(id, 1<<50); err != nil || n != i {
		t.Fatalf("retention: %d fragments, %v; want %d", n, err, i)
	}
	seqs, _ := d.segs.list(ss.dir)
	if len(seqs) != 1 || seqs[0] == seq || ss.next != nil {
		t.Fatalf("after retention removed everything: segments %v (prepared %d, still held: %v); want only the active one", seqs, seq, ss.next != nil)
	}
	start := i
	if _, err := waitPrepared(t, d, id, &i); err != nil {
		t.Fatal(err)
	}
	for j := start; j < i; j++ {
		w := prepFragment(j)
		if _, b, err := d.Fragment(id, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
			t.Fatalf("fragment %d after retention: %v", j, err)
		}
	}
	if err := d.DeleteStream(id); err != nil {
		t.Fatal(err)
	}
	if ss.next != nil {
		t.Fatal("DeleteStream left the prepared segment held")
	}
	if _, err := d.opts.FS.Stat(ss.dir); err == nil {
		t.Fatal("DeleteStream left the media directory")
	}
}

// TestIdlePreparedSegmentDropped: a stream that stops being written keeps
// its prepared segment only until DropIdlePreparedSegments finds it idle;
// the file goes, a stream written within the idle time keeps its own, and
// the idle one writes on afterwards (preparing anew) with every fragment
// intact.
func TestIdlePreparedSegmentDropped(t *testing.T) {
	d, id, seq, i := openPrepared(t)
	dir := d.segs.stream(id).dir
	if n := d.DropIdlePreparedSegments(time.Hour); n != 0 {
		t.Fatalf("a stream written just now lost its prepared segment (%d dropped)", n)
	}
	if n := d.DropIdlePreparedSegments(0); n != 1 {
		t.Fatalf("%d prepared segments dropped, want 1", n)
	}
	if seqs, _ := d.segs.list(dir); seqs[len(seqs)-1] == seq {
		t.Fatalf("segments %v: the dropped prepared segment %d is still there", seqs, seq)
	}
	prepared0, inline0 := d.SegmentRolls()
	for range 8 {
		w := prepFragment(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
		i++
	}
	if prepared, inline := d.SegmentRolls(); prepared+inline <= prepared0+inline0 {
		t.Fatalf("8 more fragments of 200 KB in 1 MiB segments rolled no segment (%d+%d rolls before, %d+%d after)", prepared0, inline0, prepared, inline)
	}
	checkClean(t, d, i)
}

// openPrepared opens a store (closed with the test) with one stream
// written until its next segment is prepared, and returns the stream, the
// prepared seq and the fragments written.
func openPrepared(t *testing.T) (*DB, StreamID, uint64, int) {
	t.Helper()
	d, err := Open(prepOptions(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	id := createTestStream(t, d)
	i := 0
	seq, err := waitPrepared(t, d, id, &i)
	if err != nil {
		t.Fatal(err)
	}
	return d, id, seq, i
}
