package e2e

// Read-back of an uploaded capture through every read API: ListFragments
// (CLI and signed, ranges, paging), GetMedia (CLI, selectors, continuation
// token), GetMediaForFragmentList (CLI, order asked, by ARN), checked
// against the capture with internal/mkvcheck, ffprobe and mkvinfo; and the
// read APIs' errors. kvs-api.md §5–7, §10.3.

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

func checkListFragments(t *testing.T, ep, stream string, c capture, pb *producerBody, nums []string, upStart, doneAt time.Time) {
	first, last := c.producerMs(pb, 0), c.producerMs(pb, c.frags-1)
	fullRange := producerRange(first/1000-1, last/1000+2)

	// List until everything is there (eventually consistent, ≤ ~1 s).
	var out listFragmentsOut
	pollUntil(5*time.Second, func() bool {
		out = listFragmentsCLI(t, ep, stream, "--fragment-selector", fullRange)
		return len(out.Fragments) >= len(nums)
	})
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
	for k, ch := range chunks {
		i := idxs[k]
		// Complete, standalone (Info, Tracks), one cluster, the five
		// AWS_KINESISVIDEO_* tags in their places and forms.
		if err := ch.CheckLayout(); err != nil {
			t.Fatalf("chunk %d (fragment %s) is not a §10.3 GetMedia chunk: %v", k, ch.FragmentNumber(), err)
		}
		cl := ch.Clusters[0]
		if cl.Timecode != pb.Frags[i].Cluster.Timecode {
			t.Errorf("chunk %d: cluster Timecode %d, want %d as sent", k, cl.Timecode, pb.Frags[i].Cluster.Timecode)
		}
		if cl.Digest() != pb.Frags[i].Cluster.Digest() {
			t.Errorf("chunk %d: its %d SimpleBlocks differ from the %d sent in cluster %d", k, len(cl.Blocks), len(pb.Frags[i].Cluster.Blocks), i)
		}
		if pt, _ := mkvcheck.ParseSeconds(ch.PreTags[mkv.TagProducerTimestamp]); pt != c.producerMs(pb, i) {
			t.Errorf("chunk %d: PRODUCER_TIMESTAMP %q, want %d ms", k, ch.PreTags[mkv.TagProducerTimestamp], c.producerMs(pb, i))
		}
		if st, _ := mkvcheck.ParseSeconds(ch.PreTags[mkv.TagServerTimestamp]); st < 1.7e12 {
			t.Errorf("chunk %d: SERVER_TIMESTAMP %q", k, ch.PreTags[mkv.TagServerTimestamp])
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
	chunks, err := mkvcheck.ParseMedia(raw)
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
		if st, _ := mkvcheck.ParseSeconds(ch.PreTags["AWS_KINESISVIDEO_SERVER_TIMESTAMP"]); st != listed[ch.FragmentNumber()] {
			t.Errorf("chunk %d: SERVER_TIMESTAMP %d ms, ListFragments says %d ms", k, st, listed[ch.FragmentNumber()])
		}
	}

	want := inputFrames(t, pb)
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
	chunks, err := mkvcheck.ParseMedia(raw)
	if err != nil {
		t.Fatalf("parsing GMFFL output: %v", err)
	}
	idxs := make([]int, len(nums))
	for i := range idxs {
		idxs[i] = i
	}
	checkChunks(t, chunks, c, pb, idxs, nums)
	want := inputFrames(t, pb)
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
	chunks, err = mkvcheck.ParseMedia(raw)
	if err != nil {
		t.Fatalf("parsing reversed GMFFL output: %v", err)
	}
	checkChunks(t, chunks, c, pb, revIdx, rev)
	mkvinfo(t, out2)

	// An unknown fragment number is an error, not an empty 200.
	bogus := strings.Repeat("9", 32)
	status, raw, h := callJSONH(t, ep, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": []string{bogus}}, nil)
	chunks, _ = mkvcheck.ParseMedia(raw)
	checkUnknownFragment(t, "getMediaForFragmentList of unknown fragment "+bogus, status, h, raw, chunks)
}

// checkUnknownFragment asserts the answer to a read of a fragment number
// the stream does not have. The spec names no single HTTP error for it, but
// fixes the rest: an error of the operation's model with the status of its
// shape (§1.5: 404 ResourceNotFoundException, 400 InvalidArgumentException),
// or a 200 whose body carries an error chunk with ERROR_ID 4000, "requested
// fragment not found" (§5) — never a silent 200.
func checkUnknownFragment(t *testing.T, what string, status int, h http.Header, body []byte, chunks []*mediaChunk) {
	t.Helper()
	if status != 200 {
		shapes := map[string]int{"ResourceNotFoundException": 404, "InvalidArgumentException": 400}
		et := strings.SplitN(h.Get("X-Amzn-Errortype"), ":", 2)[0]
		if want, ok := shapes[et]; !ok || status != want {
			t.Errorf("%s: %d, x-amzn-ErrorType %q, %s; want 404 ResourceNotFoundException, 400 InvalidArgumentException or an error chunk with ERROR_ID 4000",
				what, status, et, body)
		}
		t.Logf("%s: %d %s", what, status, et)
		return
	}
	for _, ch := range chunks {
		if id, ok := ch.ErrorID(); ok {
			if id != 4000 {
				t.Errorf("%s: error chunk with ERROR_ID %d (%s), want 4000", what, id, ch.Tag(mkv.TagErrorCode))
			}
			return
		}
	}
	t.Errorf("%s: 200 with %d bytes, %d chunks and no error chunk", what, len(body), len(chunks))
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
	// An unknown AfterFragmentNumber: an error of the model, or an error
	// chunk (§5, ERROR_ID 4000), not a silent stream.
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
		checkUnknownFragment(t, "getMedia after unknown fragment "+bogus, ms.Status, ms.Header, ms.Body, ms.Chunks)
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
