package lsm

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

func memOpts(fs vfs.FS) Options {
	return Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}
}

func TestStreamsRoundTripAndIDs(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(memOpts(fs))
	if err != nil {
		t.Fatal(err)
	}
	var ids []StreamID
	for i := 0; i < 3; i++ {
		id, err := db.AllocStreamID()
		if err != nil {
			t.Fatal(err)
		}
		if err := db.PutStream(id, []byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if ids[0] != 1 || ids[2] != 3 {
		t.Fatalf("ids %v", ids)
	}
	if err := db.DeleteStream(ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(memOpts(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Streams()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 || recs[0].ID != 1 || !bytes.Equal(recs[0].Value, []byte("a")) || recs[1].ID != 3 {
		t.Fatalf("records %+v", recs)
	}
	// Ids are never reused, even the deleted one's.
	id, _ := db.AllocStreamID()
	if id != 4 {
		t.Fatalf("next id %d, want 4", id)
	}
}

// TestCrashKeepsSyncedStreams drops every unsynced write (strict MemFS) and
// checks that what PutStream returned for survives.
func TestCrashKeepsSyncedStreams(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db, err := Open(memOpts(fs))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := db.AllocStreamID()
	if err := db.PutStream(id, []byte("synced")); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	_ = db.Close()

	db, err = Open(memOpts(crashed))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Streams()
	if err != nil || len(recs) != 1 || string(recs[0].Value) != "synced" {
		t.Fatalf("after crash: %v %+v", err, recs)
	}
	next, _ := db.AllocStreamID()
	if next != 2 {
		t.Fatalf("id counter after crash: %d", next)
	}
}

func TestSchemaVersionChecks(t *testing.T) {
	fs := vfs.NewMem()
	db, err := Open(memOpts(fs))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.putUint32(metaKey(metaSchemaVersion), SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := Open(memOpts(fs)); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("newer schema: %v", err)
	}

	// A store with data but no version is refused, never treated as new.
	fs2 := vfs.NewMem()
	if err := fs2.MkdirAll("/data", 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := pebble.Open("/data", &pebble.Options{FS: fs2, FormatMajorVersion: pebble.FormatValueSeparation})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Set(streamKey(7), []byte{1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if _, err := Open(memOpts(fs2)); err == nil {
		t.Fatal("store without schema version opened")
	}
}

func TestStreamSpanCoversOnlyOneStream(t *testing.T) {
	start, end := streamSpan(prefixFragment, 5)
	in := append(append([]byte{}, start...), 0xff, 0xff)
	if bytes.Compare(in, start) < 0 || bytes.Compare(in, end) >= 0 {
		t.Fatal("key of stream 5 outside its span")
	}
	_, end4 := streamSpan(prefixFragment, 4)
	if !bytes.Equal(end4, start) {
		t.Fatal("spans of 4 and 5 not adjacent")
	}
	_, endMax := streamSpan(prefixFragment, ^StreamID(0))
	if endMax[0] != prefixFragment+1 {
		t.Fatalf("span of the last id ends at %x", endMax)
	}
}

// TestDeleteBeforeMoreThanOneBatch: retention past more fragments than one
// batch deletes every one of them from all three tables (an earlier scan
// limit left fragment records and producer-index entries behind, which no
// later sweep found), and ScanTime has no hidden limit.
func TestDeleteBeforeMoreThanOneBatch(t *testing.T) {
	d := openMem(t)
	id := createTestStream(t, d)
	const total = retentionBatch + 904
	for i := 0; i < total; i++ {
		putTestFragment(t, d, id, i, int64(1000+i), []byte{byte(i)})
	}
	seen := 0
	if err := d.ScanTime(id, fragment.ByServerTime, 0, 1<<40, nil, func(fragment.Meta) bool { seen++; return true }); err != nil {
		t.Fatal(err)
	}
	if seen != total {
		t.Fatalf("ScanTime saw %d of %d", seen, total)
	}
	// Everything but the last 4 goes.
	n, _, err := d.DeleteBefore(id, int64(1000+total-4))
	if err != nil {
		t.Fatal(err)
	}
	if n != total-4 {
		t.Fatalf("deleted %d, want %d", n, total-4)
	}
	for _, idx := range []fragment.TimeIndex{fragment.ByServerTime, fragment.ByProducerTime} {
		left := 0
		if err := d.ScanTime(id, idx, 0, 1<<40, nil, func(fragment.Meta) bool { left++; return true }); err != nil {
			t.Fatal(err)
		}
		if left != 4 {
			t.Fatalf("index %d keeps %d entries, want 4", idx, left)
		}
	}
	records := 0
	if err := d.FragmentNumbers(id, fragment.Number{}, func(fragment.Number) bool { records++; return true }); err != nil {
		t.Fatal(err)
	}
	if records != 4 {
		t.Fatalf("%d fragment records left, want 4", records)
	}
	// Backward scans return the newest first.
	var newest []int64
	if err := d.ScanTimeBackward(id, fragment.ByServerTime, 0, 1<<40, func(m fragment.Meta) bool {
		newest = append(newest, m.ServerMs)
		return len(newest) < 2
	}); err != nil {
		t.Fatal(err)
	}
	if len(newest) != 2 || newest[0] != int64(1000+total-1) || newest[1] != int64(1000+total-2) {
		t.Fatalf("backward scan: %v", newest)
	}
}

func openMem(t *testing.T) *DB {
	t.Helper()
	d, err := Open(memOpts(vfs.NewMem()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func createTestStream(t *testing.T, d *DB) StreamID {
	t.Helper()
	id, err := d.AllocStreamID()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutStream(id, []byte("s")); err != nil {
		t.Fatal(err)
	}
	return id
}

// putTestFragment stores fragment seq i with both timestamps at ms.
func putTestFragment(t *testing.T, d *DB, id StreamID, i int, ms int64, media []byte) {
	t.Helper()
	w := FragmentWrite{Meta: fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ProducerMs: ms, ServerMs: ms,
		DurationMs: 1, MediaLen: uint32(len(media)), ClusterLen: uint32(len(media))}, Media: media}
	if i == 0 {
		w.Header = []byte("header")
	}
	if err := d.PutFragment(id, &w); err != nil {
		t.Fatal(err)
	}
}
