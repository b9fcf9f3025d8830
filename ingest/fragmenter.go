package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// Output receives what a Fragmenter cuts, exactly as a PutMedia upload
// delivers it: the start of a fragment (BUFFERING), then the complete
// fragment (RECEIVED), whose Timecode is its producer time in epoch ms.
// Fragment owns f.Buf from the call on; the *f itself is the Fragmenter's
// and valid only during the call (one struct serves every fragment, so
// cutting one allocates nothing): an Output that keeps it keeps a copy.
type Output interface {
	StartFragment() error
	Fragment(f *mkv.Fragment) error
}

// KVS limits a fragment must stay within (shared/kvs-api.md §4.4), with a
// margin so a fragment cut at the limit is never refused.
const (
	maxFragmentBytes    = 45_000_000
	maxFragmentDuration = 19 * time.Second
)

// Fragmenter turns timestamped access units into fragments that start on
// a key frame and last about Target. Timestamps are epoch milliseconds
// (the cluster timecode scale is 1 ms, timecode type ABSOLUTE); the caller
// makes them monotonic (timeline).
//
// With a video track, a fragment is cut at the first key frame at least
// Target after its start. Audio blocks join the open fragment; audio that
// arrives before the first key frame is dropped. Without video, every
// audio frame is a key frame.
type Fragmenter struct {
	out    Output
	target time.Duration

	tracks  []mkv.TrackSpec
	hdr     *mkv.Header
	videoTI int // index of the video track, -1 if none

	b            mkv.FragmentBuilder
	done         mkv.Fragment // the fragment handed to out.Fragment
	startMs      int64
	lastStartMs  int64
	waitKey      bool
	lens         []byte
	parts        [][]byte
	DroppedUnits int // access units dropped while waiting for a key frame
	// RefusedFragments counts fragments dropped for lack of media memory.
	RefusedFragments int
	lastLen          int // size of the previous fragment, to size the next buffer
	// loMs and hiMs are the earliest and latest block times in the
	// fragment (KVS refuses a fragment spanning 20 s or more); openMs is
	// the time of the block BeginVideo opened.
	loMs, hiMs, openMs int64
	// keyCut, when set and true, cuts at every key frame of the cutting
	// track (a camera handing its stream back: its fragments then end where
	// the home's begin, manager.go).
	keyCut *atomic.Bool
}

// NewFragmenter cuts fragments of about target (default 2 s). An Output
// with a Buffers method (the engine's) provides the fragments' buffers;
// others get Go-heap ones. An Output with a LiveFrame method (the
// engine's live tap) is handed every block as it is written.
func NewFragmenter(out Output, target time.Duration) *Fragmenter {
	if target <= 0 {
		target = 2 * time.Second
	}
	if target > maxFragmentDuration {
		target = maxFragmentDuration
	}
	fr := &Fragmenter{out: out, target: target, videoTI: -1, waitKey: true, lastStartMs: -1 << 62}
	if bo, ok := out.(interface{ Buffers() mkv.Buffers }); ok {
		fr.b.Buffers = bo.Buffers()
	}
	// An Output with a live tap (the engine's) gets every frame as it is
	// written, before its fragment is complete.
	if lo, ok := out.(interface{ LiveFrame(*mkv.Header, mkv.Block) }); ok {
		fr.b.OnBlock = lo.LiveFrame
	}
	return fr
}

// liveWatched is the output's report of live viewers (the engine's:
// IngestSession.LiveWatched), which paces the camera's reads
// (readpace.go), or nil for an output without one (paced as watched).
func (fr *Fragmenter) liveWatched() func() bool {
	if w, ok := fr.out.(interface{ LiveWatched() bool }); ok {
		return w.LiveWatched
	}
	return nil
}

// refused drops the fragment in progress because the media memory budget
// had no room for it (a camera cannot re-send: its frames until the next
// key frame are lost, counted in DroppedUnits and RefusedFragments; the
// engine logs and counts the refusal). Recording goes on at the next key
// frame.
func (fr *Fragmenter) refused() {
	fr.DroppedUnits += fr.b.Frames() + 1
	fr.RefusedFragments++
	fr.b.Discard()
	fr.waitKey = true
}

// SetTracks sets (or changes: new SPS/PPS, resolution, codec) the tracks.
// A fragment in progress is closed; the next one starts at a key frame
// with the new header, so readers see a new track header, not a broken
// stream.
func (fr *Fragmenter) SetTracks(specs []mkv.TrackSpec) error {
	if sameTracks(fr.tracks, specs) {
		return nil
	}
	h, err := mkv.BuildHeader(specs)
	if err != nil {
		return err
	}
	if err := fr.Flush(); err != nil {
		return err
	}
	fr.tracks = append(fr.tracks[:0], specs...)
	fr.hdr = h
	fr.videoTI = -1
	for i, t := range specs {
		if t.Type == mkv.TrackVideo {
			fr.videoTI = i
			break
		}
	}
	fr.waitKey = true
	return nil
}

func sameTracks(a, b []mkv.TrackSpec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Number != y.Number || x.Type != y.Type || x.CodecID != y.CodecID || string(x.CodecPrivate) != string(y.CodecPrivate) ||
			x.Width != y.Width || x.Height != y.Height || x.SampleRate != y.SampleRate || x.Channels != y.Channels {
			return false
		}
	}
	return true
}

// ErrNoTracks: media arrived before SetTracks.
var ErrNoTracks = errors.New("ingest: no tracks set")

// WriteVideo adds one access unit (NAL units without start codes or
// length prefixes); they are stored AVCC/HVCC style with 4-byte lengths.
func (fr *Fragmenter) WriteVideo(ms int64, nalus [][]byte, key bool) error {
	if fr.hdr == nil || fr.videoTI < 0 {
		return ErrNoTracks
	}
	fr.lens = fr.lens[:0]
	fr.parts = fr.parts[:0]
	for _, n := range nalus {
		fr.lens = binary.BigEndian.AppendUint32(fr.lens, uint32(len(n)))
	}
	for i, n := range nalus {
		fr.parts = append(fr.parts, fr.lens[4*i:4*i+4], n)
	}
	return fr.write(fr.videoTI, ms, key, true)
}

// WriteVideo1 adds a video frame stored as one block payload as is (for
// example an MJPEG picture).
func (fr *Fragmenter) WriteVideo1(ms int64, frame []byte, key bool) error {
	if fr.hdr == nil || fr.videoTI < 0 {
		return ErrNoTracks
	}
	fr.parts = append(fr.parts[:0], frame)
	return fr.write(fr.videoTI, ms, key, true)
}

// WriteAudio adds one audio frame to track index ti.
func (fr *Fragmenter) WriteAudio(ti int, ms int64, frame []byte) error {
	if fr.hdr == nil || ti < 0 || ti >= len(fr.tracks) {
		return ErrNoTracks
	}
	fr.parts = append(fr.parts[:0], frame)
	return fr.write(ti, ms, fr.videoTI < 0, fr.videoTI < 0)
}

// write adds a block; cutter tells whether this track decides fragment
// boundaries.
func (fr *Fragmenter) write(ti int, ms int64, key, cutter bool) error {
	size := 0
	for _, p := range fr.parts {
		size += len(p)
	}
	ms, ok, err := fr.prepare(ms, key, cutter, size)
	if err != nil || !ok {
		return err
	}
	err = fr.b.AddBlock(ti, ms, key, fr.parts...)
	switch {
	case errors.Is(err, mkv.ErrBlockOutOfRange):
		// An audio frame stamped far from the video: drop it.
		fr.DroppedUnits++
		return nil
	case errors.Is(err, engine.ErrMemoryFull):
		fr.refused()
		return nil
	case err != nil:
		return err
	}
	fr.spans(ms)
	return nil
}

// spans widens the times the fragment's blocks cover to ms.
func (fr *Fragmenter) spans(ms int64) {
	if fr.b.Frames() <= 1 {
		fr.loMs, fr.hiMs = ms, ms
		return
	}
	fr.loMs, fr.hiMs = min(fr.loMs, ms), max(fr.hiMs, ms)
}

// blockOverhead is a SimpleBlock's ID, 8-byte size and block header.
const blockOverhead = 1 + 8 + 4

// prepare decides where a block of size bytes at ms goes: it closes the
// fragment in progress when this block starts the next one (a key frame
// of the cutting track after Target, or a fragment at KVS's limits) and
// starts a fragment when none is open. ok is false when the block is
// dropped (no fragment starts with it: not a key frame of the cutting
// track). The returned ms is the block's time: a fragment's first block
// is moved after the previous fragment's start if it is not.
func (fr *Fragmenter) prepare(ms int64, key, cutter bool, size int) (int64, bool, error) {
	if fr.b.Started() && fr.b.Frames() > 0 &&
		time.Duration(max(fr.hiMs, ms)-min(fr.loMs, ms))*time.Millisecond >= maxFragmentDuration {
		// The fragment's blocks would span more than KVS allows (an audio
		// frame stamped far before the video, or video far after audio
		// stamped early): drop such audio; video closes the fragment.
		if !cutter {
			fr.DroppedUnits++
			return ms, false, nil
		}
		if err := fr.Flush(); err != nil {
			return ms, false, err
		}
		fr.waitKey = true
	}
	if fr.b.Started() {
		elapsed := time.Duration(ms-fr.startMs) * time.Millisecond
		switch {
		// Millisecond rounding must not cost a whole GOP: a key frame
		// within 5% of the target cuts.
		case cutter && key && (elapsed >= fr.target-fr.target/20 || elapsed > 0 && fr.keyCut != nil && fr.keyCut.Load()):
			if err := fr.Flush(); err != nil {
				return ms, false, err
			}
		case elapsed >= maxFragmentDuration || fr.b.Len()+size > maxFragmentBytes:
			// No key frame in time: close what we have and wait for one.
			if err := fr.Flush(); err != nil {
				return ms, false, err
			}
			fr.waitKey = true
		}
	}
	if fr.b.Started() && fr.b.Frames() == 0 {
		// The fragment's key frame was cancelled (CancelVideo): it still
		// waits for one, and starts again at it.
		if !cutter || !key {
			fr.DroppedUnits++
			return ms, false, nil
		}
		ms = max(ms, fr.lastStartMs)
		fr.b.Restart(ms)
		fr.startMs, fr.lastStartMs, fr.waitKey = ms, ms, false
		return ms, true, nil
	}
	if fr.b.Started() {
		return ms, true, nil
	}
	if !cutter || !key {
		fr.DroppedUnits++
		return ms, false, nil
	}
	if ms <= fr.lastStartMs {
		ms = fr.lastStartMs + 1 // fragment timecodes strictly increase
	}
	if err := fr.out.StartFragment(); err != nil {
		return ms, false, err
	}
	// Size the buffer (the builder's Buffers: the engine's media memory)
	// for a fragment like the previous one plus a margin of an eighth, or
	// of its biggest block if that is more (size: BeginVideo's hint, the
	// largest access unit so far), which BeginVideo reserves before every
	// unit: with less, the reserve for the fragment's last units grows the
	// buffer, a copy of the whole fragment. It grows through the same
	// Buffers if this one is bigger still.
	if err := fr.b.Start(fr.hdr, ms, fr.lastLen+max(fr.lastLen/8, size+blockOverhead)+4096); err != nil {
		if errors.Is(err, engine.ErrMemoryFull) {
			fr.refused()
			return ms, false, nil
		}
		return ms, false, err
	}
	fr.startMs, fr.lastStartMs, fr.waitKey = ms, ms, false
	return ms, true, nil
}

// BeginVideo opens a video block at ms whose payload the caller streams
// in with AppendVideo (parts of NAL units straight from the network), then
// closes with EndVideo or drops with CancelVideo; nothing else may be
// written meanwhile. sizeHint is the expected size of the access unit,
// for KVS's fragment size limit; room for it is made at once, so the
// unit's packets are appended without growing the buffer. ok is false
// when the access unit is dropped (waiting for a key frame, or the media
// memory had no room: the fragment in progress is then dropped too,
// refused).
func (fr *Fragmenter) BeginVideo(ms int64, key bool, sizeHint int) (bool, error) {
	if fr.hdr == nil || fr.videoTI < 0 {
		return false, ErrNoTracks
	}
	ms, ok, err := fr.prepare(ms, key, true, sizeHint)
	if err != nil || !ok {
		return false, err
	}
	err = fr.b.Reserve(blockOverhead + sizeHint)
	if err == nil {
		err = fr.b.BeginBlock(fr.videoTI, ms, key)
	}
	switch {
	case errors.Is(err, engine.ErrMemoryFull):
		fr.refused()
		return false, nil
	case err != nil:
		fr.DroppedUnits++ // out of the cluster's range; never for increasing times
		return false, nil
	}
	fr.openMs = ms
	return true, nil
}

// VideoLen is the size of the fragment so far, the open block included:
// an offset AppendVideo's bytes can be found at, or TruncateVideo cut
// back to.
func (fr *Fragmenter) VideoLen() int { return fr.b.Len() }

// AppendVideo appends p to the open video block, growing the fragment's
// buffer through the media memory. ok is false when there was no room:
// the fragment in progress was dropped with the block (refused), and the
// caller drops the rest of the access unit (EndVideo and CancelVideo then
// do nothing).
func (fr *Fragmenter) AppendVideo(p []byte) (ok bool) {
	if !fr.b.BlockOpen() {
		return false
	}
	if err := fr.b.Append(p); err != nil {
		fr.refused()
		return false
	}
	return true
}

// AppendVideoLen appends a 4-byte big-endian NAL unit length to the open
// video block, as AppendVideo.
func (fr *Fragmenter) AppendVideoLen(n uint32) (ok bool) {
	if !fr.b.BlockOpen() {
		return false
	}
	if err := fr.b.AppendUint32(n); err != nil {
		fr.refused()
		return false
	}
	return true
}

// VideoBytes is the fragment's buffer from offset at (from VideoLen) on,
// for patching what was appended; valid until the next append.
func (fr *Fragmenter) VideoBytes(at int) []byte { return fr.b.Buf()[at:] }

// TruncateVideo drops what was appended to the open block after offset
// at (a NAL unit that could not be completed).
func (fr *Fragmenter) TruncateVideo(at int) { fr.b.Truncate(at) }

// EndVideo closes the open video block. lostKey reports a block opened as
// a key frame whose key frame NAL units did not arrive: it is cancelled if
// it was to start its fragment, else written as a delta frame.
func (fr *Fragmenter) EndVideo(lostKey bool) {
	if !fr.b.BlockOpen() {
		return // refused meanwhile (AppendVideo)
	}
	if lostKey {
		if fr.b.Frames() == 0 {
			fr.CancelVideo()
			return
		}
		fr.b.ClearBlockKey()
	}
	fr.b.EndBlock()
	fr.spans(fr.openMs)
}

// CancelVideo drops the open video block. If it was to be its fragment's
// first, the fragment stays open and waits for the next key frame.
func (fr *Fragmenter) CancelVideo() {
	if !fr.b.BlockOpen() {
		return // refused meanwhile (AppendVideo)
	}
	fr.b.CancelBlock()
	fr.DroppedUnits++
}

// Flush closes the fragment in progress, if any, and hands it on.
func (fr *Fragmenter) Flush() error {
	if !fr.b.Started() {
		return nil
	}
	if fr.b.BlockOpen() {
		fr.CancelVideo() // an access unit cut short (the connection ended)
	}
	if fr.b.Frames() == 0 {
		// Its only key frame was cancelled: nothing to hand on (its number
		// stays unused, as for an upload that ends inside a fragment).
		fr.b.Discard()
		return nil
	}
	frames := fr.b.Frames()
	f := &fr.done
	if err := fr.b.FinishInto(f); err != nil {
		if errors.Is(err, engine.ErrMemoryFull) {
			fr.DroppedUnits += frames
			fr.RefusedFragments++
			fr.waitKey = true
			return nil
		}
		return err
	}
	fr.lastLen = len(f.Buf)
	err := fr.out.Fragment(f)
	*f = mkv.Fragment{} // the Output owns the buffer now
	if err != nil {
		return fmt.Errorf("ingest: fragment: %w", err)
	}
	return nil
}
