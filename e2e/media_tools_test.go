package e2e

// External tools the media end-to-end tests read output back with.

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// ffprobeStreams runs ffprobe -count_frames on path.
type probeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	NbReadFrames string `json:"nb_read_frames"`
}

func ffprobe(t *testing.T, path string) []probeStream {
	t.Helper()
	bin := fixture.Tool(t, "ffprobe")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-v", "error", "-count_frames", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v %s", path, err, stderr)
	}
	var parsed struct{ Streams []probeStream }
	if err := json.Unmarshal(out, &parsed); err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return parsed.Streams
}

// probeSummary maps codec → frame count.
func probeSummary(streams []probeStream) map[string]string {
	m := map[string]string{}
	for _, s := range streams {
		m[s.CodecName] = s.NbReadFrames
	}
	return m
}

func mkvinfo(t *testing.T, path string) {
	t.Helper()
	bin := fixture.Tool(t, "mkvinfo")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, path).CombinedOutput()
	if err != nil {
		tail := string(out)
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		t.Fatalf("mkvinfo %s: %v\n%s", path, err, tail)
	}
}
