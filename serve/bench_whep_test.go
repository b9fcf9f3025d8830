package serve

import (
	"bytes"
	"testing"

	"github.com/kvsedge/kvsedge/engine"
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

// BenchmarkWHEPSendPerViewer is one viewer's share of sending a live
// frame: whepSession.sendAt (the H.264 payloader cutting the shared
// frame into RTP packets, parameter sets before key frames, headers,
// TrackLocalStaticRTP.WriteRTP) for the frames of benchWHEPFrames, one
// frame per op, so allocs/op and B/op are per frame per viewer. The
// track is bound to no peer connection: SRTP, the interceptors (the NACK
// responder keeps its own copy of each packet) and the socket write,
// pion's per-viewer work after WriteRTP, are not counted.
// packets/frame is the RTP packets a frame makes.
func BenchmarkWHEPSendPerViewer(b *testing.B) {
	sps := []byte{0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10}
	pps := []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}
	avcc := append([]byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1, 0, byte(len(sps))}, sps...)
	avcc = append(append(avcc, 1, 0, byte(len(pps))), pps...)
	cfg, err := parseAVCC(avcc)
	if err != nil {
		b.Fatal(err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "kvsedge")
	if err != nil {
		b.Fatal(err)
	}
	// The session's header is the frames' (nil here), so sendAt goes
	// straight to the packets, as it does between header changes.
	w := &whepSession{plan: &whepPlan{videoTrack: 1}, video: video, avc: cfg}
	frames := benchWHEPFrames()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		f := frames[i%len(frames)]
		if err := w.sendAt(f, int64(i)*40, false); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if int(w.sent) != b.N {
		b.Fatalf("%d frames sent, want %d", w.sent, b.N)
	}
	b.ReportMetric(float64(w.burst)/float64(b.N), "packets/frame") // burst counts every packet
}
