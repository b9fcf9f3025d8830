package producer

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestReclusterFilesOfFFmpegAndMkvmerge: files written by ffmpeg and
// mkvmerge with default settings (clusters by size and time, B-frames,
// Cues, SeekHead, known sizes) become KVS-shaped fragments that the
// server's strict reader accepts, each starting with a video key frame,
// with every frame of the input.
func TestReclusterFilesOfFFmpegAndMkvmerge(t *testing.T) {
	ff := fixture.Tool(t, "ffmpeg")
	dir := t.TempDir()
	gop1s := filepath.Join(dir, "gop1s.mkv")
	if out, err := exec.Command(ff, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i",
		"sine=frequency=440:sample_rate=48000", "-t", "9", "-c:v", "libx264", "-preset", "veryfast", "-g", "25",
		"-c:a", "aac", "-f", "matroska", gop1s).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	defaults := filepath.Join(dir, "defaults.mkv") // libx264's default GOP: one key frame in 7 s
	if out, err := exec.Command(ff, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "7",
		"-c:v", "libx264", "-preset", "veryfast", defaults).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	files := map[string]string{"ffmpeg-gop1s": gop1s, "ffmpeg-defaults": defaults}
	if _, err := exec.LookPath("mkvmerge"); err == nil || os.Getenv("CI") != "" {
		mm := fixture.Tool(t, "mkvmerge")
		merged := filepath.Join(dir, "mkvmerge.mkv")
		if out, err := exec.Command(mm, "-q", "-o", merged, gop1s).CombinedOutput(); err != nil {
			t.Fatalf("mkvmerge: %v\n%s", err, out)
		}
		files["mkvmerge"] = merged
	}
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			want := fixture.PacketCounts(t, path)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			rd := mkv.NewReader(Recluster(f, 2*time.Second), mkv.Options{RequireEveryTrack: true})
			got := map[uint8]int{}
			var frags []*mkv.Fragment
			for {
				ev, err := rd.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("fragment %d: %v", len(frags), err)
				}
				if ev != mkv.EventFragmentEnd {
					continue
				}
				fr := rd.TakeFragment()
				frags = append(frags, fr)
				if err := mkv.ForEachBlock(fr.Header, fr.Buf[:fr.ClusterLen], func(b mkv.Block) error {
					for _, tr := range fr.Header.Tracks {
						if tr.Number == b.Track {
							got[tr.Type]++
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			if got[1] != want["video"] || got[2] != want["audio"] {
				t.Fatalf("frames: video %d audio %d, input has %v", got[1], got[2], want)
			}
			for i, fr := range frags[:len(frags)-1] {
				if d := fr.Duration(); d < 2*time.Second-100*time.Millisecond {
					t.Errorf("fragment %d lasts %v, under the 2 s asked", i, d)
				}
			}
			if name == "ffmpeg-gop1s" && len(frags) < 4 {
				t.Errorf("%d fragments of 9 s with a key frame every second", len(frags))
			}
			t.Logf("%s: %d fragments, video %d, audio %d", name, len(frags), got[1], got[2])
		})
	}
}

// TestReclusterRefusesWhatIsNotMatroska: garbage gives an error, not a
// hang or a panic.
func TestReclusterRefusesWhatIsNotMatroska(t *testing.T) {
	_, err := io.ReadAll(Recluster(bytes.NewReader([]byte("this is not a matroska file at all")), 2*time.Second))
	if err == nil {
		t.Fatal("garbage accepted")
	}
}
