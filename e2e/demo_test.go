package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoCamera: with the demo on, a new box records a live "demo"
// stream that ffprobe reads back as H.264 640x360, and /listCameras shows
// the camera recording.
func TestDemoCamera(t *testing.T) {
	dir := t.TempDir()
	env := append(streamEnv(dir), "KVSEDGE_DEMO=true", "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=1s")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	sel := "FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=2020-01-01T00:00:00Z,EndTimestamp=2100-01-01T00:00:00Z}"
	var l struct {
		Fragments []struct {
			FragmentNumber               string
			FragmentLengthInMilliseconds int64
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(l.Fragments) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("demo stream has %d fragments after 20 s", len(l.Fragments))
		}
		time.Sleep(time.Second)
		awsCLI(t, p.endpoint, nil, &l, "kinesis-video-archived-media", "list-fragments", "--stream-name", "demo", "--fragment-selector", sel)
	}
	for _, f := range l.Fragments {
		if f.FragmentLengthInMilliseconds < 1500 || f.FragmentLengthInMilliseconds > 2500 {
			t.Errorf("fragment %s lasts %d ms, want about 2 s", f.FragmentNumber, f.FragmentLengthInMilliseconds)
		}
	}
	out := filepath.Join(t.TempDir(), "demo.mkv")
	awsCLI(t, p.endpoint, nil, nil, "kinesis-video-media", "get-media", "--stream-name", "demo",
		"--start-selector", "StartSelectorType=EARLIEST", out)
	ffprobe := needTool(t, "ffprobe")
	js, err := exec.Command(ffprobe, "-v", "error", "-count_frames", "-show_streams", "-of", "json", out).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var probe struct {
		Streams []struct {
			CodecName    string `json:"codec_name"`
			Width        int
			Height       int
			NbReadFrames string `json:"nb_read_frames"`
		}
	}
	if err := json.Unmarshal(js, &probe); err != nil || len(probe.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", js, err)
	}
	s := probe.Streams[0]
	if s.CodecName != "h264" || s.Width != 640 || s.Height != 360 || s.NbReadFrames == "" || s.NbReadFrames == "0" {
		t.Fatalf("demo stream probed as %+v", s)
	}
	if st, err := os.Stat(out); err != nil || st.Size() < 100_000 {
		t.Fatalf("GetMedia output: %v", err)
	}

	// The camera's state, through the box's own API.
	stdout, stderr, code := kvsedgeCmd(t, env, "cameras", "--endpoint", p.endpoint)
	var cams struct {
		Cameras []struct {
			Stream, State string
			Fragments     int
			FPS           float64 `json:"fps"`
		}
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &cams) != nil || len(cams.Cameras) != 1 {
		t.Fatalf("kvsedge cameras: exit %d\n%s\n%s", code, stdout, stderr)
	}
	c := cams.Cameras[0]
	if c.Stream != "demo" || c.State != "RECORDING" || c.Fragments < 3 || c.FPS < 10 {
		t.Fatalf("demo camera state %+v", c)
	}
	if !strings.Contains(p.logs.String(), "demo camera recording") {
		t.Fatal("start-up does not say the demo camera records")
	}
}
