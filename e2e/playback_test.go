package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestPlaybackWithAWSCLI: the installed aws CLI obtains HLS session URLs
// in each playback mode and a DASH one for the demo camera's stream, and
// ffprobe plays them from their URLs.
func TestPlaybackWithAWSCLI(t *testing.T) {
	dir := t.TempDir()
	p := startKvsedge(t, append(streamEnv(dir), "KVSEDGE_DEMO=true"), "--listen", "127.0.0.1:0")
	sel := "FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=2020-01-01T00:00:00Z,EndTimestamp=2100-01-01T00:00:00Z}"
	var l struct {
		Fragments []struct{ ServerTimestamp float64 }
	}
	for deadline := time.Now().Add(20 * time.Second); len(l.Fragments) < 3; time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("the demo camera recorded nothing")
		}
		awsCLI(t, p.endpoint, nil, &l, "kinesis-video-archived-media", "list-fragments", "--stream-name", "demo", "--fragment-selector", sel)
	}
	from := time.Now().Add(-2 * time.Minute).UTC().Format(time.RFC3339)
	to := time.Now().UTC().Format(time.RFC3339)
	rng := "FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=" + from + ",EndTimestamp=" + to + "}"
	var urls []string
	for _, mode := range []string{"LIVE", "LIVE_REPLAY", "ON_DEMAND"} {
		args := []string{"kinesis-video-archived-media", "get-hls-streaming-session-url", "--stream-name", "demo", "--playback-mode", mode}
		if mode != "LIVE" {
			args = append(args, "--hls-fragment-selector", rng)
		}
		var out struct{ HLSStreamingSessionURL string }
		awsCLI(t, p.endpoint, nil, &out, args...)
		if !strings.HasPrefix(out.HLSStreamingSessionURL, p.endpoint+"/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
			t.Fatalf("%s: %q", mode, out.HLSStreamingSessionURL)
		}
		urls = append(urls, out.HLSStreamingSessionURL)
	}
	var dash struct{ DASHStreamingSessionURL string }
	awsCLI(t, p.endpoint, nil, &dash, "kinesis-video-archived-media", "get-dash-streaming-session-url", "--stream-name", "demo",
		"--playback-mode", "ON_DEMAND", "--dash-fragment-selector", rng)
	urls = append(urls, dash.DASHStreamingSessionURL)
	ffprobe := needTool(t, "ffprobe")
	for _, u := range []string{urls[0], urls[2], urls[3]} {
		out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", u).Output()
		if err != nil || !strings.Contains(string(out), "h264,640,360") {
			t.Fatalf("ffprobe %s: %v %q", u[:60], err, out)
		}
	}
}
