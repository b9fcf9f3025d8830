package lsm

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// randomFragments returns a maker of fragment writes numbered i with
// 300 KB of random media (appended to medias); fragment 0 carries the
// header.
func randomFragments(medias *[][]byte) func(i int) FragmentWrite {
	rng := rand.New(rand.NewPCG(1, 2))
	return func(i int) FragmentWrite {
		media := make([]byte, 300_000+rng.IntN(5000))
		for j := range media {
			media[j] = byte(rng.Uint32())
		}
		*medias = append(*medias, media)
		w := FragmentWrite{Meta: fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ProducerMs: int64(1000 * i), ServerMs: int64(1000 * i),
			DurationMs: 1000, MediaLen: uint32(len(media)), ClusterLen: uint32(len(media))}, Media: media}
		binary.BigEndian.PutUint64(w.Meta.Digest[:], xxhash.Sum64(media))
		if i == 0 {
			w.Header = []byte("header")
		}
		return w
	}
}

// TestPutFragmentsSyncWindow: with a sync window, one PutFragments of
// five fragments whose segment rolls in the middle is one group sync, and
// every fragment reads back.
func TestPutFragmentsSyncWindow(t *testing.T) {
	opts := memOpts(vfs.NewMem())
	opts.SegmentBytes, opts.SyncWindow = 1<<20, 20*time.Millisecond
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id := createTestStream(t, d)
	var medias [][]byte
	write := randomFragments(&medias)
	var batch []FragmentWrite
	for i := range 5 {
		batch = append(batch, write(i))
	}
	if err := d.PutFragments(id, batch); err != nil {
		t.Fatal(err)
	}
	if n := d.GroupSyncs(); n != 1 {
		t.Fatalf("%d group syncs for one PutFragments, want 1", n)
	}
	for i, want := range medias {
		_, got, err := d.Fragment(id, fragment.MakeNumber(1, 1, uint32(i)), nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("fragment %d: %d bytes, %v", i, len(got), err)
		}
	}
}

// TestPutFragmentsDirect stores fragments on the real file system (where
// Linux segments are written with O_DIRECT, segdirect.go): five in one
// PutFragments whose segment rolls in the middle, then two alone. Every
// one reads back intact, before and after a reopen; Check finds no problem
// and no unreferenced byte (the padding after the last record is not
// counted); Repair rebuilds all seven with nothing set aside. With direct
// writes every segment file ends on a block boundary.
func TestPutFragmentsDirect(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, FS: vfs.Default, SegmentBytes: 1 << 20}
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	id := createTestStream(t, d)
	var medias [][]byte
	write := randomFragments(&medias)
	var batch []FragmentWrite
	for i := range 5 {
		batch = append(batch, write(i))
	}
	if err := d.PutFragments(id, batch); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 7; i++ {
		w := write(i)
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
	}
	direct := d.segs.direct.Load()
	t.Logf("direct writes: %v", direct)
	readAll := func(d *DB) {
		t.Helper()
		for i, want := range medias {
			_, got, err := d.Fragment(id, fragment.MakeNumber(1, 1, uint32(i)), nil)
			if err != nil {
				t.Fatalf("fragment %d: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("fragment %d: %d bytes read back differ from the %d written", i, len(got), len(want))
			}
		}
	}
	readAll(d)
	check := func(d *DB) {
		t.Helper()
		rep, err := d.Check()
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) > 0 || rep.UnreferencedBytes != 0 || rep.Fragments != 7 {
			t.Fatalf("check: %d fragments, %d unreferenced bytes, problems %+v", rep.Fragments, rep.UnreferencedBytes, rep.Problems)
		}
		if rep.SegmentFiles < 3 {
			t.Fatalf("%d segment files: the 1 MiB segments did not roll", rep.SegmentFiles)
		}
	}
	check(d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, mediaDirName, "*", "*"+segmentSuffix))
	if len(segs) < 3 {
		t.Fatalf("segment files %v", segs)
	}
	if runtime.GOOS == "linux" && direct {
		for _, p := range segs {
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size()%directAlign != 0 {
				t.Errorf("%s: %d bytes, not a whole number of %d-byte blocks: not written directly", p, st.Size(), directAlign)
			}
		}
	}
	rep, err := Repair(opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Fragments != 7 || len(rep.Aside) > 0 {
		t.Fatalf("repair: %d fragments, set aside %+v", rep.Fragments, rep.Aside)
	}
	d, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	readAll(d)
	check(d)
}

// TestPutFragmentsAsyncDirect writes 24 fragments on the real file system
// as a PutMedia upload does (PutFragmentsAsync, batches of three, each put
// chained to the one before and waited for after the next one started),
// into 1 MiB segments, so segments roll while the previous batch's sync
// runs without the stream's lock (direct segments). Every fragment reads
// back intact; Check finds no problem and no unreferenced byte; Repair
// rebuilds all of them with nothing set aside.
func TestPutFragmentsAsyncDirect(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, FS: vfs.Default, SegmentBytes: 1 << 20}
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	id := createTestStream(t, d)
	var medias [][]byte
	write := randomFragments(&medias)
	var prev *PendingPut
	for i := 0; i < 24; i += 3 {
		batch := []FragmentWrite{write(i), write(i + 1), write(i + 2)}
		p, err := d.PutFragmentsAsync(id, batch, prev)
		if err != nil {
			t.Fatal(err)
		}
		if prev != nil {
			if err := prev.Wait(); err != nil {
				t.Fatalf("batch before %d: %v", i, err)
			}
		}
		prev = p
	}
	if err := prev.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("direct writes: %v", d.segs.direct.Load())
	for i, want := range medias {
		_, got, err := d.Fragment(id, fragment.MakeNumber(1, 1, uint32(i)), nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("fragment %d: %d bytes of %d, %v", i, len(got), len(want), err)
		}
	}
	rep, err := d.Check()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) > 0 || rep.UnreferencedBytes != 0 || rep.Fragments != 24 || rep.SegmentFiles < 6 {
		t.Fatalf("check: %d fragments in %d segments, %d unreferenced bytes, problems %+v", rep.Fragments, rep.SegmentFiles, rep.UnreferencedBytes, rep.Problems)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	rrep, err := Repair(opts)
	if err != nil {
		t.Fatal(err)
	}
	if rrep.Fragments != 24 || len(rrep.Aside) > 0 {
		t.Fatalf("repair: %d fragments, set aside %+v", rrep.Fragments, rrep.Aside)
	}
}
