package e2e

// GetMedia end-to-end tests of live delivery (kvs-api.md §5, §10.3): NOW and
// EARLIEST consumers following an upload, a stalled consumer, and chunks
// that carry their own session's Tracks.

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestGetMediaLive checks live delivery: a NOW consumer started before the
// producer, and an EARLIEST consumer that catches up with an upload in
// progress and then follows it.
func TestGetMediaLive(t *testing.T) {
	t.Parallel()
	fixture.Tool(t, "aws")
	p := startKvsedge(t, mediaEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := captures[1] // relative, H.264 + AAC
	pb := loadCapture(t, c.file)
	stream := "live"
	createStream(t, ep, stream)
	n := len(pb.Frags)
	plan := func(speedup int) []chunkSpec {
		return loadChunkPlan(t, c.file, speedup, 100*time.Millisecond)
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
	answered := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		nowCh <- getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
			"StartSelector": map[string]any{"StartSelectorType": "NOW"}}, nil, nil, mediaOpt{Answered: answered})
	}()
	<-answered // the server has opened the reader's cursor
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
	answered := make(chan struct{})
	msCh := make(chan *mediaStream, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go func() {
		msCh <- getMediaStream(ctx, t, ep, "/getMedia", map[string]any{"StreamName": stream,
			"StartSelector": map[string]any{"StartSelectorType": "NOW"}}, nil, nil, mediaOpt{RcvBuf: 4096, Gate: gate, Answered: answered})
	}()
	<-answered // the server has opened the reader's cursor
	res := putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: c.tcType, Start: c.start, Body: pb.Raw,
		Plan:  loadChunkPlan(t, c.file, 8, 50*time.Millisecond),
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
