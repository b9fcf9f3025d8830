package serve

// Media-path benchmarks over a real server on loopback (make bench), with
// the tests' helpers (testserver_test.go, media_util_test.go). They report
// figures with b.ReportMetric and assert nothing about speed. The store
// lives under b.TempDir() (the real disk on the development VMs; set
// TMPDIR to measure another).

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// uploadAll replays a capture with no pacing and returns how many
// fragments were PERSISTED; any ERROR fails the benchmark.
func uploadAll(tb testing.TB, ts *testServer, stream, tcType, start string, c capture) int {
	tb.Helper()
	res := putUpload(tb, ts, stream, tcType, start, c, 0)
	if res.status != 200 || len(res.events("ERROR")) > 0 {
		tb.Fatalf("upload to %s: status %d, ERROR acks %+v", stream, res.status, res.events("ERROR"))
	}
	return len(res.events("PERSISTED"))
}

// BenchmarkPutMediaIngest replays the real producer's absolute capture
// (10 MB, 11 fragments) through the real HTTP server with no pacing, into
// a fresh stream each op (a replay into the same stream would be
// recognised as re-sent fragments and not stored again), and waits for
// every PERSISTED ack. Metric: MB/s of request body.
func BenchmarkPutMediaIngest(b *testing.B) {
	c := loadCapture(b, "real-producer-h264-absolute")
	want := len(mkvcheck.MustParseBody(b, c.data).Frags)
	s := startServerWith(b, b.TempDir(), nil)
	var el time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		name := fmt.Sprintf("cam-%d", i)
		createMediaStream(b, s, name, 24)
		i++
		b.StartTimer()
		t0 := time.Now()
		if n := uploadAll(b, s, name, "ABSOLUTE", "1795579974.135", c); n != want {
			b.Fatalf("%d PERSISTED, want %d", n, want)
		}
		el += time.Since(t0)
	}
	b.ReportMetric(float64(i)*float64(len(c.data))/1e6/el.Seconds(), "MB/s")
}

// BenchmarkGetMediaArchiveCatchUp stores about 52 MB in one stream (the
// absolute capture once and the relative one 8 times at different
// producer start times: 59 fragments), restarts the server so the hot
// ring is empty and every fragment comes from the store, then times
// GetMedia EARLIEST over loopback: a Go HTTP client reads the chunked body
// up to its last fragment (the length is learnt by one untimed read; the
// timed reads do not wait for the live-edge idle timeout). The store's
// files are in the page cache (just written): this is the server's read
// path, not the disk's. Metric: MB/s of response body (goal ≥ 500).
func BenchmarkGetMediaArchiveCatchUp(b *testing.B) {
	dir := b.TempDir()
	s := startServerWith(b, dir, nil)
	createMediaStream(b, s, "cam", 24)
	abs := loadCapture(b, "real-producer-h264-absolute")
	rel := loadCapture(b, "real-producer-h264-aac-relative")
	frags := uploadAll(b, s, "cam", "ABSOLUTE", "1795579974.135", abs)
	for i := range 8 {
		frags += uploadAll(b, s, "cam", "RELATIVE", fmt.Sprintf("%d.500", 1795580000+20*i), rel)
	}
	s.stop()

	s = startServerWith(b, dir, func(o *Options) { o.GetMediaIdleTimeout = 200 * time.Millisecond })
	const req = `{"StreamName":"cam","StartSelector":{"StartSelectorType":"EARLIEST"}}`
	st, body := getMedia(b, s, req)
	if st != 200 {
		b.Fatalf("GetMedia: %d", st)
	}
	if n := len(mkvcheck.MustParseMedia(b, body)); n != frags {
		b.Fatalf("GetMedia returned %d chunks, %d fragments were stored", n, frags)
	}
	total := int64(len(body))

	var el time.Duration
	for b.Loop() {
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(s.signed(b, "/getMedia", []byte(req), []byte(req), time.Now(), testSecret))
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyN(io.Discard, resp.Body, total)
		el += time.Since(t0)
		resp.Body.Close()
		if err != nil || n != total {
			b.Fatalf("read %d of %d bytes: %v", n, total, err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(total)/1e6/el.Seconds(), "MB/s")
	b.ReportMetric(float64(total)/1e6, "MB/read")
}
