package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia"
	amtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia/types"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// TestCertNameAddsAndTheServerKeepsAnswering127: `kvsedge cert --name X`
// on a serving box adds X to the certificate's names; the running server
// picks the new certificate up at once and still verifies as 127.0.0.1
// (and now as X). --remove-name takes X away again, keeping the rest.
func TestCertNameAddsAndTheServerKeepsAnswering127(t *testing.T) {
	dir := t.TempDir()
	env := streamEnv(dir)
	if _, errOut, code := kvsedgeCmd(t, env, "cert"); code != 0 {
		t.Fatalf("kvsedge cert: exit %d\n%s", code, errOut)
	}
	tlsDir := filepath.Join(dir, "tls")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0", "--tls-cert", filepath.Join(tlsDir, "server.pem"), "--tls-key", filepath.Join(tlsDir, "server-key.pem"))
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	addr := strings.TrimPrefix(p.endpoint, "https://")
	// served returns the names of the certificate the box presents when
	// verified as serverName (an error: verification failed).
	served := func(serverName string) ([]string, error) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		leaf := c.ConnectionState().PeerCertificates[0]
		names := append([]string(nil), leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		return names, nil
	}
	if _, err := served("camera-box.lan"); err == nil {
		t.Fatal("the first certificate already verifies as camera-box.lan")
	}
	if out, errOut, code := kvsedgeCmd(t, env, "cert", "--name", "camera-box.lan"); code != 0 || !strings.Contains(out, "camera-box.lan") || !strings.Contains(out, "127.0.0.1") {
		t.Fatalf("kvsedge cert --name camera-box.lan: exit %d\n%s%s", code, out, errOut)
	}
	// The running server reloads the pair on the next handshake.
	deadline := time.Now().Add(10 * time.Second)
	for {
		names, err := served("127.0.0.1")
		if err != nil {
			t.Fatalf("after adding a name, 127.0.0.1 no longer verifies: %v", err)
		}
		if slices.Contains(names, "camera-box.lan") {
			if !slices.Contains(names, "localhost") || !slices.Contains(names, "::1") {
				t.Fatalf("the new certificate lost the defaults: %v", names)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still presents %v", names)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := served("camera-box.lan"); err != nil {
		t.Fatalf("camera-box.lan does not verify: %v", err)
	}
	// A signed API call over HTTPS to 127.0.0.1 (what every local client does).
	if _, err := newSDKWith(t, p.endpoint, sdkOptions{RootCAs: pool}).KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{}); err != nil {
		t.Fatalf("ListStreams over HTTPS after adding a name: %v", err)
	}

	if _, errOut, code := kvsedgeCmd(t, env, "cert", "--remove-name", "camera-box.lan"); code != 0 {
		t.Fatalf("kvsedge cert --remove-name: exit %d\n%s", code, errOut)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		names, err := served("127.0.0.1")
		if err != nil {
			t.Fatalf("after removing a name, 127.0.0.1 no longer verifies: %v", err)
		}
		if !slices.Contains(names, "camera-box.lan") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("--remove-name: the server still presents %v", names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestExportMP4AndJoinedMatroska: `kvsedge export --format mp4` writes
// one MP4 for the range through the box's GetClip, and --format mkv-joined
// one Matroska file; ffprobe reads every frame of both (as many as the
// fragments of the plain export hold), mkvinfo reads the joined file.
func TestExportMP4AndJoinedMatroska(t *testing.T) {
	ffprobe := fixture.Tool(t, "ffprobe")
	mkvinfo := fixture.Tool(t, "mkvinfo")
	dir := t.TempDir()
	env := append(streamEnv(dir), "KVSEDGE_DEMO=true")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	c := newSDK(t, p.endpoint)
	c.waitFragments(t, "demo", 4, 30*time.Second)
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().UTC().Format(time.RFC3339Nano)
	export := func(format string) string {
		out := filepath.Join(t.TempDir(), format)
		stdout, errOut, code := kvsedgeCmd(t, env, "export", "--endpoint", p.endpoint, "--stream", "demo", "--from", from, "--to", to,
			"--format", format, "--dir", out, "--batch", "2")
		if code != 0 {
			t.Fatalf("export --format %s: exit %d\n%s%s", format, code, stdout, errOut)
		}
		return out
	}
	files := func(dir, ext string) []string {
		m, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
		all, _ := filepath.Glob(filepath.Join(dir, "*"))
		if len(m) != len(all) {
			t.Fatalf("%s holds %v, want only %s files", dir, all, ext)
		}
		return m
	}

	// The plain export's fragments: the frames to find in the others.
	want := 0
	for _, f := range files(export("mkv"), ".mkv") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range mkvcheck.MustParseMedia(t, b) {
			for _, cl := range ch.Clusters {
				want += len(cl.Blocks)
			}
		}
	}
	if want < 4*15 {
		t.Fatalf("the plain export holds %d frames", want)
	}

	mp4 := files(export("mp4"), ".mp4")
	if len(mp4) != 1 || !strings.HasPrefix(filepath.Base(mp4[0]), "demo-") {
		t.Fatalf("export --format mp4 wrote %v, want one demo-….mp4", mp4)
	}
	joined := files(export("mkv-joined"), ".mkv")
	if len(joined) != 1 {
		t.Fatalf("export --format mkv-joined wrote %v, want one file", joined)
	}
	for _, f := range []string{mp4[0], joined[0]} {
		out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", f).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "h264,640,360" {
			t.Fatalf("ffprobe %s: %v %q", f, err, out)
		}
		if n := fixture.PacketCounts(t, f)["video"]; n != want {
			t.Errorf("%s: ffprobe reads %d frames, the fragments hold %d", filepath.Base(f), n, want)
		}
	}
	out, err := exec.Command(mkvinfo, "-s", joined[0]).CombinedOutput()
	if err != nil || strings.Count(string(out), " frame, track 1,") != want {
		t.Fatalf("mkvinfo -s %s: %v, %d frames, want %d\n%.2000s", joined[0], err, strings.Count(string(out), " frame, track 1,"), want, out)
	}
}

// TestHLSURLPlaysEverywhere: the session `kvsedge hls-url` hands out has
// one initialization segment and no discontinuities (DiscontinuityMode
// NEVER: VLC stops after the first segment of the API's default, ALWAYS),
// ffprobe reads it live with -read_intervals, a real VLC plays every frame
// of a recorded range, and the API's default stays KVS's ALWAYS.
func TestHLSURLPlaysEverywhere(t *testing.T) {
	ffprobe := fixture.Tool(t, "ffprobe")
	dir := t.TempDir()
	env := append(streamEnv(dir), "KVSEDGE_DEMO=true")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	newSDK(t, p.endpoint).waitFragments(t, "demo", 4, 30*time.Second)
	out, errOut, code := kvsedgeCmd(t, env, "hls-url", "--endpoint", p.endpoint, "--stream", "demo")
	if code != 0 || !strings.HasPrefix(out, p.endpoint+"/") {
		t.Fatalf("hls-url: exit %d %q %s", code, out, errOut)
	}
	master := strings.TrimSpace(out)
	media := mediaPlaylist(t, master)
	if n := strings.Count(media, "#EXTINF"); n < 3 {
		t.Fatalf("live media playlist has %d segments:\n%s", n, media)
	}
	if strings.Count(media, "#EXT-X-MAP") != 1 || strings.Contains(media, "#EXT-X-DISCONTINUITY") {
		t.Fatalf("hls-url's session is not playable in VLC (one map, no discontinuity):\n%s", media)
	}
	probe, err := exec.Command(ffprobe, "-v", "error", "-read_intervals", "%+3", "-show_entries", "stream=codec_name", "-of", "csv=p=0", master).CombinedOutput()
	if err != nil || !strings.Contains(string(probe), "h264") {
		t.Fatalf("ffprobe -read_intervals %%+3 of the live session: %v %q", err, probe)
	}
	// VLC plays a recorded range of such a session whole: every frame
	// ffprobe reads from it (VLC remuxes what it plays into a file).
	from := time.Now().Add(-12 * time.Second).UTC().Format(time.RFC3339)
	to := time.Now().Add(-2 * time.Second).UTC().Format(time.RFC3339)
	out, errOut, code = kvsedgeCmd(t, env, "hls-url", "--endpoint", p.endpoint, "--stream", "demo", "--mode", "ON_DEMAND", "--from", from, "--to", to)
	if code != 0 {
		t.Fatalf("hls-url --mode ON_DEMAND: exit %d %s", code, errOut)
	}
	onDemand := strings.TrimSpace(out)
	want := packetsIn(t, onDemand)
	if got := vlcFrames(t, onDemand); want < 60 || got < want-15 {
		t.Fatalf("VLC played %d frames of hls-url's session, ffprobe reads %d", got, want)
	} else {
		t.Logf("VLC played %d frames of hls-url's session, ffprobe reads %d", got, want)
	}
	out, _, _ = kvsedgeCmd(t, env, "hls-url", "--endpoint", p.endpoint, "--stream", "demo", "--mode", "ON_DEMAND", "--from", from, "--to", to,
		"--discontinuity-mode", "ALWAYS")
	t.Logf("VLC played %d of %d frames of the same range with DiscontinuityMode ALWAYS (the API's default)", vlcFrames(t, strings.TrimSpace(out)), want)

	// The API's default is KVS's: a discontinuity before every fragment.
	def, err := newSDK(t, p.endpoint).Archived.GetHLSStreamingSessionURL(sdkCtx(t), &kinesisvideoarchivedmedia.GetHLSStreamingSessionURLInput{
		StreamName: aws.String("demo"), PlaybackMode: amtypes.HLSPlaybackModeLive})
	if err != nil {
		t.Fatal(err)
	}
	if m := mediaPlaylist(t, aws.ToString(def.HLSStreamingSessionURL)); strings.Count(m, "#EXT-X-DISCONTINUITY") < 2 {
		t.Fatalf("the API's default session has no discontinuities:\n%s", m)
	}
}

// packetsIn is ffprobe's count of the video packets of a finite HLS session.
func packetsIn(t *testing.T, url string) int {
	t.Helper()
	return fixture.PacketCounts(t, url)["video"]
}

// vlcFrames plays url in a headless VLC (cvlc), remuxing what it plays into
// an MPEG-TS file, and returns the video frames in that file. VLC refuses
// to run as root: as root it runs as nobody.
func vlcFrames(t *testing.T, url string) int {
	t.Helper()
	cvlc := fixture.Tool(t, "cvlc")
	// Not under t.TempDir(), whose parent is private to root.
	dir, err := os.MkdirTemp("", "kvsedge-vlc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ts := filepath.Join(dir, "played.ts")
	args := []string{cvlc, "-I", "dummy", "--vout", "dummy", "--aout", "dummy", "--play-and-exit", url, "--sout", "#std{access=file,mux=ts,dst=" + ts + "}"}
	if os.Geteuid() == 0 {
		args = append([]string{fixture.Tool(t, "setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	done := make(chan error, 1)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("VLC did not finish playing %s:\n%s", url, log.String())
	}
	if st, err := os.Stat(ts); err != nil || st.Size() == 0 {
		t.Logf("VLC wrote nothing (%v):\n%.3000s", err, log.String())
		return 0
	}
	return fixture.PacketCounts(t, ts)["video"]
}

// mediaPlaylist fetches an HLS master playlist and returns its media
// playlist.
func mediaPlaylist(t *testing.T, master string) string {
	t.Helper()
	get := func(u string) string {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", u, resp.Status, b)
		}
		return string(b)
	}
	m := get(master)
	base, _ := url.Parse(master)
	for _, line := range strings.Split(m, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			ref, _ := url.Parse(strings.TrimSpace(line))
			return get(base.ResolveReference(ref).String())
		}
	}
	t.Fatalf("master playlist names no media playlist:\n%s", m)
	return ""
}
