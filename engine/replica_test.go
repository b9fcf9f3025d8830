package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// replicate imports fragment n of src's stream into dst, as the cluster
// package does with bytes from the wire.
func replicate(t *testing.T, src, dst *Engine, name string, n fragment.Number) (bool, error) {
	t.Helper()
	f, err := src.Fragment(StreamRef{Name: name}, n)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Release()
	media := append(NewMediaBufferFor(len(f.Media))[:0], f.Media...)
	return dst.ImportFragment(StreamRef{Name: name}, f.Meta, f.Header.Raw, media)
}

func TestReplicaImportKeepsNumbersAndOrdersLaterIngest(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, a := openMedia(t, vfs.NewMem(), clock, 1<<20)
	_, b := openMediaNode(t, vfs.NewMem(), clock, 9)
	info, err := a.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := b.ImportStream(info); err != nil || !changed {
		t.Fatalf("ImportStream: %v %v", changed, err)
	}
	if got, _ := b.Stream(StreamRef{Name: "cam"}); got.ARN != info.ARN || got.Version != info.Version || !got.CreationTime.Equal(info.CreationTime) {
		t.Fatalf("copied record %+v, want ARN/version/creation of %+v", got, info)
	}
	frags := captureFragments(t)
	// a's clock runs ahead of b's: b's own term would sort below a's.
	clock.add(time.Hour)
	nums := ingest(t, a, "cam", frags[:3], 1000)
	clock.add(-time.Hour)

	// A live reader on b follows what is imported.
	cur, err := b.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartNow})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nums {
		if ok, err := replicate(t, a, b, "cam", n); err != nil || !ok {
			t.Fatalf("import %s: %v %v", n, ok, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := cur.Next(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if f.Meta.Number != nums[0] {
		t.Fatalf("live reader on the replica got %s, want %s", f.Meta.Number, nums[0])
	}
	f.Release()
	// Importing again stores nothing.
	if ok, err := replicate(t, a, b, "cam", nums[1]); err != nil || ok {
		t.Fatalf("second import: %v %v", ok, err)
	}
	// Tampered media is refused and stores nothing.
	g, _ := a.Fragment(StreamRef{Name: "cam"}, nums[2])
	bad := append(NewMediaBufferFor(len(g.Media))[:0], g.Media...)
	bad[len(bad)/3] ^= 0xff
	m := g.Meta
	m.Number = m.Number.Next()
	if _, err := b.ImportFragment(StreamRef{Name: "cam"}, m, g.Header.Raw, bad); !errors.Is(err, ErrBadReplica) {
		t.Fatalf("tampered fragment: %v", err)
	}
	g.Release()

	// b takes the stream over: its numbers follow a's although its clock
	// is an hour behind.
	more := ingest(t, b, "cam", frags[3:5], 9000)
	for _, n := range more {
		if n.Compare(nums[len(nums)-1]) <= 0 {
			t.Fatalf("b numbered %s, not after a's %s", n, nums[len(nums)-1])
		}
		if n.Node() != 9 {
			t.Fatalf("b numbered %s with node %d", n, n.Node())
		}
	}
	var held []fragment.Number
	if err := b.FragmentNumbers(StreamRef{Name: "cam"}, fragment.Number{}, func(n fragment.Number) bool { held = append(held, n); return true }); err != nil {
		t.Fatal(err)
	}
	if len(held) != 5 {
		t.Fatalf("b holds %d fragments, want 5: %v", len(held), held)
	}
	// And a, importing b's, numbers its next fragment after them too.
	for _, n := range more {
		if ok, err := replicate(t, b, a, "cam", n); err != nil || !ok {
			t.Fatalf("import back %s: %v %v", n, ok, err)
		}
	}
	clock.add(time.Hour) // a's clock is ahead again; still after b's
	back := ingest(t, a, "cam", frags[5:6], 20000)
	if back[0].Compare(more[len(more)-1]) <= 0 {
		t.Fatalf("a numbered %s after taking the stream back, not after %s", back[0], more[len(more)-1])
	}
}

func TestReplicaRegistryUpdatesAndTombstones(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, a := openMedia(t, vfs.NewMem(), clock, 1<<20)
	fsB := vfs.NewMem()
	dbB, b := openMediaNode(t, fsB, clock, 9)
	info, _ := a.CreateStream(CreateStreamInput{Name: "s", DataRetentionInHours: 2})
	if _, err := b.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Second)
	if err := a.UpdateDataRetention(StreamRef{Name: "s"}, "", true, 5); err != nil {
		t.Fatal(err)
	}
	newer, _ := a.Stream(StreamRef{Name: "s"})
	// An older copy does not overwrite a newer one.
	if changed, err := b.ImportStream(info); err != nil || changed {
		t.Fatalf("stale import: %v %v", changed, err)
	}
	if changed, err := b.ImportStream(newer); err != nil || !changed {
		t.Fatalf("newer import: %v %v", changed, err)
	}
	if got, _ := b.Stream(StreamRef{Name: "s"}); got.DataRetentionInHours != 7 || got.Version != newer.Version {
		t.Fatalf("b has %+v", got)
	}
	// Same name, different ARN: refused, b keeps its own.
	clone := *newer
	clone.ARN = StreamARN("us-west-2", "123456789012", "s", 1)
	if _, err := b.ImportStream(&clone); !errors.Is(err, ErrStreamExists) {
		t.Fatalf("conflicting ARN: %v", err)
	}
	// Deleted on a: the tombstone deletes it on b, survives b's restart,
	// and keeps the old record from coming back.
	if err := a.DeleteStream(newer.ARN, ""); err != nil {
		t.Fatal(err)
	}
	for arn, ms := range a.Tombstones() {
		if err := b.ImportTombstone(arn, ms); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Stream(StreamRef{Name: "s"}); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("after the tombstone: %v", err)
	}
	dbB.Close()
	db2, err := lsm.Open(lsm.Options{Dir: "/d", FS: fsB, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	b2, err := openOn(db2, Options{NodeID: 9, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if changed, _ := b2.ImportStream(newer); changed {
		t.Fatal("a deleted stream came back from a stale peer copy")
	}
	if _, ok := b2.Tombstones()[newer.ARN]; !ok {
		t.Fatal("tombstone lost at restart")
	}
}

func openMediaNode(t *testing.T, fs vfs.FS, clock Clock, node uint16) (*lsm.DB, *Engine) {
	t.Helper()
	db, err := lsm.Open(lsm.Options{Dir: "/d", FS: fs, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e, err := openOn(db, Options{Clock: clock, RingBytesPerStream: 1 << 20, NodeID: node})
	if err != nil {
		t.Fatal(err)
	}
	return db, e
}

// TestReplicaConcurrentImportsStoreOnce: the same fragment imported by
// several pullers at once (a tail and anti-entropy) is stored once; an
// older one imported after newer ones reaches ring readers positioned
// before it; a fragment bigger than the largest pooled buffer imports.
func TestReplicaConcurrentImportsStoreOnce(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, a := openMedia(t, vfs.NewMem(), clock, 1<<30)
	_, b := openMediaNode(t, vfs.NewMem(), clock, 9)
	info, _ := a.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1})
	if _, err := b.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	nums := ingest(t, a, "cam", captureFragments(t)[:4], 1000)
	stored := make(chan bool, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := replicate(t, a, b, "cam", nums[0])
			if err != nil {
				t.Error(err)
			}
			stored <- ok
		}()
	}
	wg.Wait()
	close(stored)
	n := 0
	for ok := range stored {
		if ok {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("one fragment imported 8 times at once was stored %d times", n)
	}
	// A reader positioned after #0 while #1 is missing: #3 then the gap
	// fill #2 and #1 arrive; the reader sees #1, #2, #3 in order.
	cur, err := b.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartAfter, Number: nums[0]})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{3, 2, 1} {
		if ok, err := replicate(t, a, b, "cam", nums[i]); err != nil || !ok {
			t.Fatalf("import %d: %v %v", i, ok, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, want := range nums[1:] {
		f, err := cur.Next(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if f.Meta.Number != want {
			t.Fatalf("reader got %s, want %s", f.Meta.Number, want)
		}
		f.Release()
	}
	if buf := NewMediaBufferFor(20 << 20); cap(buf) < 20<<20 {
		t.Fatalf("a 20 MiB fragment got a buffer of %d bytes", cap(buf))
	}
}

// TestReplicaPeerAhead: a session learns when a peer's fragment numbered
// beyond this node's arrives (the home took the stream back), with its
// producer start; older ones (a term before this session's) do not count,
// and a new session starts afresh.
func TestReplicaPeerAhead(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, a := openMedia(t, vfs.NewMem(), clock, 1<<20)
	_, b := openMediaNode(t, vfs.NewMem(), clock, 9)
	info, err := a.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	frags := captureFragments(t)
	old := ingest(t, a, "cam", frags[:1], 1000)
	clock.add(time.Minute)
	sess, err := b.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if ok, err := replicate(t, a, b, "cam", old[0]); err != nil || !ok {
		t.Fatalf("import %s: %v %v", old[0], ok, err)
	}
	if _, ms, ok := sess.PeerAhead(); ok {
		t.Fatalf("a fragment of an older term counts as the peer being ahead (%d)", ms)
	}
	// The home, back, records in a new term.
	clock.add(time.Minute)
	_, h := openMediaNode(t, vfs.NewMem(), clock, 5)
	if _, err := h.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	newer := ingest(t, h, "cam", frags[1:3], 5000)
	for _, n := range newer {
		if ok, err := replicate(t, h, b, "cam", n); err != nil || !ok {
			t.Fatalf("import %s: %v %v", n, ok, err)
		}
	}
	first, err := h.Fragment(StreamRef{Name: "cam"}, newer[0])
	if err != nil {
		t.Fatal(err)
	}
	want := first.Meta.ProducerMs
	first.Release()
	if n, ms, ok := sess.PeerAhead(); !ok || ms != want || n != newer[0] {
		t.Fatalf("PeerAhead = %s %d %v, want %s %d (the first newer fragment)", n, ms, ok, newer[0], want)
	}
	sess2, err := b.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	if _, _, ok := sess2.PeerAhead(); ok {
		t.Fatal("a new session inherits the previous one's PeerAhead")
	}
}
