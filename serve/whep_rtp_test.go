package serve

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/pion/rtp/codecs"
)

// avccAU is an AVCC access unit of nals with nalLen-byte sizes.
func avccAU(nalLen int, nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		for i := nalLen - 1; i >= 0; i-- {
			b = append(b, byte(len(n)>>(8*i)))
		}
		b = append(b, n...)
	}
	return b
}

// testNAL is a NAL unit of n bytes: header hdr, then a counting pattern
// (so a misplaced fragment shows).
func testNAL(hdr byte, n int) []byte {
	b := make([]byte, n)
	b[0] = hdr
	for i := 1; i < n; i++ {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

func annexB(nals ...[]byte) []byte {
	var b []byte
	for _, n := range nals {
		b = append(append(b, 0, 0, 0, 1), n...)
	}
	return b
}

var (
	testSPS = []byte{0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10}
	testPPS = []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}
)

// The payloads cutH264 makes go back to the same NAL units through pion's
// depacketizer (codecs.H264Packet): single NAL units, FU-A, STAP-A, each
// payload within the MTU; the parameter sets before the access unit, AUD
// and filler dropped; the sizing pass is exact, so the cut never grows
// its buffer.
func TestH264CutRoundTrip(t *testing.T) {
	aud := []byte{0x09, 0xf0}
	filler := []byte{0x0c, 0xff, 0xff}
	idr := testNAL(0x65, 60_000)
	big := testNAL(0x41, rtpMTU+1) // one byte too many: two fragments
	for _, tc := range []struct {
		name   string
		nalLen int
		ps     [][]byte
		nals   [][]byte
		want   [][]byte // the NAL units the viewer gets, in order
		stapA  bool     // the first payload is a STAP-A
		pkts   int      // 0: not checked
	}{
		{name: "small", nalLen: 4, nals: [][]byte{testNAL(0x41, 300)}, want: [][]byte{testNAL(0x41, 300)}, pkts: 1},
		{name: "exactly the MTU", nalLen: 4, nals: [][]byte{testNAL(0x41, rtpMTU)}, want: [][]byte{testNAL(0x41, rtpMTU)}, pkts: 1},
		{name: "MTU+1", nalLen: 2, nals: [][]byte{big}, want: [][]byte{big}, pkts: 2},
		{name: "large key frame with SPS/PPS", nalLen: 4, ps: [][]byte{testSPS, testPPS}, nals: [][]byte{idr},
			want: [][]byte{testSPS, testPPS, idr}, stapA: true, pkts: 1 + (len(idr)-1+rtpMTU-3)/(rtpMTU-2)},
		{name: "several NAL units, AUD and filler", nalLen: 4, nals: [][]byte{aud, testNAL(0x06, 20), testNAL(0x41, 5000), filler, testNAL(0x41, 7)},
			want: [][]byte{testNAL(0x06, 20), testNAL(0x41, 5000), testNAL(0x41, 7)}},
		{name: "in-band parameter sets", nalLen: 1, nals: [][]byte{testSPS, testPPS, testNAL(0x65, 200)},
			want: [][]byte{testSPS, testPPS, testNAL(0x65, 200)}, stapA: true, pkts: 2},
		{name: "a lone SPS", nalLen: 4, nals: [][]byte{testSPS, testNAL(0x41, 10)}, want: [][]byte{testSPS, testNAL(0x41, 10)}, pkts: 2},
		{name: "parameter sets too big for one STAP-A", nalLen: 4, ps: [][]byte{testNAL(0x67, 700), testNAL(0x68, 700)}, nals: [][]byte{testNAL(0x65, 100)},
			want: [][]byte{testNAL(0x67, 700), testNAL(0x68, 700), testNAL(0x65, 100)}, pkts: 3},
		{name: "parameter sets alone", nalLen: 4, ps: [][]byte{testSPS, testPPS}, want: [][]byte{testSPS, testPPS}, stapA: true, pkts: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			au := avccAU(tc.nalLen, tc.nals...)
			size := h264RTPSize(au, tc.nalLen, tc.ps, rtpMTU)
			dst := make([]byte, 0, size)
			buf, n := cutH264(dst, au, tc.nalLen, tc.ps, rtpMTU)
			if len(buf) != size || unsafe.SliceData(buf) != unsafe.SliceData(dst) {
				t.Fatalf("cut %d bytes (in the sized buffer: %v), sized %d", len(buf), unsafe.SliceData(buf) == unsafe.SliceData(dst), size)
			}
			if tc.pkts != 0 && n != tc.pkts {
				t.Fatalf("%d packets, want %d", n, tc.pkts)
			}
			var dep codecs.H264Packet
			var got []byte
			off := 0
			for i := range n {
				var p []byte
				p, off = nextRTPPayload(buf, off)
				if len(p) == 0 || len(p) > rtpMTU {
					t.Fatalf("payload %d: %d bytes (MTU %d)", i, len(p), rtpMTU)
				}
				if i == 0 && tc.stapA != (p[0]&0x1f == h264STAPA) {
					t.Fatalf("first payload's type %d, STAP-A wanted: %v", p[0]&0x1f, tc.stapA)
				}
				out, err := dep.Unmarshal(p)
				if err != nil {
					t.Fatalf("payload %d: %v", i, err)
				}
				got = append(got, out...)
			}
			if off != len(buf) {
				t.Fatalf("%d records end at %d of %d bytes", n, off, len(buf))
			}
			if want := annexB(tc.want...); !bytes.Equal(got, want) {
				t.Fatalf("depacketized %d bytes, want %d (%x… vs %x…)", len(got), len(want), got[:min(len(got), 16)], want[:min(len(want), 16)])
			}
		})
	}
}

// A NAL size past the access unit's end stops it: what came before is
// sent (as before, with pion's payloader).
func TestH264CutMalformedSize(t *testing.T) {
	au := append(avccAU(4, testNAL(0x41, 50)), 0, 0, 0x10, 0, 0x41, 1, 2)
	buf, n := cutH264(nil, au, 4, nil, rtpMTU)
	if n != 1 || len(buf) != 2+50 {
		t.Fatalf("%d packets, %d bytes; want the first NAL unit alone", n, len(buf))
	}
}

// Why whep_rtp.go cuts H.264 itself: the libraries' packetizers allocate
// every payload per call (none writes into a caller's buffer), while
// cutH264 into a sized buffer allocates nothing. If a library stops
// allocating, this fails: use it instead.
func TestLibraryH264PayloadersAllocate(t *testing.T) {
	nals := [][]byte{testNAL(0x65, 20_000), testNAL(0x06, 30)}
	var pay codecs.H264Payloader
	pionAllocs := testing.AllocsPerRun(50, func() {
		for _, n := range nals {
			_ = pay.Payload(rtpMTU, n)
		}
	})
	enc := &rtph264.Encoder{PayloadType: 96, PayloadMaxSize: rtpMTU}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	gortspAllocs := testing.AllocsPerRun(50, func() {
		if _, err := enc.Encode(nals); err != nil {
			t.Fatal(err)
		}
	})
	au := avccAU(4, nals...)
	buf := make([]byte, 0, h264RTPSize(au, 4, nil, rtpMTU))
	var pkts int
	ours := testing.AllocsPerRun(50, func() {
		buf, pkts = cutH264(buf[:0], au, 4, nil, rtpMTU)
	})
	t.Logf("allocations per access unit (%d packets): pion H264Payloader %.0f, gortsplib rtph264.Encoder %.0f, cutH264 %.0f", pkts, pionAllocs, gortspAllocs, ours)
	if pionAllocs < 2 || gortspAllocs < 2 {
		t.Fatalf("a library packetizer allocates %.0f (pion) / %.0f (gortsplib) per access unit: use it instead of cutH264", pionAllocs, gortspAllocs)
	}
	if ours != 0 {
		t.Fatalf("cutH264 into a sized buffer allocates %.0f per access unit", ours)
	}
}
