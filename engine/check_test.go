package engine

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/lsm"
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

// TestSameFramesRecognisesAReSentFragment: Repair's comparison (lsm
// Options.SameFrames) takes a fragment re-sent with another cluster
// Timecode (RELATIVE timecodes against a later start) for the same
// fragment, and a different fragment for another.
func TestSameFramesRecognisesAReSentFragment(t *testing.T) {
	frags := captureFragments(t)
	f := frags[2]
	a := lsm.FrameCopy{Header: f.Header.Raw, Cluster: f.Buf[:f.ClusterLen], Frames: uint32(f.Frames)}
	moved := bytes.Clone(a.Cluster)
	i := bytes.IndexByte(moved[4:], 0xE7) + 4 // the Timecode element after the Cluster's ID
	if i < 4 || i > 16 {
		t.Fatalf("no Timecode near the cluster's start: %x", moved[:24])
	}
	size := int(moved[i+1] & 0x7F) // a one-byte size field (0x80 | n)
	moved[i+1+size]++              // the timecode's last byte: every block's time moves by one unit
	b := lsm.FrameCopy{Header: a.Header, Cluster: moved, Frames: a.Frames}
	h, err := mkv.ParseHeader(a.Header)
	if err != nil {
		t.Fatal(err)
	}
	fa, errA := frames(h, a.Cluster, uint32(len(a.Cluster)))
	fb, errB := frames(h, b.Cluster, uint32(len(b.Cluster)))
	if errA != nil || errB != nil || len(fa) != f.Frames || len(fb) != f.Frames || bytes.Equal(a.Cluster, b.Cluster) {
		t.Fatalf("the moved copy: %v %v, %d and %d frames", errA, errB, len(fa), len(fb))
	}
	var ta, tb int64
	_ = mkv.ForEachBlock(h, a.Cluster, func(bl mkv.Block) error { ta = bl.ClusterMs; return nil })
	_ = mkv.ForEachBlock(h, b.Cluster, func(bl mkv.Block) error { tb = bl.ClusterMs; return nil })
	if ta == tb {
		t.Fatalf("the cluster's time did not move (%d ms)", ta)
	}
	if !sameFrames(a, b) {
		t.Fatal("a re-send with another cluster timecode is not taken for the same fragment")
	}
	g := frags[3]
	other := lsm.FrameCopy{Header: g.Header.Raw, Cluster: g.Buf[:g.ClusterLen], Frames: uint32(g.Frames)}
	if sameFrames(a, other) {
		t.Fatal("two different fragments taken for one")
	}
	if sameFrames(lsm.FrameCopy{Header: a.Header, Cluster: a.Cluster}, b) {
		t.Fatal("a copy counted without frames")
	}
}
