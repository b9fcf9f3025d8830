package engine

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheckStoreReportsDamage: a sound store checks clean; a byte flipped
// in one fragment's media is reported with the stream and fragment, in
// plain words; the store itself is not changed by the check.
func TestCheckStoreReportsDamage(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	opts := StoreOptions{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20}
	e, err := Open(Options{Store: opts, Logger: log, Clock: &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	frags := captureFragments(t)
	damaged := append([]byte(nil), frags[2].Buf[:frags[2].ClusterLen]...)
	stored := ingest(t, e, "cam", frags[:4], 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := CheckStore(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	if r.Streams != 1 || r.Fragments != 4 || len(r.Problems) != 0 || r.SegmentFiles < 1 {
		t.Fatalf("a sound store: %+v", r)
	}

	segs, _ := filepath.Glob(filepath.Join(dir, "media", "*", "*.seg"))
	flipped := false
	for _, p := range segs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, damaged); i >= 0 {
			b[i+len(damaged)/2] ^= 0xFF
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("fragment media not found in the segments")
	}
	r, err = CheckStore(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Problems) != 1 || r.Problems[0].Stream != "cam" || r.Problems[0].Number != stored[2] ||
		!strings.Contains(r.Problems[0].What, "media is unreadable") {
		t.Fatalf("a flipped byte: %+v", r.Problems)
	}
	// Checking wrote nothing: the same report again.
	again, err := CheckStore(opts, log)
	if err != nil || len(again.Problems) != 1 || again.Fragments != 4 {
		t.Fatalf("second check: %v %+v", err, again)
	}
}
