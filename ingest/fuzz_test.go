package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v4/pkg/rtptime"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/pion/rtp"
)

// FuzzRTPDepacketize feeds fuzzer-chosen RTP packet sequences through what
// an RTSP camera's packets go through after the network read: pion/rtp
// parsing, gortsplib's routing by payload type, its RTP time decoder and
// the format's depacketiser, then rtspSession.video (or the body of
// rtspSession.audio, which needs a live client) into the Fragmenter. It
// must not panic, and whatever fragments come out must parse with the
// PutMedia reader as one upload.
//
// Input layout (see rtpFuzzInput, which builds the seeds):
//
//	byte 0: configuration
//	    bits 0-1  video: 0 none, 1 H.264, 2 H.265, 3 H.264
//	    bits 2-3  audio: 0 none, 1 AAC, 2 G.711, 3 Opus
//	    bit 4     no parameter sets in the SDP (in band only)
//	    bit 5     G.711 µ-law (else A-law)
//	then records:
//	    flags (1 byte): bit 0 an NTP time follows; bits 1-7 how far the
//	        arrival clock moves before the packet, in 4 ms steps
//	    length (2 bytes, big endian)
//	    NTP offset from the clock's start in ms (4 bytes, signed), if flagged
//	    the RTP packet (length bytes): payload type 96 is the video
//	        medium, 97 the audio one, anything else is dropped
func FuzzRTPDepacketize(f *testing.F) {
	d := loadDemo(f)
	for _, seed := range rtpFuzzSeeds(f, d) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 256<<10 {
			return
		}
		runRTPFuzz(t, d, data)
	})
}

const (
	fuzzVideoPT = 96
	fuzzAudioPT = 97
)

// Parameter sets of a 64x64 H.265 stream (x265).
var (
	fuzzH265VPS = []byte{0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x28, 0x00, 0x00,
		0x03, 0x00, 0x00, 0x1e, 0xba, 0x02, 0x40}
	fuzzH265SPS = []byte{0x42, 0x01, 0x01, 0x04, 0x08, 0x00, 0x00, 0x03, 0x00, 0x9e, 0x28, 0x00, 0x00, 0x03, 0x00, 0x00,
		0x1e, 0x90, 0x04, 0x10, 0x20, 0xb2, 0xdd, 0x49, 0x26, 0x57, 0x80, 0xb7, 0x02, 0x02, 0x00, 0x04, 0x00, 0x00, 0x03,
		0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x28, 0x20}
	fuzzH265PPS = []byte{0x44, 0x01, 0xc1, 0x72, 0x86, 0x0c, 0x02, 0x24}
)

var fuzzAACConfig = mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: 48000, ChannelCount: 2}

// fuzzOutput concatenates the fragments as one PutMedia body would carry
// them (a header again whenever it changes).
type fuzzOutput struct {
	body   bytes.Buffer
	hdr    *mkv.Header
	starts int
	frags  []*mkv.Fragment
	// bufs, when set, is where the fragmenter assembles fragments.
	bufs *budgetBuffers
}

func (o *fuzzOutput) StartFragment() error { o.starts++; return nil }

// Buffers is the fragmenter's buffers: bufs, or the Go heap.
func (o *fuzzOutput) Buffers() mkv.Buffers {
	if o.bufs == nil {
		return nil
	}
	return o.bufs
}

func (o *fuzzOutput) Fragment(f *mkv.Fragment) error {
	if o.bufs != nil {
		o.bufs.take(f.Buf)
	}
	if f.Header != o.hdr {
		o.body.Write(f.Header.Raw)
		o.hdr = f.Header
	}
	o.body.Write(f.Buf)
	o.frags = append(o.frags, new(*f)) // f is the Fragmenter's
	return nil
}

func runRTPFuzz(t *testing.T, d *DemoSource, data []byte) {
	out, fr := replayRTP(t, d, data, false)
	checkPutMediaBody(t, out, fr)
}

// replayRTP plays a fuzz input into a Fragmenter through the session's
// video depacketiser, or (reference) through gortsplib's decoders and
// referenceVideo, the path the depacketiser replaced.
func replayRTP(t *testing.T, d *DemoSource, data []byte, reference bool) (*fuzzOutput, *Fragmenter) {
	return replayRTPTo(t, d, data, reference, &fuzzOutput{})
}

// replayRTPTo is replayRTP into out.
func replayRTPTo(t *testing.T, d *DemoSource, data []byte, reference bool, out *fuzzOutput) (*fuzzOutput, *Fragmenter) {
	cfg := data[0]
	data = data[1:]
	vcodec, acodec := cfg&3, (cfg>>2)&3
	sdpParams := cfg&0x10 == 0
	if vcodec == 0 && acodec == 0 {
		vcodec = 1
	}

	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := start
	fr := NewFragmenter(out, 2*time.Second)
	r := &rtspSession{fr: fr, tl: &timeline{now: func() time.Time { return clock }}, st: &feedStats{}, videoTI: -1, audioTI: -1}
	td := &replayTimeDecoder{now: func() time.Time { return clock }, tracks: map[rtptime.GlobalDecoder2Track]*replayTrackTime{}}

	// setup, as rtspSession.setup does it once gortsplib has set up the
	// medias.
	var (
		vf   format.Format
		vdec interface {
			Decode(*rtp.Packet) ([][]byte, error)
		}
		vrate int
		af    format.Format
		adec  func(*rtp.Packet) ([][]byte, error)
		arate int
		aau   int64 // samples per AAC access unit, 0 for the others
	)
	if vcodec != 0 {
		r.videoTI = len(r.tracks)
		spec := mkv.TrackSpec{Number: uint64(len(r.tracks) + 1), Type: mkv.TrackVideo, Name: "video"}
		if vcodec == 2 {
			h := &format.H265{PayloadTyp: fuzzVideoPT}
			if sdpParams {
				h.VPS, h.SPS, h.PPS = fuzzH265VPS, fuzzH265SPS, fuzzH265PPS
			}
			r.h265 = true
			spec.CodecID = mkv.CodecH265
			r.vps, r.sps, r.pps = h.SafeParams()
			dec, err := h.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			vf, vdec = h, dec
		} else {
			h := &format.H264{PayloadTyp: fuzzVideoPT, PacketizationMode: 1}
			if sdpParams {
				h.SPS, h.PPS = d.sps, d.pps
			}
			spec.CodecID = mkv.CodecH264
			r.sps, r.pps = h.SafeParams()
			dec, err := h.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			vf, vdec = h, dec
		}
		vrate = vf.ClockRate()
		r.tracks = append(r.tracks, spec)
		if !reference {
			r.vd = &videoDepacketizer{s: r, h265: r.h265}
		}
	}
	if acodec != 0 {
		r.audioTI = len(r.tracks)
		spec := mkv.TrackSpec{Number: uint64(len(r.tracks) + 1), Type: mkv.TrackAudio, Name: "audio"}
		switch acodec {
		case 1:
			a := &format.MPEG4Audio{PayloadTyp: fuzzAudioPT, Config: &fuzzAACConfig, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
			cp, err := a.Config.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			spec.CodecID, spec.CodecPrivate = mkv.CodecAAC, cp
			spec.SampleRate, spec.Channels = float64(a.Config.SampleRate), a.Config.ChannelCount
			dec, err := a.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			af, adec, aau = a, dec.Decode, 1024
		case 2:
			g := &format.G711{PayloadTyp: 8, MULaw: cfg&0x20 != 0, SampleRate: 8000, ChannelCount: 1}
			if g.MULaw {
				g.PayloadTyp = 0
			}
			spec.CodecID = mkv.CodecPCMA
			spec.CodecPrivate = waveFormatEx(g.MULaw, g.SampleRate, g.ChannelCount)
			spec.SampleRate, spec.Channels = float64(g.SampleRate), g.ChannelCount
			dec, err := g.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			af = g
			adec = func(p *rtp.Packet) ([][]byte, error) {
				s, err := dec.Decode(p)
				return [][]byte{s}, err
			}
		default:
			o := &format.Opus{PayloadTyp: fuzzAudioPT, ChannelCount: 2}
			spec.CodecID, spec.CodecPrivate = mkv.CodecOpus, opusHead(o.ChannelCount)
			spec.SampleRate, spec.Channels = 48000, o.ChannelCount
			dec, err := o.CreateDecoder()
			if err != nil {
				t.Fatal(err)
			}
			af = o
			adec = func(p *rtp.Packet) ([][]byte, error) {
				fr, err := dec.Decode(p)
				return [][]byte{fr}, err
			}
		}
		arate = af.ClockRate()
		r.tracks = append(r.tracks, spec)
	}
	if r.videoTI < 0 {
		if err := r.fr.SetTracks(r.tracks); err != nil {
			t.Fatal(err)
		}
	} else if err := r.applyParams(); err != nil && !errors.Is(err, errNoParams) {
		t.Fatal(err)
	}

	// audio is rtspSession.audio without the client: pts as gortsplib's
	// PacketPTS2 decodes them (replayTimeDecoder).
	audio := func(pkt *rtp.Packet, offset int64, frame []byte, ntp time.Time, haveNTP bool) {
		pts, ok := td.Decode(af, pkt)
		if !ok || len(frame) == 0 || r.err != nil {
			return
		}
		if err := r.audioAt(ptsDuration(pts+offset, arate), ntp, haveNTP, frame); err != nil {
			r.err = err
		}
	}

	for len(data) >= 3 && r.err == nil {
		flags := data[0]
		n := int(binary.BigEndian.Uint16(data[1:]))
		data = data[3:]
		clock = clock.Add(time.Duration(flags>>1) * 4 * time.Millisecond)
		var ntp time.Time
		haveNTP := flags&1 != 0
		if haveNTP {
			if len(data) < 4 {
				break
			}
			ntp = start.Add(time.Duration(int32(binary.BigEndian.Uint32(data))) * time.Millisecond)
			data = data[4:]
		}
		n = min(n, len(data))
		raw := data[:n]
		data = data[n:]
		var pkt rtp.Packet
		if err := pkt.Unmarshal(raw); err != nil {
			continue
		}
		switch {
		case vf != nil && pkt.PayloadType == vf.PayloadType():
			pts, ok := td.Decode(vf, &pkt)
			if !reference { // rtspSession.onVideo's callback
				if err := r.vd.packet(&pkt, ptsDuration(pts, vrate), ok, ntp, haveNTP); err != nil {
					r.err = err
				}
				continue
			}
			au, err := vdec.Decode(&pkt)
			if err != nil || !ok || len(au) == 0 {
				continue
			}
			if err := referenceVideo(r, ptsDuration(pts, vrate), ntp, haveNTP, au); err != nil {
				r.err = err
			}
		case af != nil && pkt.PayloadType == af.PayloadType():
			frames, err := adec(&pkt)
			if err != nil {
				continue
			}
			for i, fr := range frames {
				audio(&pkt, int64(i)*aau, fr, ntp, haveNTP)
			}
		}
	}
	if r.err != nil {
		t.Fatalf("the session failed: %v", r.err)
	}
	if err := fr.Flush(); err != nil {
		t.Fatal(err)
	}
	return out, fr
}

// checkPutMediaBody checks that the fragments, as one PutMedia body, parse
// into the same fragments.
func checkPutMediaBody(t *testing.T, out *fuzzOutput, fr *Fragmenter) {
	// A fragment whose only key frame was dropped half-written is started
	// but never handed on.
	if out.starts < len(out.frags) || out.starts > len(out.frags)+fr.DroppedUnits {
		t.Fatalf("%d fragments started, %d finished", out.starts, len(out.frags))
	}

	// The fragments, as one PutMedia body, parse into the same fragments.
	rd := mkv.NewReader(bytes.NewReader(out.body.Bytes()), mkv.Options{BufferHint: 4096})
	n := 0
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("fragment %d of %d: the PutMedia reader refuses it: %v", n, len(out.frags), err)
		}
		if ev != mkv.EventFragmentEnd {
			continue
		}
		got := rd.TakeFragment()
		if n >= len(out.frags) {
			t.Fatalf("the reader found more fragments than the %d cut", len(out.frags))
		}
		want := out.frags[n]
		if got.Timecode != want.Timecode || got.Frames != want.Frames || got.KeyFrames != want.KeyFrames || !bytes.Equal(got.Buf, want.Buf) {
			t.Fatalf("fragment %d parsed as %d (%d frames), cut as %d (%d frames)", n, got.Timecode, got.Frames, want.Timecode, want.Frames)
		}
		n++
	}
	if n != len(out.frags) {
		t.Fatalf("the reader found %d fragments, %d were cut", n, len(out.frags))
	}
}

// rtpFuzzInput builds fuzz inputs in FuzzRTPDepacketize's layout.
type rtpFuzzInput struct{ b []byte }

func newRTPFuzzInput(cfg byte) *rtpFuzzInput { return &rtpFuzzInput{b: []byte{cfg}} }

func (in *rtpFuzzInput) add(tb testing.TB, advanceMs int, ntpMs *int32, pkts ...*rtp.Packet) {
	tb.Helper()
	for i, p := range pkts {
		raw, err := p.Marshal()
		if err != nil {
			tb.Fatal(err)
		}
		flags := byte(0)
		if i == 0 {
			flags = byte(min(advanceMs/4, 127)) << 1
		}
		if ntpMs != nil {
			flags |= 1
		}
		in.b = append(in.b, flags)
		in.b = binary.BigEndian.AppendUint16(in.b, uint16(len(raw)))
		if ntpMs != nil {
			in.b = binary.BigEndian.AppendUint32(in.b, uint32(*ntpMs))
		}
		in.b = append(in.b, raw...)
	}
}

// rtpFuzzSeeds are real-looking sessions: the demo clip's first frames
// (NAL units cut short, the depacketisers do not look inside slices) in
// small packets, so FU-A/FU fragmentation is exercised, with audio
// interleaved.
func rtpFuzzSeeds(tb testing.TB, d *DemoSource) [][]byte {
	tb.Helper()
	ssrc, seq := uint32(0x1234), uint16(100)
	h264enc := &rtph264.Encoder{PayloadType: fuzzVideoPT, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 40, PacketizationMode: 1}
	h265enc := &rtph265.Encoder{PayloadType: fuzzVideoPT, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 40}
	aacEnc := &rtpmpeg4audio.Encoder{PayloadType: fuzzAudioPT, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3, SSRC: &ssrc, InitialSequenceNumber: &seq}
	for _, err := range []error{h264enc.Init(), h265enc.Init(), aacEnc.Init()} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	short := func(au [][]byte, max int) [][]byte {
		out := make([][]byte, len(au))
		for i, n := range au {
			out[i] = n[:min(len(n), max)]
		}
		return out
	}
	h264AU := func(i int, inBand bool) [][]byte {
		au := short(d.aus[i], 60)
		if inBand && d.keys[i] && !bytes.Equal(au[0], d.sps) {
			au = append([][]byte{d.sps, d.pps}, au...)
		}
		return au
	}
	h265AU := func(i int) [][]byte {
		if i%15 == 0 { // an IDR_W_RADL with its parameter sets
			return [][]byte{fuzzH265VPS, fuzzH265SPS, fuzzH265PPS, append([]byte{19 << 1, 0x01, 0xaf}, bytes.Repeat([]byte{byte(i)}, 60)...)}
		}
		return [][]byte{append([]byte{1 << 1, 0x01, 0xd0}, bytes.Repeat([]byte{byte(i)}, 20)...)} // TRAIL_R
	}
	stamp := func(pkts []*rtp.Packet, ts uint32) []*rtp.Packet {
		for _, p := range pkts {
			p.Timestamp = ts
		}
		return pkts
	}
	audioSeq := uint16(7)
	audioPkt := func(pt uint8, ts uint32, payload []byte) *rtp.Packet {
		audioSeq++
		return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: audioSeq, Timestamp: ts, SSRC: 0x5678, Marker: true}, Payload: payload}
	}

	// session writes frames video frames at 15 fps from video (nil: none)
	// and audio from audio (nil: none) every 20 ms of the same span.
	session := func(cfg byte, frames int, ts0 uint32, video func(i int) [][]byte, h265 bool,
		audio func(k int) []*rtp.Packet, ntp bool) []byte {
		in := newRTPFuzzInput(cfg)
		var ntpMs *int32
		if ntp {
			v := int32(-1500)
			ntpMs = &v
		}
		k := 0
		for i := 0; i < frames; i++ {
			if video != nil {
				var pkts []*rtp.Packet
				var err error
				if h265 {
					pkts, err = h265enc.Encode(video(i))
				} else {
					pkts, err = h264enc.Encode(video(i))
				}
				if err != nil {
					tb.Fatal(err)
				}
				in.add(tb, 66, ntpMs, stamp(pkts, ts0+uint32(i*6000))...)
			}
			for ; audio != nil && k*20 < (i+1)*1000/15; k++ {
				in.add(tb, 0, nil, audio(k)...)
			}
			if ntpMs != nil {
				*ntpMs += 66
			}
		}
		return in.b
	}
	aacAudio := func(k int) []*rtp.Packet {
		// Two 1024-sample access units (21.3 ms each) every other 20 ms.
		if k%2 == 1 {
			return nil
		}
		pkts, err := aacEnc.Encode([][]byte{{0x21, byte(k), 0x40}, {0x21, byte(k + 1), 0x40}})
		if err != nil {
			tb.Fatal(err)
		}
		return stamp(pkts, uint32(k/2*2048))
	}
	g711Audio := func(pt uint8) func(k int) []*rtp.Packet {
		return func(k int) []*rtp.Packet {
			return []*rtp.Packet{audioPkt(pt, uint32(k*160), bytes.Repeat([]byte{0xff, byte(k)}, 4))}
		}
	}
	opusAudio := func(k int) []*rtp.Packet {
		return []*rtp.Packet{audioPkt(fuzzAudioPT, uint32(k*960), []byte{0xfc, 0xff, 0xfe, byte(k)})}
	}
	h264SDP := func(i int) [][]byte { return h264AU(i, false) }
	h264InBand := func(i int) [][]byte { return h264AU(i, true) }

	return [][]byte{
		// H.264 + AAC, parameter sets in the SDP, 2.3 s: one fragment cut at
		// the second key frame after 2 s, one flushed.
		session(1|1<<2, 35, 1000, h264SDP, false, aacAudio, false),
		// H.264 in band only + G.711 µ-law, with camera NTP times.
		session(1|2<<2|0x10|0x20, 20, 0xFFFF0000, h264InBand, false, g711Audio(0), true),
		// H.265 + Opus.
		session(2|3<<2, 20, 5, h265AU, true, opusAudio, false),
		// H.265, parameter sets in band only, no audio.
		session(2|0x10, 20, 77, h265AU, true, nil, false),
		// Audio only: AAC, and Opus with NTP times.
		session(1<<2, 10, 0, nil, false, aacAudio, false),
		session(3<<2, 10, 0, nil, false, opusAudio, true),
		// H.264 + G.711 A-law, the RTP timestamp wrapping around.
		session(3|2<<2, 20, 0xFFFFFFFF-60000, h264SDP, false, g711Audio(8), false),
	}
}

// referenceVideo is how rtspSession handled a whole access unit from
// gortsplib's decoder before videoDepacketizer: the reference its output is
// compared with.
func referenceVideo(r *rtspSession, pts time.Duration, ntp time.Time, haveNTP bool, au [][]byte) error {
	key := false
	changed := false
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		if r.h265 {
			switch h265.NALUType((n[0] >> 1) & 0x3F) {
			case h265.NALUType_VPS_NUT:
				changed = changed || !bytes.Equal(n, r.vps)
				r.vps = append(r.vps[:0:0], n...)
			case h265.NALUType_SPS_NUT:
				changed = changed || !bytes.Equal(n, r.sps)
				r.sps = append(r.sps[:0:0], n...)
			case h265.NALUType_PPS_NUT:
				changed = changed || !bytes.Equal(n, r.pps)
				r.pps = append(r.pps[:0:0], n...)
			}
		} else {
			switch h264.NALUType(n[0] & 0x1F) {
			case h264.NALUTypeSPS:
				changed = changed || !bytes.Equal(n, r.sps)
				r.sps = append(r.sps[:0:0], n...)
			case h264.NALUTypePPS:
				changed = changed || !bytes.Equal(n, r.pps)
				r.pps = append(r.pps[:0:0], n...)
			}
		}
	}
	if r.h265 {
		key = h265.IsRandomAccess(au)
	} else {
		key = h264.IsRandomAccess(au)
	}
	if changed || !r.haveParams {
		if err := r.applyParams(); err != nil {
			if errors.Is(err, errNoParams) {
				r.fr.DroppedUnits++
				return nil // wait for in-band parameter sets
			}
			// A parameter set that does not parse: keep the previous ones
			// if there are any, else wait.
			if !r.haveParams {
				r.fr.DroppedUnits++
				return nil
			}
		}
	}
	ms := r.tl.ms(pts, ntp, haveNTP, true)
	n := 0
	for _, u := range au {
		n += len(u)
	}
	r.st.frame(true, n)
	return r.fr.WriteVideo(ms, au, key)
}

// replayTimeDecoder decodes RTP timestamps as gortsplib's
// rtptime.GlobalDecoder2 (what PacketPTS2 uses) does, but on the replay's
// simulated clock: GlobalDecoder2 starts a track after the first at the
// leading track's PTS plus the wall-clock time since that track's last
// packet, so a replay's second-track times depended on how fast the
// replay ran (the reference and our depacketizer differed by a tick under
// load or the race detector).
type replayTimeDecoder struct {
	now      func() time.Time
	leading  rtptime.GlobalDecoder2Track
	startAt  time.Time
	startPTS int64
	leadRate int64
	tracks   map[rtptime.GlobalDecoder2Track]*replayTrackTime
}

type replayTrackTime struct {
	pts  int64
	prev uint32
}

// scale converts v from clock rate from to clock rate to (GlobalDecoder2's
// multiplyAndDivide2: integer part first, no overflow).
func scale(v, to, from int64) int64 { return v/from*to + v%from*to/from }

func (d *replayTimeDecoder) Decode(track rtptime.GlobalDecoder2Track, pkt *rtp.Packet) (int64, bool) {
	rate := int64(track.ClockRate())
	if rate == 0 {
		return 0, false
	}
	tt, ok := d.tracks[track]
	if !ok {
		if !track.PTSEqualsDTS(pkt) {
			return 0, false
		}
		now := d.now()
		if d.leading == nil {
			d.leading, d.startAt, d.startPTS, d.leadRate = track, now, 0, rate
		}
		start := scale(d.startPTS, rate, d.leadRate) + scale(int64(now.Sub(d.startAt)), rate, int64(time.Second))
		d.tracks[track] = &replayTrackTime{pts: start, prev: pkt.Timestamp}
		return start, true
	}
	tt.pts += int64(int32(pkt.Timestamp - tt.prev))
	tt.prev = pkt.Timestamp
	if track == d.leading && track.PTSEqualsDTS(pkt) {
		d.startAt, d.startPTS = d.now(), tt.pts
	}
	return tt.pts, true
}
