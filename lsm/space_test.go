package lsm

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// spaceFS is an in-memory filesystem whose free space the test sets; the
// reserve file's bytes are taken from it while the file exists.
type spaceFS struct {
	vfs.FS
	avail *atomic.Int64
}

func (f spaceFS) GetDiskUsage(string) (vfs.DiskUsage, error) {
	a := f.avail.Load()
	if _, err := f.FS.Stat("/data/" + reserveFile); err == nil {
		a -= 16 << 20
	}
	return vfs.DiskUsage{AvailBytes: uint64(max(a, 0)), TotalBytes: 1 << 30}, nil
}

// TestSpaceGuard walks the disk-full rules: the reserve is made when there
// is room; a disk found full releases it, refuses media but lets small
// writes use the room; a disk full to the last byte refuses every write
// but deletions; room again restores the reserve and media; a store opened
// on a full disk is read-only.
func TestSpaceGuard(t *testing.T) {
	avail := new(atomic.Int64)
	avail.Store(100 << 20)
	fs := spaceFS{FS: vfs.NewMem(), avail: avail}
	opts := Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, ReserveBytes: 16 << 20}
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Space().ReserveHeld {
		t.Fatal("no reserve made with 100 MiB free")
	}
	id := createTestStream(t, d)
	putTestFragment(t, d, id, 0, 1000, []byte{1})

	avail.Store(16<<20 + 2<<20) // something else filled the disk: 2 MiB left beside the reserve
	err = d.PutFragment(id, &FragmentWrite{Meta: fragment.Meta{Number: fragment.MakeNumber(1, 1, 1), ProducerMs: 2000, ServerMs: 2000, MediaLen: 1, ClusterLen: 1}, Media: []byte{2}})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("media on a full disk: %v", err)
	}
	if d.Space().ReserveHeld {
		t.Fatal("the reserve was not released on a full disk")
	}
	if err := d.PutStream(id, []byte("s2")); err != nil {
		t.Fatalf("a small write with the reserve released: %v", err)
	}
	avail.Store(512 << 10) // full to the last half MiB
	if err := d.PutStream(id, []byte("s3")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("a write on a disk with 512 KiB free: %v", err)
	}
	if _, _, err := d.DeleteBefore(id, 1500); err != nil {
		t.Fatalf("a deletion on a full disk: %v", err)
	}
	avail.Store(100 << 20) // the other writer's file is gone
	if err := d.MediaSpace(); err != nil {
		t.Fatalf("media with room again: %v", err)
	}
	if !d.Space().ReserveHeld {
		t.Fatal("the reserve was not made again")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	avail.Store(1 << 20) // restarted on a full disk
	d, err = Open(opts)
	if err != nil {
		t.Fatalf("opening on a full disk: %v", err)
	}
	defer d.Close()
	if !d.ReadOnly() || d.ReadOnlyCanWrite() {
		t.Fatalf("read-only %v, can write %v", d.ReadOnly(), d.ReadOnlyCanWrite())
	}
	if _, err := d.Streams(); err != nil {
		t.Fatalf("reading a read-only store: %v", err)
	}
	if err := d.PutStream(id, []byte("s4")); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("writing a read-only store: %v", err)
	}
	avail.Store(100 << 20)
	if !d.ReadOnlyCanWrite() {
		t.Fatal("room again is not reported")
	}
}

// TestRoomForHoldsWhatItGrants: two streams preparing segments at once
// each see the same free space; roomFor holds what it granted until the
// preallocation is made (release), so the second is refused when the disk
// has room for one only, and granted once the first is released.
func TestRoomForHoldsWhatItGrants(t *testing.T) {
	avail := new(atomic.Int64)
	const seg = 64 << 20
	avail.Store(lowWater + restoreSlack + seg + seg/2)
	g := newSpaceGuard(spaceFS{FS: vfs.NewMem(), avail: avail}, "/data", 0)
	release, ok := g.roomFor(seg)
	if !ok {
		t.Fatal("no room for one segment")
	}
	if _, ok := g.roomFor(seg); ok {
		t.Fatal("room for a second segment while the first is being preallocated")
	}
	avail.Add(-seg) // the first preallocation shows in the free space
	release()
	release() // a second call changes nothing
	if _, ok := g.roomFor(seg); ok {
		t.Fatal("room for a segment after the first took the space")
	}
	avail.Add(seg)
	if r, ok := g.roomFor(seg); !ok {
		t.Fatal("no room after the space came back")
	} else {
		r()
	}
}

// An Open that fails closes what it opened: the space guard's descriptor
// of the data directory is not left to a finalizer (each failed Open of
// a box retrying would hold one more).
func TestFailedOpenClosesItsDescriptors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// An index that is a file, not a directory: Pebble cannot open it.
	if err := os.WriteFile(filepath.Join(dir, indexDirName), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd")
		}
		return len(es)
	}
	before := fds()
	for range 5 {
		if d, err := Open(Options{Dir: dir}); err == nil {
			d.Close()
			t.Fatal("Open succeeded with a file for an index")
		}
	}
	if after := fds(); after > before {
		t.Fatalf("%d descriptors open after 5 failed Opens, %d before", after, before)
	}
}
