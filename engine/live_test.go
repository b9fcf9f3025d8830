package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

func liveEngine(t *testing.T) (*Engine, *IngestSession) {
	t.Helper()
	return liveEngineAt(t, SystemClock)
}

// liveEngineAt is liveEngine on clock.
func liveEngineAt(t *testing.T, clock Clock) (*Engine, *IngestSession) {
	t.Helper()
	_, e := openMedia(t, vfs.NewMem(), clock, 0)
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	return e, sess
}

func nextFrame(t *testing.T, s *LiveSub) *LiveFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := s.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func noFrame(t *testing.T, s *LiveSub) {
	t.Helper()
	select {
	case f := <-s.C():
		t.Fatalf("unexpected frame at %d ms (key %v)", f.TimeMs, f.Key)
	default:
	}
}

// A camera's frame reaches live subscribers when its block is written,
// long before the fragment it belongs to is complete (never Received
// here), and every subscriber sees the same bytes in one shared buffer.
func TestLiveFramesArriveBeforeTheirFragment(t *testing.T) {
	e, sess := liveEngine(t)
	a, err := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	defer b.Close()

	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}, Width: 64, Height: 64}})
	if err != nil {
		t.Fatal(err)
	}
	fb := mkv.FragmentBuilder{Buffers: sess.Buffers(MediaCamera), OnBlock: sess.LiveFrame}
	if err := fb.Start(h, 1_000_000, 64); err != nil {
		t.Fatal(err)
	}
	key := []byte{0, 0, 0, 3, 0x65, 1, 2}
	if err := fb.AddBlock(0, 1_000_000, true, key); err != nil {
		t.Fatal(err)
	}
	// A block streamed in parts (the RTP path), growing the buffer well
	// past its first size: the frame published is the whole block.
	if err := fb.BeginBlock(0, 1_000_033, false); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{0x41}, 300_000)
	_ = fb.AppendUint32(uint32(len(big)))
	_ = fb.Append(big)
	fb.EndBlock()

	for _, s := range []*LiveSub{a, b} {
		f1 := nextFrame(t, s)
		if !f1.Key || !f1.Video || f1.TimeMs != 1_000_000 || !bytes.Equal(f1.Data, key) || f1.Header == nil {
			t.Fatalf("first frame: key %v video %v at %d, % x", f1.Key, f1.Video, f1.TimeMs, f1.Data)
		}
		f2 := nextFrame(t, s)
		if f2.Key || f2.TimeMs != 1_000_033 || len(f2.Data) != 4+len(big) || !bytes.Equal(f2.Data[4:], big) {
			t.Fatalf("second frame: key %v at %d, %d bytes", f2.Key, f2.TimeMs, len(f2.Data))
		}
		f1.Release()
		f2.Release()
	}
	fb.Discard()
}

// testAttacher counts the attachments it builds and that are released.
type testAttacher struct{ built, released int }

type testAttachment struct {
	a   *testAttacher
	buf []byte
}

func (a *testAttacher) Attach(f *LiveFrame) LiveAttachment {
	a.built++
	buf := f.AttachBuf(1000)
	if buf == nil {
		return nil
	}
	copy(buf, f.Data)
	return &testAttachment{a: a, buf: buf}
}

func (t *testAttachment) Release() { t.a.released++ }

// A frame's attachment is built once for every subscriber, its bytes in
// the tap's media memory (freed: checkMediaFreed), and released with the
// frame's last reference: here the kept GOP's, when the next key frame
// replaces it. Once the stream is gone there are no bytes to attach.
func TestLiveAttachmentBuiltOnceReleasedWithTheFrame(t *testing.T) {
	e, sess := liveEngine(t)
	a, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	defer a.Close()
	b, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	defer b.Close()
	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}}})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte{0, 0, 0, 3, 0x65, 1, 2}
	sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: 1000, Key: true, Payload: key})
	var at testAttacher
	fa, fb := nextFrame(t, a), nextFrame(t, b)
	x, y := fa.Attachment(&at), fb.Attachment(&at)
	if fa != fb || x != y || at.built != 1 {
		t.Fatalf("two subscribers: frames %p/%p, attachments %p/%p, built %d times (want one of each)", fa, fb, x, y, at.built)
	}
	if got := x.(*testAttachment).buf; !bytes.Equal(got[:len(key)], key) || fa.AttachBuf(10) != nil {
		t.Fatalf("attachment bytes % x; a second AttachBuf must get none", got[:len(key)])
	}
	fa.Release()
	fb.Release()
	if at.released != 0 {
		t.Fatal("the attachment was released while the tap keeps the frame (its GOP)")
	}
	sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: 1040, Key: true, Payload: key})
	if at.released != 1 {
		t.Fatalf("the GOP's key frame was replaced: its attachment released %d times, want 1", at.released)
	}
	f := nextFrame(t, a)
	defer f.Release()
	nextFrame(t, b).Release()
	info, _ := e.Stream(StreamRef{Name: "cam"})
	if err := e.DeleteStream(info.ARN, ""); err != nil {
		t.Fatal(err)
	}
	if f.Attachment(&at) != nil || at.built != 2 {
		t.Fatalf("after the stream's deletion an attachment was built (%d attempts)", at.built)
	}
}

// Every block of a real producer upload is published as the Matroska
// reader accepts it, with the payload the stored fragment holds, audio
// marked as such and key frames only on video.
func TestLiveTapCarriesAPutMediaUpload(t *testing.T) {
	e, sess := liveEngine(t)
	sub, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 4096)
	defer sub.Close()
	data, err := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	rd := mkv.NewReader(bytes.NewReader(data), mkv.Options{Buffers: sess.Buffers(MediaUpload), OnBlock: sess.LiveFrame})
	defer rd.Close()
	var want []mkv.Block
	var wantData [][]byte
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev != mkv.EventFragmentEnd {
			continue
		}
		f := rd.TakeFragment()
		if err := mkv.ForEachBlock(f.Header, f.Buf[:f.ClusterLen], func(b mkv.Block) error {
			want = append(want, b)
			wantData = append(wantData, bytes.Clone(b.Payload))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sess.e.mem.Free(f.Buf)
	}
	if len(want) < 100 {
		t.Fatalf("only %d blocks in the capture", len(want))
	}
	keys, audio := 0, 0
	for i, w := range want {
		f := nextFrame(t, sub)
		if f.Track != w.Track || f.TimeMs != w.TimeMs || !bytes.Equal(f.Data, wantData[i]) {
			t.Fatalf("frame %d: track %d at %d (%d bytes), want track %d at %d (%d bytes)", i, f.Track, f.TimeMs, len(f.Data), w.Track, w.TimeMs, len(wantData[i]))
		}
		if f.Key {
			keys++
			if !f.Video {
				t.Fatalf("frame %d: an audio frame marked as a key frame", i)
			}
		}
		if !f.Video {
			audio++
		}
		f.Release()
	}
	if keys == 0 || audio == 0 {
		t.Fatalf("%d key frames, %d audio frames", keys, audio)
	}
	noFrame(t, sub)
}

// A subscriber whose queue is full loses frames up to the next key
// frame, alone: the publisher never waits and the other subscriber gets
// everything. A new subscriber starts at the newest key frame.
func TestLiveSlowSubscriberSkipsToTheNextKeyFrame(t *testing.T) {
	e, sess := liveEngine(t)
	h, _ := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}}})
	slow, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 3)
	defer slow.Close()
	fast, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 100)
	defer fast.Close()
	pub := func(ms int64, key bool) {
		sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: ms, Key: key, Payload: []byte{byte(ms)}})
	}
	for i := range 10 { // a GOP of 10 frames: the slow one keeps 3
		pub(int64(i), i == 0)
	}
	var got []int64
	take := func(n int) {
		for range n {
			f := nextFrame(t, slow)
			got = append(got, f.TimeMs)
			f.Release()
		}
	}
	take(3)
	pub(10, true)
	pub(11, false)
	take(2)
	noFrame(t, slow)
	if want := []int64{0, 1, 2, 10, 11}; !equalInts(got, want) {
		t.Fatalf("slow subscriber got %v, want %v", got, want)
	}
	if slow.Dropped() != 7 {
		t.Fatalf("slow subscriber dropped %d, want 7", slow.Dropped())
	}
	for i := range 12 {
		f := nextFrame(t, fast)
		if f.TimeMs != int64(i) {
			t.Fatalf("fast subscriber frame %d at %d", i, f.TimeMs)
		}
		f.Release()
	}
	late, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 10)
	defer late.Close()
	for _, want := range []int64{10, 11} {
		f := nextFrame(t, late)
		if f.TimeMs != want {
			t.Fatalf("late subscriber got %d, want %d (from the newest key frame)", f.TimeMs, want)
		}
		f.Release()
	}
	st, _ := e.LiveStats(StreamRef{Name: "cam"})
	if st.Subscribers != 3 || st.Frames != 12 {
		t.Fatalf("stats %+v", st)
	}
	// Deleting the stream ends every subscription.
	info, _ := e.Stream(StreamRef{Name: "cam"})
	if err := e.DeleteStream(info.ARN, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := late.Next(context.Background()); !errors.Is(err, ErrLiveClosed) {
		t.Fatalf("after delete: %v", err)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// BenchmarkLiveTap20Subscribers publishes 20 KB frames to 20 subscribers
// that each consume every frame: the tap copies a frame once (into its
// chunk) and hands all 20 the same view, so allocs/op stays 0 and the
// bytes copied per frame do not grow with the subscribers (copied-B/frame
// is the frame size, not 20 times it). Each op is one frame.
func BenchmarkLiveTap20Subscribers(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	e, err := Open(Options{Store: StoreOptions{Dir: b.TempDir()}, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		b.Fatal(err)
	}
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	h, _ := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}}})
	const subs = 20
	payload := bytes.Repeat([]byte{7}, 20_000)
	const warm = 1000
	var wg sync.WaitGroup
	// seen[i][j] is where subscriber i found warm-up frame j's bytes.
	seen := make([][warm]uintptr, subs)
	var list []*LiveSub
	for i := range subs {
		s, err := e.LiveSubscribe(StreamRef{Name: "cam"}, 1024)
		if err != nil {
			b.Fatal(err)
		}
		list = append(list, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				f, err := s.Next(context.Background())
				if err != nil {
					return
				}
				if j := -1 - f.TimeMs; j >= 0 && j < warm {
					seen[i][j] = uintptr(unsafe.Pointer(unsafe.SliceData(f.Data)))
				}
				f.Release()
			}
		}()
	}
	// Warm the pools and the chunk cache; check that every subscriber
	// got each frame in the same buffer (one copy, not one per viewer).
	for i := range warm {
		sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: int64(-1 - i), Key: i%30 == 0, Payload: payload})
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		done := true
		for i := range subs {
			if seen[i][warm-1] == 0 {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for j := range warm {
		for i := range subs {
			if seen[i][j] == 0 || seen[i][j] != seen[0][j] {
				b.Fatalf("warm-up frame %d: subscriber %d saw it at %#x, subscriber 0 at %#x (a copy per viewer, or a lost frame)", j, i, seen[i][j], seen[0][j])
			}
		}
	}
	before, _ := e.LiveStats(StreamRef{Name: "cam"})
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	for i := range b.N {
		sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: int64(i), Key: i%30 == 0, Payload: payload})
	}
	b.StopTimer()
	after, _ := e.LiveStats(StreamRef{Name: "cam"})
	var dropped uint64
	for _, s := range list {
		dropped += s.Dropped()
	}
	b.ReportMetric(float64(after.Bytes-before.Bytes)/float64(b.N), "copied-B/frame")
	b.ReportMetric(float64(dropped)/float64(b.N*subs), "dropped/frame-viewer")
	for _, s := range list {
		s.Close()
	}
	wg.Wait()
}

// A GOP bigger than maxLiveGOPBytes (a producer's 48 MB fragments) is not
// kept: with nobody subscribed its frames are not copied at all (the tap
// would otherwise hold the upload a second time in the media budget), a
// new subscriber waits for the next key frame, and one subscribed gets
// every frame.
func TestLiveTapKeepsNoHugeGOP(t *testing.T) {
	e, sess := liveEngine(t)
	h, _ := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}}})
	big := make([]byte, 1<<20)
	pub := func(ms int64, key bool) {
		sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: ms, Key: key, Payload: big})
	}
	warm, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 1) // the tap keeps GOPs after a viewer (TestLiveTapColdCopiesNothing)
	warm.Close()
	for i := range 8 { // 8 MiB in one GOP
		pub(int64(i), i == 0)
	}
	st, _ := e.LiveStats(StreamRef{Name: "cam"})
	if st.Frames != 8 || st.Bytes >= 8<<20 || st.Bytes < maxLiveGOPBytes-(1<<20) {
		t.Fatalf("no subscriber, an 8 MiB GOP: %d frames, %d bytes copied (want the first %d MiB at most)", st.Frames, st.Bytes, maxLiveGOPBytes>>20)
	}
	late, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 100)
	defer late.Close()
	noFrame(t, late) // no GOP kept: it waits for the next key frame
	pub(8, false)
	noFrame(t, late)
	pub(9, true)
	for ms := int64(9); ms < 15; ms++ {
		if ms > 9 {
			pub(ms, false)
		}
		f := nextFrame(t, late)
		if f.TimeMs != ms || len(f.Data) != len(big) {
			t.Fatalf("subscriber got frame at %d (%d bytes), want %d", f.TimeMs, len(f.Data), ms)
		}
		f.Release()
	}
}

// TestLiveTapColdCopiesNothing: a stream nobody has watched copies no
// frame into the tap (a new subscriber starts at the next key frame);
// after a subscriber, the tap keeps the newest GOP for LiveKeepGOP (a
// next subscriber starts at once at the newest key frame), then goes cold
// again and lets go of its media.
func TestLiveTapColdCopiesNothing(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 12, 5, 18, 0, 0, 0, time.UTC)}
	e, sess := liveEngineAt(t, clock)
	h, _ := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}}})
	ms := int64(0)
	gop := func() { // a key frame and 4 others
		for i := range 5 {
			sess.LiveFrame(h, mkv.Block{Track: 1, TimeMs: ms, Key: i == 0, Payload: make([]byte, 1000)})
			ms += 40
		}
	}
	copied := func() uint64 {
		st, _ := e.LiveStats(StreamRef{Name: "cam"})
		return st.Bytes
	}
	gop()
	gop()
	if b := copied(); b != 0 {
		t.Fatalf("nobody ever watched: %d bytes copied", b)
	}
	sub, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 100)
	noFrame(t, sub) // cold: it waits for the next key frame
	gop()
	if f := nextFrame(t, sub); !f.Key || f.TimeMs != ms-200 {
		t.Fatalf("the first frame of a cold start: key %v at %d, want the key frame at %d", f.Key, f.TimeMs, ms-200)
	} else {
		f.Release()
	}
	sub.Close()
	clock.add(time.Minute)
	gop()
	before := copied()
	next, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 100)
	if f := nextFrame(t, next); !f.Key || f.TimeMs != ms-200 { // warm: at once, at the newest key frame
		t.Fatalf("a start a minute after the last viewer: key %v at %d, want the kept key frame at %d", f.Key, f.TimeMs, ms-200)
	} else {
		f.Release()
	}
	next.Close()
	clock.add(11 * time.Minute) // past the default LiveKeepGOP
	gop()
	gop()
	if b := copied(); b != before {
		t.Fatalf("cold again, yet %d more bytes copied", b-before)
	}
}

// TestLiveSubWaitStored: WaitStored returns at once while no fragment of
// the stream is on its way to disk; after Receive it waits until that
// fragment is stored (or for at most its max, reporting false), and a
// failed or abandoned fragment ends the wait as well.
func TestLiveSubWaitStored(t *testing.T) {
	e, sess := liveEngine(t)
	sub, err := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx := context.Background()
	if !sub.WaitStored(ctx, time.Hour) {
		t.Fatal("nothing received yet: WaitStored waited")
	}
	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: "V_MPEG4/ISO/AVC", CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe0}, Width: 64, Height: 64}})
	if err != nil {
		t.Fatal(err)
	}
	receive := func(ms int64) *Fragment {
		t.Helper()
		fb := mkv.FragmentBuilder{Buffers: sess.Buffers(MediaCamera)}
		if err := fb.Start(h, ms, 64); err != nil {
			t.Fatal(err)
		}
		if err := fb.AddBlock(0, ms, true, []byte{0, 0, 0, 3, 0x65, 1, 2}); err != nil {
			t.Fatal(err)
		}
		mf, err := fb.Finish()
		if err != nil {
			t.Fatal(err)
		}
		n, serverMs, err := sess.StartFragment()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := sess.Receive(n, serverMs, ms, mf)
		if err != nil {
			t.Fatal(err)
		}
		return rec.Fragment
	}

	f := receive(1_000_000)
	waited := make(chan bool, 1)
	go func() { waited <- sub.WaitStored(ctx, time.Minute) }()
	select {
	case <-waited:
		t.Fatal("WaitStored returned before the fragment was persisted")
	case <-time.After(50 * time.Millisecond):
	}
	if err := sess.Persist(f); err != nil {
		t.Fatal(err)
	}
	if !<-waited {
		t.Fatal("WaitStored reported its max passed, though the fragment was stored")
	}
	if !sub.WaitStored(ctx, time.Hour) {
		t.Fatal("the newest fragment is stored: WaitStored waited")
	}

	// An abandoned fragment (its upload gone) is settled too.
	f = receive(1_002_000)
	sess.Abandon(f, errors.New("gone"))
	if !sub.WaitStored(ctx, time.Hour) {
		t.Fatal("the newest fragment was abandoned: WaitStored waited")
	}
	// A wait cut by its max is not waited again for the same fragment:
	// a live frame waits at most max once per fragment, not once per
	// frame (a disk slower than the frame interval, or fragments queued
	// behind a slow sync, must not hold every frame for max).
	f = receive(1_003_000)
	if sub.WaitStored(ctx, 20*time.Millisecond) {
		t.Fatal("a fragment received, not yet persisted: WaitStored did not wait")
	}
	go func() { waited <- sub.WaitStored(ctx, time.Hour) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitStored waited again for a fragment whose wait was already cut")
	}
	sess.Abandon(f, errors.New("next"))
	// The subscription ending ends a wait.
	f = receive(1_004_000)
	defer sess.Abandon(f, errors.New("the test ends"))
	go func() { waited <- sub.WaitStored(ctx, time.Minute) }()
	sub.Close()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitStored went on waiting after its subscription closed")
	}
}

// LiveWatched says whether the stream has live subscribers now (a camera
// reads at frame pace only then): not before the first, while any is
// subscribed, not after the last closed.
func TestLiveWatchedFollowsSubscribers(t *testing.T) {
	e, sess := liveEngine(t)
	if sess.LiveWatched() {
		t.Fatal("watched before any subscriber")
	}
	a, err := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e.LiveSubscribe(StreamRef{Name: "cam"}, 16)
	if !sess.LiveWatched() {
		t.Fatal("not watched with two subscribers")
	}
	a.Close()
	if !sess.LiveWatched() {
		t.Fatal("not watched with one subscriber left")
	}
	b.Close()
	if sess.LiveWatched() {
		t.Fatal("watched after the last subscriber closed")
	}
}
