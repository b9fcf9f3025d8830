package ingest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// Output receives what a Fragmenter cuts, exactly as a PutMedia upload
// delivers it: the start of a fragment (BUFFERING), then the complete
// fragment (RECEIVED), whose Timecode is its producer time in epoch ms.
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
	startMs      int64
	lastStartMs  int64
	waitKey      bool
	lens         []byte
	parts        [][]byte
	DroppedUnits int // access units dropped while waiting for a key frame
	// RefusedFragments counts fragments dropped for lack of media memory.
	RefusedFragments int
	lastLen          int // size of the previous fragment, to size the next buffer
}

// NewFragmenter cuts fragments of about target (default 2 s). An Output
// with a Buffers method (the engine's) provides the fragments' buffers;
// others get Go-heap ones.
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
	return fr
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
	if fr.b.Started() {
		elapsed := time.Duration(ms-fr.startMs) * time.Millisecond
		switch {
		// Millisecond rounding must not cost a whole GOP: a key frame
		// within 5% of the target cuts.
		case cutter && key && elapsed >= fr.target-fr.target/20:
			if err := fr.Flush(); err != nil {
				return err
			}
		case elapsed >= maxFragmentDuration || fr.b.Len()+size > maxFragmentBytes:
			// No key frame in time: close what we have and wait for one.
			if err := fr.Flush(); err != nil {
				return err
			}
			fr.waitKey = true
		}
	}
	if !fr.b.Started() {
		if !cutter || !key {
			fr.DroppedUnits++
			return nil
		}
		if ms <= fr.lastStartMs {
			ms = fr.lastStartMs + 1 // fragment timecodes strictly increase
		}
		if err := fr.out.StartFragment(); err != nil {
			return err
		}
		// Size the buffer for a fragment like the previous one (plus a
		// margin); it grows if this one is bigger.
		if err := fr.b.Start(fr.hdr, ms, fr.lastLen+fr.lastLen/8+4096); err != nil {
			if errors.Is(err, engine.ErrMemoryFull) {
				fr.refused()
				return nil
			}
			return err
		}
		fr.startMs, fr.lastStartMs, fr.waitKey = ms, ms, false
	}
	err := fr.b.AddBlock(ti, ms, key, fr.parts...)
	switch {
	case errors.Is(err, mkv.ErrBlockOutOfRange):
		// An audio frame stamped far from the video: drop it.
		fr.DroppedUnits++
		return nil
	case errors.Is(err, engine.ErrMemoryFull):
		fr.refused()
		return nil
	}
	return err
}

// Flush closes the fragment in progress, if any, and hands it on.
func (fr *Fragmenter) Flush() error {
	if !fr.b.Started() {
		return nil
	}
	frames := fr.b.Frames()
	f, err := fr.b.Finish()
	if err != nil {
		if errors.Is(err, engine.ErrMemoryFull) {
			fr.DroppedUnits += frames
			fr.RefusedFragments++
			fr.waitKey = true
			return nil
		}
		return err
	}
	fr.lastLen = len(f.Buf)
	if err := fr.out.Fragment(f); err != nil {
		return fmt.Errorf("ingest: fragment: %w", err)
	}
	return nil
}
