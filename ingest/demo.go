package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// DemoSource plays a short H.264 Annex-B clip in a loop at its frame rate,
// stamped with the current time, so a new box has a live stream to watch.
type DemoSource struct {
	aus    [][][]byte // access units, NAL units without start codes
	keys   []bool
	fps    float64
	sps    []byte
	pps    []byte
	width  int
	height int
}

// NewDemoSource parses an Annex-B H.264 clip (no B-frames; it must start
// with an IDR carrying SPS and PPS) played at fps.
func NewDemoSource(annexB []byte, fps float64) (*DemoSource, error) {
	var nalus h264.AnnexB
	if err := nalus.Unmarshal(annexB); err != nil {
		return nil, fmt.Errorf("demo clip: %w", err)
	}
	d := &DemoSource{fps: fps}
	var cur [][]byte
	hasVCL := false
	flush := func() {
		if len(cur) > 0 && hasVCL {
			d.aus = append(d.aus, cur)
			d.keys = append(d.keys, h264.IsRandomAccess(cur))
		}
		cur, hasVCL = nil, false
	}
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		typ := h264.NALUType(n[0] & 0x1F)
		switch typ {
		case h264.NALUTypeSPS:
			if d.sps == nil {
				d.sps = n
			}
		case h264.NALUTypePPS:
			if d.pps == nil {
				d.pps = n
			}
		case h264.NALUTypeAccessUnitDelimiter:
			flush()
			continue
		}
		vcl := typ == h264.NALUTypeIDR || typ == h264.NALUTypeNonIDR
		// A new picture starts at a non-VCL unit after a VCL one, or at a
		// slice whose first_mb_in_slice is 0 (first bit of its ue(v) set).
		if hasVCL && (!vcl || (len(n) > 1 && n[1]&0x80 != 0)) {
			flush()
		}
		cur = append(cur, n)
		hasVCL = hasVCL || vcl
	}
	flush()
	if len(d.aus) == 0 || !d.keys[0] || d.sps == nil || d.pps == nil {
		return nil, errors.New("demo clip: it must start with an IDR frame with SPS and PPS")
	}
	var sps h264.SPS
	if err := sps.Unmarshal(d.sps); err != nil {
		return nil, fmt.Errorf("demo clip SPS: %w", err)
	}
	d.width, d.height = sps.Width(), sps.Height()
	return d, nil
}

// Describe implements Source.
func (d *DemoSource) Describe() string { return "demo clip" }

// Run implements Source: it plays until ctx ends.
func (d *DemoSource) Run(ctx context.Context, fr *Fragmenter, tl *timeline, st *feedStats) error {
	cp, err := h264CodecPrivate(d.sps, d.pps)
	if err != nil {
		return err
	}
	err = fr.SetTracks([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp,
		Name: "demo", Width: d.width, Height: d.height}})
	if err != nil {
		return err
	}
	interval := time.Duration(float64(time.Second) / d.fps)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for i := 0; ; i++ {
		au := d.aus[i%len(d.aus)]
		pts := time.Duration(i) * interval
		ms := tl.ms(pts, time.Time{}, false, true)
		if err := fr.WriteVideo(ms, au, d.keys[i%len(d.aus)]); err != nil {
			return err
		}
		n := 0
		for _, u := range au {
			n += len(u)
		}
		st.frame(true, n)
		// Pace by the schedule, not by the ticker alone, so a slow write
		// does not make the clip drift behind the clock.
		if wait := time.Until(start.Add(pts + interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// Clip returns the clip's access units (NAL units without start codes),
// their key-frame flags and the SPS and PPS, to publish it elsewhere (the
// tests' RTSP publisher).
func (d *DemoSource) Clip() (aus [][][]byte, keys []bool, sps, pps []byte) {
	return d.aus, d.keys, d.sps, d.pps
}

// AccessUnits returns the clip's access units (NAL units without start
// codes) and its SPS and PPS, for test sources that publish it.
func (d *DemoSource) AccessUnits() (aus [][][]byte, sps, pps []byte) { return d.aus, d.sps, d.pps }
