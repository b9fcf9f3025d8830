package ingest

import (
	"os"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/status"
)

// TestManagerGateAndCameraLimit: cameras over the box's limit, or that the
// gate holds back (another cluster node records them), wait in STANDBY
// with the reason; running ones keep their places when the limit drops,
// and the gate opening starts a camera.
func TestManagerGateAndCameraLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	r := newRecorder(t)
	clip := demoClipForTest(t)
	var cfgs []CameraConfig
	for _, name := range []string{"a", "b", "c"} {
		src, err := NewDemoSource(clip, 15)
		if err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, CameraConfig{Stream: name, Source: src, Key: name, RetentionHours: 1})
	}
	open := map[string]bool{"a": true, "b": true, "c": false}
	r.cams.SetGate(func(stream string, _ bool) (bool, bool, string) {
		if open[stream] {
			return true, false, ""
		}
		return false, false, "recorded by its home node n2"
	})
	if err := r.cams.SetMaxCameras(1); err != nil {
		t.Fatal(err)
	}
	if err := r.cams.Apply(GroupFile, cfgs); err != nil {
		t.Fatal(err)
	}
	states := func() map[string]status.Camera {
		out := map[string]status.Camera{}
		for _, s := range r.cams.States() {
			out[s.Stream] = s
		}
		return out
	}
	st := states()
	if len(st) != 3 || st["a"].State == StateStandby || st["b"].State != StateStandby || st["c"].State != StateStandby {
		t.Fatalf("with a limit of 1 and c gated: %+v", st)
	}
	if st["c"].LastError != "recorded by its home node n2" || st["b"].LastError == "" {
		t.Fatalf("standby reasons: b %q, c %q", st["b"].LastError, st["c"].LastError)
	}
	// Raise the limit and open the gate for c: all three record.
	open["c"] = true
	if err := r.cams.SetMaxCameras(0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st = states()
		n := 0
		for _, s := range st {
			if s.State == StateRecording && s.Fragments >= 1 {
				n++
			}
		}
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not all three record: %+v", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Lower it to 2: the running cameras stay before the others by name, c
	// waits.
	if err := r.cams.SetMaxCameras(2); err != nil {
		t.Fatal(err)
	}
	if st = states(); st["c"].State != StateStandby || st["a"].State != StateRecording || st["b"].State != StateRecording {
		t.Fatalf("after lowering the limit to 2: %+v", st)
	}
}

func demoClipForTest(t *testing.T) []byte {
	t.Helper()
	clip, err := os.ReadFile("democlip.h264")
	if err != nil {
		t.Fatal(err)
	}
	return clip
}
