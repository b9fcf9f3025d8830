package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// replayWrite is fragment i of a test stream: its media, meta and (for
// the first) its session header.
func replayWrite(i int, producerMs int64) FragmentWrite {
	m := bytes.Repeat([]byte{byte(i), 0x5A}, 3000+i*10)
	meta := fragment.Meta{Number: fragment.MakeNumber(77, 1, uint32(i)), ProducerMs: producerMs, ServerMs: int64(i) * 1000,
		DurationMs: 1000, HeaderID: 9, ClusterLen: uint32(len(m)), MediaLen: uint32(len(m)), Frames: 25}
	binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(m))
	var h []byte
	if i == 0 {
		h = []byte("session header")
	}
	return FragmentWrite{Meta: meta, Header: h, Media: m}
}

// openStream1 opens a store with opts and stores the record of stream 1.
func openStream1(t *testing.T, opts Options) *DB {
	t.Helper()
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutStream(1, []byte{1}); err != nil {
		_ = d.Close()
		t.Fatal(err)
	}
	return d
}

// putReplayWrites stores replayWrite(i, i s) in stream 1 for i in
// [from, to).
func putReplayWrites(t *testing.T, d *DB, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		w := replayWrite(i, int64(i)*1000)
		if err := d.PutFragment(1, &w); err != nil {
			t.Fatal(err)
		}
	}
}

func replayOpts(fs vfs.FS, window time.Duration) Options {
	return Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20,
		SyncWindow: window, IndexSyncInterval: time.Minute}
}

// crashNow is the store as a crash now would leave it: of what was not
// synced, nothing.
func crashNow(live *vfs.MemFS) *vfs.MemFS {
	return live.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
}

// TestReplayIndexesWhatTheLogLost: fragment commits are not synced, so a
// crash before the checkpointer's sync leaves the index without them;
// Open indexes every one again from its segment record, byte for byte,
// with its header, whether stored one by one, in a sync window or
// pipelined; the store then writes on, and a clean close leaves nothing
// to replay.
func TestReplayIndexesWhatTheLogLost(t *testing.T) {
	for _, mode := range []string{"single", "window", "pipelined"} {
		t.Run(mode, func(t *testing.T) {
			live := vfs.NewCrashableMem()
			window := time.Duration(0)
			if mode == "window" {
				window = 2 * time.Millisecond
			}
			db, err := Open(replayOpts(live, window))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.PutStream(1, []byte{1}); err != nil {
				t.Fatal(err)
			}
			const n = 12
			var prev *PendingPut
			for i := range n {
				w := replayWrite(i, 1_000_000+int64(i)*1000)
				if mode == "pipelined" {
					p, err := db.PutFragmentsAsync(1, []FragmentWrite{w}, prev)
					if err != nil {
						t.Fatal(err)
					}
					prev = p
					continue
				}
				if err := db.PutFragment(1, &w); err != nil {
					t.Fatal(err)
				}
			}
			if prev != nil {
				if err := prev.Wait(); err != nil {
					t.Fatal(err)
				}
			}
			crashed := crashNow(live)
			db.Close()

			// The crash image's index holds none of them: the log was
			// never synced after the stream's record.
			db, err = Open(Options{Dir: "/data", FS: crashed.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 2))}), Logger: slog.New(slog.DiscardHandler), ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok, err := db.LastFragment(1); err != nil || ok {
				t.Fatalf("the crash image's index already holds fragments (%v, %v): the commits were synced", ok, err)
			}
			db.Close()

			db, err = Open(replayOpts(crashed, window))
			if err != nil {
				t.Fatal(err)
			}
			if r := db.Replayed(); r.Indexed != n || r.Streams != 1 || r.Voided != 0 || r.NoHeader != 0 {
				t.Fatalf("replayed %+v, want %d fragments of 1 stream", r, n)
			}
			if got := db.Stats().ReplayedFragments; got != n {
				t.Fatalf("Stats says %d fragments replayed, want %d", got, n)
			}
			for i := range n {
				w := replayWrite(i, 1_000_000+int64(i)*1000)
				m, b, err := db.Fragment(1, w.Meta.Number, nil)
				if err != nil || m != w.Meta || !bytes.Equal(b, w.Media) {
					t.Fatalf("fragment %d after replay: %v", i, err)
				}
				var got []fragment.Meta
				if err := db.ScanTime(1, fragment.ByServerTime, w.Meta.ServerMs, w.Meta.ServerMs, nil, func(m fragment.Meta) bool { got = append(got, m); return true }); err != nil || len(got) != 1 || got[0] != w.Meta {
					t.Fatalf("server-time index of fragment %d after replay: %v %v", i, got, err)
				}
			}
			if h, err := db.Header(1, 9); err != nil || string(h) != "session header" {
				t.Fatalf("header after replay: %q %v", h, err)
			}
			w := replayWrite(n, 1_000_000+n*1000)
			if err := db.PutFragment(1, &w); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db, err = Open(replayOpts(crashed, window))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if r := db.Replayed(); r != (ReplayReport{}) {
				t.Fatalf("after a clean close Open replayed %+v", r)
			}
			if _, _, err := db.Fragment(1, w.Meta.Number, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestCheckpointBoundsReplay: once the checkpointer has run, a crash
// replays only what came after its checkpoint, and fragments retention
// deleted (a synced batch that moves the checkpoint too) do not come back.
func TestCheckpointBoundsReplay(t *testing.T) {
	live := vfs.NewCrashableMem()
	db := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, db, 0, 6)
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	putReplayWrites(t, db, 6, 9)
	crashed := crashNow(live)
	// Retention takes fragments 0-6 (server times 0-6000).
	if n, _, err := db.DeleteBefore(1, 6001); err != nil || n != 7 {
		t.Fatalf("retention deleted %d: %v", n, err)
	}
	afterRetention := crashNow(live)
	db.Close()

	db, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	if r := db.Replayed(); r.Indexed != 3 {
		t.Fatalf("replayed %+v, want the 3 fragments after the checkpoint", r)
	}
	for i := range 9 {
		if ok, err := db.HasFragment(1, replayWrite(i, 0).Meta.Number); err != nil || !ok {
			t.Fatalf("fragment %d missing after replay: %v", i, err)
		}
	}
	db.Close()

	db, err = Open(replayOpts(afterRetention, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 9 {
		ok, err := db.HasFragment(1, replayWrite(i, 0).Meta.Number)
		if err != nil || ok != (i > 6) {
			t.Fatalf("fragment %d after retention and a crash: present %v (%v)", i, ok, err)
		}
	}
}

// TestReplayLeavesOutVoidedRecords: a put chained to a failed one fails
// although its own record was synced; it voids its record before it
// returns, so after a crash Open does not index it beside the re-send the
// producer stored meanwhile under another number (which it does index).
func TestReplayLeavesOutVoidedRecords(t *testing.T) {
	live := vfs.NewCrashableMem()
	var failing atomic.Bool
	db := openStream1(t, replayOpts(failingSegmentSyncs(live, &failing), 0))
	failing.Store(true)
	first := replayWrite(0, 5000)
	p1, err := db.PutFragmentsAsync(1, []FragmentWrite{first}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p1.Wait(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a put whose segment sync failed: %v", err)
	}
	failing.Store(false)
	// Chained to the failed one: its record is synced (a new segment),
	// its batch not committed.
	second := replayWrite(1, 6000)
	p2, err := db.PutFragmentsAsync(1, []FragmentWrite{second}, p1)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Wait(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a put chained to a failed one: %v", err)
	}
	// The producer's re-send of the second, under a new number.
	resend := second
	resend.Header = []byte("session header")
	resend.Meta.Number = fragment.MakeNumber(78, 1, 0)
	if err := db.PutFragment(1, &resend); err != nil {
		t.Fatal(err)
	}
	crashed := crashNow(live)
	db.Close()

	db, err = Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if r := db.Replayed(); r.Indexed != 1 || r.Voided != 1 {
		t.Fatalf("replayed %+v, want the re-send indexed and the failed put's record voided", r)
	}
	for _, c := range []struct {
		n    fragment.Number
		want bool
	}{{first.Meta.Number, false}, {second.Meta.Number, false}, {resend.Meta.Number, true}} {
		if ok, err := db.HasFragment(1, c.n); err != nil || ok != c.want {
			t.Fatalf("fragment %s: present %v, want %v (%v)", c.n, ok, c.want, err)
		}
	}
}

// TestReplayKeepsWhatWasReplaced: a fragment that replaced a partial copy
// deletes it in its batch; when that batch is lost, replay deletes it
// again; when it is not, replay does not bring the partial copy back.
func TestReplayKeepsWhatWasReplaced(t *testing.T) {
	for _, lost := range []bool{true, false} {
		live := vfs.NewCrashableMem()
		db, err := Open(replayOpts(live, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.PutStream(1, []byte{1}); err != nil {
			t.Fatal(err)
		}
		partial := replayWrite(0, 5000)
		if err := db.PutFragment(1, &partial); err != nil {
			t.Fatal(err)
		}
		if !lost {
			// Its entries durable, and then the partial copy's record
			// lies after the checkpoint with the replacing one's.
			if err := db.db.LogData(nil, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		whole := replayWrite(1, 5000)
		whole.Meta.Number = fragment.MakeNumber(77, 1, 5)
		whole.Replaces = []fragment.Meta{partial.Meta}
		if err := db.PutFragment(1, &whole); err != nil {
			t.Fatal(err)
		}
		if !lost {
			if err := db.db.LogData(nil, pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}
		crashed := crashNow(live)
		db.Close()
		db, err = Open(replayOpts(crashed, 0))
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := db.HasFragment(1, partial.Meta.Number); err != nil || ok {
			t.Fatalf("lost=%v: the replaced partial copy is back (%v)", lost, err)
		}
		if ok, err := db.HasFragment(1, whole.Meta.Number); err != nil || !ok {
			t.Fatalf("lost=%v: the replacing fragment is missing (%v)", lost, err)
		}
		db.Close()
	}
}

// TestCheckpointWaitsForPutsInFlight: while a put waits in a sync window,
// the checkpoint the checkpointer writes stays at the put's first record
// (before the stream's end); once it resolves, the next one is the end.
func TestCheckpointWaitsForPutsInFlight(t *testing.T) {
	db, err := Open(replayOpts(vfs.NewMem(), 300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.group.window = time.Hour // flushed by hand below
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	// One fragment stored, so the stream's end is past the start record.
	w0 := replayWrite(0, 1000)
	done0 := make(chan error, 1)
	go func() { done0 <- db.PutFragment(1, &w0) }()
	ss := db.segs.stream(1)
	waitInflight := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; {
			ss.mu.Lock()
			k := len(ss.inflight)
			ss.mu.Unlock()
			if k == n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d puts in flight, want %d", k, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitInflight(1)
	db.group.flush()
	if err := <-done0; err != nil {
		t.Fatal(err)
	}
	stored := func() segmentRef {
		t.Helper()
		cp, ok, err := db.checkpoint(1)
		if err != nil || !ok {
			t.Fatalf("checkpoint: %v %v", ok, err)
		}
		return cp
	}
	ss.mu.Lock()
	firstOfNext := segmentRef{Seq: ss.activeSeq, Offset: uint64(ss.activeSize)}
	ss.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	w1 := replayWrite(1, 2000)
	go func() {
		defer wg.Done()
		if err := db.PutFragment(1, &w1); err != nil {
			t.Error(err)
		}
	}()
	waitInflight(1)
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got != firstOfNext {
		t.Fatalf("checkpoint %+v while the put is in flight, want its first record %+v", got, firstOfNext)
	}
	db.group.flush()
	wg.Wait()
	ss.mu.Lock()
	end := segmentRef{Seq: ss.activeSeq, Offset: uint64(ss.activeSize)}
	ss.mu.Unlock()
	if !firstOfNext.before(end) {
		t.Fatalf("the end %+v is not after the put's first record %+v", end, firstOfNext)
	}
	if err := db.ckpt.run(); err != nil {
		t.Fatal(err)
	}
	if got := stored(); got != end {
		t.Fatalf("checkpoint %+v after the put resolved, want the end %+v", got, end)
	}
}

// TestCheckpointerRunsOnlyAfterPuts: a put that resolves arms the
// checkpointer, which writes the moved checkpoint one interval later; an
// idle store's checkpointer is not armed and writes nothing (no wake-up a
// second on an idle box).
func TestCheckpointerRunsOnlyAfterPuts(t *testing.T) {
	opts := replayOpts(vfs.NewMem(), 0)
	opts.IndexSyncInterval = 20 * time.Millisecond
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	syncs := func() int {
		db.ckpt.mu.Lock()
		defer db.ckpt.mu.Unlock()
		return db.ckpt.syncs
	}
	w := replayWrite(0, 1000)
	if err := db.PutFragment(1, &w); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); syncs() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the checkpointer never ran after a put")
		}
	}
	cp, ok, err := db.checkpoint(1)
	ss := db.segs.stream(1)
	ss.mu.Lock()
	end, _ := ss.replayFrom()
	ss.mu.Unlock()
	if err != nil || !ok || cp != end {
		t.Fatalf("checkpoint %+v (%v, %v) after the run, want the stream's end %+v", cp, ok, err, end)
	}
	n := syncs()
	time.Sleep(5 * opts.IndexSyncInterval)
	if got := syncs(); got != n || db.ckpt.armed.Load() {
		t.Fatalf("an idle store's checkpointer ran %d more times (armed %v)", got-n, db.ckpt.armed.Load())
	}
}
