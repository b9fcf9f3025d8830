package e2e

// PutMedia end-to-end tests: the real C producer's captures replayed at
// their recorded chunk sizes and pace (acks, their timing and framing; the
// read-back is in media_readback_test.go), and the producer's reconnect
// after a dropped connection. Written from /work/shared/kvs-api.md §4,
// §10–12, not from the server code.

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// checkAcks asserts the ack sequence of a clean upload of pb's fragments
// idxs: per fragment BUFFERING, RECEIVED, PERSISTED in that order, all with
// the cluster's timecode and one fragment number, numbers strictly
// increasing. It returns the fragment numbers.
func checkAcks(t *testing.T, res *putMediaResult, pb *producerBody, idxs []int, tcOf func(i int) uint64) []string {
	t.Helper()
	if res.Status != 200 {
		t.Fatalf("PutMedia status %d, want 200: %s\n%s", res.Status, res.ErrBody, res.ackLog())
	}
	for _, a := range res.Acks {
		if a.EventType == "ERROR" {
			t.Fatalf("ERROR ack in a clean upload: %s\n%s", a, res.ackLog())
		}
	}
	byTC := map[string][]int{} // timecode → indexes into res.Acks
	for k, a := range res.Acks {
		if a.EventType == "IDLE" {
			continue
		}
		byTC[a.timecode()] = append(byTC[a.timecode()], k)
	}
	var nums []string
	wantTCs := map[string]bool{}
	for _, i := range idxs {
		tc := strconv.FormatUint(tcOf(i), 10)
		wantTCs[tc] = true
		ks := byTC[tc]
		var types []string
		for _, k := range ks {
			types = append(types, res.Acks[k].EventType)
		}
		if strings.Join(types, ",") != "BUFFERING,RECEIVED,PERSISTED" {
			t.Fatalf("fragment %d (timecode %s): acks %v, want BUFFERING,RECEIVED,PERSISTED\n%s", i, tc, types, res.ackLog())
		}
		fn := res.Acks[ks[0]].FragmentNumber
		for _, k := range ks {
			if res.Acks[k].FragmentNumber != fn {
				t.Fatalf("fragment %d: acks carry different fragment numbers\n%s", i, res.ackLog())
			}
		}
		if !isFragmentNumber(fn) {
			t.Fatalf("fragment %d: fragment number %q is not a 32-digit decimal without a leading zero", i, fn)
		}
		if len(nums) > 0 && fn <= nums[len(nums)-1] {
			t.Fatalf("fragment numbers not strictly increasing: %q after %q", fn, nums[len(nums)-1])
		}
		nums = append(nums, fn)
	}
	for tc := range byTC {
		if !wantTCs[tc] {
			t.Fatalf("ack for unexpected timecode %s\n%s", tc, res.ackLog())
		}
	}
	return nums
}

// TestPutMediaReplayRealProducer replays both real-producer captures at their
// recorded chunk sizes and (scaled) pace, then reads them back through every
// read API.
func TestPutMediaReplayRealProducer(t *testing.T) {
	t.Parallel()
	fixture.Tool(t, "aws")
	fixture.Tool(t, "ffprobe")
	fixture.Tool(t, "mkvinfo")
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	for _, c := range captures {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			replayAndReadBack(t, p, c)
		})
	}
}

func replayAndReadBack(t *testing.T, p *proc, c capture) {
	ep := p.endpoint
	pb := loadCapture(t, c.file)
	// Self-check of our walker against the README's description.
	if len(pb.Frags) != c.frags {
		t.Fatalf("walker found %d clusters in %s, README says %d", len(pb.Frags), c.file, c.frags)
	}
	for i, f := range pb.Frags {
		// ~1800 ms apart (the capture's fragment 8 is 80 ms short).
		if d := int64(f.Cluster.Timecode) - int64(c.firstTC+1800*uint64(i)); (i == 0 && d != 0) || d < -200 || d > 200 {
			t.Fatalf("cluster %d timecode %d, want about %d", i, f.Cluster.Timecode, c.firstTC+1800*uint64(i))
		}
		if len(f.Cluster.Blocks) == 0 || f.Cluster.Blocks[0].Flags&0x80 == 0 {
			t.Fatalf("cluster %d does not start with a key frame", i)
		}
	}
	stream := "replay-" + c.name
	var created struct{ StreamARN string }
	awsCLI(t, ep, nil, &created, "kinesisvideo", "create-stream", "--stream-name", stream, "--data-retention-in-hours", "24")

	plan := loadChunkPlan(t, c.file, 8, 50*time.Millisecond)
	total := 0
	for _, ch := range plan {
		total += ch.Size
	}
	if total != len(pb.Raw) {
		t.Fatalf("chunk plan covers %d bytes, file has %d", total, len(pb.Raw))
	}
	all := make([]int, c.frags)
	for i := range all {
		all[i] = i
	}

	// A producer whose body ends with AWS_KINESISVIDEO_END_OF_FRAGMENT keeps
	// the connection open until the last PERSISTED (§11): hold the body
	// open for those.
	res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: pb.Raw,
		Plan: plan, Expect100: c.expect, HostNoPort: c.expect, Until: persistedAll(c.frags),
		HoldOpen: c.userTags, AckWait: 10 * time.Second})
	if res.WriteErr != nil {
		t.Fatalf("upload write failed: %v\n%s", res.WriteErr, res.ackLog())
	}
	if res.Header.Get("X-Amzn-Requestid") == "" {
		t.Errorf("PutMedia response without x-amzn-RequestId (§1.3: on every response)")
	}
	if c.expect && !res.Got100 {
		t.Errorf("no 100 Continue for Expect: 100-continue (curl waits ~1 s without it)")
	}
	nums := checkAcks(t, res, pb, all, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
	if c.userTags && !res.DoneWhileOpen {
		t.Errorf("the last fragment, closed by AWS_KINESISVIDEO_END_OF_FRAGMENT, was not PERSISTED until the body ended (the C producer deadlocks)\n%s", res.ackLog())
	}
	t.Logf("upload took %v, %d acks", res.DataEnd.Sub(res.UploadStart).Round(time.Millisecond), len(res.Acks))

	// Acks flow during the upload (the producer drops the connection after
	// 5 s without BUFFERING).
	for _, a := range res.events("BUFFERING") {
		if !a.At.Before(res.DataEnd) {
			t.Errorf("BUFFERING for timecode %s arrived %v after the upload ended", a.timecode(), a.At.Sub(res.DataEnd))
		}
	}
	if pers := res.events("PERSISTED"); len(pers) == 0 || !pers[0].At.Before(res.DataEnd) {
		t.Errorf("first PERSISTED did not arrive while the body was still being written\n%s", res.ackLog())
	}
	checkAckTiming(t, res, pb, c.userTags)
	checkAckFraming(t, res)
	doneAt := time.Now()

	t.Run("ListFragments", func(t *testing.T) {
		checkListFragments(t, ep, stream, c, pb, nums, res.UploadStart, doneAt)
	})
	t.Run("GetMedia", func(t *testing.T) {
		checkGetMediaCLI(t, ep, stream, c, pb, nums)
	})
	t.Run("GetMediaForFragmentList", func(t *testing.T) {
		checkGMFFL(t, ep, stream, created.StreamARN, c, pb, nums)
	})
	t.Run("GetMediaSelectors", func(t *testing.T) {
		checkGetMediaSelectors(t, ep, stream, created.StreamARN, c, pb, nums)
	})
}

// checkAckTiming asserts that each fragment's acks follow its bytes closely:
// BUFFERING within 1 s of the cluster's first byte, RECEIVED within 1 s of
// the bytes that end it, PERSISTED within 2 s of RECEIVED.
func checkAckTiming(t *testing.T, res *putMediaResult, pb *producerBody, endTag bool) {
	t.Helper()
	find := func(typ, tc string) ack {
		for _, a := range res.Acks {
			if a.EventType == typ && a.timecode() == tc {
				return a
			}
		}
		t.Fatalf("no %s for %s", typ, tc)
		return ack{}
	}
	for i, f := range pb.Frags {
		tc := strconv.FormatUint(f.Cluster.Timecode, 10)
		b, r, p := find("BUFFERING", tc), find("RECEIVED", tc), find("PERSISTED", tc)
		if d := b.At.Sub(res.writtenAt(f.Off)); d > time.Second {
			t.Errorf("fragment %d: BUFFERING %v after its first byte was sent", i, d)
		}
		// The fragment is over at the next cluster's ID, at its
		// END_OF_FRAGMENT tag, or at the end of the body.
		var ended time.Time
		switch {
		case f.End < len(pb.Raw):
			ended = res.writtenAt(f.End + 3)
		case endTag:
			ended = res.writtenAt(len(pb.Raw) - 1)
		default:
			ended = res.UploadEnd
		}
		if d := r.At.Sub(ended); d > time.Second {
			t.Errorf("fragment %d: RECEIVED %v after the bytes that end it were sent", i, d)
		}
		if d := p.At.Sub(r.At); d > 2*time.Second {
			t.Errorf("fragment %d: PERSISTED %v after RECEIVED", i, d)
		}
	}
}

// checkAckFraming asserts §11's rule for the C producer's ack parser: every
// ack is its own small HTTP chunk (≤ 1,024 bytes), never batched or split.
func checkAckFraming(t *testing.T, res *putMediaResult) {
	t.Helper()
	if len(res.AckChunks) == 0 {
		t.Errorf("the ack stream is not chunked")
	}
	bad, first := 0, ""
	for k, ch := range res.AckChunks {
		if ch.Size > 1024 || ch.Acks > 1 || ch.Split {
			if bad++; bad == 1 {
				first = fmt.Sprintf("chunk %d: %d bytes, %d acks, ends inside an ack: %v: %q", k, ch.Size, ch.Acks, ch.Split, ch.Data)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d ack chunks are not one ack of ≤ 1024 bytes (§11: write every ack as its own small HTTP chunk, never batch); first %s",
			bad, len(res.AckChunks), first)
	}
}

// TestPutMediaProducerReconnect replays the C producer's recovery (§11): it
// drops the connection in the middle of a fragment, then opens a new PutMedia
// (new EBML header and Segment, later start timestamp) and re-sends every
// fragment not yet PERSISTED. Every stored fragment must be a whole fragment
// of the upload (no truncated leftover), and all of them must be there.
func TestPutMediaProducerReconnect(t *testing.T) {
	t.Parallel()
	fixture.Tool(t, "ffprobe")
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[1] // RELATIVE: the new session's start timestamp matters
	pb := loadCapture(t, c.file)
	stream := "reconnect"
	createStream(t, ep, stream)
	plan := loadChunkPlan(t, c.file, 8, 50*time.Millisecond)

	cut := (pb.Frags[3].Off + pb.Frags[3].End) / 2
	// Drop once the server has begun the cut fragment (its BUFFERING): it
	// holds part of fragment 3 when the connection goes.
	first := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: c.start, Body: pb.Raw,
		Plan: plan, AbortAt: cut, AbortWhen: func(acks []ack) bool {
			n := 0
			for _, a := range acks {
				if a.EventType == "BUFFERING" {
					n++
				}
			}
			return n >= 4
		}})
	persisted := map[string]bool{}
	for _, a := range first.events("PERSISTED") {
		persisted[a.timecode()] = true
	}
	resend := -1
	for i, f := range pb.Frags {
		if !persisted[strconv.FormatUint(f.Cluster.Timecode, 10)] {
			resend = i
			break
		}
	}
	if resend < 0 || resend > 3 {
		t.Fatalf("first session: PERSISTED up to fragment %d with the cut inside fragment 3\n%s", resend, first.ackLog())
	}
	t.Logf("first session cut inside fragment 3, re-sending from fragment %d\n%s", resend, first.ackLog())

	// The new session restarts its timecodes at 0 from a later start:
	// fragment i of the capture is sent with timecode tc(i) - tc(resend).
	base := pb.Frags[resend].Cluster.Timecode
	idxs := seq(len(pb.Frags))[resend:]
	body := pb.buildBody(t, nil, idxs, func(_, i int, f []byte, off int) {
		pb.setTimecode(t, i, f, off, pb.Frags[i].Cluster.Timecode-base)
	})
	startMs2 := c.startMs + int64(base)
	start2 := fmt.Sprintf("%d.%03d", startMs2/1000, startMs2%1000)
	second := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: start2, Body: body,
		Until: persistedAll(len(idxs))})
	checkAcks(t, second, pb, idxs, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode - base })

	// Every listed fragment is a whole fragment of the capture at its
	// producer time; together they cover all of it.
	listed := listAllRaw(t, ep, stream, c.startMs-1000, c.startMs+60000)
	msToIdx := map[int64]int{}
	for i := range pb.Frags {
		msToIdx[c.producerMs(pb, i)] = i
	}
	var nums []string
	var idx []int
	covered := map[int]bool{}
	sort.Slice(listed, func(a, b int) bool { return listed[a].FragmentNumber < listed[b].FragmentNumber })
	for _, f := range listed {
		i, ok := msToIdx[secondsToMillis(f.ProducerTimestamp)]
		if !ok {
			t.Fatalf("listed fragment %s at producer time %v is none of the capture's", f.FragmentNumber, f.ProducerTimestamp)
		}
		nums = append(nums, f.FragmentNumber)
		idx = append(idx, i)
		covered[i] = true
	}
	if len(covered) != len(pb.Frags) {
		t.Errorf("listed fragments cover clusters %v of %d", covered, len(pb.Frags))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := getMediaStream(ctx, t, ep, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": nums}, nil, nil)
	if ms.Status != 200 || ms.ParsErr != nil || ms.EndErr != nil {
		t.Fatalf("GMFFL: %d %v %v %.300s", ms.Status, ms.ParsErr, ms.EndErr, ms.Body)
	}
	// checkChunks compares each chunk's blocks with the whole capture
	// fragment: a truncated leftover of the cut fragment fails here. The
	// re-sent fragments carry the new session's timecodes.
	for k, ch := range ms.Chunks {
		i := idx[k]
		if len(ch.Clusters) != 1 || ch.Clusters[0].Digest() != pb.Frags[i].Cluster.Digest() {
			n := 0
			if len(ch.Clusters) == 1 {
				n = len(ch.Clusters[0].Blocks)
			}
			t.Errorf("stored fragment %s (cluster %d) has %d blocks that are not the %d sent: a partial fragment was stored", nums[k], i, n, len(pb.Frags[i].Cluster.Blocks))
		}
		if pt, _ := mkvcheck.ParseSeconds(ch.PreTags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]); pt != c.producerMs(pb, i) {
			t.Errorf("fragment %s: PRODUCER_TIMESTAMP %d, want %d", nums[k], pt, c.producerMs(pb, i))
		}
	}
	if len(ms.Chunks) != len(nums) {
		t.Errorf("GMFFL returned %d chunks for %d fragments", len(ms.Chunks), len(nums))
	}
}
