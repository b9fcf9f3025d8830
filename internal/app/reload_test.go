package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/spf13/pflag"
)

// TestConfigEditsNeverStopACamera: cameras from the configuration file
// keep recording, unrestarted, through a truncate-then-write save, an
// invalid file (reported in /readyz until fixed) and an identical
// rewrite; a real change restarts only the camera it changes.
func TestConfigEditsNeverStopACamera(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	d, err := ingest.NewDemoSource(ingest.DemoClip, ingest.DemoFPS)
	if err != nil {
		t.Fatal(err)
	}
	aus, sps, pps := d.AccessUnits()
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, path := range []string{"a", "b"} {
		go rtsptest.Publish(ctx, t, rl.URL(path), aus, sps, pps, 15, 0)
		rl.WaitPublished(t, path, 20*time.Second)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "kvsedge.yaml")
	good := fmt.Sprintf("listen: 127.0.0.1:0\ndata_dir: %s\nprofile: none\ncameras:\n  - stream: a\n    url: %s\n    transport: tcp\n    retention_hours: 1\n  - stream: b\n    url: %s\n    transport: tcp\n    retention_hours: 1\n",
		filepath.Join(dir, "data"), rl.URL("a"), rl.URL("b"))
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.Flags(fs)
	if err := fs.Parse([]string{"--config", file}); err != nil {
		t.Fatal(err)
	}
	load := func() (*config.Config, error) { return config.Load(fs, nil) }
	cfg, err := load()
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), ConfigFile: file, Reload: load})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cam := func(name string) status.Camera {
		for _, s := range a.Cameras().States() {
			if s.Stream == name {
				return s
			}
		}
		return status.Camera{}
	}
	recording := func() {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for cam("a").State != ingest.StateRecording || cam("b").State != ingest.StateRecording {
			if time.Now().After(deadline) {
				t.Fatalf("cameras: %+v %+v", cam("a"), cam("b"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	recording()
	sinceA, sinceB := cam("a").Since, cam("b").Since
	unchanged := func(what string) {
		t.Helper()
		time.Sleep(reloadDelay + 700*time.Millisecond) // let a reload, if any, happen
		if ca, cb := cam("a"), cam("b"); ca.State != ingest.StateRecording || cb.State != ingest.StateRecording ||
			!ca.Since.Equal(sinceA) || !cb.Since.Equal(sinceB) {
			t.Fatalf("after %s: a camera stopped or restarted: %+v %+v", what, ca, cb)
		}
	}
	// 1. Truncate, then write the same content (an editor's save).
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged("a truncate-then-write save")
	// 2. An invalid file: the running set stays, /readyz says why.
	if err := os.WriteFile(file, []byte(good+"media:\n  max_cameras: -3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged("an invalid file")
	if p := a.configWatch().Problem(); p == "" {
		t.Fatal("an invalid configuration file is not reported")
	}
	// 3. Valid again, identical to what runs: nothing restarts.
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	unchanged("an identical rewrite")
	if p := a.configWatch().Problem(); p != "" {
		t.Fatalf("still reported after the fix: %s", p)
	}
	// 4. A real change of camera b restarts b only.
	changed := good[:len(good)-len("    retention_hours: 1\n")] + "    retention_hours: 2\n"
	if err := os.WriteFile(file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for cam("b").Since.Equal(sinceB) {
		if time.Now().After(deadline) {
			t.Fatalf("camera b was not restarted after its settings changed: %+v", cam("b"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !cam("a").Since.Equal(sinceA) {
		t.Fatalf("camera a restarted for a change of camera b: %+v", cam("a"))
	}
}
