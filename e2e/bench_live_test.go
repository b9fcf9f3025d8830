package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// BenchmarkLiveLatency measures glass-to-glass latency on loopback from a
// frame's arrival at the box to its presentation in Chromium, for WebRTC
// (WHEP) and HLS side by side, in one run, on one camera.
//
// Method. An RTSP test camera (gortsplib, 30 fps, rtsptest.PublishLive)
// stamps each frame with the wall-clock time it sends it, as RTP time
// plus RTCP sender reports; the box turns that into the frame's producer
// time, so a frame's producer time is when it left the camera, which on
// loopback is when it reached the box (within a millisecond or two; the
// camera, its relay and the box share the machine's clock). In the page (the console's origin, signed
// in), two players of live.js run at once, one forced to WebRTC, one to
// HLS; requestVideoFrameCallback gives each presented frame's
// expectedDisplayTime (performance clock + timeOrigin = the same wall
// clock) and its identity: for WebRTC the RTP timestamp, which the box
// sets to uint32(producer ms × 90) (serve/FORMAT.md), unwrapped near now;
// for HLS the media time, mapped to producer time through hls.js's
// program date-time (the session's PDT comes from the producer times).
// latency = display wall time − producer time. The first 10 s (WebRTC's
// catch-up, HLS's start) are left out, then $KVSEDGE_LATENCY_SECONDS
// (default 60) are sampled. Reported: p50 and p95 per transport, in ms,
// and for WebRTC also up to the frame's receipt by the browser
// (receiveTime: what the box and the network take, the rest being the
// browser's jitter buffer, decoding and display).
// No assertion on the figures (a shared, noisy machine): the goal,
// WebRTC p95 ≤ 500 ms on loopback, is read from the output.
func BenchmarkLiveLatency(b *testing.B) {
	chromium := fixture.Tool(b, "chromium")
	secs := 60
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_LATENCY_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		data, err := os.ReadFile(fixture.DemoClipPath())
		if err != nil {
			b.Fatal(err)
		}
		src, err := ingest.NewDemoSource(data, 30)
		if err != nil {
			b.Fatal(err)
		}
		aus, _, sps, pps := src.Clip()
		rl := rtsptest.StartRelay(b, "")
		go rtsptest.PublishLive(ctx, b, rl.URL("lat"), aus, sps, pps, 30)
		dir := b.TempDir()
		cfgPath := filepath.Join(dir, "kvsedge.yaml")
		if err := os.WriteFile(cfgPath, []byte("cameras:\n  - stream: lat\n    url: "+rl.URL("lat")+"\n    retention_hours: 1\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		p := startKvsedge(b, streamEnv(filepath.Join(dir, "data")), "--listen", "127.0.0.1:0", "--config", cfgPath)
		newSDK(b, p.endpoint).waitFragments(b, "lat", 2, 30*time.Second)

		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
			chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1280, 800))
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelB := chromedp.NewContext(actx)
		bctx, cancelT := context.WithTimeout(bctx, time.Duration(secs+120)*time.Second)
		if err := chromedp.Do(bctx, chromedp.Navigate(p.endpoint+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")),
			chromedp.SendKeys(chromedp.CSS("#akid"), e2eAKID), chromedp.SendKeys(chromedp.CSS("#secret"), e2eSecret),
			chromedp.SetValue(chromedp.CSS("#region"), "us-west-2"), chromedp.Click(chromedp.CSS("#login-form button")),
			chromedp.WaitVisible(chromedp.CSS("#app"))); err != nil {
			b.Fatal(err)
		}
		const setup = `(() => {
			window.lat = { webrtc: [], hls: [], recv: [] };
			const add = (key, only, toProducer) => {
				const v = document.createElement('video');
				v.muted = true; v.playsInline = true; v.autoplay = true;
				v.style = 'position:fixed;top:0;width:320px;height:180px;z-index:9;left:' + (key === 'hls' ? 330 : 0) + 'px';
				document.body.append(v);
				const h = kvsLive.start(v, 'lat', { api, only, hlsBody: { StreamName: 'lat', PlaybackMode: 'LIVE', DiscontinuityMode: 'NEVER',
					DisplayFragmentTimestamp: 'ALWAYS', HLSFragmentSelector: { FragmentSelectorType: 'PRODUCER_TIMESTAMP' } } });
				const cb = (now, m) => {
					const p = toProducer(m, h, v);
					if (p) lat[key].push(performance.timeOrigin + m.expectedDisplayTime - p);
					if (p && key === 'webrtc' && m.receiveTime) lat.recv.push(performance.timeOrigin + m.receiveTime - p);
					v.requestVideoFrameCallback(cb);
				};
				v.requestVideoFrameCallback(cb);
			};
			add('webrtc', 'webrtc', (m) => m.rtpTimestamp !== undefined ? kvsLive.rtpToMs(m.rtpTimestamp) : null);
			add('hls', 'hls', (m, h, v) => { const d = h.playingDate; return d ? d.getTime() + (m.mediaTime - v.currentTime) * 1000 : null; });
			return true; })()`
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](setup)); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`(lat.webrtc = [], lat.hls = [], lat.recv = [], true)`)); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		time.Sleep(time.Duration(secs) * time.Second)
		b.StopTimer()
		res, err := chromedp.Run(bctx, chromedp.Evaluate[map[string][]float64](`lat`))
		if err != nil {
			b.Fatal(err)
		}
		for _, key := range []string{"webrtc", "hls"} {
			v := slices.Clone(res[key])
			if len(v) < secs {
				b.Fatalf("%s: %d frames presented in %d s", key, len(v), secs)
			}
			slices.Sort(v)
			b.ReportMetric(v[len(v)/2], key+"-p50-ms")
			b.ReportMetric(v[len(v)*95/100], key+"-p95-ms")
			b.ReportMetric(float64(len(v))/float64(secs), key+"-fps")
		}
		// Of WebRTC's latency, the part before the browser had the frame
		// (the box and the network): RTCVideoFrameMetadata.receiveTime.
		if v := slices.Sorted(slices.Values(res["recv"])); len(v) > 0 {
			b.ReportMetric(v[len(v)/2], "webrtc-received-p50-ms")
			b.ReportMetric(v[len(v)*95/100], "webrtc-received-p95-ms")
		}
		cancelT()
		cancelB()
		cancelA()
		time.Sleep(time.Second) // the box logs the viewer's figures when it leaves
		for _, l := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(l, "WebRTC viewer left") {
				b.Log(l)
			}
		}
		cancel()
	}
}
