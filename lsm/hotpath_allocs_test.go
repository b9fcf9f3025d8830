package lsm

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// The space guard reads the free space of the operating system's
// filesystem through an open descriptor: the same figures as statfs by
// path, without an allocation (it runs twice per fragment).
func TestSpaceGuardReadsFreeSpaceWithoutAllocating(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	g := d.space
	if g.statDir == nil {
		_ = d.Close()
		t.Skip("no descriptor-based free-space read on this system")
	}
	got, err := g.usage()
	if err != nil {
		t.Fatal(err)
	}
	want, err := vfs.Default.GetDiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.TotalBytes != want.TotalBytes || got.TotalBytes == 0 {
		t.Errorf("total %d bytes, statfs by path says %d", got.TotalBytes, want.TotalBytes)
	}
	// Free space moves with other writers on a shared machine: within 1 GiB.
	if diff := int64(got.AvailBytes) - int64(want.AvailBytes); diff > 1<<30 || diff < -1<<30 {
		t.Errorf("available %d bytes, statfs by path says %d", got.AvailBytes, want.AvailBytes)
	}
	g.mu.Lock()
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := g.availLocked(); err != nil {
			t.Fatal(err)
		}
	})
	g.mu.Unlock()
	if allocs != 0 {
		t.Errorf("reading the free space allocates %.1f times", allocs)
	}
	// Closed, the store still answers (by path): a late metrics scrape.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if du, err := g.usage(); err != nil || du.TotalBytes != want.TotalBytes {
		t.Errorf("after Close: %+v, %v", du, err)
	}
}

// A fragment record's prefix is built in the caller's buffer, and with
// its media it is a whole record (replaced numbers included).
func TestFragmentRecordPrefixAllocatesNothing(t *testing.T) {
	m := fragment.Meta{Number: fragment.MakeNumber(7, 1, 3), ProducerMs: 1000, ServerMs: 1001, DurationMs: 2000, MediaLen: 11, ClusterLen: 11}
	replaces := []fragment.Meta{{Number: fragment.MakeNumber(7, 1, 1)}, {Number: fragment.MakeNumber(7, 1, 2)}}
	media := []byte("media bytes")
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		buf = fragmentRecordPrefix(buf[:0], &m, replaces, media)
	})
	if allocs != 0 {
		t.Errorf("a fragment record prefix allocates %.1f times", allocs)
	}
	rec := append([]byte("junk"), buf...)
	rec = fragmentRecordPrefix(rec[:4], &m, replaces, media)
	rec = append(rec, media...)
	kind, payload, n, err := parseRecord(rec[4:])
	if err != nil || kind != kindFragment || n != len(rec)-4 {
		t.Fatalf("parsed kind %d, %d of %d bytes: %v", kind, n, len(rec)-4, err)
	}
	want := appendMeta(nil, &m)
	want = append(want, 0, 2)
	want = append(append(want, replaces[0].Number[:]...), replaces[1].Number[:]...)
	want = append(want, media...)
	if !bytes.Equal(payload, want) {
		t.Errorf("payload %x, want %x", payload, want)
	}
}

// The checkpointer runs every second while fragments are stored: a run
// that writes the moved checkpoints of 8 streams allocates nothing once
// its scratch has grown (Pebble's batch comes from its pool).
func TestCheckpointRunAllocatesNothing(t *testing.T) {
	d, err := Open(Options{Dir: "/data", FS: vfs.NewMem(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, IndexSyncInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const streams = 8
	var sss []*streamSegments
	for id := StreamID(1); id <= streams; id++ {
		if err := d.PutStream(id, []byte{1}); err != nil {
			t.Fatal(err)
		}
		w := replayWrite(0, 1000)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
		sss = append(sss, d.segs.stream(id))
	}
	if err := d.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	syncs := d.ckpt.syncs
	// Each run finds every stream's end moved (as appends would move it).
	allocs := testing.AllocsPerRun(50, func() {
		for _, ss := range sss {
			ss.mu.Lock()
			ss.activeSize++
			ss.mu.Unlock()
		}
		if err := d.ckpt.run(); err != nil {
			t.Fatal(err)
		}
	})
	if d.ckpt.syncs-syncs < 50 {
		t.Fatalf("%d checkpoint batches for 51 runs that moved every checkpoint", d.ckpt.syncs-syncs)
	}
	if allocs != 0 {
		t.Errorf("a checkpoint run allocates %.1f times", allocs)
	}
}

// A fragment stored through PutFragments allocates nothing once the
// stream's segment is open, and the caller's slice of writes stays on the
// caller's stack (the put keeps its fragments' numbers, not the slice: a
// kept slice made the engine's array of writes escape, one allocation per
// fragment).
func TestPutFragmentsAllocatesNothing(t *testing.T) {
	d, err := Open(Options{Dir: filepath.Join(t.TempDir(), "data")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	first := replayWrite(0, 0)
	if err := d.PutFragment(1, &first); err != nil {
		t.Fatal(err)
	}
	media := bytes.Repeat([]byte{0x5A}, 6000)
	meta := first.Meta
	meta.MediaLen, meta.ClusterLen = uint32(len(media)), uint32(len(media))
	i := uint32(0)
	allocs := testing.AllocsPerRun(100, func() {
		i++
		var ws [1]FragmentWrite
		ws[0] = FragmentWrite{Meta: meta, Media: media}
		ws[0].Meta.Number = fragment.MakeNumber(77, 1, i)
		ws[0].Meta.ProducerMs = int64(i) * 1000
		if err := d.PutFragments(1, ws[:]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("PutFragments allocates %.1f times per fragment", allocs)
	}
}
