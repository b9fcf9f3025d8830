package e2e

// Black-box end-to-end tests of the media data path: PutMedia (replayed from
// captures of the real KVS C producer, at its recorded chunk sizes and pace),
// ListFragments, GetMedia and GetMediaForFragmentList (through the installed
// aws CLI and hand-signed HTTP), checked with ffprobe, mkvinfo and our own
// Matroska walker (e2e_media_util_test.go). Written from
// /work/shared/kvs-api.md §4–7, §10–12, not from the server code.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
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
	needTool(t, "aws")
	needTool(t, "ffprobe")
	needTool(t, "mkvinfo")
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

	plan := loadChunkPlan(t, filepath.Join(testdataDir, c.file+".chunks.tsv"), 8, 50*time.Millisecond)
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

func checkListFragments(t *testing.T, ep, stream string, c capture, pb *producerBody, nums []string, upStart, doneAt time.Time) {
	first, last := c.producerMs(pb, 0), c.producerMs(pb, c.frags-1)
	fullRange := producerRange(first/1000-1, last/1000+2)

	// List until everything is there (eventually consistent, ≤ ~1 s).
	var out listFragmentsOut
	for try := 0; ; try++ {
		out = listFragmentsCLI(t, ep, stream, "--fragment-selector", fullRange)
		if len(out.Fragments) >= len(nums) || try == 3 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if got := sortedNumbers(out.Fragments); !slices.Equal(got, nums) {
		t.Fatalf("list-fragments (producer range) returned %v, want %v", got, nums)
	}
	byNum := map[string]fragment{}
	for _, f := range out.Fragments {
		byNum[f.FragmentNumber] = f
	}
	for i, n := range nums {
		f := byNum[n]
		if got, want := secondsToMillis(f.ProducerTimestamp), c.producerMs(pb, i); got != want {
			t.Errorf("fragment %d: ProducerTimestamp %v (%d ms), want %d ms", i, f.ProducerTimestamp, got, want)
		}
		// The fragment's media span: at least up to its last frame, at
		// most a frame or so past it (or up to the next cluster).
		var lastRel int64
		for _, b := range pb.Frags[i].Cluster.Blocks {
			lastRel = max(lastRel, int64(b.RelTC))
		}
		hi := lastRel + 200
		if i+1 < len(pb.Frags) {
			hi = max(hi, int64(pb.Frags[i+1].Cluster.Timecode-pb.Frags[i].Cluster.Timecode))
		}
		if f.FragmentLengthInMilliseconds < lastRel || f.FragmentLengthInMilliseconds > hi {
			t.Errorf("fragment %d: FragmentLengthInMilliseconds %d, want within [%d, %d] (last frame at +%d ms)", i, f.FragmentLengthInMilliseconds, lastRel, hi, lastRel)
		}
		var payload int64
		for _, b := range pb.Frags[i].Cluster.Blocks {
			payload += int64(len(b.Data))
		}
		if f.FragmentSizeInBytes < payload {
			t.Errorf("fragment %d: FragmentSizeInBytes %d is less than its block payload %d", i, f.FragmentSizeInBytes, payload)
		}
		st := secondsToMillis(f.ServerTimestamp)
		if st < upStart.Add(-2*time.Second).UnixMilli() || st > doneAt.Add(2*time.Second).UnixMilli() {
			t.Errorf("fragment %d: ServerTimestamp %v outside the upload [%v, %v]", i, f.ServerTimestamp, upStart, doneAt)
		}
		if i > 0 && secondsToMillis(byNum[nums[i-1]].ServerTimestamp) > st {
			t.Errorf("fragment %d: ServerTimestamp earlier than fragment %d's", i, i-1)
		}
	}

	// SERVER_TIMESTAMP selector.
	srv := listFragmentsCLI(t, ep, stream, "--fragment-selector", serverRange(upStart.Unix()-2, doneAt.Unix()+2))
	if got := sortedNumbers(srv.Fragments); !slices.Equal(got, nums) {
		t.Errorf("list-fragments server range: %v, want %v", got, nums)
	}
	if !c.allLists {
		return
	}

	// A sub-range: inclusive, tested on fragment start times. The CLI sends
	// whole seconds.
	from, to := first/1000+3, first/1000+7
	var want []string
	for i, n := range nums {
		if ms := c.producerMs(pb, i); ms >= from*1000 && ms <= to*1000 {
			want = append(want, n)
		}
	}
	sub := listFragmentsCLI(t, ep, stream, "--fragment-selector", producerRange(from, to))
	if got := sortedNumbers(sub.Fragments); !slices.Equal(got, want) {
		t.Errorf("list-fragments producer range [%d, %d]: %v, want %v", from, to, got, want)
	}

	// Exact millisecond bounds on fragment starts are inclusive at both
	// ends (hand-signed: the CLI would cut them to whole seconds).
	sel := func(typ string, fromMs, toMs int64) map[string]any {
		return map[string]any{"FragmentSelectorType": typ, "TimestampRange": map[string]any{
			"StartTimestamp": float64(fromMs) / 1000, "EndTimestamp": float64(toMs) / 1000}}
	}
	var exact listFragmentsOut
	if status, raw := callJSON(t, ep, "/listFragments", map[string]any{"StreamName": stream,
		"FragmentSelector": sel("PRODUCER_TIMESTAMP", c.producerMs(pb, 2), c.producerMs(pb, 4))}, &exact); status != 200 {
		t.Fatalf("listFragments: %d %s", status, raw)
	}
	if got := sortedNumbers(exact.Fragments); !slices.Equal(got, nums[2:5]) {
		t.Errorf("listFragments [start of 2, start of 4] in ms: %v, want fragments 2–4 %v", got, nums[2:5])
	}
	var before listFragmentsOut
	callJSON(t, ep, "/listFragments", map[string]any{"StreamName": stream,
		"FragmentSelector": sel("SERVER_TIMESTAMP", upStart.Add(-600*time.Second).UnixMilli(), upStart.Add(-300*time.Second).UnixMilli())}, &before)
	if len(before.Fragments) != 0 {
		t.Errorf("listFragments server range before the upload: %v, want none", sortedNumbers(before.Fragments))
	}

	// Manual paging: the CLI's --no-paginate --max-results 4, then
	// hand-signed calls carrying only NextToken, as paging clients do.
	first4 := listFragmentsCLI(t, ep, stream, "--no-paginate", "--max-results", "4", "--fragment-selector", fullRange)
	paged := first4.Fragments
	if len(first4.Fragments) != 4 || first4.NextToken == "" {
		t.Fatalf("list-fragments --max-results 4 of %d: %d fragments, NextToken %q", len(nums), len(first4.Fragments), first4.NextToken)
	}
	seenTokens := map[string]bool{first4.NextToken: true}
	for token := first4.NextToken; token != ""; {
		if len(seenTokens) > len(nums) {
			t.Fatalf("paging does not end")
		}
		var o listFragmentsOut
		if status, raw := callJSON(t, ep, "/listFragments", map[string]any{"StreamName": stream, "MaxResults": 4, "NextToken": token}, &o); status != 200 {
			t.Fatalf("listFragments with NextToken: %d %s", status, raw)
		}
		if len(o.Fragments) > 4 {
			t.Fatalf("page has %d fragments, MaxResults 4", len(o.Fragments))
		}
		paged = append(paged, o.Fragments...)
		if o.NextToken != "" && seenTokens[o.NextToken] {
			t.Fatalf("NextToken repeated: %q", o.NextToken)
		}
		seenTokens[o.NextToken] = true
		token = o.NextToken
	}
	if got := sortedNumbers(paged); !slices.Equal(got, nums) {
		t.Errorf("paged listFragments: %v, want %v (each exactly once)", got, nums)
	}
	// The CLI's own pagination with a small page size.
	auto := listFragmentsCLI(t, ep, stream, "--page-size", "3", "--fragment-selector", fullRange)
	if got := sortedNumbers(auto.Fragments); !slices.Equal(got, nums) {
		t.Errorf("auto-paginated list-fragments --page-size 3: %v, want %v", got, nums)
	}
}

// checkChunks asserts that chunks carry exactly fragments idxs (numbers
// nums) of pb, in that order, in the §10.3 layout.
func checkChunks(t *testing.T, chunks []*mediaChunk, c capture, pb *producerBody, idxs []int, nums []string) {
	t.Helper()
	var got []string
	for _, ch := range chunks {
		got = append(got, ch.FragmentNumber())
	}
	if !slices.Equal(got, nums) {
		t.Fatalf("chunks carry fragments %v, want %v", got, nums)
	}
	tokenRE := regexp.MustCompile(`^[a-zA-Z0-9_.\-]{1,128}$`)
	for k, ch := range chunks {
		i := idxs[k]
		if !ch.Complete {
			t.Fatalf("chunk %d has no trailing AWS_KINESISVIDEO_CONTINUATION_TOKEN", k)
		}
		if !ch.HasInfo || !ch.HasTracks {
			t.Errorf("chunk %d is not a standalone document: Info %v, Tracks %v", k, ch.HasInfo, ch.HasTracks)
		}
		if len(ch.Clusters) != 1 {
			t.Fatalf("chunk %d has %d clusters, want 1", k, len(ch.Clusters))
		}
		cl := ch.Clusters[0]
		if cl.Timecode != pb.Frags[i].Cluster.Timecode {
			t.Errorf("chunk %d: cluster Timecode %d, want %d as sent", k, cl.Timecode, pb.Frags[i].Cluster.Timecode)
		}
		if blockDigest(cl.Blocks) != blockDigest(pb.Frags[i].Cluster.Blocks) {
			t.Errorf("chunk %d: its %d SimpleBlocks differ from the %d sent in cluster %d", k, len(cl.Blocks), len(pb.Frags[i].Cluster.Blocks), i)
		}
		pt, ok := parseMillis(ch.PreTags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"])
		if !ok || pt != c.producerMs(pb, i) {
			t.Errorf("chunk %d: PRODUCER_TIMESTAMP %q, want %d ms as seconds with 3 decimals", k, ch.PreTags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"], c.producerMs(pb, i))
		}
		if st, ok := parseMillis(ch.PreTags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"]); !ok || st < 1.7e12 {
			t.Errorf("chunk %d: SERVER_TIMESTAMP %q", k, ch.PreTags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"])
		}
		if mb, err := strconv.ParseInt(ch.PostTags["AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"], 10, 64); err != nil || mb < 0 {
			t.Errorf("chunk %d: MILLIS_BEHIND_NOW %q is not a non-negative integer", k, ch.PostTags["AWS_KINESISVIDEO_MILLIS_BEHIND_NOW"])
		}
		if tok := ch.PostTags["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]; !tokenRE.MatchString(tok) {
			t.Errorf("chunk %d: CONTINUATION_TOKEN %q does not match the model's pattern", k, tok)
		}
		// Producer Tags that followed cluster i ride in chunk i (§10.3).
		if c.userTags {
			n := 0
			for _, tg := range pb.Frags[i].Tags {
				if strings.HasPrefix(tg.Name, "AWS_") {
					continue
				}
				n++
				if v, ok := ch.PostTags[tg.Name]; !ok || v != tg.Value {
					t.Errorf("chunk %d: producer tag %s=%s missing after the cluster (got %q)", k, tg.Name, tg.Value, v)
				}
			}
			if n == 0 {
				t.Fatalf("capture fragment %d has no producer tags; walker broken?", i)
			}
		}
	}
}

func checkGetMediaCLI(t *testing.T, ep, stream string, c capture, pb *producerBody, nums []string) {
	out := filepath.Join(t.TempDir(), "out.mkv")
	var meta struct{ ContentType string }
	awsCLI(t, ep, nil, &meta, "kinesis-video-media", "get-media", "--stream-name", stream,
		"--start-selector", "StartSelectorType=EARLIEST", out)
	if meta.ContentType != "video/webm" {
		t.Errorf("get-media ContentType %q, want video/webm", meta.ContentType)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := parseMediaOutput(raw)
	if err != nil {
		t.Fatalf("parsing get-media output (%d bytes): %v", len(raw), err)
	}
	idxs := make([]int, len(nums))
	for i := range idxs {
		idxs[i] = i
	}
	checkChunks(t, chunks, c, pb, idxs, nums)
	// SERVER_TIMESTAMP is the fragment's ServerTimestamp of ListFragments.
	listed := map[string]int64{}
	for _, f := range listAllRaw(t, ep, stream, c.producerMs(pb, 0)-1000, c.producerMs(pb, len(pb.Frags)-1)+1000) {
		listed[f.FragmentNumber] = secondsToMillis(f.ServerTimestamp)
	}
	for k, ch := range chunks {
		if st, _ := parseMillis(ch.PreTags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"]); st != listed[ch.FragmentNumber()] {
			t.Errorf("chunk %d: SERVER_TIMESTAMP %d ms, ListFragments says %d ms", k, st, listed[ch.FragmentNumber()])
		}
	}

	want := inputFrames(pb)
	got := probeSummary(ffprobe(t, out))
	for _, codec := range c.codecs {
		if got[codec] == "" || got[codec] != want[codec] {
			t.Errorf("ffprobe get-media output: %s frames %q, input has %q (all: %v)", codec, got[codec], want[codec], got)
		}
	}
	if len(got) != len(c.codecs) {
		t.Errorf("ffprobe get-media output streams %v, want codecs %v", got, c.codecs)
	}
	mkvinfo(t, out)
}

func checkGMFFL(t *testing.T, ep, stream, arn string, c capture, pb *producerBody, nums []string) {
	// All fragments, in order: the same frames as the input.
	out := filepath.Join(t.TempDir(), "all.mkv")
	var meta struct{ ContentType string }
	awsCLI(t, ep, nil, &meta, append([]string{"kinesis-video-archived-media", "get-media-for-fragment-list",
		"--stream-name", stream, out, "--fragments"}, nums...)...)
	if meta.ContentType != "video/webm" {
		t.Errorf("get-media-for-fragment-list ContentType %q, want video/webm", meta.ContentType)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := parseMediaOutput(raw)
	if err != nil {
		t.Fatalf("parsing GMFFL output: %v", err)
	}
	idxs := make([]int, len(nums))
	for i := range idxs {
		idxs[i] = i
	}
	checkChunks(t, chunks, c, pb, idxs, nums)
	want := inputFrames(pb)
	got := probeSummary(ffprobe(t, out))
	for _, codec := range c.codecs {
		if got[codec] == "" || got[codec] != want[codec] {
			t.Errorf("ffprobe GMFFL output: %s frames %q, input has %q", codec, got[codec], want[codec])
		}
	}

	// Reverse order, by ARN: chunks come back in the order asked.
	var rev []string
	var revIdx []int
	for i := len(nums) - 1; i >= 0; i -= 2 {
		rev = append(rev, nums[i])
		revIdx = append(revIdx, i)
	}
	out2 := filepath.Join(t.TempDir(), "rev.mkv")
	awsCLI(t, ep, nil, nil, append([]string{"kinesis-video-archived-media", "get-media-for-fragment-list",
		"--stream-arn", arn, out2, "--fragments"}, rev...)...)
	raw, err = os.ReadFile(out2)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err = parseMediaOutput(raw)
	if err != nil {
		t.Fatalf("parsing reversed GMFFL output: %v", err)
	}
	checkChunks(t, chunks, c, pb, revIdx, rev)
	mkvinfo(t, out2)

	// An unknown fragment number is an error, not an empty 200.
	bogus := strings.Repeat("9", 32)
	// Either the call fails with a KVS error, or the body carries an error
	// chunk (§5: ERROR_ID/ERROR_CODE tags); a silent empty 200 is wrong.
	status, raw, h := callJSONH(t, ep, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": []string{bogus}}, nil)
	if status == 200 {
		chunks, _ := parseMediaOutput(raw)
		found := false
		for _, ch := range chunks {
			if ch.PreTags["AWS_KINESISVIDEO_ERROR_ID"] != "" || ch.PostTags["AWS_KINESISVIDEO_ERROR_ID"] != "" {
				found = true
			}
		}
		if !found {
			t.Errorf("getMediaForFragmentList of unknown fragment %s: 200 with %d bytes and no error chunk", bogus, len(raw))
		}
	} else if !strings.HasSuffix(strings.SplitN(h.Get("X-Amzn-Errortype"), ":", 2)[0], "Exception") {
		t.Errorf("getMediaForFragmentList of an unknown fragment: %d, x-amzn-ErrorType %q, %s", status, h.Get("X-Amzn-Errortype"), raw)
	} else {
		t.Logf("unknown fragment: %d %s %s", status, h.Get("X-Amzn-Errortype"), raw)
	}
}

// checkGetMediaSelectors reads GetMedia with hand-signed requests and the
// selectors other than EARLIEST/NOW.
func checkGetMediaSelectors(t *testing.T, ep, stream, arn string, c capture, pb *producerBody, nums []string) {
	if len(nums) < 6 {
		t.Fatalf("need ≥ 6 fragments")
	}
	serverMs := map[string]int64{}
	for _, f := range listAllRaw(t, ep, stream, c.producerMs(pb, 0)-1000, c.producerMs(pb, len(nums)-1)+1000) {
		serverMs[f.FragmentNumber] = secondsToMillis(f.ServerTimestamp)
	}
	cases := []struct {
		name     string
		selector map[string]any
		first    int
	}{
		// The server time at which fragment 3 began arriving.
		{"SERVER_TIMESTAMP", map[string]any{"StartSelectorType": "SERVER_TIMESTAMP",
			"StartTimestamp": float64(serverMs[nums[3]]) / 1000}, 3},
		{"FRAGMENT_NUMBER", map[string]any{"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": nums[2]}, 3},
		// A timestamp inside fragment 4 selects the chunk containing it.
		{"PRODUCER_TIMESTAMP", map[string]any{"StartSelectorType": "PRODUCER_TIMESTAMP",
			"StartTimestamp": float64(c.producerMs(pb, 4)+500) / 1000}, 4},
		{"PRODUCER_TIMESTAMP_exact", map[string]any{"StartSelectorType": "PRODUCER_TIMESTAMP",
			"StartTimestamp": float64(c.producerMs(pb, 1)) / 1000}, 1},
	}
	// An unknown AfterFragmentNumber: a KVS error or an error chunk (§5,
	// ERROR_ID 4000), not a silent stream.
	{
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// Well-formed, below every number the stream has.
		bogus := "1" + strings.Repeat("0", 31)
		if bogus >= nums[0] {
			t.Fatalf("fragment numbers start at %s", nums[0])
		}
		ms := getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
			"StartSelector": map[string]any{"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": bogus}},
			func(done []*mediaChunk) bool { return len(done) > 0 }, nil)
		errChunk := false
		for _, ch := range ms.Chunks {
			errChunk = errChunk || ch.PreTags["AWS_KINESISVIDEO_ERROR_ID"] != ""
		}
		if ms.Status != 200 {
			t.Logf("unknown AfterFragmentNumber: status %d %s", ms.Status, ms.Body)
		}
		if ms.Status == 200 && !errChunk {
			t.Errorf("getMedia after unknown fragment %s: 200 with chunks %v and no error chunk", bogus, ms.fragmentNumbers())
		}
	}
	// The continuation token of chunk 4 resumes at chunk 5.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
		"StartSelector": map[string]any{"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": nums[3]}},
		func(done []*mediaChunk) bool { return len(done) >= 1 }, nil)
	if ms.Status != 200 || len(ms.complete()) == 0 {
		t.Fatalf("getMedia FRAGMENT_NUMBER: status %d, %d chunks, %v %v %s", ms.Status, len(ms.complete()), ms.EndErr, ms.ParsErr, ms.Body)
	}
	if ct := ms.Header.Get("Content-Type"); ct != "video/webm" {
		t.Errorf("getMedia Content-Type %q, want video/webm", ct)
	}
	if ms.Header.Get("X-Amzn-Requestid") == "" {
		t.Errorf("GetMedia response without x-amzn-RequestId (§1.3: on every response)")
	}
	tok := ms.complete()[0].PostTags["AWS_KINESISVIDEO_CONTINUATION_TOKEN"]
	cases = append(cases, struct {
		name     string
		selector map[string]any
		first    int
	}{"CONTINUATION_TOKEN", map[string]any{"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": tok}, 5})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := 2
			if tc.first+want > len(nums) {
				want = len(nums) - tc.first
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// By ARN, as a consumer given only the ARN would.
			ms := getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamARN": arn, "StartSelector": tc.selector},
				func(done []*mediaChunk) bool { return len(done) >= want }, nil)
			if ms.Status != 200 {
				t.Fatalf("status %d: %s", ms.Status, ms.Body)
			}
			if ms.ParsErr != nil {
				t.Fatalf("parsing: %v", ms.ParsErr)
			}
			got := ms.fragmentNumbers()
			if len(got) < want || !slices.Equal(got[:want], nums[tc.first:tc.first+want]) {
				t.Fatalf("selector %v: chunks %v, want to start with %v", tc.selector, got, nums[tc.first:tc.first+want])
			}
		})
	}
}

// TestGetMediaLive checks live delivery: a NOW consumer started before the
// producer, and an EARLIEST consumer that catches up with an upload in
// progress and then follows it.
func TestGetMediaLive(t *testing.T) {
	t.Parallel()
	needTool(t, "aws")
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[1] // relative, H.264 + AAC
	pb := loadCapture(t, c.file)
	stream := "live"
	createStream(t, ep, stream)
	n := len(pb.Frags)
	plan := func(speedup int) []chunkSpec {
		return loadChunkPlan(t, filepath.Join(testdataDir, c.file+".chunks.tsv"), speedup, 100*time.Millisecond)
	}
	persistedNums := func(res *putMediaResult) []string {
		var out []string
		for _, a := range res.events("PERSISTED") {
			out = append(out, a.FragmentNumber)
		}
		return out
	}

	// 1. NOW, started before the producer.
	nowCh := make(chan *mediaStream, 1)
	written := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		nowCh <- getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
			"StartSelector": map[string]any{"StartSelectorType": "NOW"}}, nil, written)
	}()
	<-written
	time.Sleep(400 * time.Millisecond) // let the server register the reader
	up1 := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "1795581000.000", Body: pb.Raw,
		Plan: plan(4), Until: persistedAll(n)})
	checkAcks(t, up1, pb, seq(n), func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
	nums1 := persistedNums(up1)
	var now *mediaStream
	select {
	case now = <-nowCh:
	case <-time.After(45 * time.Second):
		t.Fatal("NOW consumer never ended (idle timeout 3 s)")
	}
	if now.Status != 200 || now.ParsErr != nil || now.EndErr != nil {
		t.Fatalf("NOW consumer: status %d, parse %v, end %v, body %.200q", now.Status, now.ParsErr, now.EndErr, now.Body)
	}
	if got := now.fragmentNumbers(); !slices.Equal(got, nums1) {
		t.Fatalf("NOW consumer got %v, want each of %v exactly once, in order", got, nums1)
	}
	if len(now.complete()) != len(now.Chunks) {
		t.Errorf("NOW consumer: %d chunks, %d complete (session must end at a chunk boundary)", len(now.Chunks), len(now.complete()))
	}
	cs := now.complete()
	for i := 0; i < n-2; i++ {
		if !cs[i].ReceivedAt.Before(up1.DataEnd) {
			t.Errorf("NOW consumer: fragment %d arrived %v after the upload ended: not live", i, cs[i].ReceivedAt.Sub(up1.DataEnd))
		}
	}
	sc := capture{startMs: 1795581000000}
	checkChunks(t, cs, sc, pb, seq(n), nums1)

	// 2. EARLIEST while a second upload is in progress.
	twoPersisted := make(chan struct{})
	persisted := 0
	up2Ch := make(chan *putMediaResult, 1)
	go func() {
		up2Ch <- putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "1795581060.000", Body: pb.Raw,
			Plan: plan(3), Until: persistedAll(n), OnAck: func(a ack) {
				if a.EventType == "PERSISTED" {
					persisted++
					if persisted == 2 {
						close(twoPersisted)
					}
				}
			}})
	}()
	select {
	case <-twoPersisted:
	case res := <-up2Ch:
		t.Fatalf("second upload ended before 2 PERSISTED acks: status %d %s\n%s", res.Status, res.ErrBody, res.ackLog())
	case <-time.After(30 * time.Second):
		t.Fatal("second upload: no 2 PERSISTED acks in 30 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	// A NOW consumer joining mid-upload gets only what arrives after it.
	now2Ch := make(chan *mediaStream, 1)
	go func() {
		now2Ch <- getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
			"StartSelector": map[string]any{"StartSelectorType": "NOW"}}, nil, nil)
	}()
	early := getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
		"StartSelector": map[string]any{"StartSelectorType": "EARLIEST"}}, nil, nil)
	up2 := <-up2Ch
	now2 := <-now2Ch
	checkAcks(t, up2, pb, seq(n), func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
	nums2 := persistedNums(up2)
	if early.Status != 200 || early.ParsErr != nil || early.EndErr != nil {
		t.Fatalf("EARLIEST consumer: status %d, parse %v, end %v", early.Status, early.ParsErr, early.EndErr)
	}
	got := early.fragmentNumbers()
	listed := sortedNumbers(listFragmentsCLI(t, ep, stream, "--fragment-selector", producerRange(1795581000-1, 1795581060+20)).Fragments)
	if !slices.Equal(listed, append(slices.Clone(nums1), nums2...)) {
		t.Fatalf("list-fragments %v, want uploads 1 and 2: %v %v", listed, nums1, nums2)
	}
	if !slices.Equal(got, listed) {
		t.Fatalf("EARLIEST consumer got %v\nlist-fragments has %v\n(no gap, no duplicate, in order)", got, listed)
	}
	if now2.Status != 200 || now2.ParsErr != nil || now2.EndErr != nil {
		t.Fatalf("NOW consumer 2: status %d, parse %v, end %v", now2.Status, now2.ParsErr, now2.EndErr)
	}
	got2 := now2.fragmentNumbers()
	if len(got2) == 0 || len(got2) > n-2 || !slices.Equal(got2, nums2[n-len(got2):]) {
		t.Errorf("NOW consumer joining after 2 of %d fragments were stored got %v, want a non-empty tail of %v without the first two", n, got2, nums2)
	}
	// It followed the upload live rather than reading it all at the end.
	ec := early.complete()
	if k := len(nums1) + n - 3; !ec[k].ReceivedAt.Before(up2.DataEnd) {
		t.Errorf("EARLIEST consumer: fragment %d of upload 2 arrived after the upload ended: not following live", n-3)
	}
}

// TestGetMediaSlowReaderDoesNotStallPutMedia: a GetMedia consumer that stops
// reading must not hold up the producer's acks; what it does get later is
// in order and without gaps.
func TestGetMediaSlowReaderDoesNotStallPutMedia(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[0]
	pb := loadCapture(t, c.file)
	stream := "slowreader"
	createStream(t, ep, stream)

	gate := make(chan struct{})
	written := make(chan struct{})
	msCh := make(chan *mediaStream, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		msCh <- getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
			"StartSelector": map[string]any{"StartSelectorType": "NOW"}}, nil, written, mediaOpt{RcvBuf: 4096, Gate: gate})
	}()
	<-written
	time.Sleep(400 * time.Millisecond)
	res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: pb.Raw,
		Plan:  loadChunkPlan(t, filepath.Join(testdataDir, c.file+".chunks.tsv"), 8, 50*time.Millisecond),
		Until: persistedAll(len(pb.Frags)), AckWait: 10 * time.Second})
	nums := checkAcks(t, res, pb, seq(len(pb.Frags)), func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
	if last := res.events("PERSISTED"); len(last) > 0 {
		if d := last[len(last)-1].At.Sub(res.DataEnd); d > 2*time.Second {
			t.Errorf("last PERSISTED %v after the data ended, with a stalled GetMedia reader", d)
		}
	}
	close(gate)
	ms := <-msCh
	got := ms.fragmentNumbers()
	t.Logf("stalled reader: status %d, got %d of %d fragments, end %v", ms.Status, len(got), len(nums), ms.EndErr)
	if ms.ParsErr != nil {
		t.Errorf("stalled reader's stream does not parse: %v", ms.ParsErr)
	}
	// Whatever it got is a run of the stream's fragments in order: dropped
	// or ended is fine, skipped or repeated is not.
	if len(got) > 0 {
		k := slices.Index(nums, got[0])
		if k < 0 || k+len(got) > len(nums) || !slices.Equal(got, nums[k:k+len(got)]) {
			t.Errorf("stalled reader got %v, not a contiguous run of %v", got, nums)
		}
	}
}

// TestPutMediaProducerReconnect replays the C producer's recovery (§11): it
// drops the connection in the middle of a fragment, then opens a new PutMedia
// (new EBML header and Segment, later start timestamp) and re-sends every
// fragment not yet PERSISTED. Every stored fragment must be a whole fragment
// of the upload (no truncated leftover), and all of them must be there.
func TestPutMediaProducerReconnect(t *testing.T) {
	t.Parallel()
	needTool(t, "ffprobe")
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[1] // RELATIVE: the new session's start timestamp matters
	pb := loadCapture(t, c.file)
	stream := "reconnect"
	createStream(t, ep, stream)
	plan := loadChunkPlan(t, filepath.Join(testdataDir, c.file+".chunks.tsv"), 8, 50*time.Millisecond)

	cut := (pb.Frags[3].Off + pb.Frags[3].End) / 2
	first := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: c.start, Body: pb.Raw,
		Plan: plan, AbortAt: cut})
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
		if len(ch.Clusters) != 1 || blockDigest(ch.Clusters[0].Blocks) != blockDigest(pb.Frags[i].Cluster.Blocks) {
			n := 0
			if len(ch.Clusters) == 1 {
				n = len(ch.Clusters[0].Blocks)
			}
			t.Errorf("stored fragment %s (cluster %d) has %d blocks that are not the %d sent: a partial fragment was stored", nums[k], i, n, len(pb.Frags[i].Cluster.Blocks))
		}
		if pt, _ := parseMillis(ch.PreTags["AWS_KINESISVIDEO_PRODUCER_TIMESTAMP"]); pt != c.producerMs(pb, i) {
			t.Errorf("fragment %s: PRODUCER_TIMESTAMP %d, want %d", nums[k], pt, c.producerMs(pb, i))
		}
	}
	if len(ms.Chunks) != len(nums) {
		t.Errorf("GMFFL returned %d chunks for %d fragments", len(ms.Chunks), len(nums))
	}
}

// TestGetMediaSessionHeaders: one stream fed by two PutMedia sessions with
// different tracks (H.264 only, then H.264 + AAC). Each GetMedia chunk is a
// standalone document carrying its own session's Tracks (§10.3).
func TestGetMediaSessionHeaders(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	abs, rel := loadCapture(t, captures[0].file), loadCapture(t, captures[1].file)
	stream := "twosessions"
	createStream(t, ep, stream)
	r1 := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "ABSOLUTE", Start: captures[0].start,
		Body: abs.retimed(t, []int{0, 1}, 0), Until: persistedAll(2)})
	n1 := checkAcks(t, r1, abs, []int{0, 1}, func(i int) uint64 { return abs.Frags[i].Cluster.Timecode })
	// The second session starts 10 s after the first one's start.
	r2 := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "1795579984.135",
		Body: rel.retimed(t, []int{0, 1}, 0), Until: persistedAll(2)})
	n2 := checkAcks(t, r2, rel, []int{0, 1}, func(i int) uint64 { return rel.Frags[i].Cluster.Timecode })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
		"StartSelector": map[string]any{"StartSelectorType": "EARLIEST"}},
		func(done []*mediaChunk) bool { return len(done) >= 4 }, nil)
	if ms.Status != 200 || ms.ParsErr != nil {
		t.Fatalf("getMedia: %d %v", ms.Status, ms.ParsErr)
	}
	want := append(slices.Clone(n1), n2...)
	cs := ms.complete()
	if got := ms.fragmentNumbers(); !slices.Equal(got, want) {
		t.Fatalf("getMedia chunks %v, want %v", got, want)
	}
	checkChunks(t, cs[:2], captures[0], abs, []int{0, 1}, n1)
	checkChunks(t, cs[2:], capture{startMs: 1795579984135}, rel, []int{0, 1}, n2)
	for k, ch := range cs {
		wantCodecs := abs.TrackCodecs
		if k >= 2 {
			wantCodecs = rel.TrackCodecs
		}
		if !slices.Equal(ch.Codecs, wantCodecs) {
			t.Errorf("chunk %d: Tracks %v, want its session's %v", k, ch.Codecs, wantCodecs)
		}
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// TestMediaDurabilitySIGKILL kills the server mid-upload and checks that
// every fragment acknowledged PERSISTED survives the restart.
func TestMediaDurabilitySIGKILL(t *testing.T) {
	t.Parallel()
	needTool(t, "aws")
	needTool(t, "ffprobe")
	dir := t.TempDir()
	p1 := startKvsedge(t, mediaEnv(dir), "--listen", "127.0.0.1:0")
	c := captures[0]
	pb := loadCapture(t, c.file)
	stream := "durable"
	createStream(t, p1.endpoint, stream)

	const killAfter = 5
	reached := make(chan struct{})
	count := 0
	upCh := make(chan *putMediaResult, 1)
	go func() {
		upCh <- putMedia(t, p1.endpoint, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: pb.Raw,
			Plan:    loadChunkPlan(t, filepath.Join(testdataDir, c.file+".chunks.tsv"), 3, 100*time.Millisecond),
			AckWait: 5 * time.Second, OnAck: func(a ack) {
				if a.EventType == "PERSISTED" {
					count++
					if count == killAfter {
						close(reached)
					}
				}
			}})
	}()
	var res *putMediaResult
	select {
	case <-reached:
		p1.kill()
		res = <-upCh
	case res = <-upCh:
		t.Fatalf("upload ended before %d PERSISTED acks: status %d %s\n%s", killAfter, res.Status, res.ErrBody, res.ackLog())
	case <-time.After(30 * time.Second):
		t.Fatalf("no %d PERSISTED acks in 30 s", killAfter)
	}
	tcToIdx := map[string]int{}
	for i, f := range pb.Frags {
		tcToIdx[strconv.FormatUint(f.Cluster.Timecode, 10)] = i
	}
	var persisted []string
	var persistedIdx []int
	for _, a := range res.events("PERSISTED") {
		i, ok := tcToIdx[a.timecode()]
		if !ok {
			t.Fatalf("PERSISTED for unknown timecode: %s", a)
		}
		persisted = append(persisted, a.FragmentNumber)
		persistedIdx = append(persistedIdx, i)
	}
	if len(persisted) >= len(pb.Frags) {
		t.Fatalf("all %d fragments were persisted before the kill: the test did not kill mid-upload\n%s", len(persisted), res.ackLog())
	}
	t.Logf("killed after %d PERSISTED acks (%d acks in all)", len(persisted), len(res.Acks))

	p2 := startKvsedge(t, mediaEnv(dir), "--listen", "127.0.0.1:0")
	listed := listFragmentsCLI(t, p2.endpoint, stream, "--fragment-selector", producerRange(1795579974-1, 1795579974+30))
	have := map[string]fragment{}
	for _, f := range listed.Fragments {
		have[f.FragmentNumber] = f
	}
	for k, n := range persisted {
		f, ok := have[n]
		if !ok {
			t.Errorf("fragment %s (cluster %d) was acknowledged PERSISTED but is not listed after the restart", n, persistedIdx[k])
			continue
		}
		if got, want := secondsToMillis(f.ProducerTimestamp), c.producerMs(pb, persistedIdx[k]); got != want {
			t.Errorf("fragment %s: ProducerTimestamp %d ms after restart, want %d", n, got, want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// Everything listed after the restart — the PERSISTED fragments and
	// any fragment that was received but not yet acknowledged — must be a
	// whole fragment of the upload, readable back.
	msToIdx := map[int64]int{}
	for i := range pb.Frags {
		msToIdx[c.producerMs(pb, i)] = i
	}
	var all []string
	var allIdx []int
	for _, n := range sortedNumbers(listed.Fragments) {
		i, ok := msToIdx[secondsToMillis(have[n].ProducerTimestamp)]
		if !ok {
			t.Fatalf("listed fragment %s has producer timestamp %v, not one of the upload's", n, have[n].ProducerTimestamp)
		}
		all = append(all, n)
		allIdx = append(allIdx, i)
	}
	t.Logf("%d fragments listed after the restart, %d acknowledged PERSISTED", len(all), len(persisted))
	out := filepath.Join(t.TempDir(), "persisted.mkv")
	awsCLI(t, p2.endpoint, nil, nil, append([]string{"kinesis-video-archived-media", "get-media-for-fragment-list",
		"--stream-name", stream, out, "--fragments"}, all...)...)
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := parseMediaOutput(raw)
	if err != nil {
		t.Fatalf("parsing GMFFL after restart: %v", err)
	}
	checkChunks(t, chunks, c, pb, allIdx, all)
	videoFrames := 0
	for _, i := range allIdx {
		videoFrames += len(pb.Frags[i].Cluster.Blocks)
	}
	if got := probeSummary(ffprobe(t, out))["h264"]; got != strconv.Itoa(videoFrames) {
		t.Errorf("ffprobe after restart: %q h264 frames, want %d", got, videoFrames)
	}
	// GetMedia EARLIEST after the restart reads the same fragments.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ms := getMediaStream(ctx, t, p2.endpoint, "/getMedia", map[string]any{"StreamName": stream,
		"StartSelector": map[string]any{"StartSelectorType": "EARLIEST"}},
		func(done []*mediaChunk) bool { return len(done) >= len(all) }, nil)
	if got := ms.fragmentNumbers(); ms.Status != 200 || !slices.Equal(got, all) {
		t.Errorf("getMedia EARLIEST after restart: status %d, %v, want %v (%v %v)", ms.Status, got, all, ms.EndErr, ms.ParsErr)
	}

	// The restarted server takes new uploads, numbering after everything
	// it had.
	maxBefore := ""
	for n := range have {
		maxBefore = max(maxBefore, n)
	}
	body := pb.retimed(t, []int{0, 1}, 60000)
	up := putMedia(t, p2.endpoint, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: body, Until: persistedAll(2)})
	nums := checkAcks(t, up, pb, []int{0, 1}, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode + 60000 })
	if nums[0] <= maxBefore {
		t.Errorf("fragment number after restart %s is not greater than %s from before", nums[0], maxBefore)
	}
}

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
		hdr := pb.Header()
		tr := pb.Tracks
		kids, err := mkvChildren(tr.data(pb.Raw))
		if err != nil || len(kids) != 1 || kids[0].ID != idTrackEntry {
			t.Fatalf("capture Tracks: %v %v", kids, err)
		}
		entry := kids[0].data(tr.data(pb.Raw))
		var entries [][]byte
		for n := 1; n <= 4; n++ {
			e := append([]byte(nil), entry...)
			fields, _ := mkvChildren(e)
			for _, f := range fields {
				switch f.ID {
				case idTrackNumber:
					if f.End-f.DataOff != 1 {
						t.Fatal("TrackNumber not 1 byte")
					}
					e[f.DataOff] = byte(n)
				case idTrackUID:
					e[f.End-1] += byte(n - 1)
				}
			}
			entries = append(entries, ebmlElem(idTrackEntry, e))
		}
		out := append([]byte(nil), hdr[:tr.Off]...)
		out = append(out, ebmlElem(idTracks, entries...)...)
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
		wantID    int // ERROR ack with this id; 0: any id of the table
		wantHTTP  []int
		errorType string
	}{
		{name: "NonKeyFrameStart", body: func(s int64) []byte {
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
			empty := ebmlElem(idCluster, ebmlElem(idTimecode, binary.BigEndian.AppendUint64(nil, uint64(int64(tc(1))+s))))
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
			out := append(rel.Header(), rel.FragBytes(0)...)
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
				return ebmlElem(idTags, ebmlElem(idTag, ebmlElem(idSimpleTag,
					ebmlElem(idTagName, []byte(name)), ebmlElem(idTagString, []byte("TEST_VALUE_X")))))
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
		// §4.1: exactly one Segment; §4.3: a second Segment is ERROR-acked.
		{name: "SecondSegment", body: func(s int64) []byte {
			els, err := mkvWalk(pb.Header())
			if err != nil || els[1].ID != idSegment {
				t.Fatalf("capture header: %v", err)
			}
			seg := pb.Raw[els[1].Off:els[1].DataOff]
			out := pb.retimed(t, []int{0}, s)
			out = append(out, seg...)
			return append(out, pb.buildBody(t, []byte{}, []int{1}, func(_, i int, f []byte, base int) {
				pb.setTimecode(t, i, f, base, uint64(int64(tc(i))+s))
			})...)
		}},
		{name: "UnknownStream", stream: "no-such-stream", wantHTTP: []int{404}, errorType: "ResourceNotFoundException",
			body: func(int64) []byte { return pb.Header() }},
		{name: "BadSignature", secret: "not-the-secret", wantHTTP: []int{401, 403},
			body: func(int64) []byte { return pb.Header() }},
		{name: "BadTimecodeType", tcType: "SOMETIMES", wantHTTP: []int{400}, errorType: "InvalidArgumentException",
			body: func(int64) []byte { return pb.Header() }},
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
			if tcase.wantHTTP != nil {
				if !slices.Contains(tcase.wantHTTP, res.Status) {
					t.Errorf("status %d, want %v; body %s\n%s", res.Status, tcase.wantHTTP, res.ErrBody, res.ackLog())
				}
				if len(res.Acks) != 0 {
					t.Errorf("acks before the HTTP error: %s", res.ackLog())
				}
				if tcase.errorType != "" {
					et := strings.SplitN(res.Header.Get("X-Amzn-Errortype"), ":", 2)[0]
					if et != tcase.errorType {
						t.Errorf("x-amzn-ErrorType %q, want %s", res.Header.Get("X-Amzn-Errortype"), tcase.errorType)
					}
					var body map[string]any
					if err := json.Unmarshal(res.ErrBody, &body); err != nil {
						t.Errorf("error body %q is not JSON: %v", res.ErrBody, err)
					}
				}
			} else {
				if res.Status != 200 {
					t.Fatalf("status %d (%s), want 200 and an ERROR ack", res.Status, res.ErrBody)
				}
				errs := res.events("ERROR")
				if len(errs) == 0 {
					t.Errorf("no ERROR ack (response ended: %v, %v)\n%s", res.RespEnded, res.ReadErr, res.ackLog())
				} else {
					id := errs[0].ErrorId
					switch {
					case tcase.wantID != 0 && id != tcase.wantID:
						t.Errorf("ErrorId %d, want %d\n%s", id, tcase.wantID, res.ackLog())
					case tcase.wantID == 0 && !errorIDs[id]:
						t.Errorf("ErrorId %d is not in the KVS ErrorId table\n%s", id, res.ackLog())
					}
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
			for try := 0; try < 10; try++ {
				listed = listAllRaw(t, ep, stream, 1795579974000-1000, 1795579974000+400000)
				if len(listed) >= len(want) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
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

// TestPutMediaReadErrors checks the read APIs' errors for unknown streams and
// bad arguments.
func TestPutMediaReadErrors(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	createStream(t, p.endpoint, "exists")
	rng := map[string]any{"FragmentSelectorType": "PRODUCER_TIMESTAMP",
		"TimestampRange": map[string]any{"StartTimestamp": 1700000000, "EndTimestamp": 1800000000}}
	cases := []struct {
		name, path string
		in         map[string]any
		status     int
		errType    string
	}{
		{"GetMediaUnknownStream", "/getMedia", map[string]any{"StreamName": "no-such-stream",
			"StartSelector": map[string]any{"StartSelectorType": "EARLIEST"}}, 404, "ResourceNotFoundException"},
		{"ListFragmentsUnknownStream", "/listFragments", map[string]any{"StreamName": "no-such-stream", "FragmentSelector": rng},
			404, "ResourceNotFoundException"},
		{"GMFFLUnknownStream", "/getMediaForFragmentList", map[string]any{"StreamName": "no-such-stream",
			"Fragments": []string{strings.Repeat("1", 32)}}, 404, "ResourceNotFoundException"},
		{"ListFragmentsNoSelector", "/listFragments", map[string]any{"StreamName": "exists"}, 400, "InvalidArgumentException"},
		{"GMFFLNoFragments", "/getMediaForFragmentList", map[string]any{"StreamName": "exists", "Fragments": []string{}},
			400, "InvalidArgumentException"},
		{"GetMediaNoSelector", "/getMedia", map[string]any{"StreamName": "exists"}, 400, "InvalidArgumentException"},
		{"GetMediaBadSelector", "/getMedia", map[string]any{"StreamName": "exists",
			"StartSelector": map[string]any{"StartSelectorType": "SOMETIME"}}, 400, "InvalidArgumentException"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, raw, h := callJSONH(t, p.endpoint, tc.path, tc.in, nil)
			et := strings.SplitN(h.Get("X-Amzn-Errortype"), ":", 2)[0]
			if status != tc.status || et != tc.errType {
				t.Errorf("POST %s %v: %d %q %s, want %d %s", tc.path, tc.in, status, et, raw, tc.status, tc.errType)
			}
		})
	}
}

// TestPutMediaSessions covers PutMedia session rules: the newest connection
// of a stream wins, a deleted stream ends its upload, and a stream without
// retention is acknowledged without PERSISTED.
func TestPutMediaSessions(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[0]
	pb := loadCapture(t, c.file)
	slow := loadChunkPlan(t, filepath.Join(testdataDir, c.file+".chunks.tsv"), 2, 100*time.Millisecond)

	// startSlow uploads the whole capture at half the real pace in the
	// background and signals after k PERSISTED acks.
	startSlow := func(stream string, k int) (<-chan struct{}, <-chan *putMediaResult) {
		reached := make(chan struct{})
		done := make(chan *putMediaResult, 1)
		count := 0
		go func() {
			done <- putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: pb.Raw,
				Plan: slow, Until: firstError, AckWait: 10 * time.Second, OnAck: func(a ack) {
					if a.EventType == "PERSISTED" {
						if count++; count == k {
							close(reached)
						}
					}
				}})
		}()
		return reached, done
	}
	waitReached := func(t *testing.T, reached <-chan struct{}, done <-chan *putMediaResult) {
		t.Helper()
		select {
		case <-reached:
		case res := <-done:
			t.Fatalf("upload ended early: status %d %s\n%s", res.Status, res.ErrBody, res.ackLog())
		case <-time.After(30 * time.Second):
			t.Fatal("no PERSISTED acks in 30 s")
		}
	}

	t.Run("NewestConnectionWins", func(t *testing.T) {
		t.Parallel()
		stream := "newest"
		createStream(t, ep, stream)
		reached, doneA := startSlow(stream, 2)
		waitReached(t, reached, doneA)
		// The producer reconnects with a new session while the old socket
		// may still be open (§4.4): accept the newest, end the older.
		bStart := time.Now()
		resB := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start,
			Body: pb.retimed(t, []int{0, 1, 2}, 100000), Until: persistedAll(3)})
		numsB := checkAcks(t, resB, pb, []int{0, 1, 2}, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode + 100000 })
		var resA *putMediaResult
		select {
		case resA = <-doneA:
		case <-time.After(20 * time.Second):
			t.Fatal("older upload never returned")
		}
		t.Logf("older session:\n%s", resA.ackLog())
		if resA.EndedAt.IsZero() || resA.EndedAt.Sub(bStart) > 5*time.Second {
			t.Errorf("the older PutMedia was not ended within 5 s of the newer one (ended %v after; data finished %v after)",
				resA.EndedAt.Sub(bStart), resA.DataEnd.Sub(bStart))
		}
		var want []string
		for _, a := range resA.events("PERSISTED") {
			want = append(want, a.FragmentNumber)
		}
		want = append(want, numsB...)
		have := sortedNumbers(listAllRaw(t, ep, stream, 1795579974000-1000, 1795579974000+200000))
		for _, n := range want {
			if !slices.Contains(have, n) {
				t.Errorf("PERSISTED fragment %s not listed (listed %v)", n, have)
			}
		}
	})

	t.Run("StreamDeletedMidUpload", func(t *testing.T) {
		t.Parallel()
		stream := "deleted"
		arn := createStream(t, ep, stream)
		reached, done := startSlow(stream, 2)
		waitReached(t, reached, done)
		delAt := time.Now()
		if status, raw := callJSON(t, ep, "/deleteStream", map[string]any{"StreamARN": arn}, nil); status != 200 {
			t.Fatalf("deleteStream: %d %s", status, raw)
		}
		var res *putMediaResult
		select {
		case res = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("upload never returned")
		}
		errs := res.events("ERROR")
		switch {
		case len(errs) > 0:
			if id := errs[0].ErrorId; id != 4008 && id != 4507 {
				t.Errorf("ERROR %d after the stream was deleted, want 4008 STREAM_NOT_ACTIVE\n%s", id, res.ackLog())
			}
			if d := errs[0].At.Sub(delAt); d > 5*time.Second {
				t.Errorf("ERROR came %v after the delete", d)
			}
		default:
			t.Errorf("no ERROR ack after the stream was deleted mid-upload (ended %v after the delete)\n%s",
				res.EndedAt.Sub(delAt), res.ackLog())
		}
		p.requireRunning(t)
	})

	t.Run("ByARN", func(t *testing.T) {
		t.Parallel()
		arn := createStream(t, ep, "byarn")
		res := putMedia(t, ep, putMediaReq{TimecodeType: c.tcType, Start: c.start, Body: pb.retimed(t, []int{0, 1}, 0),
			ExtraHeaders: map[string]string{"X-Amzn-Stream-Arn": arn}, Until: persistedAll(2)})
		checkAcks(t, res, pb, []int{0, 1}, func(i int) uint64 { return pb.Frags[i].Cluster.Timecode })
	})

	// A TimecodeScale of 2 ms: acks echo the timecodes as sent, producer
	// timestamps scale them.
	t.Run("TimecodeScale2ms", func(t *testing.T) {
		t.Parallel()
		rel := loadCapture(t, captures[1].file)
		hdr := rel.Header()
		els, _ := mkvWalk(hdr)
		scaleOff := -1
		for _, e := range els {
			if e.ID != idInfo {
				continue
			}
			kids, err := mkvChildren(e.data(hdr))
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range kids {
				if k.ID == idTimecodeScale && k.End-k.DataOff == 8 {
					scaleOff = e.DataOff + k.DataOff
				}
			}
		}
		if scaleOff < 0 {
			t.Fatal("no 8-byte TimecodeScale in the capture")
		}
		binary.BigEndian.PutUint64(hdr[scaleOff:], 2000000)
		stream := "scale2ms"
		createStream(t, ep, stream)
		res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "1795590000.000",
			Body: rel.buildBody(t, hdr, []int{0, 1, 2}, nil), Until: persistedAll(3)})
		nums := checkAcks(t, res, rel, []int{0, 1, 2}, func(i int) uint64 { return rel.Frags[i].Cluster.Timecode })
		listed := listAllRaw(t, ep, stream, 1795590000000-1000, 1795590000000+60000)
		byNum := map[string]fragment{}
		for _, f := range listed {
			byNum[f.FragmentNumber] = f
		}
		for i, n := range nums {
			want := 1795590000000 + 2*int64(rel.Frags[i].Cluster.Timecode)
			if got := secondsToMillis(byNum[n].ProducerTimestamp); got != want {
				t.Errorf("fragment %d (timecode %d × 2 ms): ProducerTimestamp %d ms, want %d", i, rel.Frags[i].Cluster.Timecode, got, want)
			}
			if l := byNum[n].FragmentLengthInMilliseconds; l < 3000 || l > 3700 {
				t.Errorf("fragment %d: FragmentLengthInMilliseconds %d, want ~3600 (1800 units of 2 ms)", i, l)
			}
		}
	})

	t.Run("BadProducerStartTimestamp", func(t *testing.T) {
		t.Parallel()
		stream := "badstart"
		createStream(t, ep, stream)
		res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: "yesterday",
			Body: pb.Header(), AckWait: 5 * time.Second})
		errs := res.events("ERROR")
		switch {
		case res.Status == 400:
			if et := strings.SplitN(res.Header.Get("X-Amzn-Errortype"), ":", 2)[0]; et != "InvalidArgumentException" {
				t.Errorf("400 with x-amzn-ErrorType %q", et)
			}
		case res.Status == 200 && len(errs) > 0 && errs[0].ErrorId == 4007:
		default:
			t.Errorf("x-amzn-producer-start-timestamp: yesterday → status %d %s, want 400 InvalidArgumentException or ERROR 4007\n%s",
				res.Status, res.ErrBody, res.ackLog())
		}
	})

	t.Run("NoRetention", func(t *testing.T) {
		t.Parallel()
		stream := "noretention"
		createStreamRetention(t, ep, stream, 0)
		res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start,
			Body: pb.retimed(t, []int{0, 1, 2}, 0), AckWait: 4 * time.Second})
		if res.Status != 200 {
			t.Fatalf("status %d %s", res.Status, res.ErrBody)
		}
		if n := len(res.events("RECEIVED")); n != 3 {
			t.Errorf("%d RECEIVED acks, want 3\n%s", n, res.ackLog())
		}
		if n := len(res.events("PERSISTED")) + len(res.events("ERROR")); n != 0 {
			t.Errorf("PERSISTED or ERROR acks on a stream without retention\n%s", res.ackLog())
		}
	})
}

// TestPutMediaHostileBodies sends bodies no producer would: the server
// answers with an ERROR ack, an HTTP error or by closing, never hangs or
// crashes, and keeps serving.
func TestPutMediaHostileBodies(t *testing.T) {
	t.Parallel()
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[0]
	pb := loadCapture(t, c.file)
	hdr := pb.Header()
	els, err := mkvWalk(hdr)
	if err != nil || len(els) < 2 || els[0].ID != idEBML || els[1].ID != idSegment {
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
		inner := cat(ebmlID(idTagName), []byte{0x81, 'X'})
		var deep []byte
		for k := depth; k >= 1; k-- {
			deep = append(deep, ebmlID(idSimpleTag)...)
			deep = append(deep, ebmlSize8(len(inner)+10*(k-1))...)
		}
		deep = append(deep, inner...)
		return cat(hdr, ebmlElem(idTags, ebmlElem(idTag, deep)), frag0)
	}
	if clusterHead[4] != 0xFF {
		t.Fatalf("capture cluster size is not the 1-byte unknown size")
	}

	cases := []struct {
		name string
		body []byte
	}{
		{"Empty", nil},
		{"OneByte", []byte{0x1A}},
		{"Random100", random(1, 100)},
		{"Random1M", random(2, 1<<20)},
		{"EBMLThenRandom", cat(ebmlHeader, random(3, 200<<10))},
		{"HeaderThenRandom", cat(hdr, random(4, 200<<10))},
		{"TruncatedHeader", hdr[:40]},
		{"TruncatedCluster", cat(hdr, frag0[:len(frag0)/2+7])},
		{"TruncatedMidFragment1", cat(hdr, frag0, pb.FragBytes(1)[:1000])},
		{"HugeEBMLHeader", cat(ebmlID(idEBML), huge, random(5, 1000))},
		{"HugeTracks", cat(segHeader, ebmlID(idTracks), huge, random(6, 1000))},
		{"HugeCluster", cat(hdr, ebmlID(idCluster), huge, clusterHead[5:], random(7, 5000))},
		{"HugeSimpleBlock", cat(hdr, clusterHead, []byte{0xA3}, huge, random(8, 5000))},
		{"HugeTagString", cat(hdr, frag0, ebmlID(idTags), []byte{0xFF}, ebmlID(idTag), []byte{0xFF}, ebmlID(idSimpleTag), huge, random(9, 100))},
		{"InvalidVint", cat(hdr, []byte{0x00, 0x00, 0x00, 0x00}, random(10, 1000))},
		{"DeepNesting", nested(20000)},
		{"SecondSegment", cat(hdr, frag0, segHeader[els[1].Off:], pb.FragBytes(1))},
		{"ManyEmptyClusters", func() []byte {
			b := append([]byte(nil), hdr...)
			for i := range 2000 {
				tcb := make([]byte, 8)
				binary.BigEndian.PutUint64(tcb, 1795579974135+uint64(i)*1000)
				b = append(b, ebmlElem(idCluster, ebmlElem(idTimecode, tcb))...)
			}
			return b
		}()},
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
			t.Logf("status %d, %d acks:\n%s", res.Status, len(res.Acks), log)
			switch {
			case res.Status >= 400 && res.Status < 500:
				t.Logf("HTTP %d %s", res.Status, res.ErrBody)
			case res.Status == 200 && len(errs) > 0:
				if !errorIDs[errs[0].ErrorId] {
					t.Errorf("ErrorId %d is not in the KVS table\n%s", errs[0].ErrorId, res.ackLog())
				}
				t.Logf("ERROR %d after %v", errs[0].ErrorId, errs[0].At.Sub(start).Round(time.Millisecond))
			case res.RespEnded:
				t.Logf("response ended (%v) after %d acks", res.ReadErr, len(res.Acks))
			case res.Status == 0 && res.ReadErr != nil:
				t.Logf("connection closed before a response: %v", res.ReadErr)
			default:
				t.Errorf("no ERROR ack, HTTP error or close within 10 s of the body's end: status %d\n%s", res.Status, res.ackLog())
			}
			for _, a := range res.Acks {
				if a.EventType == "ERROR" && a.ErrorId == 0 {
					t.Errorf("ERROR ack without ErrorId: %s", a)
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
