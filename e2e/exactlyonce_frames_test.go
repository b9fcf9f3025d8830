package e2e

// Frames of the exactly-once tests (exactlyonce_test.go): the sources a
// producer harness sends (real-producer captures looped, or synthetic
// frames with a counter in each payload), frame identity (track, producer
// ms, payload hash), the comparator of what was sent with what a read
// returned, and the two reads: GetMedia from EARLIEST, and
// GetMediaForFragmentList of every listed fragment.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// eoFrame is one frame of a source.
type eoFrame struct {
	Track   uint64
	Offset  int16 // ms after its fragment's start (the cluster Timecode)
	Flags   byte  // SimpleBlock flags: 0x80 is a key frame
	Payload []byte
}

// eoFragment is one fragment (one Cluster) of a source.
type eoFragment struct {
	Ms     int64 // producer time of the fragment (its cluster), epoch ms
	Frames []eoFrame
}

// eoSource is what a harness producer sends: the session header it
// starts every connection with and its fragments in producer-time order.
type eoSource struct {
	Name   string
	Header []byte // EBML header, Segment of unknown size, Info, Tracks (TimecodeScale 1 ms)
	Frags  []eoFragment
	// FrameGap is the source's frame interval: the last fragment ends one
	// gap after its last frame.
	FrameGap time.Duration
}

// frameMs is the producer time of frame j of fragment f.
func (s *eoSource) frameMs(f, j int) int64 {
	return s.Frags[f].Ms + int64(s.Frags[f].Frames[j].Offset)
}

// frames counts the source's frames.
func (s *eoSource) frames() int {
	n := 0
	for _, f := range s.Frags {
		n += len(f.Frames)
	}
	return n
}

// eoCaptureSource loops a real-producer capture (fixture.AbsoluteH264 or
// fixture.RelativeH264AAC) into n fragments, the first at producer time
// startMs, each loop right after the previous one. Frames keep the
// capture's tracks, offsets, flags and bytes; a frame is told apart from
// its copies in other loops by its producer time.
func eoCaptureSource(t testing.TB, name string, n int, startMs int64) *eoSource {
	t.Helper()
	pb := mkvcheck.MustParseBody(t, fixture.LoadCapture(t, name).Body)
	if pb.TimecodeScale != 1_000_000 {
		t.Fatalf("%s: TimecodeScale %d, want 1 ms", name, pb.TimecodeScale)
	}
	first := int64(pb.Frags[0].Cluster.Timecode)
	type capFrag struct {
		rel    int64
		frames []eoFrame
	}
	var caps []capFrag
	var end int64 // the latest frame, relative to the first cluster
	lastVideo, gap := int64(-1), int64(0)
	for _, f := range pb.Frags {
		cf := capFrag{rel: int64(f.Cluster.Timecode) - first}
		for _, b := range f.Cluster.Blocks {
			flags := b.Flags
			if b.Key {
				flags |= 0x80
			}
			payload := b.Data[b.FlagsOff-b.TrackOff+1:]
			cf.frames = append(cf.frames, eoFrame{Track: b.Track, Offset: b.RelTC, Flags: flags, Payload: payload})
			at := cf.rel + int64(b.RelTC)
			end = max(end, at)
			if b.Track == pb.TrackNumbers[0] {
				if lastVideo >= 0 && at > lastVideo && (gap == 0 || at-lastVideo < gap) {
					gap = at - lastVideo
				}
				lastVideo = at
			}
		}
		caps = append(caps, cf)
	}
	if gap == 0 {
		gap = 40
	}
	span := end + gap
	src := &eoSource{Name: name, Header: pb.HeaderBytes(), FrameGap: time.Duration(gap) * time.Millisecond}
	for i := 0; i < n; i++ {
		c := caps[i%len(caps)]
		src.Frags = append(src.Frags, eoFragment{Ms: startMs + int64(i/len(caps))*span + c.rel, Frames: c.frames})
	}
	return src
}

// eoSyntheticSource is n fragments of perFrag frames, one every gap, on
// the H.264 track of the absolute capture's header. Every payload is an
// AVCC NAL unit holding a counter and bytes drawn from it, size bytes in
// all, so each frame is unique. allKey makes every frame a key frame (a
// camera at a very low frame rate); else only the first of a fragment.
func eoSyntheticSource(t testing.TB, n, perFrag int, gap time.Duration, size int, allKey bool, startMs int64) *eoSource {
	t.Helper()
	pb := mkvcheck.MustParseBody(t, fixture.LoadCapture(t, fixture.AbsoluteH264).Body)
	if size < 32 {
		size = 32
	}
	src := &eoSource{Name: "synthetic", Header: pb.HeaderBytes(), FrameGap: gap}
	gapMs := gap.Milliseconds()
	if int64(perFrag-1)*gapMs > 32767 {
		t.Fatalf("synthetic fragments of %d frames %v apart do not fit a 16-bit block offset", perFrag, gap)
	}
	counter := uint64(0)
	for i := 0; i < n; i++ {
		f := eoFragment{Ms: startMs + int64(i*perFrag)*gapMs}
		for j := 0; j < perFrag; j++ {
			counter++
			key := j == 0 || allKey
			p := make([]byte, size)
			binary.BigEndian.PutUint32(p, uint32(size-4))
			p[4] = 0x41 // non-IDR slice
			if key {
				p[4] = 0x65 // IDR slice
			}
			copy(p[5:], "kvsedge-eo")
			binary.BigEndian.PutUint64(p[15:], counter)
			r := rand.New(rand.NewPCG(counter, 0x65786163746c79))
			for k := 23; k < size; k++ {
				p[k] = byte(r.Uint32())
			}
			flags := byte(0)
			if key {
				flags = 0x80
			}
			f.Frames = append(f.Frames, eoFrame{Track: pb.TrackNumbers[0], Offset: int16(int64(j) * gapMs), Flags: flags, Payload: p})
		}
		src.Frags = append(src.Frags, f)
	}
	return src
}

// ---- frame identity and the comparator ----

// eoKey identifies a frame: its track, producer time and bytes.
type eoKey struct {
	Track uint64
	Ms    int64
	Sum   [32]byte
}

func eoKeyOf(track uint64, ms int64, payload []byte) eoKey {
	return eoKey{Track: track, Ms: ms, Sum: sha256.Sum256(payload)}
}

func (k eoKey) String() string {
	return fmt.Sprintf("track %d @ %d ms (%x)", k.Track, k.Ms, k.Sum[:4])
}

// eoWant is one frame the producer sent: the reads must return it once.
type eoWant struct {
	Key   eoKey
	Frag  int    // fragment index in the source
	Label string // the fragment: producer time and the cluster timecodes it was sent with
	Idx   int    // position in the sent order
}

// eoGot is one frame a read returned.
type eoGot struct {
	Key    eoKey
	Number string // fragment number of the chunk it came in
}

// eoDup is a frame read more than once.
type eoDup struct {
	Want    eoWant
	Numbers []string
}

// eoDiff is how a read departs from what was sent.
type eoDiff struct {
	Sent, Read int
	Missing    []eoWant
	Duplicated []eoDup
	Unexpected []eoGot
	Disorder   []string // frames read after a frame that was sent later
}

func (d *eoDiff) Empty() bool {
	return len(d.Missing) == 0 && len(d.Duplicated) == 0 && len(d.Unexpected) == 0 && len(d.Disorder) == 0
}

// eoCompare relates a read (in read order) to the frames sent (in sent
// order): every sent frame exactly once, nothing else, in the sent order.
func eoCompare(want []eoWant, got []eoGot) *eoDiff {
	d := &eoDiff{Sent: len(want), Read: len(got)}
	idx := make(map[eoKey]int, len(want))
	for i, w := range want {
		idx[w.Key] = i
	}
	seen := make(map[int][]string, len(want))
	last := -1
	var lastKey eoKey
	for _, g := range got {
		i, ok := idx[g.Key]
		if !ok {
			d.Unexpected = append(d.Unexpected, g)
			continue
		}
		seen[i] = append(seen[i], g.Number)
		if len(seen[i]) > 1 {
			continue // reported as a duplicate
		}
		if i < last {
			d.Disorder = append(d.Disorder, fmt.Sprintf("%s (%s) read after %s (%s), in fragment %s",
				want[i].Key, want[i].Label, lastKey, want[last].Label, g.Number))
		} else {
			last, lastKey = i, g.Key
		}
	}
	for i, w := range want {
		switch n := seen[i]; {
		case len(n) == 0:
			d.Missing = append(d.Missing, w)
		case len(n) > 1:
			d.Duplicated = append(d.Duplicated, eoDup{Want: w, Numbers: n})
		}
	}
	return d
}

// String says exactly which frames are missing, duplicated, unexpected or
// out of order, grouped by fragment.
func (d *eoDiff) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d frames sent, %d read: %d missing, %d duplicated, %d not sent, %d out of order",
		d.Sent, d.Read, len(d.Missing), len(d.Duplicated), len(d.Unexpected), len(d.Disorder))
	const perGroup, maxGroups = 8, 12
	groups := 0
	list := func(what string, frag int, label string, items []string) {
		if groups++; groups > maxGroups {
			return
		}
		fmt.Fprintf(&sb, "\n  %s in fragment %d (%s): %d frames:", what, frag, label, len(items))
		for k, it := range items {
			if k == perGroup {
				fmt.Fprintf(&sb, " … and %d more", len(items)-perGroup)
				break
			}
			sb.WriteString("\n    " + it)
		}
	}
	for i := 0; i < len(d.Missing); {
		j := i
		var items []string
		for ; j < len(d.Missing) && d.Missing[j].Frag == d.Missing[i].Frag; j++ {
			items = append(items, d.Missing[j].Key.String())
		}
		list("MISSING", d.Missing[i].Frag, d.Missing[i].Label, items)
		i = j
	}
	for i := 0; i < len(d.Duplicated); {
		j := i
		var items []string
		for ; j < len(d.Duplicated) && d.Duplicated[j].Want.Frag == d.Duplicated[i].Want.Frag; j++ {
			items = append(items, fmt.Sprintf("%s read %d times, in fragments %s", d.Duplicated[j].Want.Key,
				len(d.Duplicated[j].Numbers), strings.Join(d.Duplicated[j].Numbers, ", ")))
		}
		list("DUPLICATED", d.Duplicated[i].Want.Frag, d.Duplicated[i].Want.Label, items)
		i = j
	}
	for k, g := range d.Unexpected {
		if k == perGroup {
			fmt.Fprintf(&sb, "\n  … and %d more frames that were never sent", len(d.Unexpected)-perGroup)
			break
		}
		fmt.Fprintf(&sb, "\n  NOT SENT: %s in fragment %s", g.Key, g.Number)
	}
	for k, s := range d.Disorder {
		if k == perGroup {
			fmt.Fprintf(&sb, "\n  … and %d more out of order", len(d.Disorder)-perGroup)
			break
		}
		sb.WriteString("\n  OUT OF ORDER: " + s)
	}
	if groups > maxGroups {
		fmt.Fprintf(&sb, "\n  … %d more fragments with missing or duplicated frames", groups-maxGroups)
	}
	return sb.String()
}

// ---- reads ----

// eoChunkFrames lists the frames of GetMedia or GetMediaForFragmentList
// chunks with their producer times (the chunk's PRODUCER_TIMESTAMP plus
// the block's offset in its cluster), and what is wrong with the chunks
// themselves (error chunks, incomplete chunks).
func eoChunkFrames(chunks []*mkvcheck.Chunk) ([]eoGot, []string) {
	var out []eoGot
	var problems []string
	for k, c := range chunks {
		if id, ok := c.ErrorID(); ok {
			problems = append(problems, fmt.Sprintf("chunk %d is an error chunk: %d %s", k, id, c.Tag(mkv.TagErrorCode)))
			continue
		}
		if !c.Complete {
			problems = append(problems, fmt.Sprintf("chunk %d (fragment %s) is incomplete", k, c.FragmentNumber()))
		}
		pms, ok := mkvcheck.ParseSeconds(c.PreTags[mkv.TagProducerTimestamp])
		if !ok {
			problems = append(problems, fmt.Sprintf("chunk %d (fragment %s): PRODUCER_TIMESTAMP %q", k, c.FragmentNumber(), c.PreTags[mkv.TagProducerTimestamp]))
			continue
		}
		frames, err := c.Frames()
		if err != nil {
			problems = append(problems, fmt.Sprintf("chunk %d (fragment %s): %v", k, c.FragmentNumber(), err))
		}
		for _, b := range frames {
			out = append(out, eoGot{Key: eoKeyOf(b.Track, pms+(b.TimeMs-b.ClusterMs), b.Payload), Number: c.FragmentNumber()})
		}
	}
	return out, problems
}

// eoReadEarliest reads the stream with GetMedia from EARLIEST until the
// box ends the response (mediaEnv: 3 s after it caught up).
func eoReadEarliest(t *testing.T, endpoint, stream string) ([]eoGot, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ms := getMediaStream(ctx, t, endpoint, "/getMedia", map[string]any{"StreamName": stream,
		"StartSelector": map[string]any{"StartSelectorType": "EARLIEST"}}, nil, nil)
	if ms.Status != 200 {
		t.Fatalf("GetMedia EARLIEST %s: status %d %s (%v)", stream, ms.Status, ms.Body, ms.EndErr)
	}
	got, problems := eoChunkFrames(ms.Chunks)
	if ms.EndErr != nil || ms.ParsErr != nil {
		problems = append(problems, fmt.Sprintf("GetMedia body ended with %v, parse error %v", ms.EndErr, ms.ParsErr))
	}
	return got, problems
}

// eoReadListed lists every fragment (ListFragments over all server
// time), sorts them by producer time then number, and reads them with
// GetMediaForFragmentList.
func eoReadListed(t *testing.T, endpoint, stream string) ([]eoGot, []string, int) {
	t.Helper()
	list := newSDK(t, endpoint).listFragments(t, stream)
	sort.Slice(list, func(i, j int) bool {
		a, b := aws.ToTime(list[i].ProducerTimestamp), aws.ToTime(list[j].ProducerTimestamp)
		if !a.Equal(b) {
			return a.Before(b)
		}
		return aws.ToString(list[i].FragmentNumber) < aws.ToString(list[j].FragmentNumber)
	})
	nums := make([]string, len(list))
	for i, f := range list {
		nums[i] = aws.ToString(f.FragmentNumber)
	}
	got, problems := eoReadNumbers(t, endpoint, stream, nums, true)
	return got, problems, len(list)
}

// eoReadNumbers reads the fragments numbered nums, in that order, with
// GetMediaForFragmentList (500 a call), and returns their frames and what
// was wrong with the bodies; complete also counts a call's fragments that
// did not come back whole as a problem.
func eoReadNumbers(t *testing.T, endpoint, stream string, nums []string, complete bool) ([]eoGot, []string) {
	t.Helper()
	var got []eoGot
	var problems []string
	for start := 0; start < len(nums); start += 500 {
		batch := nums[start:min(start+500, len(nums))]
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		ms := getMediaStream(ctx, t, endpoint, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": batch}, nil, nil)
		cancel()
		if ms.Status != 200 {
			t.Fatalf("GetMediaForFragmentList %s: status %d %s (%v)", stream, ms.Status, ms.Body, ms.EndErr)
		}
		g, p := eoChunkFrames(ms.Chunks)
		got, problems = append(got, g...), append(problems, p...)
		if ms.EndErr != nil || ms.ParsErr != nil {
			problems = append(problems, fmt.Sprintf("GetMediaForFragmentList body ended with %v, parse error %v", ms.EndErr, ms.ParsErr))
		}
		if n := len(mkvcheck.Complete(ms.Chunks)); complete && n != len(batch) {
			problems = append(problems, fmt.Sprintf("GetMediaForFragmentList of %d fragments returned %d complete chunks", len(batch), n))
		}
	}
	return got, problems
}

// eoVerify checks a harness run: nothing dropped on an ERROR ack, every
// fragment acknowledged PERSISTED, and both reads returning every frame
// sent exactly once, in order.
func eoVerify(t *testing.T, endpoint, stream string, res *eoResult) {
	t.Helper()
	defer func() {
		if t.Failed() || os.Getenv("KVSEDGE_E2E_PRODUCER_LOG") != "" {
			t.Logf("producer log of %s:\n%s", stream, res.Log)
		}
	}()
	if len(res.Dropped) > 0 {
		t.Errorf("the producer dropped %d fragments on ERROR acks (it loses them): %s", len(res.Dropped), res.fragList(res.Dropped))
	}
	for _, a := range res.ErrorAcks {
		t.Errorf("ERROR ack: %s", a)
	}
	if len(res.Unpersisted) > 0 {
		t.Errorf("%d fragments were never acknowledged PERSISTED: %s", len(res.Unpersisted), res.fragList(res.Unpersisted))
	}
	if len(res.NeverSent) > 0 {
		t.Errorf("%d fragments were never sent (the run ended first): %s", len(res.NeverSent), res.fragList(res.NeverSent))
	}
	want := res.Expected()
	got, problems := eoReadEarliest(t, endpoint, stream)
	for _, p := range problems {
		t.Errorf("GetMedia EARLIEST: %s", p)
	}
	if d := eoCompare(want, got); !d.Empty() {
		t.Errorf("GetMedia EARLIEST: %s", d)
	} else {
		eoSelfCheck(t, want, got)
	}
	got, problems, listed := eoReadListed(t, endpoint, stream)
	for _, p := range problems {
		t.Errorf("GetMediaForFragmentList: %s", p)
	}
	if d := eoCompare(want, got); !d.Empty() {
		t.Errorf("GetMediaForFragmentList of the %d listed fragments: %s", listed, d)
	}
	for _, w := range eoSplitFragments(want, got) {
		t.Errorf("stored fragments are not the fragments sent: %s", w)
	}
	t.Logf("%s: %d fragments, %d frames sent; %d connections (%d stale, %d ended by the server or broken), %d fragments sent more than once; %d listed",
		stream, len(res.Frags), len(want), res.Conns, res.Stale, res.Lost, res.Resent, listed)
}

// eoSplitFragments reports stored fragments that do not hold exactly one
// whole sent fragment (a fragment cut in two, say, by a pause taken for a
// boundary), for frames that were sent.
func eoSplitFragments(want []eoWant, got []eoGot) []string {
	frag := make(map[eoKey]int, len(want))
	size := map[int]int{}
	label := map[int]string{}
	for _, w := range want {
		frag[w.Key] = w.Frag
		size[w.Frag]++
		label[w.Frag] = w.Label
	}
	by := map[string]map[int]int{}
	var numbers []string
	for _, g := range got {
		f, ok := frag[g.Key]
		if !ok {
			continue
		}
		m := by[g.Number]
		if m == nil {
			m = map[int]int{}
			by[g.Number] = m
			numbers = append(numbers, g.Number)
		}
		m[f]++
	}
	var out []string
	for _, n := range numbers {
		m := by[n]
		whole := false
		for f, k := range m {
			whole = len(m) == 1 && k == size[f]
		}
		if whole {
			continue
		}
		var fs []int
		for f := range m {
			fs = append(fs, f)
		}
		sort.Ints(fs)
		var parts []string
		for _, f := range fs {
			parts = append(parts, fmt.Sprintf("%d of the %d frames of fragment %d (%s)", m[f], size[f], f, label[f]))
		}
		out = append(out, fmt.Sprintf("stored fragment %s holds %s", n, strings.Join(parts, "; ")))
	}
	return out
}

// eoSelfCheck proves on a real read that the comparison can fail: the
// read with one frame repeated and another left out must be reported
// with exactly those two frames.
func eoSelfCheck(t *testing.T, want []eoWant, got []eoGot) {
	t.Helper()
	if len(got) < 4 {
		t.Errorf("self-check: only %d frames read", len(got))
		return
	}
	dup, gone := got[len(got)/2], got[len(got)/3]
	bad := append([]eoGot(nil), got[:len(got)/3]...)
	bad = append(bad, got[len(got)/3+1:]...)
	bad = append(bad, dup)
	d := eoCompare(want, bad)
	if len(d.Missing) != 1 || d.Missing[0].Key != gone.Key || len(d.Duplicated) != 1 || d.Duplicated[0].Want.Key != dup.Key {
		t.Errorf("self-check: a read with %s repeated and %s left out is reported as: %s", dup.Key, gone.Key, d)
	}
}
