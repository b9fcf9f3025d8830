package ingest

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestHandBackDropsWhatTheHomeRecorded: a box handing a camera back cuts
// at every key frame and holds its fragments; when the home's first
// fragment is copied to it, it stores the fragments before the home's
// first key frame, drops the rest and reports the hand-over. The home's
// clock for the same frames is 700 ms ahead (it anchored its timeline on
// arrival): the frame is found by its bytes, not by time.
func TestHandBackDropsWhatTheHomeRecorded(t *testing.T) {
	stored, homeFromMs := handBackScenario(t, 700)
	var starts []int64
	frames := 0
	for _, times := range stored {
		starts = append(starts, times[0])
		frames += len(times)
	}
	if len(starts) != 2 || starts[0] != 0 || starts[1] != 1000 || frames != 30 {
		t.Fatalf("the covering box stored %d frames in fragments starting at %v ms, want frames 0-29 in two (0 and 1000 ms; the home has 30 on, from %d ms)",
			frames, starts, homeFromMs)
	}
}

// TestHandBackEndsBeforeTheHome: the home's clock for the same frames is
// 300 ms behind the covering box's (it anchored its timeline on a camera's
// sender report, the other box on arrival; reports of a gortsplib v4
// relay, MediaMTX before v1.15, are up to 0.77 s off). The covering box
// stores no frame at or after the home's first producer time, so time
// never goes back where the recording passes to the home: of the frames
// before the home's first key frame (0-29), those its clock puts in the
// home's time (26-29: 1733-1933 ms, the home from 1700) are dropped.
func TestHandBackEndsBeforeTheHome(t *testing.T) {
	stored, homeFromMs := handBackScenario(t, -300)
	var got []int64
	for _, times := range stored {
		got = append(got, times...)
	}
	if len(stored) != 2 || len(got) != 26 || got[0] != 0 || stored[1][0] != 1000 {
		t.Fatalf("the covering box stored frames at %v ms in %d fragments, want frames 0-25 (0-1666 ms) in two", got, len(stored))
	}
	if last := got[len(got)-1]; last >= homeFromMs {
		t.Fatalf("the covering box stored a frame at %d ms, the home's recording starts at %d ms", last, homeFromMs)
	}
}

// handBackScenario: a covering box hands a camera back to its home, whose
// timeline for the same frames is homeAheadMs ahead of the covering box's.
// It returns the times (ms after the first frame) of the frames of each
// fragment the covering box stored, and when the home's first fragment
// starts on that scale.
func handBackScenario(t *testing.T, homeAheadMs int64) (stored [][]int64, homeFromMs int64) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	open := func(node uint16) *engine.Engine {
		eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: t.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20},
			Logger: log, NodeID: node, Media: engine.MediaOptions{Debug: true}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { eng.Close() })
		return eng
	}
	home, cover := open(1), open(2)
	info, err := cover.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 1, MediaType: "video/h264"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := home.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	ref := engine.StreamRef{Name: "cam"}
	d := loadDemo(t)
	cp, err := h264CodecPrivate(d.sps, d.pps)
	if err != nil {
		t.Fatal(err)
	}
	tracks := []mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp, Width: d.width, Height: d.height}}
	base := int64(1_800_000_000_000)
	feed := func(fr *Fragmenter, from, to int, offset int64) {
		t.Helper()
		for i := from; i < to; i++ {
			if err := fr.WriteVideo(base+offset+int64(i)*1000/15, d.aus[i%len(d.aus)], d.keys[i%len(d.aus)]); err != nil {
				t.Fatal(err)
			}
		}
	}

	// The covering box, handing back: frames 0–59 (key frames at 0, 15,
	// 30, 45), one fragment per key frame, held.
	sess, err := cover.BeginIngest(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	handBack := &atomic.Bool{}
	handBack.Store(true)
	out := newEngineOutput(sess, log, nil)
	out.handBack, out.homeFirst = handBack, homeFirstKey(cover, "cam")
	var handedFrom int64
	out.handedOver = func(ms int64) { handedFrom = ms }
	fr := NewFragmenter(out, 2*time.Second)
	fr.keyCut = handBack
	if err := fr.SetTracks(tracks); err != nil {
		t.Fatal(err)
	}
	feed(fr, 0, 60, 0)
	if len(out.held) != 3 {
		t.Fatalf("%d fragments held, want 3 (0, 15, 30; 45 in progress)", len(out.held))
	}
	if n := ownFragments(t, cover, 2); len(n) != 0 {
		t.Fatalf("fragments stored while handing back: %v", n)
	}

	// The home records from frame 30 on, homeAheadMs ahead.
	time.Sleep(5 * time.Millisecond) // its term is later
	hs, err := home.BeginIngest(ref)
	if err != nil {
		t.Fatal(err)
	}
	hout := newEngineOutput(hs, log, nil)
	hfr := NewFragmenter(hout, time.Second)
	if err := hfr.SetTracks(tracks); err != nil {
		t.Fatal(err)
	}
	feed(hfr, 30, 60, homeAheadMs)
	if err := hfr.Flush(); err != nil {
		t.Fatal(err)
	}
	hout.close()
	hs.Close()
	first := ownFragments(t, home, 1)[0]
	f, err := home.Fragment(ref, first)
	if err != nil {
		t.Fatal(err)
	}
	homeFromMs = f.Meta.ProducerMs
	if stored, err := cover.ImportFragment(ref, f.Meta, f.Header.Raw, append(engine.NewMediaBufferFor(len(f.Media)), f.Media...)); err != nil || !stored {
		t.Fatalf("copying the home's first fragment: %v %v", stored, err)
	}
	f.Release()

	// The next key frame ends fragment 45: the hand-over.
	feed(fr, 60, 75, 0)
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
	out.close()
	if handedFrom != homeFromMs {
		t.Fatalf("handed over from %d, want the home's first fragment's %d", handedFrom, homeFromMs)
	}
	for _, n := range ownFragments(t, cover, 2) {
		if n.Compare(first) >= 0 {
			t.Fatalf("kept fragment %s is not numbered before the home's %s", n, first)
		}
		g, err := cover.Fragment(ref, n)
		if err != nil {
			t.Fatal(err)
		}
		h, err := g.Header.Tracks()
		if err != nil {
			t.Fatal(err)
		}
		var times []int64
		if err := mkv.ForEachBlock(h, g.Media[:g.Meta.ClusterLen], func(b mkv.Block) error {
			times = append(times, b.TimeMs-base)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(times) == 0 || times[0] != g.Meta.ProducerMs-base {
			t.Fatalf("fragment %s starts at %d ms, its frames at %v", n, g.Meta.ProducerMs-base, times)
		}
		g.Release()
		stored = append(stored, times)
	}
	return stored, homeFromMs - base
}

// ownFragments lists the numbers of the fragments node numbered.
func ownFragments(t *testing.T, eng *engine.Engine, node uint16) []fragment.Number {
	t.Helper()
	var out []fragment.Number
	if err := eng.FragmentNumbers(engine.StreamRef{Name: "cam"}, fragment.Number{}, func(n fragment.Number) bool {
		if n.Node() == node {
			out = append(out, n)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}
