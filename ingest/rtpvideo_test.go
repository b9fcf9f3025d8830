package ingest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"

	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v4/pkg/format/rtph265"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/pion/rtp"
)

// demoRTP is the demo clip (whole NAL units) packetised by gortsplib's
// encoder at maxPayload bytes per packet for frames frames at 15 fps, in
// FuzzRTPDepacketize's input layout with configuration cfg. keep decides
// which packets are sent (frame i, packet j of n); audio, when set, is
// called after packet j of frame i and returns packets to interleave.
func demoRTP(t *testing.T, d *DemoSource, cfg byte, frames, maxPayload int, inBand bool,
	keep func(i, j, n int) bool, audio func(i, j int) []*rtp.Packet) []byte {
	t.Helper()
	ssrc, seq := uint32(0x1234), uint16(65000) // the sequence number wraps
	enc := &rtph264.Encoder{PayloadType: fuzzVideoPT, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: maxPayload, PacketizationMode: 1}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	in := newRTPFuzzInput(cfg)
	for i := 0; i < frames; i++ {
		au := d.aus[i%len(d.aus)]
		if inBand && d.keys[i%len(d.aus)] && !bytes.Equal(au[0], d.sps) {
			au = append([][]byte{d.sps, d.pps}, au...)
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		first := true
		for j, p := range pkts {
			p.Timestamp = uint32(i * 6000)
			if keep == nil || keep(i, j, len(pkts)) {
				adv := 0
				if first {
					adv, first = 66, false
				}
				in.add(t, adv, nil, p)
			}
			if audio != nil {
				in.add(t, 0, nil, audio(i, j)...)
			}
		}
	}
	return in.b
}

// TestDepacketizerMatchesGortsplibDecoder: for the same RTP packets the
// depacketiser writes, byte for byte, the fragments gortsplib's decoders
// followed by the old whole-access-unit path wrote: FU-A and STAP-A,
// parameter sets in band and in the SDP, lost packets, H.265, audio
// between access units.
func TestDepacketizerMatchesGortsplibDecoder(t *testing.T) {
	d := loadDemo(t)
	cases := map[string][]byte{
		"fu-a 1200, params in SDP": demoRTP(t, d, 1, 70, 1200, false, nil, nil),
		"fu-a 300, params in band": demoRTP(t, d, 1|0x10, 70, 300, true, nil, nil),
		"single NAL units":         demoRTP(t, d, 1|0x10, 40, 60000, true, nil, nil),
		// A middle fragment of the first slice of every third P frame, and
		// of every key frame's first IDR slice, lost: that NAL unit is
		// dropped, the rest of the unit kept. (Losing a unit's last NAL
		// unit differs on purpose: see videoDepacketizer.)
		"lost packets": demoRTP(t, d, 1, 70, 400, false, func(i, j, n int) bool {
			if d.keys[i%len(d.aus)] {
				return j != 5
			}
			// j 1 is inside the first slice when it spans 3 packets or more.
			return i%3 != 0 || j != 1 || len(d.aus[i%len(d.aus)][0]) < 900
		}, nil),
		// The first frames lost whole: recording starts at a key frame.
		"joined mid-GOP": demoRTP(t, d, 1, 70, 500, false, func(i, j, n int) bool { return i >= 4 }, nil),
	}
	for i, seed := range rtpFuzzSeeds(t, d) {
		cases["seed "+string(rune('A'+i))] = seed
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			want, wantFr := replayRTP(t, d, data, true)
			got, gotFr := replayRTP(t, d, data, false)
			checkPutMediaBody(t, got, gotFr)
			if len(want.frags) == 0 && len(data) > 2000 {
				t.Fatal("the reference cut no fragment: the case tests nothing")
			}
			if len(got.frags) != len(want.frags) || got.starts != want.starts {
				t.Fatalf("%d fragments (%d started), want %d (%d started)", len(got.frags), got.starts, len(want.frags), want.starts)
			}
			for i := range want.frags {
				g, w := got.frags[i], want.frags[i]
				if !bytes.Equal(g.Buf, w.Buf) || len(g.Buf) != len(w.Buf) || g.Frames != w.Frames || g.KeyFrames != w.KeyFrames || g.Timecode != w.Timecode {
					t.Fatalf("fragment %d: %d bytes, %d frames (%d key) at %d; want %d bytes, %d frames (%d key) at %d",
						i, len(g.Buf), g.Frames, g.KeyFrames, g.Timecode, len(w.Buf), w.Frames, w.KeyFrames, w.Timecode)
				}
			}
			if !bytes.Equal(got.body.Bytes(), want.body.Bytes()) {
				t.Fatal("the bodies differ")
			}
			if gotFr.DroppedUnits != wantFr.DroppedUnits {
				t.Errorf("%d units dropped, want %d", gotFr.DroppedUnits, wantFr.DroppedUnits)
			}
		})
	}
}

// TestDepacketizerAudioInsideAccessUnit: audio packets arriving between
// the packets of a video access unit wait for its block to close; every
// audio frame is still recorded, in a body the PutMedia reader accepts.
func TestDepacketizerAudioInsideAccessUnit(t *testing.T) {
	d := loadDemo(t)
	ssrc, seq := uint32(0x5678), uint16(9)
	g711 := func(i, j int) []*rtp.Packet {
		if j != 1 {
			return nil
		}
		seq++
		return []*rtp.Packet{{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: seq, Timestamp: uint32(i * 533), SSRC: ssrc, Marker: true},
			Payload: bytes.Repeat([]byte{0xd5, byte(i)}, 80)}}
	}
	data := demoRTP(t, d, 1|2<<2, 70, 300, false, nil, g711)
	want, _ := replayRTP(t, d, data, true)
	got, gotFr := replayRTP(t, d, data, false)
	checkPutMediaBody(t, got, gotFr)
	gv, ga := blocksByTrack(t, got)
	wv, wa := blocksByTrack(t, want)
	if gv != wv || ga != wa || ga == 0 {
		t.Fatalf("%d video and %d audio blocks, want %d and %d", gv, ga, wv, wa)
	}
}

// blocksByTrack counts the SimpleBlocks of track 1 and track 2 in the
// fragments.
func blocksByTrack(t *testing.T, o *fuzzOutput) (track1, track2 int) {
	t.Helper()
	for _, f := range o.frags {
		b := f.Buf[:f.ClusterLen]
		// Cluster ID, unknown size, Timecode element: then SimpleBlocks
		// with 8-byte sizes, as FragmentBuilder writes them.
		i := 4 + 1
		i += 1 + 1 + int(b[i+1]&0x7F)
		for i < len(b) {
			if b[i] != mkv.IDSimpleBlock || b[i+1] != 0x01 {
				t.Fatalf("fragment at %d: not a SimpleBlock at %d", f.Timecode, i)
			}
			var size int
			for _, c := range b[i+2 : i+9] {
				size = size<<8 | int(c)
			}
			switch b[i+9] & 0x7F {
			case 1:
				track1++
			case 2:
				track2++
			}
			i += 9 + size
		}
	}
	return track1, track2
}

// TestDepacketizerH265FragmentationUnits: H.265 in small fragmentation
// units, aggregation packets and lost packets, against gortsplib's decoder.
func TestDepacketizerH265FragmentationUnits(t *testing.T) {
	d := loadDemo(t)
	ssrc, seq := uint32(1), uint16(0)
	enc := &rtph265.Encoder{PayloadType: fuzzVideoPT, SSRC: &ssrc, InitialSequenceNumber: &seq, PayloadMaxSize: 100}
	if err := enc.Init(); err != nil {
		t.Fatal(err)
	}
	in := newRTPFuzzInput(2 | 0x10)
	for i := 0; i < 70; i++ {
		var au [][]byte
		if i%15 == 0 {
			au = [][]byte{fuzzH265VPS, fuzzH265SPS, fuzzH265PPS, append([]byte{19 << 1, 0x01, 0xaf}, bytes.Repeat([]byte{byte(i)}, 900)...)}
		} else {
			// SEI, two TRAIL_R slices
			au = [][]byte{{39 << 1, 1, 5, 1, 0x80}, append([]byte{1 << 1, 0x01, 0xd0}, bytes.Repeat([]byte{byte(i)}, 350)...),
				append([]byte{1 << 1, 0x01, 0x20}, bytes.Repeat([]byte{byte(i)}, 350)...)}
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			t.Fatal(err)
		}
		for j, p := range pkts {
			p.Timestamp = uint32(i * 6000)
			if i%7 == 3 && i%15 != 0 && j == 2 {
				continue // lost: the middle of the first slice
			}
			adv := 0
			if j == 0 {
				adv = 66
			}
			in.add(t, adv, nil, p)
		}
	}
	want, wantFr := replayRTP(t, d, in.b, true)
	got, gotFr := replayRTP(t, d, in.b, false)
	checkPutMediaBody(t, got, gotFr)
	if len(want.frags) < 2 {
		t.Fatalf("the reference cut %d fragments", len(want.frags))
	}
	if !bytes.Equal(got.body.Bytes(), want.body.Bytes()) || len(got.frags) != len(want.frags) {
		t.Fatalf("%d fragments, %d bytes; want %d, %d", len(got.frags), got.body.Len(), len(want.frags), want.body.Len())
	}
	if gotFr.DroppedUnits != wantFr.DroppedUnits {
		t.Errorf("%d units dropped, want %d", gotFr.DroppedUnits, wantFr.DroppedUnits)
	}
}

// TestDepacketizerKeyFrameLost: a key frame whose IDR slices both lose a
// packet cuts no fragment that starts without a key frame: the fragment
// it opened waits for the next key frame, and every fragment handed on
// starts with one.
func TestDepacketizerKeyFrameLost(t *testing.T) {
	d := loadDemo(t)
	// Frame 30 is a key frame due to start the second fragment: j 5 is
	// inside its first IDR slice, j 12 inside its second (400-byte
	// packets; SPS and PPS in one STAP-A, the SEI in two).
	data := demoRTP(t, d, 1, 70, 400, false, func(i, j, n int) bool { return i != 30 || (j != 5 && j != 12) }, nil)
	// In budgeted buffers: the fragment that waits starts again in its
	// own buffer, and none is leaked.
	got, fr := replayRTPTo(t, d, data, false, &fuzzOutput{bufs: newBudgetBuffers(t, nil)})
	checkPutMediaBody(t, got, fr)
	if len(got.frags) < 2 {
		t.Fatalf("%d fragments", len(got.frags))
	}
	if n := len(got.bufs.live); n != 0 {
		t.Fatalf("%d buffers never freed or handed on", n)
	}
	for i, f := range got.frags {
		if !startsWithKeyFrame(f) {
			t.Fatalf("fragment %d (at %d) does not start with a key frame", i, f.Timecode)
		}
	}
	// Frames 30 to 44 (up to the next key frame) are dropped, not filed
	// after a broken key frame.
	if fr.DroppedUnits < 15 {
		t.Fatalf("%d units dropped, want the 15 after the lost key frame", fr.DroppedUnits)
	}
	if got.frags[1].Timecode-got.frags[0].Timecode < 2900 {
		t.Fatalf("the second fragment starts %d ms after the first: not at the next key frame", got.frags[1].Timecode-got.frags[0].Timecode)
	}
}

// TestDepacketizerMutatedInputs runs FuzzRTPDepacketize's checks (no
// panic, fragments the PutMedia reader accepts as cut) on seeded random
// mutations of its seeds and of demo-clip sessions: flipped bytes,
// bytes cut out, records repeated, so FU/AP state, limits and Annex-B
// paths meet damaged input in every test run, not only under -fuzz.
func TestDepacketizerMutatedInputs(t *testing.T) {
	d := loadDemo(t)
	seeds := rtpFuzzSeeds(t, d)
	seeds = append(seeds, demoRTP(t, d, 1|0x10, 40, 300, true, nil, nil))
	rng := rand.New(rand.NewPCG(14, 14))
	runs := 2000
	if testing.Short() {
		runs = 300
	}
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_MUTATIONS")); err == nil {
		runs = v
	}
	for i := 0; i < runs; i++ {
		in := append([]byte(nil), seeds[i%len(seeds)]...)
		for k := 0; k < 1+rng.IntN(8); k++ {
			at := 1 + rng.IntN(len(in)-1)
			switch rng.IntN(3) {
			case 0: // flip a byte
				in[at] ^= byte(1 + rng.IntN(255))
			case 1: // cut a span out
				end := min(len(in), at+1+rng.IntN(200))
				in = append(in[:at], in[end:]...)
			default: // repeat a span
				end := min(len(in), at+1+rng.IntN(400))
				in = append(in[:end], append(append([]byte(nil), in[at:end]...), in[end:]...)...)
			}
			if len(in) < 2 {
				break
			}
		}
		runRTPFuzz(t, d, in)
	}
}
