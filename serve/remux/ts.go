package remux

import (
	"bytes"
	"fmt"
	"io"
	"slices"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// WriteTS writes one stored fragment as a self-contained MPEG-TS segment
// (tables first; key frames carry their parameter sets) on the time base
// baseMs, with mediacommon's MPEG-TS writer: H.264/H.265 video and AAC
// audio, as HLS's MPEG_TS container carries them.
func WriteTS(w io.Writer, h *mkv.Header, cluster []byte, producerMs, baseMs int64) error {
	type tsTrack struct {
		t      *mpegts.Track
		codec  string
		params [][]byte // parameter sets for key frames
		aac    bool
	}
	tracks := map[uint64]*tsTrack{}
	var all []*mpegts.Track
	for _, t := range h.Tracks {
		tt := &tsTrack{codec: t.CodecID}
		switch t.CodecID {
		case mkv.CodecH264:
			sps, pps, err := parseAVCC(t.CodecPrivate)
			if err != nil {
				return err
			}
			tt.t, tt.params = &mpegts.Track{Codec: &mpegts.CodecH264{}}, [][]byte{sps, pps}
		case mkv.CodecH265:
			vps, sps, pps, err := parseHVCC(t.CodecPrivate)
			if err != nil {
				return err
			}
			tt.t, tt.params = &mpegts.Track{Codec: &mpegts.CodecH265{}}, [][]byte{vps, sps, pps}
		case mkv.CodecAAC:
			var conf mpeg4audio.AudioSpecificConfig
			if err := conf.Unmarshal(t.CodecPrivate); err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidCodecData, err)
			}
			tt.t, tt.aac = &mpegts.Track{Codec: &mpegts.CodecMPEG4Audio{Config: conf}}, true
		default:
			continue // MPEG-TS carries no other track kvsedge stores
		}
		tracks[t.Number] = tt
		all = append(all, tt.t)
	}
	if len(all) == 0 {
		return ErrUnsupportedCodec
	}
	var buf bytes.Buffer
	tw := &mpegts.Writer{W: &buf, Tracks: all}
	if err := tw.Initialize(); err != nil {
		return fmt.Errorf("remux: %w", err)
	}
	// Blocks are in decode order with presentation times; a video
	// track's decode times are its presentation times sorted.
	var blocks []mkv.Block
	videoPTS := map[uint64][]int64{}
	err := mkv.ForEachBlock(h, cluster, func(b mkv.Block) error {
		if tt := tracks[b.Track]; tt != nil {
			blocks = append(blocks, b)
			if !tt.aac {
				videoPTS[b.Track] = append(videoPTS[b.Track], (producerMs+b.TimeMs-b.ClusterMs-baseMs)*90)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range videoPTS {
		slices.Sort(p)
	}
	next := map[uint64]int{}
	for _, b := range blocks {
		tt := tracks[b.Track]
		pts := (producerMs + b.TimeMs - b.ClusterMs - baseMs) * 90
		if tt.aac {
			if err := tw.WriteMPEG4Audio(tt.t, pts, [][]byte{b.Payload}); err != nil {
				return err
			}
			continue
		}
		dts := videoPTS[b.Track][next[b.Track]]
		next[b.Track]++
		var au h264.AVCC
		if err := au.Unmarshal(b.Payload); err != nil {
			return fmt.Errorf("remux: video sample: %w", err)
		}
		nalus := [][]byte(au)
		if b.Key {
			nalus = append(append([][]byte{}, tt.params...), nalus...)
		}
		if tt.codec == mkv.CodecH265 {
			err = tw.WriteH265(tt.t, pts, dts, nalus)
		} else {
			err = tw.WriteH264(tt.t, pts, dts, nalus)
		}
		if err != nil {
			return err
		}
	}
	_, err = w.Write(buf.Bytes())
	return err
}
