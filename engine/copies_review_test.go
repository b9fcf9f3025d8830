package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// syntheticFragment builds a fragment at timecode tc whose frames sit at the
// given offsets (ms after tc), the first a key frame, frame i carrying
// payload {0,0,0,2,0x41,seed+i}.
func syntheticFragment(t *testing.T, h *mkv.Header, tc int64, seed byte, offsets ...int64) *mkv.Fragment {
	t.Helper()
	var fb mkv.FragmentBuilder
	if err := fb.Start(h, tc, 64); err != nil {
		t.Fatal(err)
	}
	for i, off := range offsets {
		if err := fb.AddBlock(0, tc+off, i == 0, []byte{0, 0, 0, 2, 0x41, seed + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	f, err := fb.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestConsecutiveOneFrameFragmentsAreNotCopies: a producer that cuts
// a fragment at every key frame of an intra-only stream (MJPEG, an
// all-intra encoder) at 60 fps sends one-frame fragments 16-17 ms apart;
// a static scene (a test pattern, a covered lens) repeats one frame byte
// for byte. Each fragment is new: nearCopy must not make a fragment a
// copy of its neighbour (its DurationMs is 1 ms; the window had a 20 ms
// floor, wider than the gap between the fragments: found by review).
func TestConsecutiveOneFrameFragmentsAreNotCopies(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, e := openCam(t, vfs.NewMem(), clock)
	h := captureFragments(t)[0].Header
	var frags []*mkv.Fragment
	for i := range 6 {
		frags = append(frags, syntheticFragment(t, h, 10_000+int64(i)*50/3, 0, 0))
	}
	nums := ingest(t, e, "cam", frags, 1_000_000)
	held := heldNumbers(t, e)
	distinct := slices.Compact(slices.Clone(nums))
	if len(held) != len(frags) || len(distinct) != len(frags) {
		t.Errorf("6 one-frame fragments 16-17 ms apart were acknowledged as %v; the stream holds %d of them (%v): the rest were taken for copies of their neighbours, their frames lost",
			nums, len(held), held)
	}
}

// TestTwoBoxesCopiesAtOneProducerTimeAreOne: two boxes recording one
// camera round its frame times each on their own (resend.go): their
// copies of one fragment may start at the same rounded millisecond while
// a later frame rounds to 33 ms on one box and 34 ms on the other. The
// copies are kept once whether their producer times differ by a
// millisecond or not at all.
func TestTwoBoxesCopiesAtOneProducerTimeAreOne(t *testing.T) {
	for _, skew := range []int64{1, 0} {
		t.Run(fmt.Sprintf("producer times %d ms apart", skew), func(t *testing.T) {
			clock, a, b := twoBoxes(t)
			h := captureFragments(t)[0].Header
			na := ingest(t, a, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, 0, 33, 67, 100)}, 1_000_000)
			clock.add(time.Second)
			nb := ingest(t, b, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, 0, 34, 66, 100)}, 1_000_000+skew)
			syncBoxes(t, a, b)
			for name, e := range map[string]*Engine{"a": a, "b": b} {
				if got := heldNumbers(t, e); len(got) != 1 {
					t.Errorf("box %s holds %v: both boxes' copies (a %v, b %v) of the same 4 frames, their frames read twice", name, got, na, nb)
				}
			}
		})
	}
}

// TestThreeCopiesConvergeInAnyOrder: three boxes hold copies of one
// fragment: a whole one (F), an equal one under a higher number (G) and a
// prefix of them (P, the highest number), at producer times a few ms
// apart. A box that receives them in any order keeps G only.
func TestThreeCopiesConvergeInAnyOrder(t *testing.T) {
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	h := captureFragments(t)[0].Header
	src := map[string]*Engine{}
	num := map[string]fragment.Number{}
	var info *StreamInfo
	for i, c := range []struct {
		name   string
		node   uint16
		frames int
		skew   int64
	}{{"F", 7, 5, 0}, {"G", 9, 5, 3}, {"P", 11, 3, 5}} {
		_, e := openMediaNode(t, vfs.NewMem(), clock, c.node)
		if i == 0 {
			var err error
			if info, err = e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := e.ImportStream(info); err != nil {
			t.Fatal(err)
		}
		offs := []int64{0, 66, 132, 198, 264}[:c.frames]
		num[c.name] = ingest(t, e, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, offs...)}, 1_000_000+c.skew)[0]
		src[c.name] = e
		clock.add(time.Second)
	}
	if !(num["F"].Compare(num["G"]) < 0 && num["G"].Compare(num["P"]) < 0) {
		t.Fatalf("numbers F %s G %s P %s: the test needs F < G < P", num["F"], num["G"], num["P"])
	}
	perms := [][]string{{"F", "G", "P"}, {"F", "P", "G"}, {"G", "F", "P"}, {"G", "P", "F"}, {"P", "F", "G"}, {"P", "G", "F"}}
	for i, order := range perms {
		_, d := openMediaNode(t, vfs.NewMem(), clock, uint16(20+i))
		if _, err := d.ImportStream(info); err != nil {
			t.Fatal(err)
		}
		for _, name := range order {
			if _, err := replicate(t, src[name], d, "cam", num[name]); err != nil {
				t.Fatal(err)
			}
		}
		if got := heldNumbers(t, d); !slices.Equal(got, []fragment.Number{num["G"]}) {
			t.Errorf("order %v: the box holds %v, want G %s only (F %s, P %s)", order, got, num["G"], num["F"], num["P"])
		}
	}
}

// TestImportWaitsForAFailingOwnCopy: an import equal to this node's
// own copy still on its way to disk waits for it; when storing the own
// copy fails, the import reports an error (the peer must not count this
// node as holding it) and a later import stores the peer's copy.
func TestImportWaitsForAFailingOwnCopy(t *testing.T) {
	clock, a, b := twoBoxes(t)
	h := captureFragments(t)[0].Header
	na := ingest(t, a, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, 0, 33, 66)}, 1_000_000)
	clock.add(time.Second)
	// b records the same frames 2 ms later: received, not yet stored.
	sess, _, rec := receiveOnly(t, b, syntheticFragment(t, h, 10_000, 0, 0, 33, 66), 1_000_002)
	done := make(chan error, 1)
	go func() {
		_, err := replicate(t, a, b, "cam", na[0])
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Wait until the import is blocked on b's copy: it holds a reference.
	for rec.Fragment.refs.Load() < 3 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the import returned (%v) before b's own copy was stored", err)
	default:
	}
	failure := errors.New("disk gone")
	sess.Abandon(rec.Fragment, failure)
	select {
	case err := <-done:
		if !errors.Is(err, failure) {
			t.Errorf("import of a's copy while b's failed: %v, want b's failure", err)
		}
	case <-ctx.Done():
		t.Fatal("the import never returned")
	}
	if ok, err := replicate(t, a, b, "cam", na[0]); err != nil || !ok {
		t.Errorf("importing a's copy again: %v %v, want it stored", ok, err)
	}
	if got := heldNumbers(t, b); !slices.Equal(got, na) {
		t.Errorf("b holds %v, want a's %v", got, na)
	}
}

// TestOwnPartialInFlightGivesWayToAWholeImport: a whole copy imported
// while this node's own partial copy of it is still being stored waits
// for it, then replaces it (it was stored beside it: found by review).
// Both boxes end with one copy of the frames.
func TestOwnPartialInFlightGivesWayToAWholeImport(t *testing.T) {
	clock, a, b := twoBoxes(t)
	h := captureFragments(t)[0].Header
	na := ingest(t, a, "cam", []*mkv.Fragment{syntheticFragment(t, h, 10_000, 0, 0, 33, 66, 100, 133)}, 1_000_000)
	clock.add(time.Second)
	sess, n, rec := receiveOnly(t, b, syntheticFragment(t, h, 10_000, 0, 0, 33, 66), 1_000_002)
	// The import waits for b's own copy (stored by b's own path meanwhile).
	done := make(chan error, 1)
	go func() {
		_, err := replicate(t, a, b, "cam", na[0])
		done <- err
	}()
	if err := sess.Persist(rec.Fragment); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	syncBoxes(t, a, b)
	ga, gb := heldNumbers(t, a), heldNumbers(t, b)
	if len(ga) != 1 || !slices.Equal(ga, gb) {
		t.Errorf("a holds %v, b %v: want one copy, the same on both (a's whole %v, b's partial %v)", ga, gb, na, n)
	}
}

// twoBoxes opens two engines (nodes 7 and 9) on one moving clock, with
// stream cam created on the first and copied to the second.
func twoBoxes(t *testing.T) (*movingClock, *Engine, *Engine) {
	t.Helper()
	clock := &movingClock{t: time.UnixMilli(1_700_000_000_000)}
	_, a := openMedia(t, vfs.NewMem(), clock, 1<<20)
	_, b := openMediaNode(t, vfs.NewMem(), clock, 9)
	info, err := a.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.ImportStream(info); err != nil {
		t.Fatal(err)
	}
	return clock, a, b
}

// receiveOnly records f on e's stream cam at producer time base +
// f.Timecode: received (in the ring), not stored; the caller persists or
// abandons rec.Fragment and closes the session.
func receiveOnly(t *testing.T, e *Engine, f *mkv.Fragment, base int64) (*IngestSession, fragment.Number, Received) {
	t.Helper()
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	c := *f
	c.Buf = mediaCopy(t, e, f.Buf)
	n, serverMs, err := sess.StartFragment()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := sess.Receive(n, serverMs, base+int64(f.Timecode), &c)
	if err != nil || rec.Duplicate {
		t.Fatalf("receive: %v %v", rec.Duplicate, err)
	}
	return sess, n, rec
}
