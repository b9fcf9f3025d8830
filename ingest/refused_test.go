package ingest

import (
	"fmt"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// budgetBuffers is an mkv.Buffers with the engine media memory's contract
// that refuses on demand: the nth growth that needs a new buffer (counted
// from 1) fails with engine.ErrMemoryFull when refuse says so. It tracks
// every buffer it handed out and poisons those it took back, so a
// fragment buffer leaked, freed twice, grown or freed after it was handed
// on, or a stale one written to the output, shows.
type budgetBuffers struct {
	t        *testing.T
	refuse   func(n int) bool
	grows    int
	refusals int
	live     map[*byte]bool
}

func newBudgetBuffers(t *testing.T, refuse func(n int) bool) *budgetBuffers {
	return &budgetBuffers{t: t, refuse: refuse, live: map[*byte]bool{}}
}

func (b *budgetBuffers) Grow(buf []byte, n int) ([]byte, error) {
	if cap(buf)-len(buf) >= n {
		return buf, nil
	}
	if cap(buf) > 0 && !b.live[&buf[:1][0]] {
		b.t.Errorf("Grow of a %d-byte buffer it does not hold", cap(buf))
	}
	b.grows++
	if b.refuse != nil && b.refuse(b.grows) {
		b.refusals++
		return buf, fmt.Errorf("%w: test budget", engine.ErrMemoryFull)
	}
	g := make([]byte, len(buf), len(buf)+n+(len(buf)+n)/4)
	copy(g, buf)
	if cap(buf) > 0 {
		b.drop(buf)
	}
	b.live[&g[:1][0]] = true
	return g, nil
}

func (b *budgetBuffers) Free(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	if !b.live[&buf[:1][0]] {
		b.t.Errorf("Free of a %d-byte buffer it does not hold (freed twice?)", cap(buf))
		return
	}
	b.drop(buf)
}

// take is the output taking a finished fragment's buffer (the engine's
// Receive).
func (b *budgetBuffers) take(buf []byte) {
	if cap(buf) == 0 || !b.live[&buf[:1][0]] {
		b.t.Errorf("a fragment handed on in a %d-byte buffer the fragmenter's Buffers do not hold", cap(buf))
		return
	}
	delete(b.live, &buf[:1][0])
}

// drop forgets a buffer and poisons it: whoever still writes from it
// writes 0xEE.
func (b *budgetBuffers) drop(buf []byte) {
	delete(b.live, &buf[:1][0])
	buf = buf[:cap(buf)]
	for i := range buf {
		buf[i] = 0xEE
	}
}

// startsWithKeyFrame reports whether a fragment's first block is a key
// frame.
func startsWithKeyFrame(f *mkv.Fragment) bool {
	b := f.Buf
	at := 5 + 2 + int(b[6]&0x7F) // the first SimpleBlock after Cluster and Timecode
	return b[at] == mkv.IDSimpleBlock && b[at+12]&0x80 != 0 && f.KeyFrames > 0
}

// TestDepacketizerMediaMemoryRefusals: the camera path's fragment buffers
// grow only through the fragmenter's Buffers (the engine's media memory),
// and a growth the budget refuses — whichever it is: a fragment's first
// buffer, room for an access unit, a NAL unit appended mid-block, the
// end-of-fragment tag — drops the fragment in progress (counted), frees
// its buffer, and recording goes on at the next key frame: no buffer
// leaked or freed twice, every fragment handed on whole and starting
// with a key frame.
func TestDepacketizerMediaMemoryRefusals(t *testing.T) {
	d := loadDemo(t)
	data := demoRTP(t, d, 1, 100, 300, false, nil, nil)
	base := &fuzzOutput{bufs: newBudgetBuffers(t, nil)}
	replayRTPTo(t, d, data, false, base)
	if len(base.bufs.live) != 0 {
		t.Fatalf("%d buffers never freed or handed on", len(base.bufs.live))
	}
	total, baseFrames := base.bufs.grows, 0
	for _, f := range base.frags {
		baseFrames += f.Frames
	}
	if total < 5 || len(base.frags) < 4 {
		t.Fatalf("%d growths, %d fragments: the case tests nothing", total, len(base.frags))
	}
	for k := 1; k <= total; k++ {
		out := &fuzzOutput{bufs: newBudgetBuffers(t, func(n int) bool { return n == k })}
		got, fr := replayRTPTo(t, d, data, false, out)
		checkPutMediaBody(t, got, fr)
		if out.bufs.refusals != 1 || fr.RefusedFragments != 1 {
			t.Fatalf("growth %d refused: %d refusals, %d fragments refused; want 1 and 1", k, out.bufs.refusals, fr.RefusedFragments)
		}
		if len(out.bufs.live) != 0 {
			t.Fatalf("growth %d refused: %d buffers never freed or handed on", k, len(out.bufs.live))
		}
		frames := 0
		for i, f := range got.frags {
			if !startsWithKeyFrame(f) {
				t.Fatalf("growth %d refused: fragment %d does not start with a key frame", k, i)
			}
			frames += f.Frames
		}
		// What is lost is the refused fragment (at most 2 s) and the
		// frames up to the next key frame (1 s): 45 at 15 fps.
		if frames >= baseFrames || frames < baseFrames-45 || len(got.frags) < len(base.frags)-1 {
			t.Fatalf("growth %d refused: %d frames in %d fragments, %d in %d unrefused", k, frames, len(got.frags), baseFrames, len(base.frags))
		}
	}
}

// TestFragmenterStreamedBlockRefused: a NAL unit appended to an open
// video block that the media memory has no room for drops the fragment in
// progress with its buffer (AppendVideo reports it; ending or cancelling
// the block then does nothing), delta frames after it are dropped, and
// the next key frame starts a fragment again.
func TestFragmenterStreamedBlockRefused(t *testing.T) {
	d := loadDemo(t)
	cp, err := h264CodecPrivate(d.sps, d.pps)
	if err != nil {
		t.Fatal(err)
	}
	bufs := newBudgetBuffers(t, nil)
	out := &fuzzOutput{bufs: bufs}
	fr := NewFragmenter(out, 2*time.Second)
	if err := fr.SetTracks([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp, Width: d.width, Height: d.height}}); err != nil {
		t.Fatal(err)
	}
	const startMs = 1_795_600_000_000
	stream := func(i int) (began, ok bool) {
		began, err := fr.BeginVideo(startMs+int64(i)*1000/15, d.keys[i], 0)
		if err != nil {
			t.Fatal(err)
		}
		if !began {
			return false, false
		}
		for _, u := range d.aus[i] {
			if !fr.AppendVideoLen(uint32(len(u))) || !fr.AppendVideo(u) {
				return true, false
			}
		}
		fr.EndVideo(false)
		return true, true
	}
	if !d.keys[0] {
		t.Fatal("the demo clip does not start with a key frame")
	}
	for i := 0; i < 10; i++ {
		if began, ok := stream(i); !began || !ok {
			t.Fatalf("frame %d: began %v, written %v", i, began, ok)
		}
	}

	// Frame 10's unit does not fit the buffer, and the budget has no room.
	bufs.refuse = func(int) bool { return true }
	if began, err := fr.BeginVideo(startMs+10*1000/15, d.keys[10], 0); err != nil || !began {
		t.Fatalf("frame 10 not begun: %v", err)
	}
	big := make([]byte, cap(fr.b.Buf())-len(fr.b.Buf())+1)
	if fr.AppendVideo(big) {
		t.Fatal("a unit larger than the room left was appended with no budget for it")
	}
	if fr.RefusedFragments != 1 || fr.b.Started() || fr.DroppedUnits != 11 || len(bufs.live) != 0 {
		t.Fatalf("after the refusal: %d refused, started %v, %d units dropped, %d buffers held; want 1, false, 11, 0",
			fr.RefusedFragments, fr.b.Started(), fr.DroppedUnits, len(bufs.live))
	}
	fr.EndVideo(false) // the depacketiser's dropAU or finishAU: nothing left to end
	fr.CancelVideo()
	if fr.AppendVideo([]byte{1}) || fr.AppendVideoLen(1) {
		t.Fatal("appended to a block that was dropped")
	}
	bufs.refuse = nil

	next := 11
	for !d.keys[next] {
		if began, _ := stream(next); began {
			t.Fatalf("delta frame %d began a block after the refusal", next)
		}
		next++
	}
	for i := next; i < next+20; i++ {
		if began, ok := stream(i); !began || !ok {
			t.Fatalf("frame %d after the refusal: began %v, written %v", i, began, ok)
		}
	}
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
	checkPutMediaBody(t, out, fr)
	if len(out.frags) != 1 || out.frags[0].Frames != 20 || !startsWithKeyFrame(out.frags[0]) ||
		out.frags[0].Timecode != uint64(startMs+int64(next)*1000/15) {
		t.Fatalf("%d fragments after the refusal; want one of the 20 frames from key frame %d", len(out.frags), next)
	}
	if len(bufs.live) != 0 {
		t.Fatalf("%d buffers never freed or handed on", len(bufs.live))
	}
}
