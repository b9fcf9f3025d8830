package serve

import "testing"

// FuzzCutH264: any access unit a PutMedia producer sends (any NAL sizes,
// any nalLen) is cut without a panic, into exactly the bytes
// h264RTPSize counted, each payload at most the MTU.
func FuzzCutH264(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 0x65, 1}, byte(4), []byte{0x67, 1}, []byte{0x68, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, byte(4), []byte{}, []byte{0x68})
	f.Fuzz(func(t *testing.T, au []byte, nl byte, sps, pps []byte) {
		nalLen := int(nl%4) + 1
		ps := [][]byte{sps, pps}
		size := h264RTPSize(au, nalLen, ps, rtpMTU)
		buf := make([]byte, 0, size)
		out, n := cutH264(buf, au, nalLen, ps, rtpMTU)
		if len(out) != size {
			t.Fatalf("cut %d bytes, sized %d", len(out), size)
		}
		off := 0
		for i := 0; i < n; i++ {
			var p []byte
			p, off = nextRTPPayload(out, off)
			if len(p) == 0 || len(p) > rtpMTU {
				t.Fatalf("payload %d of %d bytes", i, len(p))
			}
		}
		if off != len(out) {
			t.Fatalf("records end at %d of %d", off, len(out))
		}
	})
}
