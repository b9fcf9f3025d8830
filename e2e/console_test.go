package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/chromedp/chromedp"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestConsoleInChromium drives the built-in console in a real headless
// Chromium: sign in, list streams, create one, play the live demo stream
// and an on-demand range (the video's time advances, no player error),
// and save a screenshot (in $KVSEDGE_ARTIFACTS, else the test's temp dir).
func TestConsoleInChromium(t *testing.T) {
	chromium := fixture.Tool(t, "chromium")
	dir := t.TempDir()
	// The demo stream is uploaded to an upstream that is not there: the
	// console shows the upload waiting, with its error.
	env := append(streamEnv(dir), "KVSEDGE_DEMO=true", "KVSEDGE_UPSTREAM__ENDPOINT=http://"+freeAddr(t),
		"KVSEDGE_UPSTREAM__REGION=us-west-2", "KVSEDGE_UPSTREAM__ACCESS_KEY_ID=AKIDNOWHERE", "KVSEDGE_UPSTREAM__SECRET_ACCESS_KEY=nowhere",
		"KVSEDGE_UPSTREAM__STREAMS=demo")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	// Let the demo camera record a few fragments first.
	c := newSDK(t, p.endpoint)
	c.waitFragments(t, "demo", 4, 20*time.Second)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"), chromedp.WindowSize(1280, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) (bool, error) { return chromedp.Run(ctx, chromedp.Evaluate[bool](expr)) }
	evalString := func(expr string) string { v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](expr)); return v }
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
				t.Fatalf("%s: not within %v (player: %q, errors: %q)", what, within, state, errs)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	run("open the console", chromedp.Navigate(p.endpoint+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	run("sign in",
		chromedp.SendKeys(chromedp.CSS("#akid"), e2eAKID),
		chromedp.SendKeys(chromedp.CSS("#secret"), e2eSecret),
		chromedp.SetValue(chromedp.CSS("#region"), "us-west-2"),
		chromedp.Click(chromedp.CSS("#login-form button")))
	waitJS("the stream list shows demo", `!!document.querySelector('tr[data-stream="demo"]')`, 15*time.Second)

	// The camera wall: the demo camera's tile plays live, with its LIVE
	// badge and the camera's wall-clock time (within a minute of now).
	waitJS("the demo tile plays live with its badge and clock", `(() => {
		const el = document.querySelector('.tile[data-stream="demo"]'); if (!el) return false;
		const t = tiles.get('demo'), v = el.querySelector('video'), d = t.hls && t.hls.playingDate;
		return v.currentTime > 1 && !el.querySelector('.live').hidden && el.querySelector('.clock').textContent !== '' &&
			d && Math.abs(Date.now() - d.getTime()) < 60000 && el.querySelector('.health').textContent.startsWith('RECORDING'); })()`, 40*time.Second)
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

	// On demand: jump to 10 s ago.
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

	// Opening a stream with no data shows nothing of the stream shown
	// before: no video, no session URL, no thumbnails, no range to export.
	run("open the empty stream", chromedp.Click(chromedp.CSS(`tr[data-stream="made-in-console"] button.open`)))
	waitJS("the empty stream says there is nothing to play", `(() => {
		const v = document.getElementById('video'), st = document.getElementById('player-state').textContent;
		return document.getElementById('viewer-title').textContent === 'made-in-console' && st.includes('nothing to play live') &&
			hls === null && v.paused && document.getElementById('session-url').hidden && document.getElementById('thumbs').children.length === 0 &&
			(document.getElementById('timeline').dataset.fragments || '0') === '0'; })()`, 15*time.Second)
	// The key stays in this tab only, and Sign out forgets it.
	if ok, err := eval(`localStorage.getItem('kvsedge-creds') === null && sessionStorage.getItem('kvsedge-creds') !== null`); err != nil || !ok {
		t.Fatalf("the key is not kept in the tab's session storage only (%v)", err)
	}
	run("open demo again", chromedp.Click(chromedp.CSS(`tr[data-stream="demo"] button.open`)))
	waitJS("the live video plays again", `(() => { const v = document.getElementById('video'); return v.currentTime > 1 && !v.error; })()`, 40*time.Second)

	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
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
	path := filepath.Join(out, "console.jpg")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("console screenshot: %s (%d bytes)", path, len(shot))
	if len(shot) < 10_000 || !strings.HasPrefix(string(shot[:3]), "\xff\xd8\xff") {
		t.Fatalf("screenshot of %d bytes is not a JPEG", len(shot))
	}

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
