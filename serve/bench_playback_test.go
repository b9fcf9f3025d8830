package serve

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// captureFragments parses a capture into fragments.
func captureFragments(tb testing.TB, name string) []*mkv.Fragment {
	c := loadCapture(tb, name)
	rd := mkv.NewReader(bytes.NewReader(c.data), mkv.Options{})
	var out []*mkv.Fragment
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			tb.Fatal(err)
		}
		if ev == mkv.EventFragmentEnd {
			out = append(out, rd.TakeFragment())
		}
	}
}

func sessionURL(tb testing.TB, ts *testServer, body string) string {
	st, _, b := ts.raw(tb, "/getHLSStreamingSessionURL", []byte(body), time.Now(), testSecret)
	var out struct{ HLSStreamingSessionURL string }
	if st != 200 || json.Unmarshal(b, &out) != nil {
		tb.Fatalf("session: %d %s", st, b)
	}
	return out.HLSStreamingSessionURL
}

func mediaPlaylistURL(tb testing.TB, ts *testServer, master string) string {
	resp, err := http.Get(master)
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return ts.URL + "/hls/v1/" + strings.TrimSpace(strings.Split(string(b), "\n")[4])
}

// BenchmarkHLSLiveLatency: time from a fragment being received (live
// readers can have it) to the live media playlist listing it, polling the
// playlist as a player would, back to back. Goal ≤ 50 ms.
func BenchmarkHLSLiveLatency(b *testing.B) {
	ts := startServerWith(b, b.TempDir(), nil)
	createMediaStream(b, ts, "cam", 24)
	frags := captureFragments(b, "real-producer-h264-absolute")
	sess, err := ts.eng.BeginIngest(engine.StreamRef{Name: "cam"})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	producer := time.Now().UnixMilli()
	push := func(i int) fragment.Number {
		f := *frags[i%len(frags)]
		f.Buf = append(engine.NewMediaBuffer(), f.Buf...)
		n, serverMs, err := sess.StartFragment()
		if err != nil {
			b.Fatal(err)
		}
		producer += 2000
		rec, err := sess.Receive(n, serverMs, producer, &f)
		if err != nil {
			b.Fatal(err)
		}
		go sess.Persist(rec.Fragment)
		return n
	}
	push(0)
	playlist := mediaPlaylistURL(b, ts, sessionURL(b, ts, `{"StreamName":"cam","PlaybackMode":"LIVE"}`))
	var lat []time.Duration
	i := 1
	for b.Loop() {
		t0 := time.Now()
		n := push(i).String()
		i++
		for {
			resp, err := http.Get(playlist)
			if err != nil {
				b.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if bytes.Contains(body, []byte(n)) {
				break
			}
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkHLSOnDemandPlaylist24h: the ON_DEMAND media playlist of a 24 h
// range holding 86,400 one-second fragments (the playlist lists the first
// 5,000, KVS's maximum). Goal ≤ 100 ms.
func BenchmarkHLSOnDemandPlaylist24h(b *testing.B) {
	ts := startServerWith(b, b.TempDir(), nil)
	createMediaStream(b, ts, "day", 24)
	// A real header and a tiny key-frame fragment, stored 86,400 times.
	src := captureFragments(b, "real-producer-h264-absolute")[0]
	day := time.Now().Add(-25 * time.Hour).UnixMilli()
	var hb mkv.FragmentBuilder
	hdr, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: src.Header.Tracks[0].CodecPrivate, Width: 640, Height: 480}})
	if err != nil {
		b.Fatal(err)
	}
	_ = hb.Start(hdr, 0, 64)
	_ = hb.AddBlock(0, 0, true, []byte{0, 0, 0, 1, 0x65})
	_ = hb.AddBlock(0, 900, false, []byte{0, 0, 0, 1, 0x41})
	f, _ := hb.Finish()
	hid := xxhash.Sum64(hdr.Raw)
	start := time.Now()
	for i := 0; i < 86400; i++ {
		m := fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ProducerMs: day + int64(i)*1000, ServerMs: day + int64(i)*1000,
			DurationMs: 1000, HeaderID: hid, ClusterLen: uint32(f.ClusterLen), MediaLen: uint32(len(f.Buf)), Frames: 2}
		m.Digest = engine.ContentDigest(f.Buf[:f.ClusterLen], 2)
		media := append(engine.NewMediaBufferFor(len(f.Buf)), f.Buf...)
		if _, err := ts.eng.ImportFragment(engine.StreamRef{Name: "day"}, m, hdr.Raw, media); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(time.Since(start).Seconds(), "setup-s")
	playlist := mediaPlaylistURL(b, ts, sessionURL(b, ts, fmt.Sprintf(`{"StreamName":"day","PlaybackMode":"ON_DEMAND","MaxMediaPlaylistFragmentResults":5000,"HLSFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":%d,"EndTimestamp":%d}}}`,
		day/1000, day/1000+86399)))
	b.ResetTimer()
	for b.Loop() {
		resp, err := http.Get(playlist)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := bytes.Count(body, []byte("#EXTINF")); n != 5000 {
			b.Fatalf("%d entries", n)
		}
	}
}

// BenchmarkGetClip: MB/s of GetClip over the relative capture uploaded 8
// times (about 42 MB of media).
func BenchmarkGetClip(b *testing.B) {
	ts := startServerWith(b, b.TempDir(), nil)
	createMediaStream(b, ts, "cam", 24)
	rel := loadCapture(b, "real-producer-h264-aac-relative")
	base := time.Now().Add(-time.Hour).Unix()
	for i := range 8 {
		uploadAll(b, ts, "cam", "RELATIVE", fmt.Sprintf("%d.000", base+int64(i)*10), rel)
	}
	body := fmt.Sprintf(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":%d,"EndTimestamp":%d}}}`, base-1, base+100)
	var bytesOut int64
	var el time.Duration
	for b.Loop() {
		t0 := time.Now()
		resp, err := http.DefaultClient.Do(ts.signed(b, "/getClip", []byte(body), []byte(body), time.Now(), testSecret))
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		el += time.Since(t0)
		bytesOut += n
	}
	b.ReportMetric(float64(bytesOut)/1e6/el.Seconds(), "MB/s")
}
