package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// The live tap: frames reach live subscribers (serve's WebRTC viewers) as
// they arrive at the box, one by one, not when their fragment completes.
//
// A frame's bytes are still in its fragment's assembly buffer when it
// arrives, and that buffer may move as it grows (MediaMemory.Grow), so the
// tap copies each frame once into a chunk of the media memory (a 256 KiB
// buffer frames are packed into, reference-counted: each frame in it
// holds a reference, the tap holds one while it fills it). Every
// subscriber then gets the same *LiveFrame, a shared read-only view of
// that chunk, reference-counted like a Fragment: publishing a frame to n
// subscribers costs n reference increments and n channel sends, never a
// copy or an allocation (LiveFrame and liveChunk structs are pooled).
// The chunks are counted against the media budget as uploads are (the
// first refused); a chunk the budget has no room for is not waited for:
// the frame is skipped and every subscriber waits for the next key frame.
//
// A consumer may attach to a frame one derived form shared like the frame
// (LiveFrame.Attachment: serve's WHEP cuts a frame into RTP payloads once
// per stream, not once per viewer), its bytes packed into the tap's
// chunks too (AttachBuf) and released with the frame's last reference.
//
// A subscriber has a bounded queue (LiveSubscribe's depth). A frame its
// queue has no room for is dropped for it alone, and it then skips
// frames until the next key frame of the video track (a decoder needs
// one after a gap): a slow subscriber never blocks ingest or other
// subscribers, and holds at most depth frames.
//
// While it has subscribers, and for Options.LiveKeepGOP after the last
// one left, the tap keeps the frames since the newest video key frame
// (the GOP, at most maxLiveGOP frames), so a new subscriber starts at
// once with the latest key frame; while the GOP is longer than that (or a
// frame was skipped), or the tap is cold (nobody watched for that long,
// or ever: it then copies no frame at all), a new subscriber waits for
// the next key frame.
//
// Locks: liveTap.mu sits beside ring.mu in the engine's order: a leaf
// but for MediaMemory.mu (a chunk allocated or freed under it). Release
// of a LiveFrame takes no engine lock but MediaMemory.mu. A frame's
// attMu is above liveTap.mu (AttachBuf takes it under attMu).

// liveChunkSize is the media-memory buffer frames are packed into; a
// larger frame gets a chunk of its own size.
const liveChunkSize = 256 << 10

// maxLiveGOP bounds the frames kept for new subscribers (about 10 s of
// 30 fps video with audio), maxLiveGOPBytes their bytes (about 16 s of a
// 2 Mbit/s camera): past either the GOP is dropped and a new subscriber
// waits for the next key frame. Without the byte bound a producer's big
// fragments (a 48 MB PutMedia GOP) would be held twice in the media
// budget, once by the tap: uploads refused with ERROR 5000 on a small box.
const (
	maxLiveGOP      = 600
	maxLiveGOPBytes = 4 << 20
)

// LiveFrame is one frame of a stream's live tap: a Matroska block's
// payload as the producer sent it (for H.264/H.265 video, AVCC/HVCC
// length-prefixed NAL units; for audio, one codec frame), shared
// read-only by every subscriber. Release it when done; Data must not be
// used afterwards.
type LiveFrame struct {
	// Header is the session header the frame belongs to (its tracks and
	// their CodecPrivate); it changes when the producer's tracks do.
	Header *Header
	// Track is the block's track number in Header.
	Track uint64
	// TimeMs is the frame's presentation time: the producer's time in
	// epoch ms, as a fragment's ProducerMs.
	TimeMs int64
	// Video: the frame is of the header's first video track's type.
	Video bool
	// Key: a key frame of the video track (for a stream without video,
	// every frame): a decoder can start here.
	Key bool
	// ArrivedNs is when the box had the frame (engine clock, Unix ns).
	ArrivedNs int64
	// Data is the block's payload.
	Data []byte

	refs  atomic.Int32
	chunk *liveChunk
	tap   *liveTap // the tap that published it (AttachBuf's chunks)

	// The consumer's attachment (Attachment): set once under attMu,
	// released with the frame's last reference, its bytes (AttachBuf) in
	// attChunk.
	attMu    sync.Mutex
	att      LiveAttachment
	attChunk *liveChunk
}

// LiveAttachment is a form of a live frame derived once and shared by
// every subscriber like the frame itself (serve's WHEP: the frame's RTP
// payloads, cut once per stream instead of once per viewer). The frame
// holds it until its last reference is released, then calls Release
// (without engine locks but possibly under the tap's: Release must take
// no engine lock). One kind of attachment per frame: the first
// LiveAttacher to ask builds it for all.
type LiveAttachment interface{ Release() }

// LiveAttacher builds a frame's attachment: Attach may take its bytes
// from the tap's media memory with f.AttachBuf, and returns nil when it
// cannot build one (the next Attachment call tries again).
type LiveAttacher interface {
	Attach(f *LiveFrame) LiveAttachment
}

// Attachment returns the frame's attachment, built by a on the first
// call; concurrent callers wait for it and get the same one.
func (f *LiveFrame) Attachment(a LiveAttacher) LiveAttachment {
	f.attMu.Lock()
	defer f.attMu.Unlock()
	if f.att == nil {
		f.att = a.Attach(f)
	}
	return f.att
}

// AttachBuf returns n bytes (len n) that live as long as the frame, for
// its attachment: packed into the tap's chunks like frames, counted
// against the media budget as they are; nil when the budget has no room
// (nothing is waited for or shed) or the stream is gone. Only within
// LiveAttacher.Attach, at most once per frame. A frame not from a tap (a
// test's) gets Go memory.
func (f *LiveFrame) AttachBuf(n int) []byte {
	if f.attChunk != nil {
		return nil
	}
	t := f.tap
	if t == nil {
		return make([]byte, n)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	c := t.chunkLocked(n)
	if c == nil {
		return nil
	}
	at := len(c.buf)
	c.buf = c.buf[:at+n]
	c.refs.Add(1)
	f.attChunk = c
	return c.buf[at : at+n : at+n]
}

// liveChunk is a media buffer frames are packed into.
type liveChunk struct {
	buf  []byte
	refs atomic.Int32
	mem  *MediaMemory
}

var (
	liveFramePool = sync.Pool{New: func() any { return new(LiveFrame) }}
	liveChunkPool = sync.Pool{New: func() any { return new(liveChunk) }}
)

func (c *liveChunk) release() {
	if c.refs.Add(-1) != 0 {
		return
	}
	if c.mem != nil {
		c.mem.Free(c.buf)
	}
	c.buf, c.mem = nil, nil
	liveChunkPool.Put(c)
}

// Retain takes another reference (for a consumer handing the frame on).
func (f *LiveFrame) Retain() *LiveFrame {
	f.refs.Add(1)
	return f
}

// Release drops a reference; the last one returns the frame's bytes.
func (f *LiveFrame) Release() {
	switch n := f.refs.Add(-1); {
	case n == 0:
		// The last reference: nobody else may call Attachment now.
		c, a, ac := f.chunk, f.att, f.attChunk
		if a != nil {
			a.Release()
		}
		*f = LiveFrame{}
		liveFramePool.Put(f)
		if ac != nil {
			ac.release()
		}
		if c != nil {
			c.release()
		}
	case n < 0:
		panic("engine: LiveFrame released more often than retained") // a bug in kvsedge, never input-driven
	}
}

// ErrLiveClosed: the live subscription ended (its stream was deleted, or
// the engine closed).
var ErrLiveClosed = errors.New("engine: live subscription closed")

// LiveSub is one live subscriber of a stream.
type LiveSub struct {
	t       *liveTap
	ch      chan *LiveFrame
	gone    chan struct{} // closed when the tap ends the subscription
	waitKey bool          // under t.mu: skip to the next key frame
	closed  bool          // under t.mu
	dropped atomic.Uint64
	once    sync.Once
	// WaitStored's (the consumer's goroutine only): its timer, and the
	// fragment whose wait its max cut (not waited for again).
	timer *time.Timer
	cut   <-chan struct{}
}

// Next returns the next frame (the caller Releases it), waiting for it;
// ErrLiveClosed when the stream went away, or ctx's error.
func (s *LiveSub) Next(ctx context.Context) (*LiveFrame, error) {
	select {
	case f := <-s.ch:
		return f, nil
	default:
	}
	select {
	case f := <-s.ch:
		return f, nil
	case <-s.gone:
		return nil, ErrLiveClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WaitStored waits until the stream's newest received fragment is
// settled (durable, or its persist failed), for at most max, and reports
// false when max passed first. It returns at once (true) when no
// fragment is on its way to disk, when the subscription or ctx ends, and
// for a fragment whose wait max already cut once: a consumer waits at
// most max once per fragment, not once per frame (a disk slower than the
// frames, or fragments queued behind a slow sync, would otherwise hold
// every frame for max and the viewer would fall ever further behind).
// Called by the subscription's consumer only (one goroutine).
//
// Why (BenchmarkFanOutPersistLatency, e2e): a fragment completes when
// the next key frame arrives, so its persist (segment write, fdatasync,
// index commit) runs exactly while that key frame goes out to every
// live viewer. 20 WebRTC viewers' key-frame sends overlapping the persist
// raised the camera's persist p50 from ~2 to 6-8 ms on a 2-core box
// although its CPU was mostly idle (sending only P frames: no rise; only
// key frames: the whole rise). A viewer that waits for the fragment to be
// stored before sending on keeps the two apart, for a few milliseconds of
// live delay once per fragment.
func (s *LiveSub) WaitStored(ctx context.Context, max time.Duration) bool {
	f := s.t.storing.Load()
	if f == nil || f.persisted == s.cut {
		return true
	}
	ch := f.persisted
	select {
	case <-ch:
		return true
	default:
	}
	if s.timer == nil {
		s.timer = time.NewTimer(max)
	} else {
		s.timer.Reset(max)
	}
	defer s.timer.Stop()
	select {
	case <-ch:
		return true
	case <-s.timer.C:
		s.cut = ch
		return false
	case <-s.gone:
		return true
	case <-ctx.Done():
		return true
	}
}

// C is the subscriber's queue, for a consumer that selects on more than
// one source; Done is closed when the subscription ends.
func (s *LiveSub) C() <-chan *LiveFrame { return s.ch }

// Done is closed when the tap ended the subscription (stream deleted).
func (s *LiveSub) Done() <-chan struct{} { return s.gone }

// Dropped counts the frames this subscriber lost to a full queue or a
// skip to the next key frame.
func (s *LiveSub) Dropped() uint64 { return s.dropped.Load() }

// Rewind drops what is queued and starts the subscriber again at the
// newest key frame the tap kept (else at the next one): for a viewer
// that lost a key frame (a WebRTC picture loss indication).
func (s *LiveSub) Rewind() {
	t := s.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.closed {
		return
	}
	for {
		select {
		case f := <-s.ch:
			f.Release()
			continue
		default:
		}
		break
	}
	s.waitKey = !t.gopOK || len(t.gop) == 0
	for _, f := range t.gop {
		t.sendLocked(s, f)
	}
}

// Close ends the subscription and releases the frames still queued.
func (s *LiveSub) Close() {
	s.once.Do(func() {
		t := s.t
		t.mu.Lock()
		if !s.closed {
			s.closed = true
			if i := slices.Index(t.subs, s); i >= 0 {
				t.subs = slices.Delete(t.subs, i, i+1)
			}
			if t.keepGOP > 0 {
				t.warmUntil = max(t.warmUntil, t.clock.Now().UnixNano()+int64(t.keepGOP))
			}
			t.subscribers.Store(int32(len(t.subs)))
			close(s.gone)
		}
		t.mu.Unlock()
		for {
			select {
			case f := <-s.ch:
				f.Release()
			default:
				return
			}
		}
	})
}

// liveTap is a stream's live fan-out.
type liveTap struct {
	mem   *MediaMemory
	clock Clock
	// keepGOP: Options.LiveKeepGOP (negative: always); warmUntil (Unix
	// ns, under mu) is when the GOP stops being kept after the last
	// subscriber left.
	keepGOP   time.Duration
	warmUntil int64

	// storing is the stream's newest received fragment (nil before the
	// first): its persisted channel, closed once it is durable or its
	// persist failed, is what LiveSub.WaitStored waits on. Atomic, not
	// under mu: every viewer reads it before every frame it sends. Only
	// the channel is read (the fragment's media may be released).
	storing atomic.Pointer[Fragment]

	mu     sync.Mutex
	subs   []*LiveSub
	gop    []*LiveFrame // retained; from the newest video key frame on
	gopOK  bool         // gop holds every frame since that key frame
	gopLen int          // bytes of gop's frames
	cur    *liveChunk   // the chunk being filled (the tap's reference)
	closed bool
	// subscribers is len(subs), read without the lock.
	subscribers atomic.Int32
	frames      atomic.Uint64
	lastNs      atomic.Int64  // ArrivedNs of the newest frame
	bytes       atomic.Uint64 // copied into chunks: once per frame
	skipped     atomic.Uint64
}

func newLiveTap(mem *MediaMemory, clock Clock, keepGOP time.Duration) *liveTap {
	return &liveTap{mem: mem, clock: clock, keepGOP: keepGOP}
}

// warmLocked reports whether the tap keeps its GOP now. REQUIRES: t.mu.
func (t *liveTap) warmLocked(nowNs int64) bool {
	return t.keepGOP < 0 || len(t.subs) > 0 || nowNs < t.warmUntil
}

// publish copies one frame into the tap's chunk and hands it to every
// subscriber. payload is only read during the call.
func (t *liveTap) publish(h *Header, track uint64, timeMs int64, key bool, payload []byte) {
	video, hasVideo := false, false
	if tr, err := h.Tracks(); err == nil {
		for i := range tr.Tracks {
			if tr.Tracks[i].Type == mkv.TrackVideo {
				hasVideo = true
				video = tr.Tracks[i].Number == track
				break
			}
		}
	}
	if hasVideo {
		key = key && video
	} else {
		key = true
	}
	now := t.clock.Now().UnixNano()

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.frames.Add(1)
	t.lastNs.Store(now)
	if key {
		t.resetGOPLocked()
		t.gopOK = len(payload) <= maxLiveGOPBytes && t.warmLocked(now)
	}
	if !t.gopOK && len(t.subs) == 0 {
		if t.cur != nil { // cold: the tap holds no media at all
			t.cur.release()
			t.cur = nil
		}
		return // nobody to send it to and no GOP kept: no copy
	}
	c := t.chunkLocked(len(payload))
	if c == nil {
		// No room in the media budget: nobody gets this frame, so every
		// subscriber (and the kept GOP) must wait for the next key frame.
		t.skipped.Add(1)
		t.resetGOPLocked()
		for _, s := range t.subs {
			s.waitKey = true
			s.dropped.Add(1)
		}
		return
	}
	at := len(c.buf)
	c.buf = append(c.buf, payload...)
	t.bytes.Add(uint64(len(payload)))
	c.refs.Add(1)
	f := liveFramePool.Get().(*LiveFrame)
	f.Header, f.Track, f.TimeMs, f.Video, f.Key, f.ArrivedNs = h, track, timeMs, video, key, now
	f.Data = c.buf[at:len(c.buf):len(c.buf)]
	f.chunk, f.tap = c, t
	f.refs.Store(1) // publish's own, dropped below
	if t.gopOK {
		if len(t.gop) < maxLiveGOP && t.gopLen+len(payload) <= maxLiveGOPBytes {
			t.gop = append(t.gop, f.Retain())
			t.gopLen += len(payload)
		} else {
			t.resetGOPLocked()
		}
	}
	for _, s := range t.subs {
		t.sendLocked(s, f)
	}
	f.Release()
}

// sendLocked queues f for s, or drops it (and what follows up to the
// next key frame) when s's queue is full. REQUIRES: t.mu held.
func (t *liveTap) sendLocked(s *LiveSub, f *LiveFrame) {
	if s.waitKey {
		if !f.Key {
			s.dropped.Add(1)
			return
		}
		s.waitKey = false
	}
	f.refs.Add(1)
	select {
	case s.ch <- f:
	default:
		f.refs.Add(-1) // the caller still holds one: never the last
		s.waitKey = true
		s.dropped.Add(1)
	}
}

// chunkLocked returns the chunk n more bytes go into (nil: no room in
// the budget). REQUIRES: t.mu held.
func (t *liveTap) chunkLocked(n int) *liveChunk {
	if c := t.cur; c != nil && cap(c.buf)-len(c.buf) >= n {
		return c
	}
	if t.cur != nil {
		t.cur.release()
		t.cur = nil
	}
	var buf []byte
	var mem *MediaMemory
	if t.mem != nil {
		s, err := t.mem.acquire(max(n, liveChunkSize), MediaUpload, spanComplete, nil, true)
		if s == nil || err != nil {
			return nil
		}
		buf, mem = s.bytes()[:0], t.mem
	} else {
		buf = make([]byte, 0, max(n, liveChunkSize))
	}
	c := liveChunkPool.Get().(*liveChunk)
	c.buf, c.mem = buf, mem
	c.refs.Store(1)
	t.cur = c
	return c
}

// resetGOPLocked drops the kept GOP. REQUIRES: t.mu held.
func (t *liveTap) resetGOPLocked() {
	for i, f := range t.gop {
		f.Release()
		t.gop[i] = nil
	}
	t.gop = t.gop[:0]
	t.gopOK = false
	t.gopLen = 0
}

// subscribe adds a subscriber with a queue of depth frames, primed with
// the kept GOP.
func (t *liveTap) subscribe(depth int) *LiveSub {
	s := &LiveSub{t: t, ch: make(chan *LiveFrame, max(depth, 1)), gone: make(chan struct{})}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		s.closed = true
		close(s.gone)
		return s
	}
	s.waitKey = !t.gopOK || len(t.gop) == 0
	for _, f := range t.gop {
		t.sendLocked(s, f)
	}
	t.subs = append(t.subs, s)
	t.subscribers.Store(int32(len(t.subs)))
	return s
}

// close ends every subscription and drops the tap's frames for good.
func (t *liveTap) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	t.resetGOPLocked()
	if t.cur != nil {
		t.cur.release()
		t.cur = nil
	}
	for _, s := range t.subs {
		s.closed = true
		close(s.gone)
	}
	t.subs = nil
	t.subscribers.Store(0)
}

// LiveFrame publishes one frame of this session to the stream's live
// subscribers as it arrives, before its fragment is complete: the hook
// mkv.Reader (Options.OnBlock) and mkv.FragmentBuilder (OnBlock) call for
// every block they accept. b.Payload is only read during the call. A
// superseded session publishes nothing (the newer one feeds live
// viewers).
func (sess *IngestSession) LiveFrame(h *mkv.Header, b mkv.Block) {
	if sess.Stopped() {
		return
	}
	sess.s.live.publish(sess.header(h), b.Track, b.TimeMs, b.Key, b.Payload)
}

// LiveWatched reports whether the stream's live tap has a subscriber now
// (one atomic load): a camera reads its socket at frame pace only then.
func (sess *IngestSession) LiveWatched() bool { return sess.s.live.subscribers.Load() > 0 }

// LiveHook is LiveFrame for blocks whose times are offsetMs before the
// producer's (a PutMedia upload with RELATIVE timecodes: its start
// timestamp), so live frames carry producer times as fragments do.
func (sess *IngestSession) LiveHook(offsetMs int64) func(*mkv.Header, mkv.Block) {
	if offsetMs == 0 {
		return sess.LiveFrame
	}
	return func(h *mkv.Header, b mkv.Block) {
		b.TimeMs += offsetMs
		b.ClusterMs += offsetMs
		sess.LiveFrame(h, b)
	}
}

// LiveSubscribe subscribes to a stream's live frames, with a queue of
// depth frames (a subscriber that falls further behind skips to the next
// key frame). It starts at the newest key frame when the tap has kept
// its GOP, else at the next one. Close the subscription when done.
func (e *Engine) LiveSubscribe(ref StreamRef, depth int) (*LiveSub, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	return s.live.subscribe(depth), nil
}

// LiveStats are a stream's live-tap figures.
type LiveStats struct {
	Stream      string
	LastFrameNs int64 // when the newest frame arrived (engine clock, Unix ns; 0: none yet)
	Subscribers int
	Frames      uint64 // published
	Bytes       uint64 // copied into the tap's chunks (once per frame, whatever the subscribers)
	Skipped     uint64 // not published: no room in the media budget
}

// LiveStats reports the stream's live tap.
func (e *Engine) LiveStats(ref StreamRef) (LiveStats, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return LiveStats{}, err
	}
	return s.liveStats(), nil
}

func (s *stream) liveStats() LiveStats {
	t := s.live
	return LiveStats{Stream: s.info.Load().Name, LastFrameNs: t.lastNs.Load(), Subscribers: int(t.subscribers.Load()),
		Frames: t.frames.Load(), Bytes: t.bytes.Load(), Skipped: t.skipped.Load()}
}

// LiveStreams reports the streams whose newest live frame arrived after
// since (from cameras, PutMedia producers alike), in no order.
func (e *Engine) LiveStreams(since time.Time) []LiveStats {
	var out []LiveStats
	for _, s := range e.allStreams() {
		if s.live.lastNs.Load() > since.UnixNano() && !s.deleted.Load() {
			out = append(out, s.liveStats())
		}
	}
	return out
}

// received notes the stream's newest received fragment (WaitStored).
func (t *liveTap) received(f *Fragment) { t.storing.Store(f) }
