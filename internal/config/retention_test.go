package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCameraRetentionDefault: a camera without retention_hours gets
// media.default_retention_hours (24 built in), retention_hours: 0 stays 0
// (live only), and a negative default is reported by its key.
func TestCameraRetentionDefault(t *testing.T) {
	file := filepath.Join(t.TempDir(), "kvsedge.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cams := "cameras:\n  - {stream: a, url: rtsp://cam/a}\n  - {stream: b, url: rtsp://cam/b, retention_hours: 0}\n  - {stream: c, url: rtsp://cam/c, retention_hours: 6}\n"
	for _, c := range []struct {
		media string
		want  [3]int
	}{
		{"", [3]int{24, 0, 6}},
		{"media: {default_retention_hours: 72}\n", [3]int{72, 0, 6}},
		{"media: {default_retention_hours: 0}\n", [3]int{0, 0, 6}},
	} {
		write(c.media + cams)
		cfg, err := loadFor(t, nil, "--config", file)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range c.want {
			if got := cfg.CameraRetentionHours(cfg.Cameras[i]); got != want {
				t.Errorf("%q camera %s: retention %d, want %d", c.media, cfg.Cameras[i].Stream, got, want)
			}
		}
		if r := cfg.Redacted(); r.Cameras[0].RetentionHours != nil || r.Cameras[1].RetentionHours == nil {
			t.Errorf("redacted copy changed retention_hours: %+v", r.Cameras)
		}
	}
	write("media: {default_retention_hours: -1}\n" + cams)
	if _, err := loadFor(t, nil, "--config", file); err == nil || !strings.Contains(err.Error(), "media.default_retention_hours") {
		t.Fatalf("a negative default: %v", err)
	}
}
