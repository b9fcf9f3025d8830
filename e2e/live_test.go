package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// livePutMedia is a PutMedia producer that streams each frame as it is
// made (as the KVS C producer does), not fragment by fragment: the demo
// clip at fps, ABSOLUTE timecodes from the wall clock, a fragment per GOP.
// It runs until ctx ends.
func livePutMedia(ctx context.Context, t testing.TB, endpoint, stream string, fps int) {
	t.Helper()
	data, err := os.ReadFile(fixture.DemoClipPath())
	if err != nil {
		t.Fatal(err)
	}
	src, err := ingest.NewDemoSource(data, float64(fps))
	if err != nil {
		t.Fatal(err)
	}
	aus, keys, sps, pps := src.Clip()
	// AVCDecoderConfigurationRecord: version, profile, compatibility,
	// level, NAL length size 4, one SPS, one PPS.
	cp := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1, byte(len(sps) >> 8), byte(len(sps))}
	cp = append(cp, sps...)
	cp = append(cp, 1, byte(len(pps)>>8), byte(len(pps)))
	cp = append(cp, pps...)
	hdr, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: cp, Width: 640, Height: 360}})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/putMedia", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-producer-start-timestamp", fmt.Sprintf("%.3f", float64(time.Now().UnixMilli())/1000))
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	if err := v4.NewSigner().SignHTTP(ctx, aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: e2eSecret}, req,
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "kinesisvideo", "us-west-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body) // the acks
	}()
	go func() {
		defer pw.Close()
		if _, err := pw.Write(hdr.Raw); err != nil {
			return
		}
		var b mkv.FragmentBuilder
		sent := 0
		flush := func() bool {
			buf := b.Buf()
			_, err := pw.Write(buf[sent:])
			sent = len(buf)
			return err == nil
		}
		interval := time.Second / time.Duration(fps)
		start := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			at := start.Add(time.Duration(i) * interval)
			time.Sleep(time.Until(at))
			ms := at.UnixMilli()
			au, key := aus[i%len(aus)], keys[i%len(aus)]
			if key || !b.Started() {
				if !key {
					continue
				}
				if b.Started() {
					f, err := b.Finish()
					if err != nil {
						return
					}
					if _, err := pw.Write(f.Buf[sent:]); err != nil {
						return
					}
				}
				if err := b.Start(hdr, ms, 1<<16); err != nil {
					return
				}
				sent = 0
			}
			var parts [][]byte
			for _, n := range au {
				parts = append(parts, []byte{byte(len(n) >> 24), byte(len(n) >> 16), byte(len(n) >> 8), byte(len(n))}, n)
			}
			if err := b.AddBlock(0, ms, key, parts...); err != nil {
				return
			}
			if !flush() {
				return
			}
		}
	}()
}

// blockICE is a page script that removes the candidates from every
// remote description a peer connection is given while window.iceBlocked
// is true (from the start; the test sets it false to restore the path).
const blockICE = `(() => {
	window.iceBlocked = true;
	const set = RTCPeerConnection.prototype.setRemoteDescription;
	RTCPeerConnection.prototype.setRemoteDescription = function (d) {
		if (window.iceBlocked && d && d.sdp) d = { type: d.type, sdp: d.sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate')).join('\r\n') };
		return set.call(this, d);
	};
})()`

// TestConsoleLiveWebRTC: a box with four RTSP cameras and one PutMedia
// producer; the console's wall shows five tiles playing over WebRTC
// (frames decoded keep increasing, no player error). With ICE refused in
// the browser (blockICE), every tile falls back to HLS by itself and
// still plays; once the path is restored, every tile and the single view
// go back to WebRTC by themselves (live.js retries behind HLS), still
// without a player error. Screenshots of both walls are saved (in
// $KVSEDGE_ARTIFACTS, else the test's temp dir).
func TestConsoleLiveWebRTC(t *testing.T) {
	chromium := fixture.Tool(t, "chromium")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cams := []string{"cam1", "cam2", "cam3", "cam4"}
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, cams...)
	dir := t.TempDir()
	cfg := "cameras:\n"
	for _, c := range cams {
		cfg += "  - stream: " + c + "\n    url: " + rl.URL(c) + "\n    retention_hours: 1\n"
	}
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startKvsedge(t, streamEnv(filepath.Join(dir, "data")), "--listen", "127.0.0.1:0", "--config", cfgPath)
	c := newSDK(t, p.endpoint)
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("phone"), DataRetentionInHours: aws.Int32(1)}); err != nil {
		t.Fatal(err)
	}
	livePutMedia(ctx, t, p.endpoint, "phone", 15)
	for _, s := range append(cams, "phone") {
		c.waitFragments(t, s, 1, 30*time.Second)
	}
	streams := append(cams, "phone")

	wall := func(name string, blockWebRTC bool, transport string) {
		t.Helper()
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
			chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1280, 1000))
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		defer cancelA()
		bctx, cancelB := chromedp.NewContext(actx)
		defer cancelB()
		bctx, cancelT := context.WithTimeout(bctx, 240*time.Second)
		defer cancelT()
		eval := func(expr string) (bool, error) { return chromedp.Run(bctx, chromedp.Evaluate[bool](expr)) }
		evalString := func(expr string) string { v, _ := chromedp.Run(bctx, chromedp.Evaluate[string](expr)); return v }
		state := func() string {
			return evalString(`[...document.querySelectorAll('.tile')].map(el => { const v = el.querySelector('video');
				const q = v.getVideoPlaybackQuality(); return el.dataset.stream + ':' + (v.dataset.transport || '-') + ' (tries ' + (v.dataset.webrtcTries || '-') + '):' + q.totalVideoFrames +
				':' + el.querySelector('.live').textContent + ':' + el.querySelector('.health').textContent; }).join(' | ')`)
		}
		waitJS := func(what, cond string, within time.Duration) {
			t.Helper()
			for deadline := time.Now().Add(within); ; time.Sleep(250 * time.Millisecond) {
				if ok, err := eval(cond); err == nil && ok {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %s: not within %v; tiles: %s", name, what, within, state())
				}
			}
		}
		if blockWebRTC {
			// ICE refused in the browser: the box's candidates are cut
			// from every answer, so no connectivity check can succeed (as
			// with UDP blocked between browser and box).
			if err := chromedp.Do(bctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: blockICE})
				return err
			})); err != nil {
				t.Fatal(err)
			}
		}
		if err := chromedp.Do(bctx, chromedp.Navigate(p.endpoint+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")),
			chromedp.SendKeys(chromedp.CSS("#akid"), e2eAKID), chromedp.SendKeys(chromedp.CSS("#secret"), e2eSecret),
			chromedp.SetValue(chromedp.CSS("#region"), "us-west-2"), chromedp.Click(chromedp.CSS("#login-form button"))); err != nil {
			t.Fatalf("%s: sign in: %v", name, err)
		}
		waitJS("signed in", `!document.getElementById('app').hidden`, 15*time.Second)
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`#wall-sizes button[data-grid="9"]`))); err != nil {
			t.Fatal(err)
		}
		list := `['` + strings.Join(streams, `','`) + `']`
		// Every tile plays over the expected transport and says so.
		waitJS("five tiles play over "+transport, `(() => { const want = `+list+`; return want.every((s) => {
			const el = document.querySelector('.tile[data-stream="' + s + '"]'); if (!el) return false;
			const v = el.querySelector('video');
			return v.dataset.transport === '`+transport+`' && v.getVideoPlaybackQuality().totalVideoFrames > 10 && !v.error &&
				el.querySelector('.live').textContent.includes('`+map[string]string{"webrtc": "WebRTC", "hls": "HLS"}[transport]+`'); }); })()`, 60*time.Second)
		// Frames keep being decoded on every tile, with no player error.
		frames := `(() => Object.fromEntries(` + list + `.map((s) => [s, document.querySelector('.tile[data-stream="' + s + '"] video').getVideoPlaybackQuality().totalVideoFrames])))()`
		before, err := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](frames))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		after, _ := chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](frames))
		for _, s := range streams {
			if after[s] <= before[s]+10 {
				t.Fatalf("%s: tile %s decoded %v frames then %v 3 s later; tiles: %s", name, s, before[s], after[s], state())
			}
		}
		if errs := evalString(`[...document.querySelectorAll('.tile')].filter(el => el.querySelector('video').error ||
			/error|no live video/.test(el.querySelector('.health').textContent)).map(el => el.dataset.stream).join(',')`); errs != "" {
			t.Fatalf("%s: player errors on %s; tiles: %s", name, errs, state())
		}
		if transport == "webrtc" {
			// /metrics counts the viewers and each stream's live frames.
			m := getText(t, p.endpoint+"/metrics")
			if v := textMetric(m, "kvsedge_webrtc_sessions"); v < 5 {
				t.Fatalf("kvsedge_webrtc_sessions %v with five WebRTC tiles:\n%s", v, grepLines(m, "kvsedge_webrtc"))
			}
			for _, s := range streams {
				if v := textMetric(m, `kvsedge_live_frames_total{stream="`+s+`"}`); v < 30 {
					t.Fatalf("kvsedge_live_frames_total of %s: %v:\n%s", s, v, grepLines(m, "kvsedge_live"))
				}
			}
		}
		t.Logf("%s: %s", name, state())
		shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(80))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		out := os.Getenv("KVSEDGE_ARTIFACTS")
		if out == "" {
			out = t.TempDir()
		}
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(out, name+".jpg")
		if err := os.WriteFile(path, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s screenshot: %s (%d bytes)", name, path, len(shot))

		// The single view of a tile plays live over the same transport,
		// and says so.
		label := map[string]string{"webrtc": "live (WebRTC)", "hls": "live (HLS)"}[transport]
		if err := chromedp.Do(bctx, chromedp.Click(chromedp.CSS(`.tile[data-stream="phone"]`))); err != nil {
			t.Fatal(err)
		}
		waitJS("the single view plays "+label, `(() => { const v = document.getElementById('video');
			return document.getElementById('viewer-title').textContent === 'phone' && v.dataset.transport === '`+transport+`' &&
				document.getElementById('player-state').textContent === '`+label+`' && v.getVideoPlaybackQuality().totalVideoFrames > 10 && !v.error; })()`, 40*time.Second)
		n1, _ := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames`))
		time.Sleep(2 * time.Second)
		n2, _ := chromedp.Run(bctx, chromedp.Evaluate[float64](`document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames`))
		if n2 <= n1+5 {
			t.Fatalf("%s: the single view decoded %v frames then %v 2 s later", name, n1, n2)
		}
		if !blockWebRTC {
			return
		}
		// The path comes back: the players retry WebRTC behind HLS and
		// take it once it decodes (the first retry 10 s after the
		// fallback, then every 20, 40, 60 s).
		if _, err := eval(`(window.iceBlocked = false, true)`); err != nil {
			t.Fatal(err)
		}
		waitJS("every tile and the single view back on WebRTC", `(() => { const want = `+list+`; return want.every((s) => {
			const el = document.querySelector('.tile[data-stream="' + s + '"]'); if (!el) return false;
			const v = el.querySelector('video');
			return v.dataset.transport === 'webrtc' && el.querySelector('.live').textContent.includes('WebRTC') && !v.error; }) &&
			document.getElementById('video').dataset.transport === 'webrtc' && document.getElementById('player-state').textContent === 'live (WebRTC)'; })()`, 120*time.Second)
		webrtcFrames := `(() => Object.fromEntries(` + list + `.map((s) => [s, document.querySelector('.tile[data-stream="' + s + '"] video').getVideoPlaybackQuality().totalVideoFrames]).concat([['single', document.getElementById('video').getVideoPlaybackQuality().totalVideoFrames]])))()`
		before, err = chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](webrtcFrames))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		after, _ = chromedp.Run(bctx, chromedp.Evaluate[map[string]float64](webrtcFrames))
		for _, s := range append(streams, "single") {
			if after[s] <= before[s]+10 {
				t.Fatalf("%s, path restored: %s decoded %v frames then %v 3 s later over WebRTC; tiles: %s", name, s, before[s], after[s], state())
			}
		}
		if errs := evalString(`[...document.querySelectorAll('.tile')].filter(el => el.querySelector('video').error ||
			/error|no live video/.test(el.querySelector('.health').textContent)).map(el => el.dataset.stream).join(',')`); errs != "" {
			t.Fatalf("%s, path restored: player errors on %s; tiles: %s", name, errs, state())
		}
		t.Logf("%s, path restored: %s (WebRTC attempts: %s)", name, state(),
			evalString(`[...document.querySelectorAll('video')].map(v => v.dataset.webrtcTries || '-').join(',')`))
	}
	wall("wall-webrtc", false, "webrtc")
	wall("wall-webrtc-blocked", true, "hls")
}
