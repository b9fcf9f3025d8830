package serve

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// whepPlan is what a stream's tracks become over WebRTC.
type whepPlan struct {
	videoTrack uint64
	profile    string // profile-level-id of the stream's SPS (6 hex digits)
	// audio: the track carried (0: none), its RTP codec.
	audioTrack    uint64
	audioMime     string
	audioRate     uint32
	audioChannels uint16
}

// planWHEP picks the tracks a WebRTC viewer gets: the first H.264 video
// track (required), and the first Opus or G.711 audio track if any.
func planWHEP(h *mkv.Header) (*whepPlan, *apiError) {
	p := &whepPlan{}
	for _, t := range h.Tracks {
		switch {
		case t.Type == mkv.TrackVideo && p.videoTrack == 0:
			if t.CodecID != mkv.CodecH264 {
				return nil, newAPIError(http.StatusUnsupportedMediaType, errUnsupportedMediaType, "The stream's video is %s; WebRTC live view carries H.264 only (use HLS).", t.CodecID)
			}
			cfg, err := parseAVCC(t.CodecPrivate)
			if err != nil {
				return nil, newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "The stream's H.264 CodecPrivate: %v", err)
			}
			p.videoTrack = t.Number
			p.profile = fmt.Sprintf("%02x%02x%02x", cfg.profile, cfg.compat, cfg.level)
		case t.Type == mkv.TrackAudio && p.audioTrack == 0:
			switch {
			case t.CodecID == mkv.CodecOpus:
				p.audioTrack, p.audioMime, p.audioRate, p.audioChannels = t.Number, webrtc.MimeTypeOpus, 48000, 2
			case t.CodecID == mkv.CodecPCMA && len(t.CodecPrivate) >= 8:
				tag := binary.LittleEndian.Uint16(t.CodecPrivate)
				ch := binary.LittleEndian.Uint16(t.CodecPrivate[2:])
				rate := binary.LittleEndian.Uint32(t.CodecPrivate[4:])
				if ch != 1 || rate != 8000 {
					continue // WebRTC's PCMA/PCMU are 8 kHz mono
				}
				switch tag {
				case 6:
					p.audioTrack, p.audioMime = t.Number, webrtc.MimeTypePCMA
				case 7:
					p.audioTrack, p.audioMime = t.Number, webrtc.MimeTypePCMU
				}
				p.audioRate, p.audioChannels = 8000, 1
			}
		}
	}
	if p.videoTrack == 0 {
		return nil, newAPIError(http.StatusUnsupportedMediaType, errUnsupportedMediaType, "The stream has no video track; WebRTC live view needs H.264 video (use HLS).")
	}
	return p, nil
}

// h264FeedBack is what the box's H.264 answers support.
var h264FeedBack = []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}

// register offers the plan's codecs: H.264 with packetization-mode 1 and
// the stream's own profile first, then the profiles browsers offer (pion
// matches profile_idc and the constraint flags exactly; decoders take the
// SPS as it is, whatever the answer says), and the audio codec.
func (p *whepPlan) register(me *webrtc.MediaEngine) error {
	profiles := []string{p.profile}
	for _, q := range []string{"42e01f", "42001f", "4d001f", "64001f", "f4001f"} {
		if q[:4] != p.profile[:4] {
			profiles = append(profiles, q)
		}
	}
	for i, pl := range profiles {
		if err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + pl, RTCPFeedback: h264FeedBack},
			PayloadType: webrtc.PayloadType(102 + i),
		}, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	if p.audioMime == "" {
		return nil
	}
	pt := map[string]webrtc.PayloadType{webrtc.MimeTypeOpus: 111, webrtc.MimeTypePCMU: 0, webrtc.MimeTypePCMA: 8}[p.audioMime]
	fmtp := ""
	if p.audioMime == webrtc.MimeTypeOpus {
		fmtp = "minptime=10;useinbandfec=1"
	}
	return me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: p.audioMime, ClockRate: p.audioRate, Channels: p.audioChannels, SDPFmtpLine: fmtp},
		PayloadType:        pt,
	}, webrtc.RTPCodecTypeAudio)
}

// avcConfig is what the sender needs of an AVCDecoderConfigurationRecord
// (ISO/IEC 14496-15 §5.3.3.1: version, profile, compatibility, level,
// 6 bits reserved + 2 bits NAL length size − 1, 3 bits reserved + 5 bits
// SPS count, each SPS with a 16-bit length, PPS count, each PPS likewise).
type avcConfig struct {
	profile, compat, level byte
	nalLen                 int
	sps, pps               [][]byte
	ps                     [][]byte // sps then pps: sent before key frames
}

func parseAVCC(b []byte) (*avcConfig, error) {
	if len(b) < 7 || b[0] != 1 {
		return nil, fmt.Errorf("not an AVCDecoderConfigurationRecord (%d bytes)", len(b))
	}
	c := &avcConfig{profile: b[1], compat: b[2], level: b[3], nalLen: int(b[4]&3) + 1}
	if c.nalLen == 3 {
		return nil, fmt.Errorf("NAL length size 3 is not allowed")
	}
	rest := b[5:]
	read := func(n int) ([][]byte, error) {
		var out [][]byte
		for range n {
			if len(rest) < 2 {
				return nil, fmt.Errorf("truncated parameter set")
			}
			l := int(binary.BigEndian.Uint16(rest))
			if len(rest) < 2+l || l == 0 {
				return nil, fmt.Errorf("truncated parameter set")
			}
			out = append(out, rest[2:2+l])
			rest = rest[2+l:]
		}
		return out, nil
	}
	var err error
	nsps := int(rest[0] & 0x1f)
	rest = rest[1:]
	if c.sps, err = read(nsps); err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		return nil, fmt.Errorf("no PPS count")
	}
	n := int(rest[0])
	rest = rest[1:]
	if c.pps, err = read(n); err != nil {
		return nil, err
	}
	if len(c.sps) == 0 || len(c.pps) == 0 {
		return nil, fmt.Errorf("no SPS or PPS")
	}
	c.ps = append(append(c.ps, c.sps...), c.pps...)
	return c, nil
}

// rtpTrack is where a session's RTP goes: a *webrtc.TrackLocalStaticRTP
// (a test's recorder).
type rtpTrack interface{ WriteRTP(*rtp.Packet) error }

// whepSession is one WebRTC viewer.
type whepSession struct {
	id, stream             string
	pc                     *webrtc.PeerConnection
	plan                   *whepPlan
	video, audio           rtpTrack
	videoCodec, audioCodec string
	log                    *slog.Logger
	connectTimeout         time.Duration

	connected   chan struct{} // closed once ICE and DTLS are up
	connOnce    sync.Once
	onConnected func()
	done        chan struct{} // closed by stop
	stopOnce    sync.Once
	why         string // why the session ended (set before done closes)
	sent        uint64 // video frames sent

	// The sender's state (run's goroutine only).
	hdr *engine.Header
	avc *avcConfig
	// scratch: the frame's payloads when the media budget had no room
	// for shared ones; cutBytes counts the payload bytes this viewer
	// cut (shared or its own).
	scratch  []byte
	cutBytes uint64
	// skipped counts the frames too big for scratch (sendVideo).
	skipped  uint64
	vseq     uint16
	aseq     uint16
	pkt      rtp.Packet
	rtpBytes atomic.Uint64
	// burst counts the video packets sent; every pace-th is followed by
	// a 1 ms pause (burstPackets; 0: none, a benchmark's).
	burst, pace int
	// floorMs is the newest video time sent.
	floorMs int64
	// pli: the viewer asked for a key frame (RTCP PLI or FIR); rewinds
	// counts the restarts at the newest key frame it caused.
	pli     atomic.Bool
	rewinds int
	// storeWaitsCut counts the fragments whose wait storeWait cut (their
	// frames went out while the fragment was still on its way to disk).
	storeWaitsCut int
	lag           lagStats
}

// lagStats sums, for the live video frames a viewer was sent, how long
// after its producer time each reached the box (for a camera: the
// camera's clock against the box's) and how long the box took to send it.
type lagStats struct {
	n                    int64
	arriveSum, arriveMax int64 // ms
	sendSumUs, sendMaxUs int64
}

func (l *lagStats) add(f *engine.LiveFrame) {
	now := time.Now().UnixNano()
	a := f.ArrivedNs/1e6 - f.TimeMs
	s := (now - f.ArrivedNs) / 1e3
	l.n++
	l.arriveSum += a
	l.arriveMax = max(l.arriveMax, a)
	l.sendSumUs += s
	l.sendMaxUs = max(l.sendMaxUs, s)
}

// attrs are the figures for the session's last log line.
func (l *lagStats) attrs() []any {
	if l.n == 0 {
		return nil
	}
	return []any{"arrival_after_producer_ms_mean", l.arriveSum / l.n, "arrival_after_producer_ms_max", l.arriveMax,
		"sent_after_arrival_us_mean", l.sendSumUs / l.n, "sent_after_arrival_us_max", l.sendMaxUs}
}

func (w *whepSession) onState(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		w.connOnce.Do(func() {
			close(w.connected)
			if w.onConnected != nil {
				w.onConnected()
			}
		})
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		w.stopWhy("connection " + st.String())
	case webrtc.PeerConnectionStateDisconnected:
		// ICE may come back within its failed timeout; failed ends it.
	}
}

func (w *whepSession) stop() { w.stopWhy("deleted") }

func (w *whepSession) stopWhy(why string) {
	w.stopOnce.Do(func() {
		w.why = why
		close(w.done)
	})
}

// run sends the live frames until the session ends, then closes the
// peer connection and the subscription.
func (w *whepSession) run(life context.Context, sub *engine.LiveSub, first *engine.LiveFrame) {
	defer sub.Close()
	defer func() { _ = w.pc.Close() }()
	ctx, cancel := context.WithCancel(life)
	defer cancel()
	go func() {
		select {
		case <-w.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	// Frames queue in the subscription (the newest GOP first) until the
	// viewer is connected.
	timer := time.NewTimer(w.connectTimeout)
	select {
	case <-w.connected:
		timer.Stop()
	case <-timer.C:
		first.Release()
		w.stopWhy(fmt.Sprintf("not connected within %v", w.connectTimeout))
		return
	case <-ctx.Done():
		first.Release()
		w.stopWhy("ended")
		return
	}
	// The viewer's SRTP may be set up a moment after the box sees the
	// connection: packets before that are lost for good (no NACK can
	// ask for the first ones).
	time.Sleep(50 * time.Millisecond)
	if err := w.catchUp(sub, first); err != nil {
		w.stopWhy("send: " + err.Error())
		return
	}
	var lastRewind time.Time
	for {
		if w.pli.Swap(false) && time.Since(lastRewind) > time.Second {
			// The viewer lost a key frame: start again at the newest.
			lastRewind = time.Now()
			w.rewinds++
			sub.Rewind()
			f, err := sub.Next(ctx)
			if err != nil {
				w.stopWhy("ended")
				return
			}
			if err := w.catchUp(sub, f); err != nil {
				w.stopWhy("send: " + err.Error())
				return
			}
			continue
		}
		f, err := sub.Next(ctx)
		if err != nil {
			w.stopWhy("ended")
			return
		}
		// Frames wait until the fragment the newest key frame closed is
		// stored (engine.LiveSub.WaitStored): its key frame's burst to
		// every viewer would otherwise run during that fragment's
		// persist and delay the camera's PERSISTED acks.
		if !sub.WaitStored(ctx, storeWait) {
			w.storeWaitsCut++
		}
		// A frame stamped before what was sent (the catch-up's compressed
		// times) goes out 1 ms after it: RTP times never go backwards.
		at := f.TimeMs
		if f.Track == w.plan.videoTrack {
			at = max(at, w.floorMs+1)
			w.floorMs = at
		}
		err = w.sendAt(f, at, false)
		f.Release()
		if err != nil {
			w.stopWhy("send: " + err.Error())
			return
		}
	}
}

// catchUp sends first and what is queued behind it (when a viewer
// connects: the newest key frame and the frames since) at once, its video
// compressed to 1 ms apart and ending at the newest frame's time, its
// audio dropped, so the viewer's jitter buffer starts at the live edge
// instead of as far behind as the key frame was old. Live frames then
// carry their producer times.
func (w *whepSession) catchUp(sub *engine.LiveSub, first *engine.LiveFrame) error {
	backlog := append(make([]*engine.LiveFrame, 0, 1+len(sub.C())), first)
	for n := len(sub.C()); n > 0; n-- {
		backlog = append(backlog, <-sub.C())
	}
	edge := backlog[len(backlog)-1].TimeMs
	var err error
	for i, f := range backlog {
		if err == nil {
			at := max(min(f.TimeMs, edge-int64(len(backlog)-1-i)), w.floorMs+1)
			if f.Track == w.plan.videoTrack {
				w.floorMs = at
			}
			err = w.sendAt(f, at, true)
		}
		f.Release()
	}
	return err
}

// storeWait bounds how long a live frame waits for its stream's newest
// fragment to be stored (run): a few milliseconds on an SSD; on a slow
// SD card the wait is cut here, so a viewer's delay grows by at most
// this once per fragment.
const storeWait = 30 * time.Millisecond

// rtpMTU is the RTP payload size the payloader cuts NAL units to.
const rtpMTU = 1200

// sendAt writes one frame as RTP, stamped atMs (catchUp: audio is
// dropped).
func (w *whepSession) sendAt(f *engine.LiveFrame, atMs int64, catchUp bool) error {
	if f.Header != w.hdr {
		t, err := f.Header.Tracks()
		if err != nil {
			return err
		}
		plan, aerr := planWHEP(t)
		if aerr != nil {
			return fmt.Errorf("the stream's tracks changed: %s", aerr.Message)
		}
		if plan.videoTrack != w.plan.videoTrack || plan.audioTrack != w.plan.audioTrack || plan.audioMime != w.plan.audioMime {
			return fmt.Errorf("the stream's tracks changed")
		}
		for _, tr := range t.Tracks {
			if tr.Number == plan.videoTrack {
				if w.avc, err = parseAVCC(tr.CodecPrivate); err != nil {
					return err
				}
			}
		}
		w.hdr = f.Header
	}
	switch {
	case f.Track == w.plan.videoTrack:
		w.sent++
		if !catchUp {
			w.lag.add(f)
		}
		return w.sendVideo(f, atMs)
	case f.Track == w.plan.audioTrack && w.audio != nil && !catchUp:
		w.pkt.Header = rtp.Header{Version: 2, Marker: false, SequenceNumber: w.aseq, Timestamp: uint32(atMs * int64(w.plan.audioRate) / 1000)}
		w.aseq++
		w.pkt.Payload = f.Data
		return w.audio.WriteRTP(&w.pkt)
	}
	return nil
}

// maxViewerScratch bounds a viewer's own payload buffer (sendVideo): the
// payloads of a frame of ~250 KB, above a 2 Mbit/s camera's key frames,
// outside the media budget at most once per viewer.
const maxViewerScratch = 256 << 10

// sendVideo sends an AVCC access unit: its RTP payloads are cut once
// for every viewer of the stream (the frame's attachment, whep_rtp.go);
// this viewer only stamps its own headers (its sequence numbers and,
// after a catch-up, its own timestamps; the marker bit on the last
// packet) and hands pion the shared payloads. When the media budget has
// no room for the shared payloads the viewer cuts the frame into its own
// buffer, reused frame after frame, if the frame's payloads fit in
// maxViewerScratch: a bigger frame is skipped and the viewer starts again
// at the newest key frame (as after a PLI), so a full budget never has
// every viewer hold a copy of a big frame outside it.
func (w *whepSession) sendVideo(f *engine.LiveFrame, atMs int64) error {
	var buf []byte
	var n int
	if a, ok := f.Attachment(w).(*h264RTP); ok && a != nil {
		buf, n = a.buf, a.n
	} else {
		ps := w.framePS(f)
		if h264RTPSize(f.Data, w.avc.nalLen, ps, rtpMTU) > maxViewerScratch {
			w.skipped++
			w.pli.Store(true)
			return nil
		}
		w.scratch, n = cutH264(w.scratch[:0], f.Data, w.avc.nalLen, ps, rtpMTU)
		buf = w.scratch
		w.cutBytes += uint64(len(buf))
	}
	ts := uint32(atMs * 90)
	for i, off := 0, 0; i < n; i++ {
		var p []byte
		p, off = nextRTPPayload(buf, off)
		w.pkt.Header = rtp.Header{Version: 2, Marker: i == n-1, SequenceNumber: w.vseq, Timestamp: ts}
		w.vseq++
		w.pkt.Payload = p
		err := w.video.WriteRTP(&w.pkt)
		w.pkt.Payload = nil // the frame's bytes: not held past the frame
		if err != nil {
			return err
		}
		w.rtpBytes.Add(uint64(len(p)))
		// Pace bursts (a key frame, the catch-up): a socket buffer
		// overrun on the viewer's side loses a key frame for good.
		if w.burst++; w.pace > 0 && w.burst%w.pace == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// burstPackets is how many RTP packets go out back to back before a
// 1 ms pause (~38 KB: ~300 Mbit/s at most, far above any camera, yet a
// 200 KB key frame no longer arrives in one burst).
const burstPackets = 32
