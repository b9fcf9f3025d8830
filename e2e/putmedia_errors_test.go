package e2e

// PutMedia uploads that must fail: malformed uploads built from a capture
// and bodies no producer would send. Each asserts the ErrorId (or HTTP
// status and error type) that kvs-api.md §1.5, §4.3–4.4 and
// engine/mkv/FORMAT.md fix for it.

import (
	"encoding/binary"
	"encoding/json"
	"math/rand"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// idTrackUID is the TrackUID element (engine/mkv has no use for it).
const idTrackUID = 0x73C5

// errorIDs is the ErrorId table of kvs-api.md §4.3.
var errorIDs = map[int]bool{4000: true, 4001: true, 4002: true, 4003: true, 4004: true, 4005: true, 4006: true, 4007: true,
	4008: true, 4009: true, 4010: true, 4011: true, 4012: true, 4500: true, 4501: true, 4502: true, 4503: true, 4504: true,
	4505: true, 4506: true, 4507: true, 5000: true, 5001: true}

// TestPutMediaErrors sends malformed uploads built from the absolute capture
// and checks the ERROR ack (or HTTP error), that earlier fragments stay
// listed and that the stream still takes a good upload.
func TestPutMediaErrors(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[0]
	pb := loadCapture(t, c.file)
	tc := func(i int) uint64 { return pb.Frags[i].Cluster.Timecode }

	// Rebuilt headers and fragments.
	tooManyTracks := func() []byte {
		hdr := pb.HeaderBytes()
		tr := pb.Tracks
		kids, err := mkvcheck.Children(tr.Data(pb.Raw))
		if err != nil || len(kids) != 1 || kids[0].ID != mkv.IDTrackEntry {
			t.Fatalf("capture Tracks: %v %v", kids, err)
		}
		entry := kids[0].Data(tr.Data(pb.Raw))
		var entries [][]byte
		for n := 1; n <= 4; n++ {
			e := append([]byte(nil), entry...)
			fields, _ := mkvcheck.Children(e)
			for _, f := range fields {
				switch f.ID {
				case mkv.IDTrackNumber:
					if f.End-f.DataOff != 1 {
						t.Fatal("TrackNumber not 1 byte")
					}
					e[f.DataOff] = byte(n)
				case idTrackUID:
					e[f.End-1] += byte(n - 1)
				}
			}
			entries = append(entries, mkvcheck.Elem(mkv.IDTrackEntry, e))
		}
		out := append([]byte(nil), hdr[:tr.Off]...)
		out = append(out, mkvcheck.Elem(mkv.IDTracks, entries...)...)
		return append(out, hdr[tr.End:]...)
	}

	rel := loadCapture(t, captures[1].file)
	cases := []struct {
		name string
		// body builds the bad upload; shift moves its timecodes clear of
		// the good uploads.
		body      func(shift int64) []byte
		stream    string // default: the subtest's stream
		secret    string
		tcType    string
		start     string
		wantID    int    // a 200 and an ERROR ack with this id, or:
		wantHTTP  int    // this status before any ack,
		errorType string // with this x-amzn-ErrorType
	}{
		// §10.1: each fragment starts with a key frame; FORMAT.md: 4006.
		{name: "NonKeyFrameStart", wantID: 4006, body: func(s int64) []byte {
			return pb.buildBody(t, nil, []int{0, 1}, func(k, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
				if k == 1 {
					f[pb.Frags[i].Cluster.Blocks[0].FlagsOff-base] &^= 0x80
				}
			})
		}},
		{name: "TimecodeBackwards", wantID: 4004, body: func(s int64) []byte {
			return pb.buildBody(t, nil, []int{0, 1, 2}, func(k, i int, f []byte, base int) {
				v := int64(tc(i)) + s
				if k == 2 {
					v = int64(tc(1)) + s - 1000
				}
				pb.setTimecode(t, i, f, base, uint64(v))
			})
		}},
		{name: "TimecodeRepeated", wantID: 4004, body: func(s int64) []byte {
			return pb.buildBody(t, nil, []int{0, 1, 2}, func(k, i int, f []byte, base int) {
				v := int64(tc(i)) + s
				if k == 2 {
					v = int64(tc(1)) + s
				}
				pb.setTimecode(t, i, f, base, uint64(v))
			})
		}},
		{name: "RandomBytes", wantID: 4006, body: func(int64) []byte {
			b := make([]byte, 64<<10)
			rand.New(rand.NewSource(42)).Read(b)
			b[0] = 0x42 // not an EBML header
			return b
		}},
		{name: "TooManyTracks", wantID: 4012, body: func(s int64) []byte {
			return pb.buildBody(t, tooManyTracks(), []int{0, 1}, func(_, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
			})
		}},
		{name: "TrackNumberMismatch", wantID: 4010, body: func(s int64) []byte {
			return pb.buildBody(t, nil, []int{0, 1}, func(k, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
				if k == 1 {
					bl := pb.Frags[i].Cluster.Blocks[1]
					if f[bl.TrackOff-base] != 0x81 {
						t.Fatalf("block track vint %#x", f[bl.TrackOff-base])
					}
					f[bl.TrackOff-base] = 0x85 // track 5: not in Tracks
				}
			})
		}},
		// §4.3 4011: a declared track has no block in the fragment. A
		// cluster with no blocks at all between two good ones:
		{name: "EmptyFragment", wantID: 4011, body: func(s int64) []byte {
			empty := mkvcheck.Elem(mkv.IDCluster, mkvcheck.Elem(mkv.IDTimecode, binary.BigEndian.AppendUint64(nil, uint64(int64(tc(1))+s))))
			out := pb.retimed(t, []int{0}, s)
			out = append(out, empty...)
			return append(out, pb.buildBody(t, []byte{}, []int{2}, func(_, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
			})...)
		}},
		// The H.264+AAC capture with fragment 1's audio blocks removed.
		{name: "TrackWithoutFrames", wantID: 4011, tcType: "RELATIVE", start: "1795580100.000", body: func(int64) []byte {
			f1 := rel.Frags[1]
			c1 := f1.Cluster
			var videoOnly []byte
			videoOnly = append(videoOnly, rel.Raw[f1.Off:c1.Blocks[0].ElemOff]...) // cluster head, Timecode, Position
			n := 0
			for _, b := range c1.Blocks {
				if b.Track == 1 {
					videoOnly = append(videoOnly, rel.Raw[b.ElemOff:b.End]...)
					n++
				}
			}
			if n == 0 || n == len(c1.Blocks) || c1.Elem.Size != -1 {
				t.Fatalf("relative capture fragment 1: %d of %d blocks are video, size %d", n, len(c1.Blocks), c1.Elem.Size)
			}
			out := append(rel.HeaderBytes(), rel.FragBytes(0)...)
			return append(append(out, videoOnly...), rel.Raw[c1.Elem.End:f1.End]...)
		}},
		// 4002: a fragment spanning more than 20 s (its last frame at +25 s).
		{name: "FragmentTooLong", wantID: 4002, body: func(s int64) []byte {
			return pb.buildBody(t, nil, []int{0, 1}, func(k, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
				if k == 1 {
					bl := pb.Frags[i].Cluster.Blocks
					last := bl[len(bl)-1]
					binary.BigEndian.PutUint16(f[last.FlagsOff-2-base:], 25000)
				}
			})
		}},
		// 4009: more than 10 metadata tags in a fragment (the capture has
		// 9 per fragment; add two more after fragment 1's cluster).
		{name: "TooManyMetadataTags", wantID: 4009, body: func(s int64) []byte {
			tag := func(name string) []byte {
				return mkvcheck.Elem(mkv.IDTags, mkvcheck.Elem(mkv.IDTag, mkvcheck.Elem(mkv.IDSimpleTag,
					mkvcheck.Elem(mkv.IDTagName, []byte(name)), mkvcheck.Elem(mkv.IDTagString, []byte("TEST_VALUE_X")))))
			}
			out := pb.retimed(t, []int{0}, s)
			f1 := pb.FragBytes(1)
			pb.setTimecode(t, 1, f1, pb.Frags[1].Off, uint64(int64(tc(1))+s))
			cut := pb.Frags[1].Cluster.Elem.End - pb.Frags[1].Off
			out = append(out, f1[:cut]...)
			out = append(out, tag("TEST_KEY_10")...)
			out = append(out, tag("TEST_KEY_11")...)
			return append(out, f1[cut:]...)
		}},
		// §4.1: exactly one Segment; §4.3: a second Segment is ERROR-acked,
		// as Matroska that does not parse: 4006 INVALID_MKV_DATA.
		{name: "SecondSegment", wantID: 4006, body: func(s int64) []byte {
			els, err := mkvcheck.Walk(pb.HeaderBytes())
			if err != nil || els[1].ID != mkv.IDSegment {
				t.Fatalf("capture header: %v", err)
			}
			seg := pb.Raw[els[1].Off:els[1].DataOff]
			out := pb.retimed(t, []int{0}, s)
			out = append(out, seg...)
			return append(out, pb.buildBody(t, []byte{}, []int{1}, func(_, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
			})...)
		}},
		// §4.4: header errors come before any ack. A wrong signature is
		// 403 InvalidSignatureException (§1.5).
		{name: "UnknownStream", stream: "no-such-stream", wantHTTP: 404, errorType: "ResourceNotFoundException",
			body: func(int64) []byte { return pb.HeaderBytes() }},
		{name: "BadSignature", secret: "not-the-secret", wantHTTP: 403, errorType: "InvalidSignatureException",
			body: func(int64) []byte { return pb.HeaderBytes() }},
		{name: "BadTimecodeType", tcType: "SOMETIMES", wantHTTP: 400, errorType: "InvalidArgumentException",
			body: func(int64) []byte { return pb.HeaderBytes() }},
	}
	for _, tcase := range cases {
		t.Run(tcase.name, func(t *testing.T) {
			t.Parallel()
			stream := "err-" + tcase.name
			createStream(t, ep, stream)
			good := func(shift int64) []string {
				t.Helper()
				res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start,
					Body: pb.retimed(t, []int{0, 1}, shift), Until: persistedAll(2)})
				return checkAcks(t, res, pb, []int{0, 1}, func(i int) uint64 { return uint64(int64(tc(i)) + shift) })
			}
			before := good(0)

			badStream := stream
			if tcase.stream != "" {
				badStream = tcase.stream
			}
			tcType := c.tcType
			if tcase.tcType != "" {
				tcType = tcase.tcType
			}
			start := c.start
			if tcase.start != "" {
				start = tcase.start
			}
			res := putMedia(t, ep, putMediaReq{Stream: badStream, TimecodeType: tcType, Start: start,
				Body: tcase.body(100000), Secret: tcase.secret, AckWait: 5 * time.Second})
			p.requireRunning(t)
			t.Logf("bad upload: status %d %s\n%s", res.Status, res.ErrBody, res.ackLog())
			if tcase.wantHTTP != 0 {
				if res.Status != tcase.wantHTTP {
					t.Errorf("status %d, want %d; body %s\n%s", res.Status, tcase.wantHTTP, res.ErrBody, res.ackLog())
				}
				if len(res.Acks) != 0 {
					t.Errorf("acks before the HTTP error: %s", res.ackLog())
				}
				et := strings.SplitN(res.Header.Get("X-Amzn-Errortype"), ":", 2)[0]
				if et != tcase.errorType {
					t.Errorf("x-amzn-ErrorType %q, want %s", res.Header.Get("X-Amzn-Errortype"), tcase.errorType)
				}
				var body map[string]any
				if err := json.Unmarshal(res.ErrBody, &body); err != nil {
					t.Errorf("error body %q is not JSON: %v", res.ErrBody, err)
				}
			} else {
				if res.Status != 200 {
					t.Fatalf("status %d (%s), want 200 and an ERROR ack", res.Status, res.ErrBody)
				}
				errs := res.events("ERROR")
				if len(errs) == 0 {
					t.Errorf("no ERROR ack (response ended: %v, %v)\n%s", res.RespEnded, res.ReadErr, res.ackLog())
				} else if id := errs[0].ErrorId; id != tcase.wantID {
					t.Errorf("ErrorId %d, want %d\n%s", id, tcase.wantID, res.ackLog())
				}
				if !res.RespEnded {
					t.Errorf("the response did not end within 5 s of the body's end after the error")
				}
			}
			// What was acknowledged PERSISTED in the failed session is kept.
			var keptBad []string
			for _, a := range res.events("PERSISTED") {
				keptBad = append(keptBad, a.FragmentNumber)
			}
			var listed []fragment
			want := append(slices.Clone(before), keptBad...)
			sort.Strings(want)
			pollUntil(2*time.Second, func() bool {
				listed = listAllRaw(t, ep, stream, 1795579974000-1000, 1795579974000+400000)
				return len(listed) >= len(want)
			})
			have := sortedNumbers(listed)
			for _, n := range want {
				if !slices.Contains(have, n) {
					t.Errorf("fragment %s stored before the error is not listed any more: %v", n, have)
				}
			}
			// The failing fragment itself is not stored: no more fragments
			// at its producer time than were acknowledged PERSISTED.
			if errs := res.events("ERROR"); len(errs) > 0 && errs[0].timecode() != "" && tcType == "ABSOLUTE" {
				tcMs, _ := strconv.ParseInt(errs[0].timecode(), 10, 64)
				acked, stored := 0, 0
				for _, a := range res.events("PERSISTED") {
					if a.timecode() == errs[0].timecode() {
						acked++
					}
				}
				for _, f := range listed {
					if secondsToMillis(f.ProducerTimestamp) == tcMs && !slices.Contains(before, f.FragmentNumber) {
						stored++
					}
				}
				if stored > acked {
					t.Errorf("the fragment that failed (timecode %s) was stored anyway: %d listed, %d acknowledged PERSISTED", errs[0].timecode(), stored, acked)
				}
			}
			after := good(200000)
			if last := want[len(want)-1]; after[0] <= last {
				t.Errorf("fragment number after the error %s is not greater than %s from before it", after[0], last)
			}
		})
	}
}

// TestPutMediaHostileBodies sends bodies no producer would. Each gets the
// answer the spec fixes for it: headers are valid, so 200 at once (§4.2),
// then the ERROR ack whose ErrorId §4.3 and engine/mkv/FORMAT.md give the
// first thing wrong in the body — or, for a body with nothing wrong in it,
// no ERROR and a clean end. The server never hangs or crashes, and keeps
// serving the stream.
func TestPutMediaHostileBodies(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[0]
	pb := loadCapture(t, c.file)
	hdr := pb.HeaderBytes()
	els, err := mkvcheck.Walk(hdr)
	if err != nil || len(els) < 2 || els[0].ID != mkv.IDEBML || els[1].ID != mkv.IDSegment {
		t.Fatalf("capture header: %v %v", els, err)
	}
	ebmlHeader := hdr[:els[0].End]
	segHeader := hdr[:els[1].DataOff]
	huge := []byte{0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE} // 2^56-2 bytes, the largest known size
	random := func(seed int64, n int) []byte {
		b := make([]byte, n)
		rand.New(rand.NewSource(seed)).Read(b)
		return b
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	frag0 := pb.FragBytes(0)
	clusterHead := frag0[:pb.Frags[0].Cluster.Blocks[0].ElemOff-pb.Frags[0].Off] // Cluster id+size, Timecode, Position
	// depth SimpleTags nested in one another, each with an 8-byte size.
	nested := func(depth int) []byte {
		inner := cat(mkvcheck.EncodeID(mkv.IDTagName), []byte{0x81, 'X'})
		var deep []byte
		for k := depth; k >= 1; k-- {
			deep = append(deep, mkvcheck.EncodeID(mkv.IDSimpleTag)...)
			deep = append(deep, mkvcheck.Size8(len(inner)+10*(k-1))...)
		}
		deep = append(deep, inner...)
		return cat(hdr, mkvcheck.Elem(mkv.IDTags, mkvcheck.Elem(mkv.IDTag, deep)), frag0)
	}
	if clusterHead[4] != 0xFF {
		t.Fatalf("capture cluster size is not the 1-byte unknown size")
	}

	// The header cut inside its Tracks element.
	tracks := pb.Tracks
	if tracks.Off < els[0].End || tracks.End > len(hdr) {
		t.Fatalf("capture Tracks at [%d, %d) outside the header", tracks.Off, tracks.End)
	}

	// wantID is the ErrorId of the first ERROR ack (after a 200); 0 means
	// the body has nothing wrong with it: no ERROR, the response ends
	// cleanly, and the capture's first acked fragments are acknowledged.
	const (
		invalidMKV    = 4006 // INVALID_MKV_DATA: not parseable; ends mid-element (FORMAT.md)
		maxFragSize   = 4001 // MAX_FRAGMENT_SIZE_REACHED: fragment > 50 MB
		framesMissing = 4011 // FRAMES_MISSING_FOR_TRACK: a fragment without a frame of a track
		accepted      = 0
	)
	cases := []struct {
		name   string
		body   []byte
		wantID int
		acked  int // with wantID 0: fragments 0..acked-1 acknowledged BUFFERING, RECEIVED, PERSISTED
	}{
		// Nothing to read is not an error: like an upload of only
		// leftover Tags, accepted and yielding nothing (FORMAT.md, §11).
		{name: "Empty", body: nil, wantID: accepted},
		// A whole EBML header and nothing else: no element is cut and
		// no fragment begins, so nothing is wrong either.
		{name: "EBMLHeaderOnly", body: ebmlHeader, wantID: accepted},
		// The body ends inside the EBML header's ID.
		{name: "OneByte", body: []byte{0x1A}, wantID: invalidMKV},
		// Not Matroska: no EBML header.
		{name: "Random100", body: random(1, 100), wantID: invalidMKV},
		{name: "Random1M", body: random(2, 1<<20), wantID: invalidMKV},
		{name: "EBMLThenRandom", body: cat(ebmlHeader, random(3, 200<<10)), wantID: invalidMKV},
		{name: "HeaderThenRandom", body: cat(hdr, random(4, 200<<10)), wantID: invalidMKV},
		// Ends inside the Tracks element.
		{name: "TruncatedHeader", body: hdr[:(tracks.Off+tracks.End)/2], wantID: invalidMKV},
		// Ends inside fragment 0's cluster.
		{name: "TruncatedCluster", body: cat(hdr, frag0[:len(frag0)/2+7]), wantID: invalidMKV},
		// Fragment 0 whole, then the body ends inside fragment 1.
		{name: "TruncatedMidFragment1", body: cat(hdr, frag0, pb.FragBytes(1)[:1000]), wantID: invalidMKV},
		// Header elements of 2^56 bytes: the body ends long before.
		{name: "HugeEBMLHeader", body: cat(mkvcheck.EncodeID(mkv.IDEBML), huge, random(5, 1000)), wantID: invalidMKV},
		{name: "HugeTracks", body: cat(segHeader, mkvcheck.EncodeID(mkv.IDTracks), huge, random(6, 1000)), wantID: invalidMKV},
		// A Cluster (one fragment, §4.1) that declares 2^56 bytes: the
		// fragment is over 50 MB from its size field on, the first thing
		// wrong in the body.
		{name: "HugeCluster", body: cat(hdr, mkvcheck.EncodeID(mkv.IDCluster), huge, clusterHead[5:], random(7, 5000)), wantID: maxFragSize},
		// A SimpleBlock of 2^56 bytes in fragment 0: over 50 MB.
		{name: "HugeSimpleBlock", body: cat(hdr, clusterHead, []byte{0xA3}, huge, random(8, 5000)), wantID: maxFragSize},
		// Fragment 0 whole (closed by its END_OF_FRAGMENT tag), then a
		// Segment-level Tags of unknown size (FORMAT.md: 4006).
		{name: "HugeTagString", body: cat(hdr, frag0, mkvcheck.EncodeID(mkv.IDTags), []byte{0xFF}, mkvcheck.EncodeID(mkv.IDTag), []byte{0xFF},
			mkvcheck.EncodeID(mkv.IDSimpleTag), huge, random(9, 100)), wantID: invalidMKV},
		// An element ID that starts with 0x00: no length marker.
		{name: "InvalidVint", body: cat(hdr, []byte{0x00, 0x00, 0x00, 0x00}, random(10, 1000)), wantID: invalidMKV},
		// 20,000 nested SimpleTags in well-formed Tags before the first
		// cluster: header-area Tags, not fragment metadata (FORMAT.md:
		// skipped). Fragment 0 after them is stored.
		{name: "DeepNesting", body: nested(20000), wantID: accepted, acked: 1},
		// Fragment 0, then a second Segment (§4.1: exactly one; §4.3:
		// ERROR-acked) without its own EBML header.
		{name: "SecondSegment", body: cat(hdr, frag0, segHeader[els[1].Off:], pb.FragBytes(1)), wantID: invalidMKV},
		// Clusters with a Timecode and no block: the first is a fragment
		// without frames.
		{name: "ManyEmptyClusters", body: func() []byte {
			b := append([]byte(nil), hdr...)
			for i := range 2000 {
				tcb := make([]byte, 8)
				binary.BigEndian.PutUint64(tcb, 1795579974135+uint64(i)*1000)
				b = append(b, mkvcheck.Elem(mkv.IDCluster, mkvcheck.Elem(mkv.IDTimecode, tcb))...)
			}
			return b
		}(), wantID: framesMissing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stream := "hostile-" + tc.name
			createStream(t, ep, stream)
			start := time.Now()
			res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "ABSOLUTE", Start: c.start, Body: tc.body,
				Until: firstError, AckWait: 10 * time.Second})
			p.requireRunning(t)
			errs := res.events("ERROR")
			log := res.ackLog()
			if len(log) > 600 {
				log = log[:600] + "…"
			}
			t.Logf("status %d, %d acks, response ended %v (%v):\n%s", res.Status, len(res.Acks), res.RespEnded, res.ReadErr, log)
			for _, a := range res.Acks {
				if a.EventType == "ERROR" && !errorIDs[a.ErrorId] {
					t.Errorf("ERROR ack with ErrorId %d, not one of the KVS table: %s", a.ErrorId, a)
				}
			}
			switch {
			case res.Status != 200:
				t.Errorf("status %d %s, want 200 (the headers are valid; §4.2)\n%s", res.Status, res.ErrBody, res.ackLog())
			case tc.wantID != 0:
				if len(errs) == 0 {
					t.Errorf("no ERROR ack within 10 s of the body's end, want ErrorId %d (response ended %v: %v)\n%s",
						tc.wantID, res.RespEnded, res.ReadErr, res.ackLog())
				} else if errs[0].ErrorId != tc.wantID {
					t.Errorf("ErrorId %d, want %d\n%s", errs[0].ErrorId, tc.wantID, res.ackLog())
				} else {
					t.Logf("ERROR %d after %v", errs[0].ErrorId, errs[0].At.Sub(start).Round(time.Millisecond))
				}
			default:
				if len(errs) > 0 {
					t.Errorf("ERROR %d for a body with nothing wrong in it, want none\n%s", errs[0].ErrorId, res.ackLog())
				}
				if !res.RespEnded || res.ReadErr != nil {
					t.Errorf("the response did not end cleanly within 10 s of the body's end (ended %v: %v)", res.RespEnded, res.ReadErr)
				}
				if tc.acked > 0 {
					checkAcks(t, res, pb, seq(tc.acked), func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
				} else {
					for _, a := range res.Acks {
						if a.EventType != "IDLE" {
							t.Errorf("%s ack for a body without a fragment\n%s", a.EventType, res.ackLog())
							break
						}
					}
				}
			}
			// Still serving: the control plane and the same stream.
			status, raw := callJSON(t, ep, "/describeStream", map[string]any{"StreamName": stream}, nil)
			if status != 200 {
				t.Fatalf("describeStream after the hostile body: %d %s", status, raw)
			}
			good := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "1795600000.000",
				Body:  pb.buildBody(t, nil, []int{0}, func(_, i int, f []byte, base int) { pb.setTimecode(t, i, f, base, 0) }),
				Until: persistedAll(1)})
			checkAcks(t, good, pb, []int{0}, func(int) uint64 { return 0 })
		})
	}
	t.Cleanup(func() {
		select {
		case <-p.exited:
			t.Errorf("kvsedge exited during the hostile bodies:\n%s", p.logs.String())
		default:
		}
	})
}
