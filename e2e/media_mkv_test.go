package e2e

// Matroska side of the media end-to-end tests: the real-producer captures
// and how to upload them, PutMedia bodies parsed and edited for the tests
// (internal/mkvcheck underneath), and frame counts per codec.

import (
	"encoding/binary"
	"strconv"
	"testing"

	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// capture describes one real-producer capture and how to upload it.
type capture struct {
	name     string // subtest name
	file     string // testdata base name
	tcType   string
	start    string // x-amzn-producer-start-timestamp
	startMs  int64  // added to cluster timecodes for RELATIVE
	frags    int
	firstTC  uint64
	codecs   []string
	expect   bool // send Expect: 100-continue and Host without the port, like curl in the C producer
	userTags bool // the capture has producer Tags after each cluster
	// allLists runs every ListFragments variant (sub-ranges, paging) on
	// this capture; the other one gets the full-range and server-time
	// listings only, to keep the run short.
	allLists bool
}

var captures = []capture{
	{name: "absolute", file: "real-producer-h264-absolute", tcType: "ABSOLUTE", start: "1795579974.135",
		frags: 11, firstTC: 1795579974135, codecs: []string{"h264"}, userTags: true, allLists: true},
	{name: "relative", file: "real-producer-h264-aac-relative", tcType: "RELATIVE", start: "1795580000.000",
		startMs: 1795580000000, frags: 6, firstTC: 0, codecs: []string{"h264", "aac"}, expect: true},
}

// producerMs is fragment i's producer timestamp in ms.
func (c capture) producerMs(pb *producerBody, i int) int64 {
	return c.startMs + int64(pb.Frags[i].Cluster.Timecode*pb.TimecodeScale/1000000)
}

// producerBody is a parsed PutMedia body (a capture, usually) with the
// editing helpers the tests build bad uploads with.
type producerBody struct{ *mkvcheck.Body }

func loadCapture(t *testing.T, name string) *producerBody {
	t.Helper()
	b, err := mkvcheck.ParseBody(fixture.LoadCapture(t, name).Body)
	if err != nil {
		t.Fatalf("parsing %s: %v", name, err)
	}
	return &producerBody{b}
}

// buildBody returns the header plus the given fragments, each passed through
// edit (which gets a copy of the fragment's bytes and the fragment's offset
// in pb.Raw, so absolute offsets o map to f[o-base]).
func (pb *producerBody) buildBody(t *testing.T, header []byte, idxs []int, edit func(k, i int, f []byte, base int)) []byte {
	t.Helper()
	if header == nil {
		header = pb.HeaderBytes()
	}
	body := append([]byte(nil), header...)
	for k, i := range idxs {
		f := pb.FragBytes(i)
		if edit != nil {
			edit(k, i, f, pb.Frags[i].Off)
		}
		body = append(body, f...)
	}
	return body
}

// setTimecode rewrites fragment i's 8-byte cluster Timecode inside its copy f.
func (pb *producerBody) setTimecode(t *testing.T, i int, f []byte, base int, tc uint64) {
	t.Helper()
	c := pb.Frags[i].Cluster
	if c.TimecodeLen != 8 {
		t.Fatalf("fragment %d: Timecode is %d bytes, want 8", i, c.TimecodeLen)
	}
	binary.BigEndian.PutUint64(f[c.TimecodeOff-base:], tc)
}

// retimed returns header + fragments idxs with every cluster Timecode moved by
// shift (timecode units).
func (pb *producerBody) retimed(t *testing.T, idxs []int, shift int64) []byte {
	t.Helper()
	return pb.buildBody(t, nil, idxs, func(_, i int, f []byte, base int) {
		pb.setTimecode(t, i, f, base, uint64(int64(pb.Frags[i].Cluster.Timecode)+shift))
	})
}

// mediaChunk is one standalone Matroska document of a GetMedia /
// GetMediaForFragmentList response.
type mediaChunk = mkvcheck.Chunk

// inputFrames counts a capture's frames per codec, as engine/mkv lists
// them (for the captures, ffprobe -count_frames reports the same: 493 h264;
// 248 h264 + 495 aac).
func inputFrames(t *testing.T, pb *producerBody) map[string]string {
	t.Helper()
	codec := map[uint64]string{}
	for _, tr := range pb.Header.Tracks {
		switch tr.CodecID {
		case "V_MPEG4/ISO/AVC":
			codec[tr.Number] = "h264"
		case "A_AAC":
			codec[tr.Number] = "aac"
		}
	}
	count := map[string]int{}
	for i := range pb.Frags {
		frames, err := pb.Frames(i)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		for _, f := range frames {
			count[codec[f.Track]]++
		}
	}
	out := map[string]string{}
	for k, v := range count {
		out[k] = strconv.Itoa(v)
	}
	return out
}
