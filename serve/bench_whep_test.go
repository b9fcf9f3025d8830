package serve

import (
	"bytes"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// benchWHEPFrames are a 25 fps, 2 Mbit/s-like GOP of AVCC access units
// (4-byte NAL lengths): a 60 KB key frame (IDR) then 24 frames of 8 KB,
// ~10 KB a frame on average.
func benchWHEPFrames() []*engine.LiveFrame {
	nal := func(typ byte, n int) []byte {
		b := []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), typ}
		return append(b, bytes.Repeat([]byte{0x5a}, n-1)...)
	}
	out := []*engine.LiveFrame{{Track: 1, Video: true, Key: true, TimeMs: 0, Data: nal(0x65, 60_000)}}
	for i := 1; i < 25; i++ {
		out = append(out, &engine.LiveFrame{Track: 1, Video: true, TimeMs: int64(i * 40), Data: nal(0x41, 8_000)})
	}
	return out
}

// whepTestAVCC is an AVCDecoderConfigurationRecord of testSPS and testPPS.
func whepTestAVCC() []byte {
	avcc := append([]byte{1, testSPS[1], testSPS[2], testSPS[3], 0xff, 0xe1, 0, byte(len(testSPS))}, testSPS...)
	return append(append(avcc, 1, 0, byte(len(testPPS))), testPPS...)
}

// whepTap is a real engine's live tap of one H.264 stream "cam", fed
// through an ingest session as a camera feeds it, and n viewers of it:
// sessions (their tracks bound to no peer connection, or track's) with
// their own subscriptions.
type whepTap struct {
	eng  *engine.Engine
	in   *engine.IngestSession
	h    *mkv.Header
	subs []*engine.LiveSub
	ws   []*whepSession
}

func newWHEPTap(tb testing.TB, n int, track func(i int) rtpTrack) *whepTap {
	tb.Helper()
	e, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: tb.TempDir()}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	if _, err := e.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		tb.Fatal(err)
	}
	in, err := e.BeginIngest(engine.StreamRef{Name: "cam"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(in.Close)
	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: whepTestAVCC()}})
	if err != nil {
		tb.Fatal(err)
	}
	t := &whepTap{eng: e, in: in, h: h}
	for i := range n {
		sub, err := e.LiveSubscribe(engine.StreamRef{Name: "cam"}, 256)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(sub.Close)
		tr := track(i)
		if tr == nil {
			v, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "kvsedge")
			if err != nil {
				tb.Fatal(err)
			}
			tr = v
		}
		t.subs = append(t.subs, sub)
		t.ws = append(t.ws, &whepSession{plan: &whepPlan{videoTrack: 1}, video: tr})
	}
	return t
}

// publish feeds one frame to the tap (as a camera's block).
func (t *whepTap) publish(f *engine.LiveFrame) {
	t.in.LiveFrame(t.h, mkv.Block{Track: 1, TimeMs: f.TimeMs, Key: f.Key, Payload: f.Data})
}

// deliver has viewer i send the next frame of its queue (at its own time
// atMs) and releases it.
func (t *whepTap) deliver(tb testing.TB, i int, atMs int64, send func(w *whepSession, f *engine.LiveFrame, atMs int64) error) {
	var f *engine.LiveFrame
	select {
	case f = <-t.subs[i].C():
	default:
		tb.Fatalf("viewer %d: no frame queued", i)
	}
	err := send(t.ws[i], f, atMs)
	f.Release()
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkWHEPSendPerViewer is 20 viewers' work for one live frame of a
// stream, one frame per op: the engine's tap publishes it (the camera's
// side), then each viewer takes it from its queue and sends it
// (whepSession.sendAt: the payloads cut once for all, headers,
// TrackLocalStaticRTP.WriteRTP), so allocs/op and B/op are per frame for
// all 20 viewers. Frames are benchWHEPFrames'. The tracks are bound to
// no peer connection: SRTP, the interceptors (the NACK responder keeps
// its own copy of each packet) and the socket write, pion's per-viewer
// work after WriteRTP, are not counted; nor is the burst pacing (a 1 ms
// pause every 32 packets, wall time, not work: off here).
//
// Sub-benchmarks, in one run: "shared" (the box's path) and
// "pion-per-viewer" (what it replaced: each viewer cut the frame with
// pion's H264Payloader). Metrics: ns/frame-viewer; cut-B/frame, the
// payload bytes cut per frame over all viewers (shared: once, the frame's
// size plus headers; per viewer: 20 times that) and cut-B/frame-viewer
// (the same per viewer); packets/frame.
func BenchmarkWHEPSendPerViewer(b *testing.B) {
	const viewers = 20
	for _, mode := range []struct {
		name string
		send func(w *whepSession, f *engine.LiveFrame, atMs int64) error
	}{
		{"shared", func(w *whepSession, f *engine.LiveFrame, atMs int64) error { return w.sendAt(f, atMs, false) }},
		{"pion-per-viewer", pionSendVideo},
	} {
		b.Run(mode.name, func(b *testing.B) {
			t := newWHEPTap(b, viewers, func(int) rtpTrack { return nil })
			frames := benchWHEPFrames()
			var frameBytes int
			run := func(from, n int) {
				for i := from; i < from+n; i++ {
					f := frames[i%len(frames)]
					t.publish(f)
					for v := range viewers {
						t.deliver(b, v, int64(i)*40, mode.send)
					}
				}
			}
			run(0, 2*len(frames)) // warm the pools, the chunk cache and the header
			var cut0, sent0, burst0 uint64
			for _, w := range t.ws {
				cut0 += w.cutBytes
				sent0 += w.sent
				burst0 += uint64(w.burst)
			}
			b.ReportAllocs()
			b.ResetTimer()
			run(2*len(frames), b.N)
			b.StopTimer()
			for i := range b.N {
				frameBytes += len(frames[(2*len(frames)+i)%len(frames)].Data)
			}
			var cut, sent, burst uint64
			for _, w := range t.ws {
				cut += w.cutBytes
				sent += w.sent
				burst += uint64(w.burst)
			}
			if mode.name == "shared" && int(sent-sent0) != b.N*viewers {
				b.Fatalf("%d frames sent, want %d", sent-sent0, b.N*viewers)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*viewers), "ns/frame-viewer")
			b.ReportMetric(float64(cut-cut0)/float64(b.N), "cut-B/frame")
			b.ReportMetric(float64(cut-cut0)/float64(b.N*viewers), "cut-B/frame-viewer")
			b.ReportMetric(float64(frameBytes)/float64(b.N), "frame-B")
			b.ReportMetric(float64(burst-burst0)/float64(b.N*viewers), "packets/frame") // burst counts every packet
		})
	}
}

// pionSendVideo is how a viewer sent a video frame before the payloads
// were shared (kept for BenchmarkWHEPSendPerViewer's comparison): pion's
// H264Payloader cut the frame for each viewer, copying it into new
// payloads.
func pionSendVideo(w *whepSession, f *engine.LiveFrame, atMs int64) error {
	if w.avc == nil {
		t, err := f.Header.Tracks()
		if err != nil {
			return err
		}
		if w.avc, err = parseAVCC(t.Tracks[0].CodecPrivate); err != nil {
			return err
		}
	}
	var pay codecs.H264Payloader
	ts := uint32(atMs * 90)
	var out [][]byte
	if f.Key {
		for _, ps := range w.avc.ps {
			out = append(out, pay.Payload(rtpMTU, ps)...)
		}
	}
	d, n := f.Data, w.avc.nalLen
	for len(d) >= n {
		var l int
		for _, c := range d[:n] {
			l = l<<8 | int(c)
		}
		d = d[n:]
		if l <= 0 || l > len(d) {
			break
		}
		out = append(out, pay.Payload(rtpMTU, d[:l])...)
		d = d[l:]
	}
	for i, p := range out {
		w.pkt.Header = rtp.Header{Version: 2, Marker: i == len(out)-1, SequenceNumber: w.vseq, Timestamp: ts}
		w.vseq++
		w.pkt.Payload = p
		if err := w.video.WriteRTP(&w.pkt); err != nil {
			return err
		}
		w.cutBytes += uint64(len(p))
		w.burst++
	}
	w.sent++
	return nil
}

// rtpRecorder keeps what a viewer's track was given: each packet's
// header and where its payload was (and a copy of its bytes).
type rtpRecorder struct {
	hdrs  []rtp.Header
	at    []*byte
	bytes [][]byte
}

func (r *rtpRecorder) WriteRTP(p *rtp.Packet) error {
	r.hdrs = append(r.hdrs, p.Header)
	r.at = append(r.at, unsafe.SliceData(p.Payload))
	r.bytes = append(r.bytes, bytes.Clone(p.Payload))
	return nil
}

// Viewers of a stream send the same payloads: one cut per frame whoever
// sends it first, the others handing pion the very same bytes (no copy
// of ours per viewer), each with its own sequence numbers and
// timestamps and the marker on the frame's last packet. When the shared
// payloads cannot be had (the stream's tap closed: no media buffer), each
// viewer cuts the frame itself and sends the same bytes.
func TestWHEPViewersShareFramePayloads(t *testing.T) {
	const viewers = 3
	recs := make([]*rtpRecorder, viewers)
	tap := newWHEPTap(t, viewers, func(i int) rtpTrack { recs[i] = &rtpRecorder{}; return recs[i] })
	frames := benchWHEPFrames()[:3] // a key frame, then two
	send := func(w *whepSession, f *engine.LiveFrame, atMs int64) error { return w.sendAt(f, atMs, false) }
	for i, f := range frames {
		tap.publish(f)
		for v := range viewers {
			tap.deliver(t, v, int64(1000*v+i*40), send)
		}
	}
	var cut uint64
	for _, w := range tap.ws {
		cut += w.cutBytes
	}
	pkts := len(recs[0].hdrs)
	var want uint64
	for _, f := range frames {
		want += uint64(h264RTPSize(f.Data, 4, tap.ws[0].framePS(f), rtpMTU))
	}
	if cut != want {
		t.Fatalf("the viewers cut %d bytes of payloads, want %d: each frame once", cut, want)
	}
	for v, r := range recs {
		if len(r.hdrs) != pkts {
			t.Fatalf("viewer %d sent %d packets, viewer 0 %d", v, len(r.hdrs), pkts)
		}
		marks := 0
		for i, h := range r.hdrs {
			if r.at[i] != recs[0].at[i] || !bytes.Equal(r.bytes[i], recs[0].bytes[i]) {
				t.Fatalf("viewer %d's packet %d: payload at %p, viewer 0's at %p (a copy per viewer)", v, i, r.at[i], recs[0].at[i])
			}
			if i > 0 && h.SequenceNumber != r.hdrs[i-1].SequenceNumber+1 {
				t.Fatalf("viewer %d: sequence %d after %d", v, h.SequenceNumber, r.hdrs[i-1].SequenceNumber)
			}
			if h.Marker {
				marks++
				if want := uint32((1000*v + (marks-1)*40) * 90); h.Timestamp != want {
					t.Fatalf("viewer %d: frame %d stamped %d, want %d", v, marks-1, h.Timestamp, want)
				}
			}
		}
		if marks != len(frames) || !r.hdrs[len(r.hdrs)-1].Marker {
			t.Fatalf("viewer %d: %d marker bits for %d frames", v, marks, len(frames))
		}
	}
	// The first packet of the key frame is the STAP-A of the SPS and PPS.
	if p := recs[0].bytes[0]; p[0]&0x1f != h264STAPA || !bytes.Contains(p, testSPS) || !bytes.Contains(p, testPPS) {
		t.Fatalf("the key frame's first payload %x… is not a STAP-A of the SPS and PPS", p[:min(len(p), 8)])
	}

	// No shared buffer: the stream is deleted while the viewers hold a
	// frame not yet sent.
	for _, r := range recs {
		*r = rtpRecorder{}
	}
	tap.publish(frames[1])
	info, err := tap.eng.Stream(engine.StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tap.eng.DeleteStream(info.ARN, ""); err != nil {
		t.Fatal(err)
	}
	for v := range viewers {
		tap.deliver(t, v, 5000, send)
	}
	size := h264RTPSize(frames[1].Data, 4, nil, rtpMTU)
	for v, r := range recs {
		if len(r.hdrs) == 0 || len(r.hdrs) != len(recs[0].hdrs) {
			t.Fatalf("viewer %d sent %d packets of the frame, viewer 0 %d", v, len(r.hdrs), len(recs[0].hdrs))
		}
		for i := range r.bytes {
			if !bytes.Equal(r.bytes[i], recs[0].bytes[i]) {
				t.Fatalf("viewer %d's packet %d differs from viewer 0's", v, i)
			}
		}
		if v > 0 && r.at[0] == recs[0].at[0] {
			t.Fatalf("viewer %d sent viewer 0's buffer although none could be shared", v)
		}
		if tap.ws[v].scratch == nil || len(tap.ws[v].scratch) != size {
			t.Fatalf("viewer %d cut %d bytes into its own buffer, want %d", v, len(tap.ws[v].scratch), size)
		}
	}
}

// BenchmarkWHEPSendLoopback is one viewer's whole send path for a live
// frame, over a real peer connection on loopback: the box's session
// (negotiate: its media engine and interceptors) sends benchWHEPFrames
// (sendAt, pacing off) through SRTP and UDP to a pion client that reads
// and discards the packets. One frame per op; the client's receiving
// runs in this process too, so ns/op and allocs/op are both sides' (a
// CPU profile tells them apart: sendVideo's subtree is the box's).
func BenchmarkWHEPSendLoopback(b *testing.B) {
	log := slog.New(slog.DiscardHandler)
	ws := newWHEP(WebRTCOptions{}, log)
	defer ws.close()
	srv := &Server{}
	srv.opts.Logger = log
	cfg, err := parseAVCC(whepTestAVCC())
	if err != nil {
		b.Fatal(err)
	}
	plan := &whepPlan{videoTrack: 1, profile: "64001f"}

	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		b.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(ir)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	<-g
	sess, answer, err := ws.negotiate(srv, plan, pc.LocalDescription().SDP)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.pc.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		b.Fatal(err)
	}
	select {
	case <-sess.connected:
	case <-time.After(10 * time.Second):
		b.Fatal("not connected")
	}
	time.Sleep(200 * time.Millisecond) // the client's SRTP
	sess.avc, sess.pace = cfg, 0
	frames := benchWHEPFrames()
	for i := range 50 {
		if err := sess.sendAt(frames[i%len(frames)], int64(i)*40, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := sess.sendAt(frames[i%len(frames)], int64(i)*40, false); err != nil {
			b.Fatal(err)
		}
		if i%25 == 24 {
			time.Sleep(time.Millisecond) // the client's socket buffer
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(sess.burst)/float64(b.N+50), "packets/frame")
	b.ReportMetric(float64(got.Load())/float64(sess.burst), "received/sent")
}

// A viewer whose frame gets no shared payloads (the media budget has no
// room: here the stream is gone) cuts no frame bigger than
// maxViewerScratch into its own buffer: the frame is skipped, the viewer
// asks for the newest key frame, and its buffer stays within the bound.
func TestWHEPViewerScratchBounded(t *testing.T) {
	rec := &rtpRecorder{}
	tap := newWHEPTap(t, 1, func(int) rtpTrack { return rec })
	frames := benchWHEPFrames()
	send := func(w *whepSession, f *engine.LiveFrame, atMs int64) error { return w.sendAt(f, atMs, false) }
	tap.publish(frames[0])
	tap.deliver(t, 0, 0, send)
	n := 400_000
	big := &engine.LiveFrame{Track: 1, Video: true, TimeMs: 40, Data: append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0x41}, make([]byte, n-1)...)}
	tap.publish(big)
	tap.publish(frames[2])
	info, err := tap.eng.Stream(engine.StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tap.eng.DeleteStream(info.ARN, ""); err != nil {
		t.Fatal(err)
	}
	w := tap.ws[0]
	sent := len(rec.hdrs)
	tap.deliver(t, 0, 40, send)
	if len(rec.hdrs) != sent || w.skipped != 1 || !w.pli.Load() {
		t.Fatalf("a 400 KB frame without shared payloads: %d packets sent, %d skipped, key frame asked %v; want 0, 1, true", len(rec.hdrs)-sent, w.skipped, w.pli.Load())
	}
	if cap(w.scratch) > maxViewerScratch {
		t.Fatalf("the viewer's own buffer holds %d bytes, bound %d", cap(w.scratch), maxViewerScratch)
	}
	tap.deliver(t, 0, 80, send)
	if len(rec.hdrs) == sent || w.skipped != 1 {
		t.Fatalf("the next small frame: %d packets, %d skipped; want it sent from the viewer's own buffer", len(rec.hdrs)-sent, w.skipped)
	}
}
