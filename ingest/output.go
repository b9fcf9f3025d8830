package ingest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// engineOutput feeds a Fragmenter's fragments into an engine ingest
// session, the path PutMedia takes: StartFragment numbers the fragment,
// Receive publishes it to live readers, and a persister goroutine makes it
// durable, so a slow disk never stalls the camera's read loop longer than
// the queue allows.
type engineOutput struct {
	sess     *engine.IngestSession
	log      *slog.Logger
	num      fragment.Number
	serverMs int64
	queue    chan received
	done     chan struct{}
	once     sync.Once
	onStored func(fragment.Meta)

	// Hand-back (manager.go): while handBack is true the camera is
	// recording a stream whose home took it back, and complete fragments
	// are held (numbered, not yet received) until the home's first
	// fragment is copied here (IngestSession.PeerAhead): those that start
	// at or after it are dropped, the earlier ones stored, cut short of
	// its producer time (handOver), and handedOver is called; nothing is
	// stored after. Held fragments leave in order
	// when there are more than maxHeld or the oldest is older than maxHold
	// (the home is slow to deliver: they are stored, a few may then be
	// recorded twice), and when the camera stops.
	handBack   *atomic.Bool
	held       []heldFragment
	over       bool
	handedOver func(fromMs int64)
	// homeFirst reads the first key frame of the home's first fragment
	// (its payload's hash), to find the same frame among the held ones.
	homeFirst func(n fragment.Number) ([32]byte, bool)
}

// heldFragment is a complete fragment held back during a hand-back.
type heldFragment struct {
	num      fragment.Number
	serverMs int64
	f        *mkv.Fragment
	at       time.Time
}

// Bounds of the hand-back hold: a few fragments, seconds (media memory).
const (
	maxHeld = 8
	maxHold = 10 * time.Second
)

// received is a fragment waiting for the disk, with when it was complete.
type received struct {
	f  *engine.Fragment
	at time.Time
}

// persistQueue bounds fragments waiting for the disk per camera.
const persistQueue = 8

// persistObserver, when set (by benchmarks, before cameras start), is
// told each camera fragment's time from complete to durable: what a
// PERSISTED ack would wait.
var persistObserver func(time.Duration)

func newEngineOutput(sess *engine.IngestSession, log *slog.Logger, onStored func(fragment.Meta)) *engineOutput {
	o := &engineOutput{sess: sess, log: log, queue: make(chan received, persistQueue), done: make(chan struct{}), onStored: onStored}
	go o.persist()
	return o
}

// Buffers is where the camera's fragments are assembled: the engine's
// media memory, as a camera (engine.MediaCamera).
func (o *engineOutput) Buffers() mkv.Buffers { return o.sess.Buffers(engine.MediaCamera) }

// LiveFrame hands each frame to the stream's live subscribers as it is
// written (engine.IngestSession.LiveFrame), before its fragment completes.
func (o *engineOutput) LiveFrame(h *mkv.Header, b mkv.Block) { o.sess.LiveFrame(h, b) }

// LiveWatched reports whether the stream has live viewers now
// (engine.IngestSession.LiveWatched): the camera's reads follow the frame
// clock then, a slower one otherwise (readpace.go).
func (o *engineOutput) LiveWatched() bool { return o.sess.LiveWatched() }

func (o *engineOutput) StartFragment() error {
	var err error
	o.num, o.serverMs, err = o.sess.StartFragment()
	return err
}

func (o *engineOutput) Fragment(f *mkv.Fragment) error {
	h := heldFragment{num: o.num, serverMs: o.serverMs, f: f, at: time.Now()}
	if o.over {
		o.Buffers().Free(f.Buf) // handed over: the home records from here
		return nil
	}
	if o.handBack == nil || !o.handBack.Load() {
		if err := o.release(len(o.held)); err != nil {
			o.Buffers().Free(f.Buf)
			return err
		}
		return o.receive(h)
	}
	h.f = new(*f) // f is the Fragmenter's, valid only during this call
	o.held = append(o.held, h)
	if n, from, ok := o.sess.PeerAhead(); ok {
		return o.handOver(n, from)
	}
	n := max(0, len(o.held)-maxHeld)
	for n < len(o.held) && time.Since(o.held[n].at) > maxHold {
		n++
	}
	return o.release(n)
}

// handOver ends a hand-back: the home holds the stream from its fragment
// n, which starts at fromMs (producer time, the home's). The held fragment
// that starts with the same key frame (the same bytes) and those after it
// are dropped, the earlier ones stored. Two boxes' producer times for one
// frame differ when either anchored its timeline on arrival (a relay that
// sends a cached GOP on connect makes that up to a GOP) or on a sender
// report the other did not have (a gortsplib v4 relay's, MediaMTX before
// v1.15, are up to 0.77 s off), so the frame is found by its bytes;
// failing that (the home's first frame is not held here), by time:
// fragments starting at or after fromMs, within half a fragment, are
// dropped.
//
// Either way, nothing stored here from the held fragments has a producer
// time at or after fromMs: where the home's clock is behind this box's,
// the frames that precede the home's first key frame but fall in its time
// are dropped (clipFrom), so time never goes back where the recording
// passes to the home. Fragments stored before the hand-back began stay as
// they are.
func (o *engineOutput) handOver(n fragment.Number, fromMs int64) error {
	cut, how := -1, "content"
	if o.homeFirst != nil {
		if sum, ok := o.homeFirst(n); ok {
			for i, h := range o.held {
				if k, ok := firstKeySum(h.f); ok && k == sum {
					cut = i
					break
				}
			}
		}
	}
	if cut < 0 {
		how = "time"
		tol := int64(1000)
		for _, h := range o.held {
			tol = min(tol, max(20, int64(h.f.Duration()/time.Millisecond)/2))
		}
		cut = len(o.held)
		for i, h := range o.held {
			if int64(h.f.Timecode) >= fromMs-tol {
				cut = i
				break
			}
		}
	}
	held := len(o.held)
	for _, h := range o.held[cut:] {
		o.Buffers().Free(h.f.Buf)
	}
	o.held = o.held[:cut]
	// Held fragments are in producer-time order: once one ends before
	// fromMs, the earlier ones do too.
	clipped := 0
	for i := len(o.held) - 1; i >= 0; i-- {
		n, kept := o.clipFrom(&o.held[i], fromMs)
		clipped += n
		if !kept {
			o.held = o.held[:i]
		} else if n == 0 {
			break
		}
	}
	kept := len(o.held)
	o.over = true
	err := o.release(kept)
	o.log.Info("camera handed back to the stream's home", "home_from_ms", fromMs, "kept", kept, "dropped", held-kept,
		"clipped_frames", clipped, "matched_by", how)
	if o.handedOver != nil {
		o.handedOver(fromMs)
	}
	return err
}

// clipFrom cuts the held fragment h before its first block (in stored
// order: the blocks after it may reference it) whose producer time is at
// or after ms. It returns the number of blocks cut and whether any block
// remains; a fragment with none left, or that cannot be rebuilt (no room
// in the media memory, or blocks that do not parse), is freed whole.
func (o *engineOutput) clipFrom(h *heldFragment, ms int64) (cut int, kept bool) {
	f := h.f
	before := 0
	err := mkv.ForEachBlock(f.Header, f.Buf[:f.ClusterLen], func(b mkv.Block) error {
		if b.TimeMs >= ms {
			return errStopBlocks
		}
		before++
		return nil
	})
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, errStopBlocks) && before > 0:
		g, err := rebuildFirst(f, before, o.Buffers())
		if err == nil {
			o.Buffers().Free(f.Buf)
			h.f = g
			return f.Frames - before, true
		}
		o.log.Warn("clipping a fragment held for a hand-back: dropping it whole", "err", err)
	case !errors.Is(err, errStopBlocks):
		o.log.Warn("reading a fragment held for a hand-back: dropping it", "err", err)
	}
	o.Buffers().Free(f.Buf)
	return f.Frames, false
}

// rebuildFirst builds, in a new buffer of bufs, a fragment of f's first n
// blocks, with f's header and cluster timecode.
func rebuildFirst(f *mkv.Fragment, n int, bufs mkv.Buffers) (*mkv.Fragment, error) {
	b := mkv.FragmentBuilder{Buffers: bufs}
	i := 0
	err := mkv.ForEachBlock(f.Header, f.Buf[:f.ClusterLen], func(blk mkv.Block) error {
		if i == 0 {
			if err := b.Start(f.Header, blk.ClusterMs, f.ClusterLen); err != nil {
				return err
			}
		}
		if i == n {
			return errStopBlocks
		}
		i++
		ti := slices.IndexFunc(f.Header.Tracks, func(tr mkv.Track) bool { return tr.Number == blk.Track })
		if ti < 0 {
			return fmt.Errorf("ingest: a block of track %d, not in the fragment's header", blk.Track)
		}
		return b.AddBlock(ti, blk.TimeMs, blk.Key, blk.Payload)
	})
	if err != nil && !errors.Is(err, errStopBlocks) {
		b.Discard()
		return nil, fmt.Errorf("ingest: rebuilding a clipped fragment: %w", err)
	}
	if !b.Started() {
		return nil, errors.New("ingest: rebuilding a clipped fragment: no block")
	}
	g, err := b.Finish()
	if err != nil {
		return nil, fmt.Errorf("ingest: rebuilding a clipped fragment: %w", err)
	}
	return g, nil
}

// homeFirstKey reads the hash of the first key frame of a stored fragment
// of stream (the home's first, copied here): engineOutput.homeFirst.
func homeFirstKey(eng *engine.Engine, stream string) func(n fragment.Number) ([32]byte, bool) {
	return func(n fragment.Number) ([32]byte, bool) {
		f, err := eng.Fragment(engine.StreamRef{Name: stream}, n)
		if err != nil {
			return [32]byte{}, false
		}
		defer f.Release()
		h, err := f.Header.Tracks()
		if err != nil {
			return [32]byte{}, false
		}
		return firstKeySum(&mkv.Fragment{Header: h, Buf: f.Media, ClusterLen: int(f.Meta.ClusterLen)})
	}
}

// firstKeySum is the hash of the payload of f's first key frame.
func firstKeySum(f *mkv.Fragment) ([32]byte, bool) {
	var sum [32]byte
	found := false
	_ = mkv.ForEachBlock(f.Header, f.Buf[:f.ClusterLen], func(b mkv.Block) error {
		if b.Key {
			sum, found = sha256.Sum256(b.Payload), true
			return errStopBlocks
		}
		return nil
	})
	return sum, found
}

var errStopBlocks = errors.New("stop")

// release stores the n oldest held fragments.
func (o *engineOutput) release(n int) error {
	var err error
	for i := 0; i < n; i++ {
		if err == nil {
			err = o.receive(o.held[i])
		} else {
			o.Buffers().Free(o.held[i].f.Buf)
		}
	}
	o.held = append(o.held[:0], o.held[n:]...)
	return err
}

func (o *engineOutput) receive(h heldFragment) error {
	f, at := h.f, h.at
	rec, err := o.sess.Receive(h.num, h.serverMs, int64(f.Timecode), f)
	if err != nil {
		return err
	}
	if rec.Duplicate {
		rec.Release() // a camera's fragments are new; nothing waits on this
		return nil
	}
	o.queue <- received{f: rec.Fragment, at: at}
	return nil
}

func (o *engineOutput) persist() {
	defer close(o.done)
	for r := range o.queue {
		meta := r.f.Meta
		if err := o.sess.Persist(r.f); err != nil {
			if !errors.Is(err, engine.ErrStreamDeleted) {
				o.log.Warn("persisting a camera fragment failed", "number", meta.Number.String(), "err", err)
			}
			continue
		}
		if persistObserver != nil {
			persistObserver(time.Since(r.at))
		}
		if o.onStored != nil {
			o.onStored(meta)
		}
	}
}

// close stores held fragments and waits for queued ones to be stored.
func (o *engineOutput) close() {
	if err := o.release(len(o.held)); err != nil {
		o.log.Warn("storing the fragments held for a hand-back", "err", err)
	}
	o.once.Do(func() { close(o.queue) })
	<-o.done
}
