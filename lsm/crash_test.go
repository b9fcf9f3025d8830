package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestCrashKeepsEverySyncedFragment writes fragments on Pebble's crashable
// in-memory filesystem and takes crash images of it while writes are in
// flight (keeping a random share of what was not synced, as a real crash
// may): every fragment whose PutFragment had returned before the crash is
// readable, byte for byte, from the image, which opens cleanly; writing
// then goes on.
func TestCrashKeepsEverySyncedFragment(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		crashOnce(t, seed, 0)
	}
}

// TestCrashKeepsEverySyncedFragmentWithSyncWindow: the same with grouped
// syncs (the SD-card profiles).
func TestCrashKeepsEverySyncedFragmentWithSyncWindow(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		crashOnce(t, seed, 3*time.Millisecond)
	}
}

// TestCrashKeepsEverySyncedFragmentPipelined: the same with the writes of
// a PutMedia upload (PutFragmentsAsync, each put chained to the one before
// and acknowledged when its Wait returns, while the next one is already
// being written), with and without a sync window.
func TestCrashKeepsEverySyncedFragmentPipelined(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		crashOnceWith(t, seed, 0, true)
		crashOnceWith(t, seed, 3*time.Millisecond, true)
	}
}

func crashOnce(t *testing.T, seed int64, window time.Duration) {
	crashOnceWith(t, seed, window, false)
}

func crashOnceWith(t *testing.T, seed int64, window time.Duration, pipelined bool) {
	live := vfs.NewCrashableMem()
	fs := live
	open := func() *DB {
		db, err := Open(Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SyncWindow: window})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	// A stream record: media of streams without one is removed at Open.
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	media := func(i int) []byte {
		b := bytes.Repeat([]byte{byte(i)}, 50_000+(i%50)*1000)
		copy(b, []byte{0x1F, 0x43, 0xB6, 0x75})
		return b
	}
	write := func(i int) FragmentWrite {
		m := media(i)
		meta := fragment.Meta{Number: fragment.MakeNumber(1000+uint64(seed), 1, uint32(i)), ProducerMs: int64(i) * 2000, ServerMs: int64(i) * 2000,
			DurationMs: 2000, HeaderID: 7, ClusterLen: uint32(len(m)), MediaLen: uint32(len(m)), Frames: 50}
		binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
		var hdr []byte
		if i == 0 {
			hdr = []byte("header")
		}
		return FragmentWrite{Meta: meta, Header: hdr, Media: m}
	}
	put := func(db *DB, i int) ([]fragment.Meta, error) {
		w := write(i)
		return []fragment.Meta{w.Meta}, db.PutFragment(1, &w)
	}
	// In the pipelined mode the writer keeps one put in flight after the
	// first fragment (which carries the header, and is acknowledged alone
	// so the crash comes after it): it starts fragment i (chained to the
	// one in flight), then waits for that one and acknowledges it.
	var inflight *PendingPut
	var inflightMeta fragment.Meta
	if pipelined {
		put = func(db *DB, i int) ([]fragment.Meta, error) {
			w := write(i)
			p, err := db.PutFragmentsAsync(1, []FragmentWrite{w}, inflight)
			if err != nil {
				return nil, err
			}
			prev, prevMeta := inflight, inflightMeta
			inflight, inflightMeta = p, w.Meta
			switch {
			case i == 0:
				inflight = nil
				return []fragment.Meta{w.Meta}, p.Wait()
			case prev == nil:
				return nil, nil
			}
			return []fragment.Meta{prevMeta}, prev.Wait()
		}
	}
	var (
		mu     sync.Mutex
		stored []fragment.Meta
		putErr error // set before done is closed
	)
	stop := make(chan struct{})
	done := make(chan struct{})
	firstAcked := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ms, err := put(db, i)
			if err != nil {
				putErr = err
				return
			}
			mu.Lock()
			stored = append(stored, ms...)
			mu.Unlock()
			if i == 0 {
				close(firstAcked)
			}
		}
	}()
	// The crash comes at a random point while writes are in flight, once
	// at least one fragment (the one carrying the header) was acknowledged,
	// however slowly the machine runs.
	select {
	case <-firstAcked:
	case <-done:
		t.Fatalf("writing stopped before the first fragment was stored: %v", putErr)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	time.Sleep(time.Duration(5+rng.IntN(30)) * time.Millisecond)
	mu.Lock()
	acked := append([]fragment.Meta(nil), stored...)
	mu.Unlock()
	crashed := live.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rng})
	close(stop)
	<-done
	if putErr != nil {
		t.Fatalf("writing before the crash: %v", putErr)
	}
	db.Close()
	if len(acked) == 0 {
		t.Fatal("no fragment acknowledged before the crash")
	}

	fs = crashed
	db = open()
	defer db.Close()
	for i, m := range acked {
		got, b, err := db.Fragment(1, m.Number, nil)
		if err != nil {
			t.Fatalf("fragment %d after the crash: %v", i, err)
		}
		if got != m || !bytes.Equal(b, media(i)) {
			t.Fatalf("fragment %d differs after the crash", i)
		}
	}
	if h, err := db.Header(1, 7); err != nil || string(h) != "header" {
		t.Fatalf("header after the crash: %q %v", h, err)
	}
	// Writing goes on in a new segment.
	w := write(1000)
	if err := db.PutFragment(1, &w); err != nil {
		t.Fatalf("writing after the restart: %v", err)
	}
	if _, b, err := db.Fragment(1, w.Meta.Number, nil); err != nil || !bytes.Equal(b, media(1000)) {
		t.Fatalf("fragment written after the restart: %v", err)
	}
}

// TestOpenRemovesOrphanMedia: media left behind by a crash in the middle
// of DeleteStream (the index batch synced, the directory not yet removed)
// is removed at the next Open; a live stream's media stays, and so does
// media that nothing in the index accounts for.
func TestOpenRemovesOrphanMedia(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{7}, 1000)
	meta := fragment.Meta{Number: fragment.MakeNumber(1, 1, 0), ClusterLen: 1000, MediaLen: 1000}
	binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
	if err := db.PutFragment(1, &FragmentWrite{Meta: meta, Media: m}); err != nil {
		t.Fatal(err)
	}
	// A deleted stream's leftovers (its marker written with the record's
	// deletion, the directory not yet removed), and media no record or
	// marker accounts for (a lost index).
	if err := db.db.Set(metaKey(deletedPrefix+"00000009"), nil, nil); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, dir := range []string{"/data/media/00000009", "/data/media/0000000a"} {
		if err := fs.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	db, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := fs.Stat("/data/media/00000009"); err == nil {
		t.Fatal("a deleted stream's media directory is still there")
	}
	if _, err := fs.Stat("/data/media/0000000a"); err != nil {
		t.Fatal("media the index does not know was deleted")
	}
	if _, b, err := db.Fragment(1, meta.Number, nil); err != nil || !bytes.Equal(b, m) {
		t.Fatalf("live stream's media after Open: %v", err)
	}
}

// TestSyncWindowGroupsConcurrentStreams: fragments of concurrent streams
// stored within one window share its syncs, and every one is readable.
func TestSyncWindowGroupsConcurrentStreams(t *testing.T) {
	db, err := Open(Options{Dir: "/data", FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SyncWindow: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const streams, each = 8, 5
	var wg sync.WaitGroup
	for s := StreamID(1); s <= streams; s++ {
		if err := db.PutStream(s, []byte{1}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := bytes.Repeat([]byte{byte(s), byte(i)}, 5000)
				meta := fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ServerMs: int64(i), ClusterLen: uint32(len(m)), MediaLen: uint32(len(m)), HeaderID: 1}
				binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
				if err := db.PutFragment(s, &FragmentWrite{Meta: meta, Media: m, Header: []byte("h")}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := db.GroupSyncs(); n == 0 || n >= streams*each {
		t.Fatalf("%d group syncs for %d fragments", n, streams*each)
	}
	for s := StreamID(1); s <= streams; s++ {
		for i := range each {
			_, b, err := db.Fragment(s, fragment.MakeNumber(1, 1, uint32(i)), nil)
			if err != nil || !bytes.Equal(b, bytes.Repeat([]byte{byte(s), byte(i)}, 5000)) {
				t.Fatalf("stream %d fragment %d: %v", s, i, err)
			}
		}
	}
}

// TestSyncWindowCloseWithPendingFragment: closing the store while a
// fragment waits in a sync window makes it durable (or fails it) at once;
// the window's timer firing later does nothing.
func TestSyncWindowCloseWithPendingFragment(t *testing.T) {
	fs := vfs.NewMem()
	opts := Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SyncWindow: 300 * time.Millisecond}
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	// A window far longer than the test (more than Options allows), so the
	// fragment is still pending when Close comes however slowly the
	// machine runs.
	db.group.window = time.Hour
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	m := bytes.Repeat([]byte{9}, 4000)
	meta := fragment.Meta{Number: fragment.MakeNumber(1, 1, 0), ClusterLen: 4000, MediaLen: 4000}
	binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
	done := make(chan error, 1)
	go func() { done <- db.PutFragment(1, &FragmentWrite{Meta: meta, Media: m}) }()
	// Wait until the fragment waits in the window.
	g := db.group
	for deadline := time.Now().Add(10 * time.Second); ; {
		g.mu.Lock()
		pending := len(g.waiters)
		g.mu.Unlock()
		if pending == 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("PutFragment returned before its window closed: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the fragment never reached the sync window")
		}
		time.Sleep(time.Millisecond)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the pending fragment: %v", err)
	}
	if n := db.GroupSyncs(); n != 1 {
		t.Fatalf("%d group syncs, want the one Close ran", n)
	}
	// What the window's timer runs when it fires, on the closed store.
	g.flush()
	if n := db.GroupSyncs(); n != 1 {
		t.Fatalf("the timer's flush after Close synced again (%d group syncs)", n)
	}
	db, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, b, err := db.Fragment(1, meta.Number, nil); err != nil || !bytes.Equal(b, m) {
		t.Fatalf("the fragment flushed at Close: %v", err)
	}
}

// TestSyncWindowSegmentSyncFailure: when a segment's fdatasync fails in a
// window, the fragment appended to it is not reported stored (and not
// indexed); writing goes on in a new segment.
func TestSyncWindowSegmentSyncFailure(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpFileSyncData && strings.HasSuffix(op.Path, segmentSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	db, err := Open(Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SyncWindow: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	put := func(i int) (fragment.Meta, error) {
		m := bytes.Repeat([]byte{byte(i)}, 3000)
		meta := fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ServerMs: int64(i), ClusterLen: 3000, MediaLen: 3000}
		binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
		return meta, db.PutFragment(1, &FragmentWrite{Meta: meta, Media: m})
	}
	failing.Store(true)
	bad, err := put(0)
	if !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a fragment whose segment sync failed: %v", err)
	}
	failing.Store(false)
	good, err := put(1)
	if err != nil {
		t.Fatalf("the next fragment: %v", err)
	}
	if ok, _ := db.HasFragment(1, bad.Number); ok {
		t.Fatal("the fragment whose media sync failed is indexed")
	}
	if _, b, err := db.Fragment(1, good.Number, nil); err != nil || len(b) != 3000 {
		t.Fatalf("the fragment after the failure: %v", err)
	}
}

// TestPutFragmentsAsyncAfterFailure: when a put's segment sync fails, the
// put chained to it is not indexed either (its Wait returns the first
// one's error), though its own media may have synced; a later put that is
// not chained to them is stored, in a new segment.
func TestPutFragmentsAsyncAfterFailure(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpFileSyncData && strings.HasSuffix(op.Path, segmentSuffix) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	db, err := Open(Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	write := func(i int) FragmentWrite {
		m := bytes.Repeat([]byte{byte(i)}, 3000)
		meta := fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ServerMs: int64(i), ClusterLen: 3000, MediaLen: 3000}
		binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
		return FragmentWrite{Meta: meta, Media: m}
	}
	failing.Store(true)
	first, err := db.PutFragmentsAsync(1, []FragmentWrite{write(0)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The first put's sync fails: the segment is closed, so the chained
	// put below begins a new segment, whose sync succeeds.
	if err := first.Wait(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a put whose segment sync failed: %v", err)
	}
	failing.Store(false)
	second, err := db.PutFragmentsAsync(1, []FragmentWrite{write(1)}, first)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a put chained to a failed one: %v", err)
	}
	third, err := db.PutFragmentsAsync(1, []FragmentWrite{write(2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.Wait(); err != nil {
		t.Fatalf("a put after the failure: %v", err)
	}
	for i, want := range []bool{false, false, true} {
		if ok, err := db.HasFragment(1, fragment.MakeNumber(1, 1, uint32(i))); err != nil || ok != want {
			t.Fatalf("fragment %d indexed: %v (%v), want %v", i, ok, err, want)
		}
	}
}
