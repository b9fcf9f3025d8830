package lsm

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
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
