package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestPutMediaCLIAnyMatroska: `kvsedge put-media` uploads ordinary
// Matroska — a file written by ffmpeg with default clustering, the same
// remuxed by mkvmerge (laced audio), and ffmpeg's output on a pipe — cut
// into fragments at key frames; GetMedia returns every frame of the input.
func TestPutMediaCLIAnyMatroska(t *testing.T) {
	ff := fixture.Tool(t, "ffmpeg")
	mm := fixture.Tool(t, "mkvmerge")
	dir := t.TempDir()
	p := startKvsedge(t, append(streamEnv(t.TempDir()), "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=1s"), "--listen", "127.0.0.1:0")
	c := newSDK(t, p.endpoint)
	src := []string{"-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i",
		"sine=frequency=440:sample_rate=48000", "-t", "8", "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-c:a", "aac"}
	ffFile := filepath.Join(dir, "ffmpeg.mkv")
	if out, err := exec.Command(ff, append(src, ffFile)...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	mmFile := filepath.Join(dir, "mkvmerge.mkv")
	if out, err := exec.Command(mm, "-q", "-o", mmFile, ffFile).CombinedOutput(); err != nil {
		t.Fatalf("mkvmerge: %v\n%s", err, out)
	}
	want := fixture.PacketCounts(t, ffFile)
	env := []string{"AWS_ACCESS_KEY_ID=" + e2eAKID, "AWS_SECRET_ACCESS_KEY=" + e2eSecret, "AWS_DEFAULT_REGION=us-west-2"}
	upload := func(t *testing.T, stream string, in []byte, args ...string) {
		t.Helper()
		if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String(stream),
			DataRetentionInHours: aws.Int32(24)}); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(kvsedgeBin, append([]string{"put-media", "--stream", stream, "--endpoint", p.endpoint}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		if in != nil {
			cmd.Stdin = bytes.NewReader(in)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("put-media: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "ERROR") {
			t.Fatalf("put-media: %s", out)
		}
		listed := c.listFragments(t, stream)
		if len(listed) < 4 {
			t.Fatalf("%d fragments stored of 8 s cut at 2 s: %s", len(listed), out)
		}
		var media bytes.Buffer
		c.getMedia(t, stream, "EARLIEST", &media)
		got := filepath.Join(t.TempDir(), "got.mkv")
		if err := os.WriteFile(got, media.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if n := fixture.PacketCounts(t, got); n["video"] != want["video"] || n["audio"] != want["audio"] {
			t.Fatalf("GetMedia holds %v frames, the input %v (put-media said: %s)", n, want, out)
		}
	}
	t.Run("ffmpeg-file", func(t *testing.T) { upload(t, "ffmpeg-file", nil, ffFile) })
	t.Run("mkvmerge-file", func(t *testing.T) { upload(t, "mkvmerge-file", nil, mmFile) })
	t.Run("ffmpeg-pipe", func(t *testing.T) {
		piped, err := exec.Command(ff, append(src, "-f", "matroska", "-")...).Output()
		if err != nil {
			t.Fatalf("ffmpeg to a pipe: %v", err)
		}
		upload(t, "ffmpeg-pipe", piped, "-")
	})
}
