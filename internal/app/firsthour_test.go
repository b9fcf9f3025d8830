package app

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/spf13/pflag"
)

// lockedBuffer is a log sink the app's goroutines write while the test
// reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCamerasGetTheDefaultRetentionAndLiveOnlyIsSaid: a camera without
// retention_hours creates its stream with media.default_retention_hours
// (24 unless configured); one with retention_hours: 0 keeps nothing, and
// its state (what `kvsedge cameras` and the console show) and the
// start-up log say "live only, nothing kept". The start-up log's first
// lines say where the console is, how to sign in and the aws CLI endpoint.
func TestCamerasGetTheDefaultRetentionAndLiveOnlyIsSaid(t *testing.T) {
	for _, c := range []struct {
		name     string
		media    string
		wantDflt int
	}{
		{"built-in default", "", 24},
		{"configured default", "media:\n  default_retention_hours: 72\n", 72},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "kvsedge.yaml")
			// Cameras at a loopback port nobody listens on: they retry, and
			// their streams are created at once.
			yml := fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: %s\nprofile: none\n%scameras:\n"+
				"  - stream: desk\n    url: rtsp://127.0.0.1:1/desk\n"+
				"  - stream: nokeep\n    url: rtsp://127.0.0.1:1/nokeep\n    retention_hours: 0\n"+
				"  - stream: lobby\n    url: rtsp://127.0.0.1:1/lobby\n    retention_hours: 6\n", filepath.Join(dir, "data"), c.media)
			if err := os.WriteFile(file, []byte(yml), 0o600); err != nil {
				t.Fatal(err)
			}
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			config.Flags(fs)
			if err := fs.Parse([]string{"--config", file}); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(fs, nil)
			if err != nil {
				t.Fatal(err)
			}
			logs := &lockedBuffer{}
			a, err := Open(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil)), ConfigFile: file})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			want := map[string]int{"desk": c.wantDflt, "nokeep": 0, "lobby": 6}
			for stream, hours := range want {
				info, err := a.Engine().Stream(engine.StreamRef{Name: stream})
				if err != nil || info.DataRetentionInHours != hours {
					t.Errorf("stream %s: %v, retention %+v, want %d h", stream, err, info, hours)
				}
			}
			states := map[string]status.Camera{}
			for _, s := range a.Cameras().States() {
				states[s.Stream] = s
			}
			for stream, hours := range want {
				s := states[stream]
				wantText := fmt.Sprintf("%d h", hours)
				if hours == 0 {
					wantText = status.LiveOnly
				}
				if s.RetentionHours != hours || s.Retention != wantText {
					t.Errorf("camera %s: retention %d %q, want %d %q", stream, s.RetentionHours, s.Retention, hours, wantText)
				}
			}
			log := logs.String()
			var liveOnly []string
			for _, line := range strings.Split(log, "\n") {
				if strings.Contains(line, "live only, nothing kept") {
					liveOnly = append(liveOnly, line)
				}
			}
			if len(liveOnly) != 1 || !strings.Contains(liveOnly[0], "camera=nokeep") || !strings.Contains(liveOnly[0], "level=WARN") {
				t.Errorf("start-up log lines saying live only: %q, want one warning for nokeep\n%s", liveOnly, log)
			}
			lines := strings.Split(log, "\n")
			first := strings.Join(lines[:min(len(lines), 5)], "\n")
			endpoint := a.Endpoint()
			abs, _ := filepath.Abs(file)
			for _, w := range []string{
				"console: open " + endpoint + "/ in a browser; sign in with the key pair `kvsedge credentials --config " + abs,
				`aws CLI: eval \"$(kvsedge credentials --config ` + abs,
				"aws --endpoint-url " + endpoint + " kinesisvideo list-streams",
			} {
				if !strings.Contains(first, w) {
					t.Errorf("the first log lines do not say %q:\n%s", w, first)
				}
			}
		})
	}
}
