package ingest

import (
	"bytes"
	"io"
	"os"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// collect is an Output that keeps fragments.
type collect struct {
	starts int
	frags  []*mkv.Fragment
}

func (c *collect) StartFragment() error { c.starts++; return nil }
func (c *collect) Fragment(f *mkv.Fragment) error {
	c.frags = append(c.frags, new(*f)) // f is the Fragmenter's
	return nil
}

func loadDemo(t testing.TB) *DemoSource {
	t.Helper()
	clip, err := os.ReadFile("democlip.h264")
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDemoSource(clip, 15)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// feedDemo writes n frames of the demo clip through a fragmenter without
// pacing.
func feedDemo(t testing.TB, d *DemoSource, fr *Fragmenter, n int, startMs int64) {
	t.Helper()
	cp, err := h264CodecPrivate(d.sps, d.pps)
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.SetTracks([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp, Width: d.width, Height: d.height}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		ms := startMs + int64(i)*1000/15
		if err := fr.WriteVideo(ms, d.aus[i%len(d.aus)], d.keys[i%len(d.aus)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestDemoClipParses(t *testing.T) {
	d := loadDemo(t)
	if len(d.aus) != 150 || d.width != 640 || d.height != 360 {
		t.Fatalf("%d access units, %dx%d; want 150 at 640x360", len(d.aus), d.width, d.height)
	}
	keys := 0
	for _, k := range d.keys {
		if k {
			keys++
		}
	}
	if keys < 9 || keys > 11 {
		t.Fatalf("%d key frames in 10 s at one per second", keys)
	}
}

// TestFragmenterOutputIsWhatPutMediaWouldSend: the fragments the
// fragmenter cuts parse with the PutMedia reader into the same fragments,
// start on key frames, and last about the target.
func TestFragmenterOutputIsWhatPutMediaWouldSend(t *testing.T) {
	d := loadDemo(t)
	out := &collect{}
	fr := NewFragmenter(out, 2*time.Second)
	feedDemo(t, d, fr, 300, 1_795_600_000_000) // 20 s
	if out.starts != len(out.frags) || len(out.frags) < 9 || len(out.frags) > 11 {
		t.Fatalf("%d starts, %d fragments for 20 s at 2 s each", out.starts, len(out.frags))
	}
	var body bytes.Buffer
	body.Write(out.frags[0].Header.Raw)
	frames := 0
	for i, f := range out.frags {
		if i < len(out.frags)-1 {
			if d := f.Duration(); d < 1900*time.Millisecond || d > 2200*time.Millisecond {
				t.Errorf("fragment %d lasts %v", i, d)
			}
		}
		if i > 0 && f.Timecode <= out.frags[i-1].Timecode {
			t.Errorf("fragment %d timecode %d not after %d", i, f.Timecode, out.frags[i-1].Timecode)
		}
		frames += f.Frames
		body.Write(f.Buf)
	}
	if frames != 300 {
		t.Fatalf("%d frames in fragments, 300 written", frames)
	}
	rd := mkv.NewReader(&body, mkv.Options{})
	n := 0
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the PutMedia reader refuses the fragmenter's output: %v", err)
		}
		if ev == mkv.EventFragmentEnd {
			f := rd.TakeFragment()
			want := out.frags[n]
			if f.Timecode != want.Timecode || f.Frames != want.Frames || !f.EndOfFragment || f.KeyFrames < 1 {
				t.Fatalf("fragment %d parsed as %d/%d frames, want %d/%d", n, f.Timecode, f.Frames, want.Timecode, want.Frames)
			}
			n++
		}
	}
	if n != len(out.frags) {
		t.Fatalf("reader found %d fragments, fragmenter cut %d", n, len(out.frags))
	}
}

func TestFragmenterWaitsForKeyFrameAndCapsDuration(t *testing.T) {
	d := loadDemo(t)
	out := &collect{}
	fr := NewFragmenter(out, 2*time.Second)
	cp, _ := h264CodecPrivate(d.sps, d.pps)
	_ = fr.SetTracks([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp}})
	// Start mid-GOP: frames before the first key frame are dropped.
	nextKey := 1
	for !d.keys[nextKey] {
		nextKey++
	}
	for i := 1; i < nextKey; i++ {
		_ = fr.WriteVideo(int64(i*66), d.aus[i], d.keys[i])
	}
	if out.starts != 0 || fr.DroppedUnits != nextKey-1 {
		t.Fatalf("%d fragments started, %d dropped before a key frame", out.starts, fr.DroppedUnits)
	}
	// A stream that stops sending key frames: fragments are capped below
	// KVS's 20 s limit and recording resumes at the next key frame.
	_ = fr.WriteVideo(2000, d.aus[0], true)
	for i := 1; i <= 25*15; i++ {
		_ = fr.WriteVideo(2000+int64(i*66), d.aus[1], false)
	}
	_ = fr.WriteVideo(2000+26*1000, d.aus[0], true)
	_ = fr.Flush()
	for _, f := range out.frags {
		if f.Duration() > 20*time.Second {
			t.Fatalf("fragment of %v exceeds KVS's limit", f.Duration())
		}
	}
	if len(out.frags) != 2 {
		t.Fatalf("%d fragments, want the capped one and the one after the next key frame", len(out.frags))
	}
}

func TestTimelineIsMonotonicAndFollowsNTP(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	tl := &timeline{now: func() time.Time { return now }}
	a := tl.ms(0, time.Time{}, false, true)
	b := tl.ms(40*time.Millisecond, time.Time{}, false, true)
	if a != now.UnixMilli() || b != a+40 {
		t.Fatalf("anchored at %d, then %d", a, b)
	}
	// The camera's NTP time says it is 5 s later: re-anchor.
	c := tl.ms(80*time.Millisecond, now.Add(5*time.Second), true, true)
	if c != now.Add(5*time.Second).UnixMilli() {
		t.Fatalf("NTP re-anchor: %d", c)
	}
	// The clock jumps back: video times still increase.
	d := tl.ms(120*time.Millisecond, now.Add(-time.Minute), true, true)
	if d <= c {
		t.Fatalf("time went backwards: %d after %d", d, c)
	}
	// Reconnect: presentation times restart at 0; still increasing.
	tl.reset()
	e := tl.ms(0, time.Time{}, false, true)
	if e <= d {
		t.Fatalf("after reconnect %d not after %d", e, d)
	}
	// Absurd timestamps (a camera in 1970) are ignored for the anchor.
	tl.reset()
	if f := tl.ms(0, time.Unix(0, 0), true, false); f != now.UnixMilli() {
		t.Fatalf("absurd NTP used: %d", f)
	}
}

// movesOutput collects nothing: it counts the bytes a growing fragment
// buffer copied to a bigger one (Go-heap buffers of exactly the size
// asked for).
type movesOutput struct {
	moved, fragments int
}

func (o *movesOutput) StartFragment() error { return nil }
func (o *movesOutput) Fragment(*mkv.Fragment) error {
	o.fragments++
	return nil
}
func (o *movesOutput) Buffers() mkv.Buffers { return (*movesBuffers)(o) }

type movesBuffers movesOutput

func (m *movesBuffers) Grow(b []byte, n int) ([]byte, error) {
	if cap(b)-len(b) >= n {
		return b, nil
	}
	if len(b) > 0 {
		m.moved += len(b)
	}
	return append(make([]byte, 0, len(b)+n), b...), nil
}
func (m *movesBuffers) Free([]byte) {}

// TestFragmentBufferSizedForItsLastUnits checks that once a stream's
// fragment size is known, a fragment's buffer is never outgrown (each
// growth copies the fragment so far): BeginVideo reserves room for the
// stream's biggest access unit (a key frame) before every unit, so the
// buffer must hold a fragment like the last plus that much. A camera
// with a still scene sends key frames many times its other frames.
func TestFragmentBufferSizedForItsLastUnits(t *testing.T) {
	d := loadDemo(t)
	cp, err := h264CodecPrivate(d.sps, d.pps)
	if err != nil {
		t.Fatal(err)
	}
	out := &movesOutput{}
	fr := NewFragmenter(out, 2*time.Second)
	if err := fr.SetTracks([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp, Width: d.width, Height: d.height}}); err != nil {
		t.Fatal(err)
	}
	key, delta := make([]byte, 120<<10), make([]byte, 5<<10)
	maxAU := 0
	movedAfterFirst := 0
	for i := 0; i < 25*20; i++ { // 20 s at 25 fps, a key frame every 2 s
		if i == 50 {
			movedAfterFirst = out.moved
		}
		unit := delta
		if i%50 == 0 {
			unit = key
		}
		ok, err := fr.BeginVideo(int64(i)*40, i%50 == 0, maxAU)
		if err != nil || !ok {
			t.Fatalf("frame %d: BeginVideo %v %v", i, ok, err)
		}
		if !fr.AppendVideoLen(uint32(len(unit))) || !fr.AppendVideo(unit) {
			t.Fatalf("frame %d: append refused", i)
		}
		fr.EndVideo(false)
		maxAU = max(maxAU, 4+len(unit)+blockOverhead)
	}
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
	if out.fragments != 10 {
		t.Fatalf("%d fragments, want 10", out.fragments)
	}
	if moved := out.moved - movedAfterFirst; moved != 0 {
		t.Fatalf("fragments after the first copied %d bytes growing their buffers, want none", moved)
	}
}

// watchedOutput is an Output that keeps nothing and reports live viewers.
type watchedOutput struct {
	movesOutput
	viewers bool
}

func (o *watchedOutput) LiveWatched() bool { return o.viewers }

// A camera's reads are paced by its output's report of live viewers (the
// engine's); an output without one is paced as watched (nil).
func TestFragmenterReportsItsOutputsViewers(t *testing.T) {
	o := &watchedOutput{}
	w := NewFragmenter(o, 0).liveWatched()
	if w == nil || w() {
		t.Fatal("an output with no viewers is reported watched, or not at all")
	}
	o.viewers = true
	if !w() {
		t.Fatal("an output with viewers is reported unwatched")
	}
	if NewFragmenter(&movesOutput{}, 0).liveWatched() != nil {
		t.Fatal("an output without the report got one")
	}
}

// TestCameraPathAllocatesNothing: a camera's frames from RTP packets to
// fragments (the depacketiser, the timeline, the Fragmenter cutting a
// fragment every GOP and handing it on) allocate nothing once warm, the
// fragment cuts included: the builder's fragment and the one handed to
// the Output are the Fragmenter's own (BenchmarkCameraPath has the
// figure per frame).
func TestCameraPathAllocatesNothing(t *testing.T) {
	clip, err := os.ReadFile("democlip.h264")
	if err != nil {
		t.Fatal(err)
	}
	out := &recycleOutput{mem: benchMediaMemory(t)}
	frame, frames, _ := cameraPath(t, clip, 15, out, false)
	i := 0
	run := func() {
		for range 2 * frames {
			frame(i)
			i++
		}
	}
	run() // warm: buffers grown, pools filled
	before := out.fragments
	allocs := testing.AllocsPerRun(3, run)
	if cut := out.fragments - before; cut < 4 || allocs != 0 {
		t.Fatalf("%d fragments cut over %d frames with %.1f allocations, want several and none", cut, 4*2*frames, allocs)
	}
}
