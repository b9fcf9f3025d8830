package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/png"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// TestConsoleInChromium drives the built-in console in a real headless
// Chromium against a box recording the demo camera (uploaded to an
// upstream that is not there) and two RTSP cameras, door and yard, yard
// stopping for a while (an outage and a gap). It checks: sign in; the
// camera wall; live and on-demand playback (the video's time advances, no
// player error); the timeline's zoom, hover thumbnail (GetImages), click
// to play, drag to select and export (a download of a getClipURL URL in
// a hidden frame, not a GetClip the page buffers; the MP4 ffprobe reads
// lasts the selection, within a fragment; a URL refused on another origin
// leaves the console in place), gap, outage, hold and upload markers;
// switching from a playing stream to an empty one leaves no picture of
// the old one (screenshots compared) and says "no recording here"; the
// phone layout; the key kept in the tab only. Screenshots of the wall,
// the single view, the zoomed timeline and the phone layout are saved in
// $KVSEDGE_ARTIFACTS, else the test's temp dir.
func TestConsoleInChromium(t *testing.T) {
	chromium := fixture.Tool(t, "chromium")
	ffprobeBin := fixture.Tool(t, "ffprobe")
	fixture.Tool(t, "ffmpeg") // GetImages decodes H.264 with it
	dir := t.TempDir()
	artifacts := os.Getenv("KVSEDGE_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	// Two RTSP cameras at 10 fps; yard's publisher is stopped and started
	// again below.
	clip, err := os.ReadFile(fixture.DemoClipPath())
	if err != nil {
		t.Fatal(err)
	}
	src, err := ingest.NewDemoSource(clip, 10)
	if err != nil {
		t.Fatal(err)
	}
	aus, _, sps, pps := src.Clip()
	rl := rtsptest.StartRelay(t, "")
	pubCtx, stopPub := context.WithCancel(context.Background())
	defer stopPub()
	publish := func(ctx context.Context, path string) {
		go rtsptest.Publish(ctx, t, rl.URL(path), aus, sps, pps, 10, 0)
	}
	publish(pubCtx, "door")
	yardCtx, stopYard := context.WithCancel(pubCtx)
	publish(yardCtx, "yard")
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	camCfg := "demo: true\ncameras:\n"
	for _, name := range []string{"door", "yard"} {
		camCfg += fmt.Sprintf("  - stream: %s\n    url: %s\n    transport: tcp\n    retention_hours: 2\n    fragment_duration: 1s\n", name, rl.URL(name))
	}
	if err := os.WriteFile(cfgPath, []byte(camCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The demo stream is uploaded to an upstream that is not there: the
	// console shows the upload waiting, with its error.
	env := append(streamEnv(filepath.Join(dir, "data")), "KVSEDGE_DEMO=true", "KVSEDGE_UPSTREAM__ENDPOINT=http://"+freeAddr(t),
		"KVSEDGE_UPSTREAM__REGION=us-west-2", "KVSEDGE_UPSTREAM__ACCESS_KEY_ID=AKIDNOWHERE", "KVSEDGE_UPSTREAM__SECRET_ACCESS_KEY=nowhere",
		"KVSEDGE_UPSTREAM__STREAMS=demo")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0", "--config", cfgPath)
	c := newSDK(t, p.endpoint)
	c.waitFragments(t, "demo", 4, 20*time.Second)
	c.waitFragments(t, "door", 3, 20*time.Second)
	yardBefore := len(c.waitFragments(t, "yard", 3, 20*time.Second))

	// Yard goes down for a while and comes back: its camera records the
	// outage, its stream a gap.
	stopYard()
	waitCameraState := func(what string, ok func(state string) bool, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			var cs cameraStates
			callJSON(t, p.endpoint, "/listCameras", map[string]any{}, &cs)
			for _, cam := range cs.Cameras {
				if cam.Stream == "yard" && ok(cam.State) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v: %+v", what, within, cs)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	waitCameraState("yard's camera goes down", func(s string) bool { return s != "RECORDING" }, 30*time.Second)
	time.Sleep(3 * time.Second)
	publish(pubCtx, "yard")
	waitCameraState("yard's camera records again", func(s string) bool { return s == "RECORDING" }, 40*time.Second)
	c.waitFragments(t, "yard", yardBefore+3, 20*time.Second)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1280, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 240*time.Second)
	defer cancelT()

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) (bool, error) { return chromedp.Run(ctx, chromedp.Evaluate[bool](expr)) }
	evalString := func(expr string) string { v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](expr)); return v }
	evalJSON := func(expr string, out any) {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("JSON.stringify("+expr+")"))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if err := json.Unmarshal([]byte(s), out); err != nil {
			t.Fatalf("%s = %s: %v", expr, s, err)
		}
	}
	// waitJS polls a JavaScript condition.
	waitJS := func(what, cond string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if ok, err := eval(cond); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				state := evalString(`document.getElementById('player-state').textContent`)
				errs := evalString(`[...document.querySelectorAll('.error')].map(e => e.textContent).join(' | ')`)
				wall := evalString(`[...tiles].map(([n, t]) => n + ': t=' + t.video.currentTime.toFixed(1) + ' behind=' +
					(t.hls && t.hls.playingDate ? ((Date.now() - t.hls.playingDate) / 1000).toFixed(1) : '-') + ' live=' + !t.live.hidden + ' ' + t.health.textContent).join(' | ')`)
				hover := evalString(`(() => { const b = document.getElementById('tl-hover'); return (b.hidden ? 'hidden: ' : '') + b.textContent + ' img=' + (b.querySelector('img').getAttribute('src') || '').slice(0, 30) + ' at=' + b.dataset.at + ' ranges=' + JSON.stringify(tl.ranges); })()`)
				t.Fatalf("%s: not within %v (player: %q, errors: %q, wall: %q, hover: %q)", what, within, state, errs, wall, hover)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	// shot saves a screenshot of the element sel (PNG), or of the whole
	// page (sel "", JPEG), as an artifact, and returns it.
	shot := func(name, sel string) []byte {
		t.Helper()
		var b []byte
		var err error
		if sel == "" {
			b, err = chromedp.Run(ctx, chromedp.FullScreenshot(80))
		} else {
			b, err = chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
		}
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		path := filepath.Join(artifacts, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %s (%d bytes)", name, path, len(b))
		return b
	}
	// timelinePoint is the viewport point of time ms on the timeline
	// (scrolled into view), at fraction yf of its height.
	timelinePoint := func(ms, yf float64) (float64, float64) {
		t.Helper()
		var r struct{ Left, Top, Width, Height, From, To float64 }
		evalJSON(`(() => { const c = document.getElementById('timeline'); c.scrollIntoView({ block: 'center' });
			const r = c.getBoundingClientRect(); return { left: r.left, top: r.top, width: r.width, height: r.height, from: tl.from, to: tl.to }; })()`, &r)
		return r.Left + (ms-r.From)/(r.To-r.From)*r.Width, r.Top + yf*r.Height
	}
	// recordedSpan is a span of length ms inside one recorded range of the
	// window, ending at least 3 s before now ([0, 0] when there is none).
	recordedSpan := func(ms int) [2]float64 {
		t.Helper()
		var span [2]float64
		evalJSON(`(() => { const lo = tl.from + 2000, hi = Math.min(tl.to, Date.now() - 3000);
			for (const r of tl.ranges) { const a = Math.max(r[0] + 1000, lo), b = Math.min(r[1], hi); if (b - a >= `+strconv.Itoa(ms)+`) return [a, a + `+strconv.Itoa(ms)+`]; }
			return [0, 0]; })()`, &span)
		return span
	}

	run("open the console", chromedp.Navigate(p.endpoint+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	run("sign in",
		chromedp.SendKeys(chromedp.CSS("#akid"), e2eAKID),
		chromedp.SendKeys(chromedp.CSS("#secret"), e2eSecret),
		chromedp.SetValue(chromedp.CSS("#region"), "us-west-2"),
		chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS("the stream list shows demo", `!!document.querySelector('tr[data-stream="demo"]')`, 15*time.Second)

	// The camera wall: the demo camera's tile plays live, with its LIVE
	// badge and the camera's wall-clock time (within a minute of now); the
	// RTSP cameras' tiles play too.
	waitJS("the demo tile plays live with its badge and clock", `(() => {
		const el = document.querySelector('.tile[data-stream="demo"]'); if (!el) return false;
		const t = tiles.get('demo'), v = el.querySelector('video'), d = t.hls && t.hls.playingDate;
		return v.currentTime > 1 && !el.querySelector('.live').hidden && el.querySelector('.clock').textContent !== '' &&
			d && Math.abs(Date.now() - d.getTime()) < 60000 && el.querySelector('.health').textContent.startsWith('RECORDING'); })()`, 40*time.Second)
	waitJS("the door and yard tiles play", `['door', 'yard'].every((n) => { const el = document.querySelector('.tile[data-stream="' + n + '"]');
		return el && el.querySelector('video').currentTime > 1; })`, 40*time.Second)
	shot("wall.png", "#wall")
	run("a one-tile wall", chromedp.Click(chromedp.CSS(`#wall-sizes button[data-grid="1"]`)))
	waitJS("the wall has one column", `document.getElementById('wall-tiles').className === 'grid g1'`, 5*time.Second)

	run("create a stream",
		chromedp.SendKeys(chromedp.CSS("#new-name"), "made-in-console"),
		chromedp.Click(chromedp.CSS("#create-form button")))
	waitJS("the new stream is listed", `!!document.querySelector('tr[data-stream="made-in-console"]')`, 15*time.Second)
	if d := describeStream(t, c, "made-in-console"); d.RetentionHours != 24 {
		t.Fatalf("stream created by the console: %+v", d)
	}

	// Live view of the demo camera.
	run("open demo", chromedp.Click(chromedp.CSS(`tr[data-stream="demo"] button.open`)))
	waitJS("the live video plays", `(() => { const v = document.getElementById('video'); return v.currentTime > 2 && !v.error && !document.getElementById('player-state').textContent.includes('error'); })()`, 40*time.Second)
	waitJS("the timeline shows recorded fragments", `parseInt(document.getElementById('timeline').dataset.fragments || '0') >= 3`, 15*time.Second)
	// The demo stream's upload waits (its upstream is not there): what is
	// recorded shows as not uploaded yet.
	waitJS("the upload lane knows the upload waits", `document.getElementById('timeline').dataset.upload === 'waiting'`, 15*time.Second)
	shot("single.png", "#viewer")

	// On demand: jump to 12 s ago.
	if _, err := eval(`(() => {
		const d = new Date(Date.now() - 12000), p = (n) => String(n).padStart(2, '0');
		document.getElementById('jump').value = d.getFullYear() + '-' + p(d.getMonth()+1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds());
		document.getElementById('jump-btn').click(); return true; })()`); err != nil {
		t.Fatalf("jump back: %v", err)
	}
	waitJS("the on-demand session starts", `document.getElementById('player-state').textContent.startsWith('on demand')`, 10*time.Second)
	waitJS("the on-demand video plays", `(() => { const v = document.getElementById('video'); return v.currentTime > 1 && !v.error && !document.getElementById('player-state').textContent.includes('error'); })()`, 30*time.Second)

	// The timeline: the playhead follows the on-demand session (about 12 s
	// ago), the buttons zoom from 24 h down to 1 minute at most, and the
	// fragments of the narrower window are fetched again.
	waitJS("the playhead is where the video plays", `tlPlayhead !== null && Math.abs(tlPlayhead - (Date.now() - 12000)) < 60000`, 15*time.Second)
	run("zoom in three times", chromedp.Click(chromedp.CSS("#tl-in")), chromedp.Click(chromedp.CSS("#tl-in")), chromedp.Click(chromedp.CSS("#tl-in")))
	waitJS("the window is 3 h", `(() => { const c = document.getElementById('timeline'); return Math.abs((c.dataset.to - c.dataset.from) - 3 * 3600e3) < 1000 &&
		document.getElementById('tl-width').textContent === '3.0 h'; })()`, 5*time.Second)
	fetches := evalString(`document.getElementById('timeline').dataset.fetches`)
	if _, err := eval(`(() => { for (let i = 0; i < 20; i++) document.getElementById('tl-in').click(); return true; })()`); err != nil {
		t.Fatal(err)
	}
	waitJS("zoomed in to 1 minute around the playhead, its fragments fetched again", `(() => { const c = document.getElementById('timeline');
		return c.dataset.to - c.dataset.from === 60000 && document.getElementById('tl-width').textContent === '1 min' &&
			c.dataset.fetches !== '`+fetches+`' && tlPlayhead >= +c.dataset.from && tlPlayhead <= +c.dataset.to &&
			parseInt(c.dataset.fragments || '0') >= 1 && parseInt(c.dataset.fragments) <= 40; })()`, 10*time.Second)

	// The console hands out sessions that play everywhere (VLC too): the
	// URL it shows has one initialization segment and no discontinuity.
	sessionURL := evalString(`document.getElementById('session-url').href`)
	if !strings.HasPrefix(sessionURL, p.endpoint+"/") {
		t.Fatalf("the console shows no session URL (%q)", sessionURL)
	}
	if m := mediaPlaylist(t, sessionURL); strings.Count(m, "#EXT-X-MAP") != 1 || strings.Contains(m, "#EXT-X-DISCONTINUITY") {
		t.Fatalf("the console's session is not playable in VLC (one map, no discontinuity):\n%s", m)
	}

	// Hover: a thumbnail of the recording under the pointer (GetImages),
	// an image that loads.
	span := recordedSpan(2000)
	if span[0] == 0 {
		t.Fatalf("no recorded span in the 1-minute window: %s", evalString(`JSON.stringify(tl.ranges)`))
	}
	// GetImages requests are counted, with how many run at once.
	if _, err := eval(`(() => { window.imgCalls = 0; window.imgBusy = 0; window.imgMaxBusy = 0; const f = client.fetch.bind(client);
		client.fetch = async (url, init) => { if (!String(url).endsWith('/getImages')) return f(url, init);
			imgCalls++; imgBusy++; imgMaxBusy = Math.max(imgMaxBusy, imgBusy); try { return await f(url, init); } finally { imgBusy--; } };
		return true; })()`); err != nil {
		t.Fatal(err)
	}
	x, y := timelinePoint(span[0]+1000, 0.25)
	run("hover over a recording", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y))
	thumbLoaded := `(() => { const b = document.getElementById('tl-hover'), img = b.querySelector('img');
		return !b.hidden && b.textContent.includes('recorded') && img.src.startsWith('data:image/jpeg') && img.complete && img.naturalWidth === 320; })()`
	waitJS("the hover box shows a thumbnail that loads", thumbLoaded, 20*time.Second)
	firstAt, err := strconv.ParseFloat(evalString(`document.getElementById('tl-hover').dataset.at`), 64)
	if err != nil {
		t.Fatalf("the hover box's sample time: %v", err)
	}
	// The demo stream's upload waits: the recording is not uploaded yet.
	waitJS("the hover box says what is not uploaded", `document.getElementById('tl-hover').textContent.includes('not uploaded yet (waiting')`, 5*time.Second)
	// A sweep over the timeline asks for one thumbnail at a time, and
	// coming back to a point asks for nothing again (cached).
	var sweep []chromedp.Action[chromedp.Void]
	for i := range 30 {
		sx, sy := timelinePoint(span[0]-20000+float64(i)*1000, 0.25)
		sweep = append(sweep, chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, sx, sy))
	}
	run("sweep over the timeline", sweep...)
	waitJS("the sweep's thumbnails are fetched", `!tlThumbBusy && tlThumbWant === null && imgBusy === 0`, 30*time.Second)
	calls := evalString(`String(imgCalls)`)
	// Back to the middle of the first point's sample time. The window
	// moves with now (a step every 500 ms), so a point computed before a
	// mouse event can be another sample time when the event lands: the
	// point is computed and the move dispatched in one step in the page.
	if same, err := eval(`(() => { const c = document.getElementById('timeline'), r = c.getBoundingClientRect();
		const q = Math.max(1000, (tl.to - tl.from) / 120), t = ` + strconv.FormatFloat(firstAt, 'f', -1, 64) + ` + q / 2;
		c.dispatchEvent(new PointerEvent('pointermove', { bubbles: true, pointerId: 1, clientX: r.left + (t - tl.from) / (tl.to - tl.from) * r.width,
			clientY: r.top + 0.25 * r.height }));
		return document.getElementById('tl-hover').dataset.at === '` + strconv.FormatFloat(firstAt, 'f', -1, 64) + `'; })()`); err != nil || !same {
		t.Fatalf("back to the first point (%v): the hover box is at %s, want %v", err, evalString(`document.getElementById('tl-hover').dataset.at`), firstAt)
	}
	waitJS("its thumbnail shows again", thumbLoaded, 5*time.Second)
	if after := evalString(`String(imgCalls) + ' ' + imgMaxBusy`); after != calls+" 1" {
		t.Fatalf("GetImages calls (and most at once) after the sweep: %s, after coming back: %s; want no new call and one at a time", calls, after)
	}
	t.Logf("hover: %s GetImages requests for a sweep over 30 points", calls)

	// A click plays from there.
	span = recordedSpan(6000)
	x, y = timelinePoint(span[0], 0.25)
	run("click the timeline", chromedp.MouseClickXY(x, y))
	waitJS("the click plays on demand from there", `(() => { const v = document.getElementById('video');
		return document.getElementById('player-state').textContent.startsWith('on demand from') && v.currentTime > 0.5 && !v.error &&
			tlPlayhead !== null && Math.abs(tlPlayhead - `+ftoa(span[0])+` - v.currentTime * 1000) < 5000; })()`, 30*time.Second)

	// A drag selects a range, plays it, and exports it as an MP4.
	downloads := t.TempDir()
	run("allow downloads", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
			Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}))
	span = recordedSpan(8000)
	if span[0] == 0 {
		t.Fatalf("no 8 s recorded span in the 1-minute window: %s", evalString(`JSON.stringify(tl.ranges)`))
	}
	x0, y0 := timelinePoint(span[0], 0.25)
	x1, _ := timelinePoint(span[1], 0.25)
	held := func(p *input.DispatchMouseEventParams) { p.Button, p.Buttons = input.MouseButtonLeft, 1 }
	run("drag over the timeline",
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x0, y0),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMousePressed, x0, y0, chromedp.ButtonLeft, chromedp.ClickCount(1)),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, (x0+x1)/2, y0, held),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x1, y0, held),
		chromedp.MouseEvent(input.DispatchMouseEventTypeMouseReleased, x1, y0, chromedp.ButtonLeft, chromedp.ClickCount(1)))
	var sel [2]float64
	evalJSON(`tlSel`, &sel)
	if math.Abs(sel[0]-span[0]) > 1500 || math.Abs(sel[1]-span[1]) > 1500 {
		t.Fatalf("dragged over %v, selected %v", span, sel)
	}
	waitJS("the selection plays", `(() => { const v = document.getElementById('video');
		return document.getElementById('player-state').textContent.startsWith('on demand ') && v.currentTime > 0.5 && !v.error; })()`, 30*time.Second)
	var fragMs float64
	evalJSON(`tl.maxFragMs`, &fragMs)
	// The export is a download the browser makes itself (a getClipURL
	// link, streamed to disk), not a GetClip the page holds in memory.
	if _, err := eval(`(() => { window.clipCalls = {}; const f = client.fetch.bind(client);
		client.fetch = async (url, init) => { const p = new URL(String(url)).pathname;
			if (p === '/getClip' || p === '/getClipURL') clipCalls[p] = (clipCalls[p] || 0) + 1; return f(url, init); };
		return true; })()`); err != nil {
		t.Fatal(err)
	}
	run("export the selection", chromedp.Click(chromedp.CSS("#clip-btn")))
	var mp4 string
	for deadline := time.Now().Add(30 * time.Second); mp4 == ""; {
		files, _ := filepath.Glob(filepath.Join(downloads, "demo_*.mp4"))
		if len(files) == 1 {
			mp4 = files[0]
		} else if time.Now().After(deadline) {
			t.Fatalf("no MP4 downloaded (errors: %q)", evalString(`document.getElementById('viewer-error').textContent`))
		} else {
			time.Sleep(250 * time.Millisecond)
		}
	}
	var clipCalls map[string]int
	evalJSON(`clipCalls`, &clipCalls)
	if clipCalls["/getClipURL"] != 1 || clipCalls["/getClip"] != 0 {
		t.Fatalf("the export's API calls from the page: %v; want one getClipURL and no GetClip", clipCalls)
	}
	out, err := exec.Command(ffprobeBin, "-v", "error", "-show_entries", "format=duration,format_name", "-of", "json", mp4).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", mp4, err)
	}
	var probe struct {
		Format struct {
			Duration   string `json:"duration"`
			FormatName string `json:"format_name"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatal(err)
	}
	dur, _ := strconv.ParseFloat(probe.Format.Duration, 64)
	want := (sel[1] - sel[0]) / 1000
	t.Logf("exported %s: %s, %.2f s for a selection of %.2f s (fragments of %.0f ms)", filepath.Base(mp4), probe.Format.FormatName, dur, want, fragMs)
	if !strings.Contains(probe.Format.FormatName, "mp4") || math.Abs(dur-want) > fragMs/1000+0.3 {
		t.Fatalf("the exported clip: %s, %.2f s; want an MP4 of %.2f s ± a fragment (%.0f ms)", probe.Format.FormatName, dur, want, fragMs)
	}

	// A clip URL that fails (here: a token the box refuses) leaves the
	// console where it was, and downloads nothing.
	if _, err := eval(`(() => { window.realAPI = api; window.pageMark = 'still here';
		api = async (path, body) => path === '/getClipURL' ? { ClipURL: location.origin.replace('127.0.0.1', 'localhost') + '/clip/v1/getClip.mp4?SessionToken=bad.token' } : realAPI(path, body);
		return true; })()`); err != nil {
		t.Fatal(err)
	}
	run("export with a refused URL", chromedp.Click(chromedp.CSS("#clip-btn")))
	// The console opens the URL (in a frame), or the page has gone (the
	// navigation this guards against); then the refusal has time to land.
	waitJS("the refused URL opened", `(() => { const f = document.querySelector('iframe.clip-download:last-of-type');
		return window.pageMark !== 'still here' || (!!f && f.src.includes('bad.token')); })()`, 10*time.Second)
	time.Sleep(2 * time.Second)
	if mark := evalString(`window.pageMark || ''`); mark != "still here" {
		t.Fatalf("a refused clip URL replaced the console (page mark %q)", mark)
	}
	if files, _ := filepath.Glob(filepath.Join(downloads, "*")); len(files) != 1 {
		t.Fatalf("downloads after a refused clip URL: %v; want the one MP4", files)
	}
	if _, err := eval(`(() => { api = realAPI; return true; })()`); err != nil {
		t.Fatal(err)
	}

	// A hold (the kvsedge:hold tag) is marked.
	if _, err := c.KV.TagStream(sdkCtx(t), &kinesisvideo.TagStreamInput{StreamName: aws.String("demo"), Tags: map[string]string{"kvsedge:hold": "true"}}); err != nil {
		t.Fatal(err)
	}
	run("fetch the timeline again", chromedp.Click(chromedp.CSS("#tl-out")))
	waitJS("the hold is marked", `document.getElementById('timeline').dataset.hold === 'all'`, 10*time.Second)

	// The date picker shows a whole day: yesterday, midnight to midnight.
	if _, err := eval(`(() => { const y = new Date(); y.setDate(y.getDate() - 1); const p = (n) => String(n).padStart(2, '0');
		const i = document.getElementById('tl-day'); i.value = y.getFullYear() + '-' + p(y.getMonth() + 1) + '-' + p(y.getDate());
		i.dispatchEvent(new Event('change')); return true; })()`); err != nil {
		t.Fatal(err)
	}
	waitJS("the window is yesterday", `(() => { const c = document.getElementById('timeline'), y = new Date(); y.setDate(y.getDate() - 1);
		const from = new Date(y.getFullYear(), y.getMonth(), y.getDate()).getTime(), to = new Date(y.getFullYear(), y.getMonth(), y.getDate() + 1).getTime();
		return +c.dataset.from === from && +c.dataset.to === to && !tl.follow; })()`, 5*time.Second)

	// Yard's timeline: its outage and its gap are marked, and hovering over
	// the gap says there is no recording and why.
	run("open yard", chromedp.Click(chromedp.CSS(`tr[data-stream="yard"] button.open`)))
	// In the day's window (a pixel is ~72 s) yard's gap of seconds is
	// still drawn: a marker of at least a pixel in the recordings' lane.
	waitJS("yard's gap is marked in a 24 h window", `(() => { const c = document.getElementById('timeline');
		if (document.getElementById('viewer-title').textContent !== 'yard' || tl.to - tl.from < 23 * 3600e3 || parseInt(c.dataset.gaps || '0') < 1) return false;
		for (let i = 0; i + 1 < tl.ranges.length; i++) {
			if (tl.ranges[i + 1][0] - tl.ranges[i][1] < 2000) continue;
			const px = Math.min(c.width - 1, Math.floor((tl.ranges[i][1] - tl.from) / (tl.to - tl.from) * c.width));
			const d = c.getContext('2d').getImageData(px, 18, 1, 1).data;
			return d[0] > 200 && d[1] < 100 && d[2] < 100;
		}
		return false; })()`, 20*time.Second)
	// 24 h / 2⁸ is under 6 minutes, with yard's whole life in it.
	if _, err := eval(`(() => { for (let i = 0; i < 8; i++) document.getElementById('tl-in').click(); return true; })()`); err != nil {
		t.Fatal(err)
	}
	waitJS("yard's timeline has its gap and outage", `(() => { const c = document.getElementById('timeline');
		return document.getElementById('viewer-title').textContent === 'yard' && parseInt(c.dataset.gaps || '0') >= 1 && parseInt(c.dataset.outages || '0') >= 1; })()`, 20*time.Second)
	var gap [2]float64
	evalJSON(`(() => { for (let i = 0; i + 1 < tl.ranges.length; i++) { if (tl.ranges[i + 1][0] - tl.ranges[i][1] > 2000) return [tl.ranges[i][1], tl.ranges[i + 1][0]]; } return [0, 0]; })()`, &gap)
	if gap[0] == 0 {
		t.Fatalf("yard's recordings have no gap: %s", evalString(`JSON.stringify(tl.ranges)`))
	}
	// Yard plays live (its playhead known: WebRTC, or HLS a few seconds
	// behind), so the window below can end before the playhead.
	waitJS("yard plays live", `document.getElementById('player-state').textContent.startsWith('live (') && tlPlayhead !== null`, 40*time.Second)
	fetches = evalString(`document.getElementById('timeline').dataset.fetches`)
	// The window ends before the live playhead (WebRTC plays within
	// ~0.1 s of now): a playhead inside it would walk off its end, and the
	// window would follow it a page on.
	var winEnd float64
	evalJSON(`Math.floor(Math.min(`+ftoa(gap[1]+20000)+`, Math.min(tlPlayhead, Date.now()) - 3000))`, &winEnd)
	if winEnd <= gap[1] {
		t.Fatalf("yard's gap ended at %v, too close to the live playhead", gap[1])
	}
	if _, err := eval(`(tlSet(` + ftoa(gap[0]-20000) + `, ` + ftoa(winEnd) + `), true)`); err != nil {
		t.Fatal(err)
	}
	// The live playhead is outside this window: the window stays.
	waitJS("the window around the gap is fetched", `document.getElementById('timeline').dataset.fetches !== '`+fetches+`' &&
		tl.from === `+ftoa(gap[0]-20000)+` && tl.to === `+ftoa(winEnd)+` && parseInt(document.getElementById('timeline').dataset.gaps || '0') >= 1`, 10*time.Second)
	// Where the gap and the camera's outage overlap (a stalled feed is
	// noticed after the stall timeout, so the outage may start later).
	var down [2]float64
	evalJSON(`(() => { for (const o of tl.info.outages) { const a = Math.max(o[0], `+ftoa(gap[0])+`), b = Math.min(o[1], `+ftoa(gap[1])+`);
		if (b - a > 500) return [a, b]; } return [0, 0]; })()`, &down)
	if down[0] == 0 {
		t.Fatalf("yard's outage is not within its gap %v: %s", gap, evalString(`JSON.stringify(tl.info.changes)`))
	}
	x, y = timelinePoint((down[0]+down[1])/2, 0.25)
	run("hover over the gap", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, x, y))
	waitJS("the hover box says no recording, camera down", `(() => { const b = document.getElementById('tl-hover');
		return !b.hidden && b.textContent.includes('no recording here') && /camera (RETRYING|CONNECTING)/.test(b.textContent) && !b.querySelector('img').hasAttribute('src'); })()`, 10*time.Second)
	shot("timeline-zoomed.png", "#viewer")

	// Switching from a playing stream to an empty one: no picture of the
	// old stream, "no recording here" instead.
	run("open demo", chromedp.Click(chromedp.CSS(`tr[data-stream="demo"] button.open`)))
	waitJS("the live video plays", `(() => { const v = document.getElementById('video'); return v.currentTime > 1 && !v.error; })()`, 40*time.Second)
	run("scroll to the player", chromedp.ScrollIntoView(chromedp.CSS("#player")))
	playing := shot("player-playing.png", "#player")
	run("open the empty stream", chromedp.Click(chromedp.CSS(`tr[data-stream="made-in-console"] button.open`)))
	waitJS("the empty stream says there is no recording, and shows nothing of demo", `(() => {
		const v = document.getElementById('video'), st = document.getElementById('player-state').textContent, m = document.getElementById('video-msg');
		return document.getElementById('viewer-title').textContent === 'made-in-console' && st.includes('no recording here') && st.includes('nothing to play live') &&
			!m.hidden && m.textContent === 'no recording here' &&
			hls === null && v.paused && v.readyState === 0 && v.videoWidth === 0 && document.getElementById('session-url').hidden &&
			document.getElementById('thumbs').children.length === 0 && tlSel === null && document.getElementById('clip-btn').disabled &&
			(document.getElementById('timeline').dataset.fragments || '0') === '0'; })()`, 15*time.Second)
	run("scroll to the player", chromedp.ScrollIntoView(chromedp.CSS("#player")))
	empty := shot("player-empty.png", "#player")
	if share := dominantShare(t, playing); share > 0.8 {
		t.Fatalf("the playing demo's picture is %.0f%% one colour: the comparison below could not tell", share*100)
	}
	if share := dominantShare(t, empty); share < 0.9 {
		t.Fatalf("after switching to the empty stream the video area is %.0f%% one colour: a picture shows (see %s)", share*100, artifacts)
	}

	// The key stays in this tab only, and Sign out forgets it.
	if ok, err := eval(`localStorage.getItem('kvsedge-creds') === null && sessionStorage.getItem('kvsedge-creds') !== null`); err != nil || !ok {
		t.Fatalf("the key is not kept in the tab's session storage only (%v)", err)
	}
	run("open demo again", chromedp.Click(chromedp.CSS(`tr[data-stream="demo"] button.open`)))
	waitJS("the live video plays again", `(() => { const v = document.getElementById('video'); return v.currentTime > 1 && !v.error && document.getElementById('video-msg').hidden; })()`, 40*time.Second)
	if b := shot("console.jpg", ""); len(b) < 10_000 || !strings.HasPrefix(string(b[:3]), "\xff\xd8\xff") {
		t.Fatalf("screenshot of %d bytes is not a JPEG", len(b))
	}

	// On a phone: one column, the wall two tiles wide, nothing wider than
	// the screen: the streams list is one card per stream, its cells (a
	// long upload error too) and its Open and Delete buttons within the
	// screen, not in a table to scroll sideways; every tile plays.
	run("a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Click(chromedp.CSS(`#wall-sizes button[data-grid="4"]`)))
	waitJS("the phone layout", `(() => { const cols = getComputedStyle(document.getElementById('wall-tiles')).gridTemplateColumns.split(' ').length;
		const top = (id) => document.getElementById(id).getBoundingClientRect().top;
		return window.innerWidth === 390 && cols === 2 && document.documentElement.scrollWidth <= window.innerWidth &&
			top('tl-in') === top('tl-out') && top('tl-back') === top('tl-now'); })()`, 10*time.Second)
	waitJS("the streams list fits the phone's screen", `(() => { const cells = [...document.querySelectorAll('#stream-rows td, #stream-rows button')];
		return cells.length > 0 && cells.every((e) => { const r = e.getBoundingClientRect(); return r.left >= 0 && r.right <= window.innerWidth; }) &&
			document.querySelector('#stream-rows td[data-label="Upload"]') !== null; })()`, 10*time.Second)
	waitJS("every tile plays on the phone", `(() => { const vs = [...document.querySelectorAll('#wall-tiles video')];
		return vs.length > 0 && vs.every((v) => v.readyState >= 2 && !v.paused && !v.error); })()`, 30*time.Second)
	shot("phone.jpg", "")
	run("back to the desktop", chromedp.EmulateReset())

	// A camera whose stream keeps nothing is shown so in the list.
	d := describeStream(t, c, "demo")
	if _, err := c.KV.UpdateDataRetention(sdkCtx(t), &kinesisvideo.UpdateDataRetentionInput{StreamName: aws.String("demo"),
		CurrentVersion: aws.String(d.Version), Operation: types.UpdateDataRetentionOperationDecreaseDataRetention,
		DataRetentionChangeInHours: aws.Int32(d.RetentionHours)}); err != nil {
		t.Fatal(err)
	}
	if _, err := eval(`(refresh(), true)`); err != nil {
		t.Fatalf("refresh the list: %v", err)
	}
	waitJS("the demo stream's upload shows waiting, with its error", `(() => { refresh(); const td = document.querySelector('tr[data-stream="demo"]').children[4];
		return td.dataset.upload === 'waiting' && td.textContent.includes('waiting') && td.className === 'bad'; })()`, 30*time.Second)
	waitJS("the demo camera shows live only", `(() => { const td = document.querySelector('tr[data-stream="demo"]').children[3];
		return td.textContent.includes('live only, nothing kept') && td.className === 'bad'; })()`, 15*time.Second)
	run("sign out", chromedp.Click(chromedp.CSS("#signout")))
	waitJS("signed out: the sign-in form, no key kept", `!document.getElementById('login').hidden && document.getElementById('app').hidden &&
		sessionStorage.getItem('kvsedge-creds') === null && localStorage.getItem('kvsedge-creds') === null`, 10*time.Second)
}

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 0, 64) }

// dominantShare is the share of an image's pixels in its most common
// colour (each channel to 16 levels): near 1 for a blank area, well below
// for a camera picture.
func dominantShare(t *testing.T, png []byte) float64 {
	t.Helper()
	img, _, err := image.Decode(bytes.NewReader(png))
	if err != nil {
		t.Fatalf("decode a screenshot: %v", err)
	}
	counts := map[[3]uint32]int{}
	b := img.Bounds()
	most := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			k := [3]uint32{r >> 12, g >> 12, bl >> 12}
			counts[k]++
			most = max(most, counts[k])
		}
	}
	return float64(most) / float64(b.Dx()*b.Dy())
}

// TestConsoleCameraHistorySurvivesRestart: the demo camera's state changes
// (listCameraChanges, the console's outage lane) are there again after
// the box restarts: the changes from before, the camera STOPPED while the
// box was down, then connecting and recording again.
func TestConsoleCameraHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	env := append(streamEnv(dir), "KVSEDGE_DEMO=true")
	type changes struct {
		Changes []struct {
			State string
			At    time.Time
			Error string
		}
	}
	states := func(endpoint string) (changes, string) {
		t.Helper()
		var ch changes
		if st, raw := callJSON(t, endpoint, "/listCameraChanges", map[string]any{"StreamName": "demo"}, &ch); st != 200 {
			t.Fatalf("listCameraChanges: %d %s", st, raw)
		}
		var s []string
		for _, c := range ch.Changes {
			s = append(s, c.State)
		}
		return ch, strings.Join(s, ",")
	}
	waitRecording := func(endpoint string) changes {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			ch, s := states(endpoint)
			if strings.HasSuffix(s, "RECORDING") {
				return ch
			}
			if time.Now().After(deadline) {
				t.Fatalf("the demo camera does not record: %s", s)
			}
		}
	}
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	before := waitRecording(p.endpoint)
	p.stop(t)
	stopped := time.Now()

	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	after := waitRecording(p.endpoint)
	_, s := states(p.endpoint)
	n := len(before.Changes)
	if len(after.Changes) != n+3 || !strings.HasSuffix(s, "STOPPED,CONNECTING,RECORDING") {
		t.Fatalf("changes after the restart: %s; before it there were %d, want them then STOPPED, CONNECTING, RECORDING", s, n)
	}
	for i, c := range before.Changes {
		if a := after.Changes[i]; a.State != c.State || !a.At.Equal(c.At) || a.Error != c.Error {
			t.Fatalf("change %d before the restart %+v, after it %+v", i, c, a)
		}
	}
	if down, up := after.Changes[n].At, after.Changes[n+1].At; down.After(stopped) || down.Before(before.Changes[n-1].At) || !up.After(stopped) {
		t.Fatalf("STOPPED at %v, CONNECTING again at %v; the box stopped at %v", down, up, stopped)
	}
}

// TestConsoleSessionsOpenOnEveryClusterBox: in a three-box cluster (each
// stream on two of them), the HLS session and clip download URLs the
// stream's home hands out open on every box, as on a site's one endpoint:
// on the replica, which holds the stream (session tokens are signed under
// a key derived from the cluster key), and on the third box, which holds
// nothing of it and relays each GET to a holder (its forward route, the
// query string signed as the body). ffprobe plays the HLS session from
// both, and both answer the clip URL with the MP4 as an attachment, the
// the third box the same bytes as the home.
func TestConsoleSessionsOpenOnEveryClusterBox(t *testing.T) {
	ffprobeBin := fixture.Tool(t, "ffprobe")
	ctx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	boxes := startCameraCluster(t, ctx, 3, clusterNet{gossip: []string{freeAddr(t), freeAddr(t), freeAddr(t)}})
	home, replica, other := roles(t, boxes, boxes[0])
	within(t, "the replica copies cam", 40*time.Second, func() bool {
		st := replication(t, replica.p.endpoint)
		return len(st.Streams) == 1 && st.Streams[0].Holds && st.Streams[0].Imported >= 3
	})
	if st := replication(t, other.p.endpoint); len(st.Streams) == 1 && st.Streams[0].Holds {
		t.Fatalf("%s holds cam: %+v", other.name, st.Streams)
	}
	// A range the replica holds: fragments it copied, up to a few seconds
	// ago (once the home has some that old).
	var rng map[string]any
	var hls struct{ HLSStreamingSessionURL string }
	within(t, "the home has fragments older than 3 s", 30*time.Second, func() bool {
		rng = map[string]any{"StartTimestamp": time.Now().Add(-5 * time.Minute).Unix(), "EndTimestamp": time.Now().Add(-3 * time.Second).Unix()}
		st, raw := callJSON(t, home.p.endpoint, "/getHLSStreamingSessionURL", map[string]any{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
			"HLSFragmentSelector": map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng}}, &hls)
		if st != 200 && st != 404 {
			t.Fatalf("GetHLSStreamingSessionURL on the home: %d %s", st, raw)
		}
		return st == 200
	})
	if !strings.HasPrefix(hls.HLSStreamingSessionURL, home.p.endpoint+"/") {
		t.Fatalf("GetHLSStreamingSessionURL on the home: %s", hls.HLSStreamingSessionURL)
	}
	var clip struct{ ClipURL string }
	if st, raw := callJSON(t, home.p.endpoint, "/getClipURL", map[string]any{"StreamName": "cam",
		"ClipFragmentSelector": map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng}}, &clip); st != 200 ||
		!strings.HasPrefix(clip.ClipURL, home.p.endpoint+"/") {
		t.Fatalf("getClipURL on the home: %d %s", st, raw)
	}
	getClip := func(url string) []byte {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/mp4" ||
			!strings.HasPrefix(resp.Header.Get("Content-Disposition"), `attachment; filename="cam_`) || len(body) < 8 || string(body[4:8]) != "ftyp" {
			t.Fatalf("the home's clip URL at %s: %d %v, %d bytes (%v)", url, resp.StatusCode, resp.Header, len(body), err)
		}
		return body
	}
	want := getClip(clip.ClipURL)
	for _, b := range []*clusterBox{replica, other} {
		onBox := b.p.endpoint + strings.TrimPrefix(hls.HLSStreamingSessionURL, home.p.endpoint)
		if out, err := exec.Command(ffprobeBin, "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", onBox).CombinedOutput(); err != nil || !strings.Contains(string(out), "h264") {
			t.Fatalf("ffprobe of the home's HLS session on %s: %v %q", b.name, err, out)
		}
		// The third box relays the home's answer (Locate: the home first);
		// the replica serves its copy, which may lag by a fragment.
		if got := getClip(b.p.endpoint + strings.TrimPrefix(clip.ClipURL, home.p.endpoint)); b == other && !bytes.Equal(got, want) {
			t.Fatalf("the clip from %s: %d bytes, from the home %d, not the same", b.name, len(got), len(want))
		}
	}
	// A token the third box cannot open is refused there, not relayed.
	resp, err := http.Get(other.p.endpoint + "/clip/v1/getClip.mp4?SessionToken=x.y")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a bad clip token on %s: %d", other.name, resp.StatusCode)
	}
}
