package e2e

// Durability of acknowledged media across a SIGKILL of the server.

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// TestMediaDurabilitySIGKILL kills the server mid-upload and checks that
// every fragment acknowledged PERSISTED survives the restart.
func TestMediaDurabilitySIGKILL(t *testing.T) {
	t.Parallel()
	fixture.Tool(t, "aws")
	fixture.Tool(t, "ffprobe")
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
			Plan:    loadChunkPlan(t, c.file, 3, 100*time.Millisecond),
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
	chunks, err := mkvcheck.ParseMedia(raw)
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
