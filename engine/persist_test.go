package engine

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// TestPersistAsyncStoresInOrder persists twelve received fragments as a
// PutMedia upload does: PersistAsync in batches of three, each chained to
// the batch before and waited for after the next one started. Every
// batch's Wait returns nil, each fragment's durability is reported to
// whoever waits for it, the store lists all twelve in number order and
// reads back each one's media; a batch chained to a failed one (a
// deleted stream) is not stored and gets the same error.
func TestPersistAsyncStoresInOrder(t *testing.T) {
	db, e := openMedia(t, vfs.NewMem(), SystemClock, 0)
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	tmpls := benchTemplates(t)
	producer := int64(1_795_579_974_135)
	receive := func(i int) Received {
		t.Helper()
		num, serverMs, err := sess.StartFragment()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := sess.Receive(num, serverMs, producer+int64(i)*2000, copyFragment(&tmpls[i%len(tmpls)], 0))
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	var (
		prev  *PendingPersist
		recs  []Received
		media [][]byte
	)
	for i := 0; i < 12; i += 3 {
		var batch []*Fragment
		for j := i; j < i+3; j++ {
			rec := receive(j)
			recs = append(recs, rec)
			media = append(media, append([]byte(nil), rec.Fragment.Media...))
			rec.Fragment.Retain() // kept past PersistAsync's release, for AwaitDurable below
			batch = append(batch, rec.Fragment)
		}
		p := sess.PersistAsync(batch, prev)
		if prev != nil {
			if err := prev.Wait(); err != nil {
				t.Fatalf("batch before fragment %d: %v", i, err)
			}
		}
		prev = p
	}
	if err := prev.Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if err := recs[i].AwaitDurable(); err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		recs[i].Fragment.Release()
	}
	id := sess.s.id
	var last fragment.Number
	for i, rec := range recs {
		_, got, err := db.Fragment(id, rec.Meta.Number, nil)
		if err != nil || !bytes.Equal(got, media[i]) {
			t.Fatalf("fragment %d: %d bytes of %d, %v", i, len(got), len(media[i]), err)
		}
		if i > 0 && rec.Meta.Number.Compare(last) <= 0 {
			t.Fatalf("fragment %d numbered %s after %s", i, rec.Meta.Number, last)
		}
		last = rec.Meta.Number
	}

	// A chained batch after a failed one is not stored.
	failed := &PendingPersist{done: make(chan struct{}), err: ErrStreamDeleted}
	close(failed.done)
	rec := receive(12)
	if err := sess.PersistAsync([]*Fragment{rec.Fragment}, failed).Wait(); err != ErrStreamDeleted {
		t.Fatalf("a batch chained to a failed one: %v", err)
	}
	if ok, err := db.HasFragment(id, rec.Meta.Number); err != nil || ok {
		t.Fatalf("the batch chained to a failed one is stored: %v %v", ok, err)
	}
}

// TestIngestFragmentAllocations: a camera's fragment through the engine
// (StartFragment, Receive with its re-send check, Persist, the settle) on
// a stream nobody reads allocates about three times (the Fragment and its
// durability channel; now and then the store's): no index scan for a
// fragment newer than everything stored, no free-space read by path, no
// ring channel nobody waits on, the store's write list on the stack. It
// was 15 before those went (BenchmarkIngestFragment has the figure).
func TestIngestFragmentAllocations(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := lsm.Open(lsm.Options{Dir: filepath.Join(t.TempDir(), "db"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() }) // after the session's (cameraFragments)
	e, err := openOn(db, Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	tmpls, one := cameraFragments(t, e)
	copies := testing.AllocsPerRun(40, func() { e.mem.Free(copyFragment(&tmpls[0], 0).Buf) })
	perFragment := testing.AllocsPerRun(40, one) - copies
	t.Logf("%.1f allocations per fragment", perFragment)
	if perFragment > 4 {
		t.Errorf("%.1f allocations per fragment, want at most 4", perFragment)
	}
}
