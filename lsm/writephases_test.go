package lsm

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Stats times every put's steps: its append, its media sync and its index
// commit, once each per put (PutFragment, PutFragmentsAsync) and once per
// window with a sync window (whose fragments share the syncs).
func TestStatsTimeEachStepOfAPut(t *testing.T) {
	steps := func(d *DB) [3]uint64 {
		s := d.Stats()
		return [3]uint64{s.Append.Count(), s.MediaSync.Count(), s.IndexCommit.Count()}
	}
	d := openMem(t)
	id := createTestStream(t, d)
	putTestFragment(t, d, id, 0, 1000, []byte("media0"))
	putTestFragment(t, d, id, 1, 2000, []byte("media1"))
	if got := steps(d); got != [3]uint64{2, 2, 2} {
		t.Fatalf("two puts timed as %v (append, media sync, index commit), want 2 each", got)
	}
	w := FragmentWrite{Meta: testMeta(2, 3000, 6), Media: []byte("media2")}
	p, err := d.PutFragmentsAsync(id, []FragmentWrite{w}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := steps(d); got != [3]uint64{3, 3, 3} {
		t.Fatalf("an async put after two timed as %v, want 3 each", got)
	}

	opts := memOpts(vfs.NewMem())
	opts.SyncWindow = 50 * time.Millisecond
	g, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ids := []StreamID{createTestStream(t, g), createTestStream(t, g)}
	done := make(chan error, 2)
	for _, id := range ids {
		go func() {
			w := FragmentWrite{Meta: testMeta(0, 1000, 6), Media: []byte("media0"), Header: []byte("header")}
			done <- g.PutFragment(id, &w)
		}()
	}
	for range ids {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got, windows := steps(g), g.GroupSyncs(); got != [3]uint64{2, windows, windows} || windows == 0 {
		t.Fatalf("two puts in %d windows timed as %v, want 2 appends and a sync and a commit per window", windows, got)
	}
}

// testMeta is the meta of fragment seq i at ms with n media bytes.
func testMeta(i int, ms int64, n int) fragment.Meta {
	return fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ProducerMs: ms, ServerMs: ms, DurationMs: 1, MediaLen: uint32(n), ClusterLen: uint32(n)}
}
