package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestDemoCamera: with the demo on, a new box records a live "demo"
// stream that ffprobe reads back as H.264 640x360, and /listCameras shows
// the camera recording.
func TestDemoCamera(t *testing.T) {
	dir := t.TempDir()
	env := append(streamEnv(dir), "KVSEDGE_DEMO=true", "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=1s")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	sdk := newSDK(t, p.endpoint)
	for _, f := range sdk.waitFragments(t, "demo", 3, 20*time.Second) {
		if f.FragmentLengthInMilliseconds < 1500 || f.FragmentLengthInMilliseconds > 2500 {
			t.Errorf("fragment %s lasts %d ms, want about 2 s", aws.ToString(f.FragmentNumber), f.FragmentLengthInMilliseconds)
		}
	}
	// GetMedia from the earliest fragment; the short idle timeout ends it
	// once it has caught up with the camera.
	out := filepath.Join(t.TempDir(), "demo.mkv")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	ct := sdk.getMedia(t, "demo", "EARLIEST", f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if ct != "video/webm" {
		t.Fatalf("GetMedia Content-Type %q", ct)
	}
	ffprobe := fixture.Tool(t, "ffprobe")
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
	stdout, stderr, code := kvsedgeCmd(t, env, "cameras", "--json", "--endpoint", p.endpoint)
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
