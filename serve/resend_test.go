package serve

import (
	"encoding/binary"
	"testing"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// storedByProducerTime lists a stream's fragments and fails on two at one
// producer time.
func storedByProducerTime(t *testing.T, ts *testServer, stream string) map[int64]fragment.Meta {
	t.Helper()
	listed, _, err := ts.eng.ListFragments(engine.StreamRef{Name: stream}, fragment.ByProducerTime, 0, 1<<50, nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int64]fragment.Meta{}
	for _, m := range listed {
		if prev, ok := out[m.ProducerMs]; ok {
			t.Fatalf("producer time %d stored twice: %s (%d frames) and %s (%d frames)", m.ProducerMs, prev.Number, prev.Frames, m.Number, m.Frames)
		}
		out[m.ProducerMs] = m
	}
	return out
}

// TestResendWithOtherTimecodesIsOneFragment: a producer re-sending with
// RELATIVE timecodes against a later start time sends the same fragments
// with other cluster Timecode bytes. They are recognised by producer time
// and frames, acknowledged with the stored numbers, and stored once.
func TestResendWithOtherTimecodesIsOneFragment(t *testing.T) {
	ts := startServer(t, "")
	createMediaStream(t, ts, "rel", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	pb := mkvcheck.MustParseBody(t, c.data)
	first := putUpload(t, ts, "rel", "RELATIVE", "1795579974.135", capture{data: c.data}, 0)
	if n := len(first.events("PERSISTED")); n != len(pb.Frags) {
		t.Fatalf("first upload: %d PERSISTED of %d", n, len(pb.Frags))
	}
	numbers := map[string]bool{}
	for _, a := range first.events("PERSISTED") {
		numbers[a.FragmentNumber] = true
	}
	// The re-send starts 1.8 s later and leaves out the first fragment:
	// fragment i is sent with timecode T(i) − 1800, at the same producer
	// time as before.
	shift := pb.Frags[1].Cluster.Timecode
	body := pb.HeaderBytes()
	for i := 1; i < len(pb.Frags); i++ {
		f := pb.FragBytes(i)
		off := pb.Frags[i].Cluster.TimecodeOff - pb.Frags[i].Off
		if pb.Frags[i].Cluster.TimecodeLen != 8 {
			t.Fatalf("timecode of %d bytes", pb.Frags[i].Cluster.TimecodeLen)
		}
		binary.BigEndian.PutUint64(f[off:], pb.Frags[i].Cluster.Timecode-shift)
		body = append(body, f...)
	}
	second := putUpload(t, ts, "rel", "RELATIVE", "1795579975.935", capture{data: body}, 0)
	if errs := second.events("ERROR"); len(errs) != 0 {
		t.Fatalf("re-send: %+v", errs)
	}
	persisted := second.events("PERSISTED")
	if len(persisted) != len(pb.Frags)-1 {
		t.Fatalf("re-send: %d PERSISTED, want %d", len(persisted), len(pb.Frags)-1)
	}
	for _, a := range persisted {
		if !numbers[a.FragmentNumber] {
			t.Fatalf("re-sent fragment acknowledged as new number %s, not a stored one", a.FragmentNumber)
		}
	}
	if got := storedByProducerTime(t, ts, "rel"); len(got) != len(pb.Frags) {
		t.Fatalf("%d fragments stored, want %d", len(got), len(pb.Frags))
	}
}

// TestWholeResendReplacesPartialCopy: a fragment stored from a body that
// ended part-way through it (the producer did not see it PERSISTED… or
// did, for its first frames) is replaced by the whole fragment when the
// producer re-sends it: the archive holds the whole one once; a later
// copy of only its first frames changes nothing.
func TestWholeResendReplacesPartialCopy(t *testing.T) {
	ts := startServer(t, "")
	createMediaStream(t, ts, "cut", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	pb := mkvcheck.MustParseBody(t, c.data)
	f1 := pb.Frags[1]
	blocks := f1.Cluster.Blocks
	cut := blocks[len(blocks)/2].ElemOff // a block boundary half-way: both tracks have blocks before it
	partial := append(pb.HeaderBytes(), c.data[pb.Frags[0].Off:cut]...)
	res := putUpload(t, ts, "cut", "RELATIVE", "1795579974.135", capture{data: partial}, 0)
	if n := len(res.events("PERSISTED")); n != 2 {
		t.Fatalf("partial upload: %d PERSISTED, want 2: %+v", n, res.acks)
	}
	stored := storedByProducerTime(t, ts, "cut")
	var partialMeta fragment.Meta
	for _, m := range stored {
		if m.Timecode == f1.Cluster.Timecode {
			partialMeta = m
		}
	}
	if partialMeta.Frames == 0 || int(partialMeta.Frames) >= len(blocks) {
		t.Fatalf("partial copy holds %d frames of %d", partialMeta.Frames, len(blocks))
	}

	whole := putUpload(t, ts, "cut", "RELATIVE", "1795579974.135", capture{data: c.data}, 0)
	if n := len(whole.events("PERSISTED")); n != len(pb.Frags) || len(whole.events("ERROR")) != 0 {
		t.Fatalf("whole re-send: %+v", whole.acks)
	}
	stored = storedByProducerTime(t, ts, "cut")
	if len(stored) != len(pb.Frags) {
		t.Fatalf("%d fragments stored, want %d", len(stored), len(pb.Frags))
	}
	for _, m := range stored {
		if m.Timecode == f1.Cluster.Timecode {
			if int(m.Frames) != len(blocks) || m.Number == partialMeta.Number {
				t.Fatalf("fragment 1 is %s with %d frames; want the whole re-send (%d frames), not the partial %s", m.Number, m.Frames, len(blocks), partialMeta.Number)
			}
		}
	}
	if _, err := ts.eng.Fragment(engine.StreamRef{Name: "cut"}, partialMeta.Number); err == nil {
		t.Fatalf("the partial copy %s is still readable", partialMeta.Number)
	}

	// Only the first frames again: a copy of what is stored, acknowledged
	// with the whole fragment's number.
	again := putUpload(t, ts, "cut", "RELATIVE", "1795579974.135", capture{data: partial}, 0)
	if len(again.events("ERROR")) != 0 || len(again.events("PERSISTED")) != 2 {
		t.Fatalf("partial re-send: %+v", again.acks)
	}
	if got := storedByProducerTime(t, ts, "cut"); len(got) != len(pb.Frags) {
		t.Fatalf("after a partial re-send: %d fragments stored, want %d", len(got), len(pb.Frags))
	}
}
