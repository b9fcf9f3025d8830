package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

func openCapacity(t *testing.T, fs vfs.FS, clock Clock, free *uint64, strategy string) (*lsm.DB, *Engine) {
	t.Helper()
	db, err := lsm.Open(lsm.Options{Dir: "/d", FS: fs, CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SegmentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e, err := openOn(db, Options{Clock: clock, RingBytesPerStream: 1 << 20, NodeID: 3, Capacity: CapacityOptions{
		DiskStat: func() (uint64, uint64, error) { return *free, 1 << 30, nil }, MinFreeBytes: 100 << 20, Strategy: strategy}})
	if err != nil {
		t.Fatal(err)
	}
	return db, e
}

// TestCapacityDeletesOldestExceptHolds: below the minimum free space, the
// oldest media of streams not on hold goes, a bounded share per sweep;
// held streams keep everything; with nothing left to delete, new media is
// refused.
func TestCapacityDeletesOldestExceptHolds(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	free := uint64(1 << 30)
	_, e := openCapacity(t, vfs.NewMem(), clock, &free, StrategyDeleteOldest)
	frags := captureFragments(t)
	for _, name := range []string{"old", "held"} {
		if _, err := e.CreateStream(CreateStreamInput{Name: name, DataRetentionInHours: 24}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.TagStream(StreamRef{Name: "held"}, map[string]string{TagHold: "true"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		ingest(t, e, "held", frags, int64(i)*100_000)
		ingest(t, e, "old", frags, int64(i)*100_000)
		clock.add(2 * time.Minute)
	}
	if rep := e.SweepCapacity(); rep.DeletedFragments != 0 || rep.Refusing {
		t.Fatalf("with room: %+v", rep)
	}
	before := e.StoredBytes()
	free = 90 << 20 // 10 MiB below the minimum
	rep := e.SweepCapacity()
	if rep.DeletedFragments == 0 || rep.DeletedBytes > before/4+int64(len(frags[0].Buf))*int64(len(frags)) {
		t.Fatalf("first sweep below the minimum: %+v (stored %d)", rep, before)
	}
	var held []fragment.Number
	_ = e.FragmentNumbers(StreamRef{Name: "held"}, fragment.Number{}, func(n fragment.Number) bool { held = append(held, n); return true })
	if len(held) != 3*len(frags) {
		t.Fatalf("held stream has %d fragments, want %d", len(held), 3*len(frags))
	}
	// Keep sweeping while free space never rises (something else fills
	// the disk): deletion stops after a quarter of the store, and new
	// media is refused instead of the archive running away.
	for range 20 {
		rep = e.SweepCapacity()
	}
	if !rep.Refusing || !strings.Contains(rep.Alarm, "without free space rising") {
		t.Fatalf("free space never rises, 20 sweeps: %+v", rep)
	}
	if after := e.StoredBytes(); after < before*3/4-int64(len(frags))*(1<<20) {
		t.Fatalf("deletion ran away: %d of %d bytes left", after, before)
	}
	var left []fragment.Number
	_ = e.FragmentNumbers(StreamRef{Name: "old"}, fragment.Number{}, func(n fragment.Number) bool { left = append(left, n); return true })
	if len(left) == 0 {
		t.Fatal("the unheld stream was emptied")
	}
	sess, err := e.BeginIngest(StreamRef{Name: "old"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sess.StartFragment(); err == nil {
		t.Fatal("new media accepted while refusing")
	}
	sess.Close()
	free = 1 << 30
	if rep = e.SweepCapacity(); rep.Refusing {
		t.Fatalf("space freed, still refusing: %+v", rep)
	}
}

// TestCapacityDoesNotTrustALostIndex: when the index accounts for less
// than half of the media on disk, nothing is deleted and new media is
// refused, with an alarm that says why.
func TestCapacityDoesNotTrustALostIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	fs := vfs.NewMem()
	free := uint64(1 << 30)
	_, e := openCapacity(t, fs, clock, &free, StrategyDeleteOldest)
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 24}); err != nil {
		t.Fatal(err)
	}
	frags := captureFragments(t)
	nums := ingest(t, e, "cam", frags, 0)
	// 80 MiB of segments the index knows nothing of (a lost index).
	if err := fs.MkdirAll("/d/media/00000077", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fs.Create("/d/media/00000077/0000000000000001.seg", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 80<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	free = 10 << 20
	rep := e.SweepCapacity()
	if rep.DeletedFragments != 0 || !rep.Refusing || rep.Alarm == "" {
		t.Fatalf("lost index: %+v", rep)
	}
	var held []fragment.Number
	_ = e.FragmentNumbers(StreamRef{Name: "cam"}, fragment.Number{}, func(n fragment.Number) bool { held = append(held, n); return true })
	if len(held) != len(nums) {
		t.Fatalf("%d of %d fragments left", len(held), len(nums))
	}
}
