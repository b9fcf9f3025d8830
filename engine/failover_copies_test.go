package engine

import (
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestTwoBoxesRecordingOneCameraKeepOneCopy: around a failover two boxes
// record the same camera for a few seconds, each under its own numbers,
// their producer times for one frame a few ms apart (resend.go). When they
// replicate to each other, each box keeps one copy of those frames, the
// same one (the higher number: the newer term), in either order of
// arrival; a box that
// imported the peer's copy first takes its own recording of the same
// frames for a duplicate. The same frames far from that time (a looped
// clip) are a new fragment.
func TestTwoBoxesRecordingOneCameraKeepOneCopy(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, a := openMedia(t, vfs.NewMem(), clock, 1<<20)
	_, b := openMediaNode(t, vfs.NewMem(), clock, 9)
	_, c := openMediaNode(t, vfs.NewMem(), clock, 11)
	info, err := a.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*Engine{b, c} {
		if _, err := e.ImportStream(info); err != nil {
			t.Fatal(err)
		}
	}
	frags := captureFragments(t)
	if len(frags) < 4 {
		t.Fatalf("the capture has %d fragments, want 4", len(frags))
	}
	// a records fragments 0-2; b, taking over, records 1-3 with its
	// producer times 2 ms later.
	numsA := ingest(t, a, "cam", frags[:3], 1000)
	for _, n := range numsA {
		if ok, err := replicate(t, a, c, "cam", n); err != nil || !ok {
			t.Fatalf("importing %s into c: %v %v", n, ok, err)
		}
	}
	clock.add(time.Second)
	numsB := ingest(t, b, "cam", frags[1:4], 1002)
	// Anti-entropy: b's copies reach a, then a's b, then what b still
	// holds and a lacks (nothing, once they agree).
	sync := func(src, dst *Engine) {
		t.Helper()
		for _, n := range heldNumbers(t, src) {
			if _, err := replicate(t, src, dst, "cam", n); err != nil {
				t.Fatalf("importing %s: %v", n, err)
			}
		}
	}
	sync(b, a)
	sync(a, b)
	sync(b, a)
	higher := func(x, y fragment.Number) fragment.Number {
		if x.Compare(y) > 0 {
			return x
		}
		return y
	}
	want := []fragment.Number{numsA[0], higher(numsA[1], numsB[0]), higher(numsA[2], numsB[1]), numsB[2]}
	slices.SortFunc(want, fragment.Number.Compare)
	for name, e := range map[string]*Engine{"a": a, "b": b} {
		if got := heldNumbers(t, e); !slices.Equal(got, want) {
			t.Errorf("box %s holds %v, want %v (a recorded %v, b %v)", name, got, want, numsA, numsB)
		}
	}

	// c imported a's copies (above), then records the same frames
	// itself: its own fragments 1 and 2 are duplicates of a's.
	clock.add(time.Second)
	numsC := ingest(t, c, "cam", frags[1:4], 1002)
	if numsC[0] != numsA[1] || numsC[1] != numsA[2] || numsC[2].Node() != 11 {
		t.Errorf("c's own recording of fragments 1-3 was numbered %v; want a's %v and %v, then its own", numsC, numsA[1], numsA[2])
	}
	if got, want := heldNumbers(t, c), append(slices.Clone(numsA), numsC[2]); !slices.Equal(got, want) {
		t.Errorf("c holds %v, want %v", got, want)
	}

	// The same frames a minute later are another fragment.
	later := ingest(t, a, "cam", frags[:1], 61_000)
	if later[0] == numsA[0] {
		t.Errorf("fragment 0 recorded again a minute later was taken for a copy of %s", numsA[0])
	}
}

// heldNumbers lists the numbers of e's fragments of stream cam.
func heldNumbers(t *testing.T, e *Engine) []fragment.Number {
	t.Helper()
	var out []fragment.Number
	if err := e.FragmentNumbers(StreamRef{Name: "cam"}, fragment.Number{}, func(n fragment.Number) bool { out = append(out, n); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAShortFragmentIsNotACopyOfTheLongOneAfterIt: a static scene's
// encoder may repeat one GOP byte for byte. A fragment cut short after
// three frames (a session's end) followed at once by a whole one holds a
// prefix of its frames, 200 ms before it: it is not a copy (it is not
// within half the shorter one's duration), and both stay.
func TestAShortFragmentIsNotACopyOfTheLongOneAfterIt(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, e := openCam(t, vfs.NewMem(), clock)
	h := captureFragments(t)[0].Header
	offsets := []int64{0, 66, 132, 198, 264, 330, 396, 462, 528, 594, 660, 726, 792, 858, 924}
	nums := ingest(t, e, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, offsets[:3]...), syntheticFragment(t, h, 10_200, 0, offsets...)}, 1_000_000)
	if got := heldNumbers(t, e); !slices.Equal(got, nums) || nums[0] == nums[1] {
		t.Errorf("the stream holds %v; want both fragments recorded, %v", got, nums)
	}
}

// TestTwoBoxesCopiesFarApartInProducerTimeAreOne: after a hand-back the
// two boxes' producer times for one frame were measured 716 ms apart
// (each anchors its own timeline) while both received it within 83 ms
// (TestWitnessBreaksTheTie): two 330 ms copies of the same frames, their
// producer times 716 ms apart and their server times together, are kept
// once on both boxes, whichever arrives first; a box that imported one
// takes its own recording of the same frames for a duplicate.
func TestTwoBoxesCopiesFarApartInProducerTimeAreOne(t *testing.T) {
	clock, a, b := twoBoxes(t)
	_, c := openMediaNode(t, vfs.NewMem(), clock, 11)
	info, err := a.Stream(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	h := captureFragments(t)[0].Header
	offsets := []int64{0, 66, 132, 198, 264}
	na := ingest(t, a, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, offsets...)}, 1_000_000)
	nb := ingest(t, b, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, offsets...)}, 1_000_716)
	syncBoxes(t, a, b)
	ga, gb := heldNumbers(t, a), heldNumbers(t, b)
	if len(ga) != 1 || !slices.Equal(ga, gb) {
		t.Errorf("a holds %v, b %v: want one copy, the same on both (a recorded %v, b %v)", ga, gb, na, nb)
	}
	if _, err := replicate(t, a, c, "cam", ga[0]); err != nil {
		t.Fatal(err)
	}
	nc := ingest(t, c, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, offsets...)}, 1_000_400)
	if got := heldNumbers(t, c); nc[0] != ga[0] || !slices.Equal(got, ga) {
		t.Errorf("c, which imported %v, recorded the same frames 400 ms later as %v and holds %v", ga, nc, got)
	}
}

// TestAOneFrameCopyOfAnotherBoxGivesWay: a box cut off right after a key
// frame stores a one-frame fragment (1 ms long); the other box's copy of
// that key frame and the frames after it starts 1 ms apart. The one-frame
// copy is a prefix of it and gives way on both boxes (found by
// TestWitnessBreaksTheTie: that frame was read twice).
func TestAOneFrameCopyOfAnotherBoxGivesWay(t *testing.T) {
	clock, a, b := twoBoxes(t)
	h := captureFragments(t)[0].Header
	na := ingest(t, a, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, 0)}, 1_000_000)
	clock.add(12 * time.Millisecond) // b received it 12 ms later
	nb := ingest(t, b, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, 0, 66, 132, 198, 264)}, 1_000_001)
	syncBoxes(t, a, b)
	for name, e := range map[string]*Engine{"a": a, "b": b} {
		if got := heldNumbers(t, e); !slices.Equal(got, nb) {
			t.Errorf("box %s holds %v, want b's whole copy %v only (a's one frame %v)", name, got, nb, na)
		}
	}
}

// syncBoxes replicates stream cam between a and b both ways, twice, as
// anti-entropy rounds would: each imports every fragment the other holds.
func syncBoxes(t *testing.T, a, b *Engine) {
	t.Helper()
	for range 2 {
		for _, p := range [][2]*Engine{{a, b}, {b, a}} {
			for _, n := range heldNumbers(t, p[0]) {
				if _, err := replicate(t, p[0], p[1], "cam", n); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
