// Package remux turns stored KVS fragments (Matroska clusters) into
// fragmented MP4 without transcoding, with mediacommon's fMP4 writer: the
// init segment (ftyp+moov) from the session header's tracks, and one
// moof+mdat per fragment. GetClip uses it now; HLS and DASH sessions will.
//
// Supported: H.264 (avcC) and H.265 (hvcC) video, AAC and Opus audio —
// what the fMP4 writer and KVS's playback APIs both carry. Block payloads
// are stored AVCC/HVCC with 4-byte lengths, which is also MP4's sample
// format, so samples are the stored bytes.
package remux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// Errors that map to KVS's playback errors.
var (
	ErrUnsupportedCodec = errors.New("remux: codec not supported for MP4 playback")
	ErrMissingCodecData = errors.New("remux: codec private data missing")
	ErrInvalidCodecData = errors.New("remux: codec private data invalid")
	ErrHeaderChanged    = errors.New("remux: the track layout changed within the range")
	errNoSamples        = errors.New("remux: fragment without samples")
	videoTimeScale      = uint32(90000)
)

type track struct {
	number    uint64
	id        int
	timeScale uint32
	video     bool
}

// Muxer turns fragments of one track layout into fMP4 init and media
// segments on a fixed time base, so segments made independently (HLS
// requests) line up.
type Muxer struct {
	header *mkv.Header
	tracks []*track
	init   fmp4.Init
	// BaseMs is subtracted from every time (the stream starts near 0).
	BaseMs int64
	buf    seekablebuffer.Buffer
}

// NewMuxer checks h's codecs and prepares its init segment.
func NewMuxer(h *mkv.Header, baseMs int64) (*Muxer, error) { return NewTrackMuxer(h, baseMs, 0) }

// NewTrackMuxer is NewMuxer for the track numbered only (0: all tracks):
// DASH wants one track per Representation.
func NewTrackMuxer(h *mkv.Header, baseMs int64, only uint64) (*Muxer, error) {
	m := &Muxer{header: h, BaseMs: baseMs}
	for _, t := range h.Tracks {
		if only != 0 && t.Number != only {
			continue
		}
		i := len(m.tracks)
		codec, ts, err := codecOf(t)
		if err != nil {
			return nil, fmt.Errorf("track %d (%s): %w", t.Number, t.CodecID, err)
		}
		m.tracks = append(m.tracks, &track{number: t.Number, id: i + 1, timeScale: ts, video: t.Type == mkv.TrackVideo})
		m.init.Tracks = append(m.init.Tracks, &fmp4.InitTrack{ID: i + 1, TimeScale: ts, Codec: codec})
	}
	if len(m.tracks) == 0 {
		return nil, fmt.Errorf("%w: no track %d", ErrUnsupportedCodec, only)
	}
	return m, nil
}

// WriteInit writes the init segment (ftyp+moov).
func (m *Muxer) WriteInit(w io.Writer) error {
	m.buf.Reset()
	if err := m.init.Marshal(&m.buf); err != nil {
		return fmt.Errorf("remux: init segment: %w", err)
	}
	_, err := w.Write(m.buf.Bytes())
	return err
}

// FMP4 writes one fragmented MP4 stream: the init segment, then a media
// segment per fragment, starting at time 0.
type FMP4 struct {
	w       io.Writer
	m       *Muxer
	seq     uint32
	started bool
}

// NewFMP4 writes the init segment for h to w.
func NewFMP4(w io.Writer, h *mkv.Header) (*FMP4, error) {
	m, err := NewMuxer(h, 0)
	if err != nil {
		return nil, err
	}
	if err := m.WriteInit(w); err != nil {
		return nil, err
	}
	return &FMP4{w: w, m: m}, nil
}

// Fragment writes one stored fragment (its cluster, and its producer
// timestamp) as moof+mdat. A header with other tracks than NewFMP4's is
// ErrHeaderChanged.
func (f *FMP4) Fragment(h *mkv.Header, cluster []byte, producerMs int64) error {
	if !f.started {
		f.m.BaseMs, f.started = producerMs, true
	}
	err := f.m.WriteFragment(f.w, h, cluster, f.seq, producerMs)
	f.seq++
	return err
}

func codecOf(t mkv.Track) (mp4.Codec, uint32, error) {
	switch t.CodecID {
	case mkv.CodecH264:
		sps, pps, err := parseAVCC(t.CodecPrivate)
		if err != nil {
			return nil, 0, err
		}
		return &mp4.CodecH264{SPS: sps, PPS: pps}, videoTimeScale, nil
	case mkv.CodecH265:
		vps, sps, pps, err := parseHVCC(t.CodecPrivate)
		if err != nil {
			return nil, 0, err
		}
		return &mp4.CodecH265{VPS: vps, SPS: sps, PPS: pps}, videoTimeScale, nil
	case mkv.CodecAAC:
		if len(t.CodecPrivate) == 0 {
			return nil, 0, ErrMissingCodecData
		}
		var conf mpeg4audio.AudioSpecificConfig
		if err := conf.Unmarshal(t.CodecPrivate); err != nil {
			return nil, 0, fmt.Errorf("%w: %v", ErrInvalidCodecData, err)
		}
		return &mp4.CodecMPEG4Audio{Config: conf}, uint32(conf.SampleRate), nil
	case mkv.CodecOpus:
		ch := 2
		if len(t.CodecPrivate) >= 10 {
			ch = int(t.CodecPrivate[9])
		}
		return &mp4.CodecOpus{ChannelCount: ch}, 48000, nil
	}
	return nil, 0, ErrUnsupportedCodec
}

// parseAVCC extracts the first SPS and PPS of an avcC record.
func parseAVCC(b []byte) (sps, pps []byte, err error) {
	if len(b) == 0 {
		return nil, nil, ErrMissingCodecData
	}
	if len(b) < 7 || b[0] != 1 {
		return nil, nil, ErrInvalidCodecData
	}
	sps, p, err := firstUnit(b, 6, int(b[5]&0x1F))
	if err != nil || p >= len(b) {
		return nil, nil, ErrInvalidCodecData
	}
	pps, _, err = firstUnit(b, p+1, int(b[p]))
	if err != nil || sps == nil || pps == nil {
		return nil, nil, ErrInvalidCodecData
	}
	return sps, pps, nil
}

// firstUnit reads n length-prefixed (u16) units at b[p:] and returns the
// first and the offset after the last.
func firstUnit(b []byte, p, n int) ([]byte, int, error) {
	var first []byte
	for i := 0; i < n; i++ {
		if p+2 > len(b) {
			return nil, p, ErrInvalidCodecData
		}
		l := int(binary.BigEndian.Uint16(b[p:]))
		p += 2
		if p+l > len(b) {
			return nil, p, ErrInvalidCodecData
		}
		if first == nil {
			first = b[p : p+l]
		}
		p += l
	}
	return first, p, nil
}

// parseHVCC extracts the VPS, SPS and PPS of an hvcC record.
func parseHVCC(b []byte) (vps, sps, pps []byte, err error) {
	if len(b) == 0 {
		return nil, nil, nil, ErrMissingCodecData
	}
	if len(b) < 23 {
		return nil, nil, nil, ErrInvalidCodecData
	}
	narrays := int(b[22])
	p := 23
	for i := 0; i < narrays; i++ {
		if p+3 > len(b) {
			return nil, nil, nil, ErrInvalidCodecData
		}
		typ := b[p] & 0x3F
		nal, next, err := firstUnit(b, p+3, int(binary.BigEndian.Uint16(b[p+1:])))
		if err != nil {
			return nil, nil, nil, err
		}
		p = next
		switch typ {
		case 32:
			vps = nal
		case 33:
			sps = nal
		case 34:
			pps = nal
		}
	}
	if vps == nil || sps == nil || pps == nil {
		return nil, nil, nil, ErrInvalidCodecData
	}
	return vps, sps, pps, nil
}

type sample struct {
	pts  int64 // track timescale
	key  bool
	data []byte
}

// WriteFragment writes one stored fragment (its cluster) as moof+mdat
// with sequence number seq. h must have the Muxer's tracks. Times are
// producer times: the cluster starts at producerMs (relative timecodes
// restart with every upload; producer times do not), minus BaseMs.
func (m *Muxer) WriteFragment(w io.Writer, h *mkv.Header, cluster []byte, seq uint32, producerMs int64) error {
	if string(h.Raw) != string(m.header.Raw) && !SameTracks(h, m.header) {
		return ErrHeaderChanged
	}
	per := make(map[*track][]sample, len(m.tracks))
	err := mkv.ForEachBlock(h, cluster, func(b mkv.Block) error {
		ms := producerMs + (b.TimeMs - b.ClusterMs) - m.BaseMs
		for _, t := range m.tracks {
			if t.number == b.Track {
				per[t] = append(per[t], sample{pts: ms * int64(t.timeScale) / 1000, key: b.Key, data: b.Payload})
				return nil
			}
		}
		return nil // a block of an unknown track: skip
	})
	if err != nil {
		return err
	}
	part := fmp4.Part{SequenceNumber: seq}
	for _, t := range m.tracks {
		ss := per[t]
		if len(ss) == 0 {
			continue
		}
		// Samples are in decode order with presentation times; decode
		// times are the presentation times sorted (exact without
		// B-frames, a valid order with them).
		dts := make([]int64, len(ss))
		for i := range ss {
			dts[i] = ss[i].pts
		}
		slices.Sort(dts)
		// The last sample lasts the fragment's average interval.
		last := uint32(int64(t.timeScale) / 25)
		if len(ss) > 1 {
			last = uint32(max((dts[len(dts)-1]-dts[0])/int64(len(dts)-1), 1))
		}
		pt := &fmp4.PartTrack{ID: t.id, BaseTime: uint64(max(dts[0], 0))}
		for i, s := range ss {
			dur := last
			if i+1 < len(ss) {
				dur = uint32(max(dts[i+1]-dts[i], 0))
			}
			pt.Samples = append(pt.Samples, &fmp4.Sample{
				Duration:        dur,
				PTSOffset:       int32(s.pts - dts[i]),
				IsNonSyncSample: t.video && !s.key,
				Payload:         s.data,
			})
		}
		part.Tracks = append(part.Tracks, pt)
	}
	if len(part.Tracks) == 0 {
		return errNoSamples
	}
	m.buf.Reset()
	if err := part.Marshal(&m.buf); err != nil {
		return fmt.Errorf("remux: fragment: %w", err)
	}
	_, err = w.Write(m.buf.Bytes())
	return err
}

// SameTracks reports whether a and b carry the same tracks for playback
// (numbers, codecs and codec private data): one fMP4 can hold fragments of
// both; other changes (a track's name) do not matter.
func SameTracks(a, b *mkv.Header) bool {
	if len(a.Tracks) != len(b.Tracks) {
		return false
	}
	for i := range a.Tracks {
		x, y := a.Tracks[i], b.Tracks[i]
		if x.Number != y.Number || x.CodecID != y.CodecID || string(x.CodecPrivate) != string(y.CodecPrivate) {
			return false
		}
	}
	return true
}

// Probe checks that every track of h can be carried, without writing.
func Probe(h *mkv.Header) (int, error) {
	for _, t := range h.Tracks {
		if _, _, err := codecOf(t); err != nil {
			return 0, fmt.Errorf("track %d (%s): %w", t.Number, t.CodecID, err)
		}
	}
	return len(h.Tracks), nil
}
