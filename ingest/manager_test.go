package ingest

import (
	"fmt"
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
	// c's history: held back, recording, stopped when the limit dropped,
	// held back again (the console's outage markers).
	var seq []string
	for i, ch := range r.cams.StateChanges("c") {
		seq = append(seq, ch.State)
		if i > 0 && ch.At.Before(r.cams.StateChanges("c")[i-1].At) {
			t.Fatalf("c's changes are not in time order: %+v", r.cams.StateChanges("c"))
		}
	}
	want := []string{StateStandby, StateConnecting, StateRecording, StateStopped, StateStandby}
	if fmt.Sprint(seq) != fmt.Sprint(want) {
		t.Fatalf("c's state changes %v, want %v", seq, want)
	}
	// A camera no longer configured is forgotten.
	if err := r.cams.Apply(GroupFile, cfgs[:2]); err != nil {
		t.Fatal(err)
	}
	if ch := r.cams.StateChanges("c"); len(ch) != 0 {
		t.Fatalf("the removed camera's changes are kept: %+v", ch)
	}
	if ch := r.cams.StateChanges("a"); len(ch) < 2 || ch[len(ch)-1].State != StateRecording {
		t.Fatalf("a's changes: %+v", ch)
	}
	// Closed, the manager starts nothing, whatever a late caller asks (a
	// cluster membership change after shutdown began).
	r.cams.Close()
	if err := r.cams.Apply(GroupFile, cfgs); err != nil {
		t.Fatal(err)
	}
	if err := r.cams.Reevaluate(); err != nil {
		t.Fatal(err)
	}
	for _, s := range r.cams.States() {
		if s.State != StateStopped && s.State != StateStandby {
			t.Fatalf("after Close: %+v", r.cams.States())
		}
	}
}

// TestStateHistory: reconnect attempts within an outage add no entries, a
// new error or state does, and a camera keeps at most maxChanges.
func TestStateHistory(t *testing.T) {
	h := newStateHistory()
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	h.record("cam", StateConnecting, at(0), "")
	h.record("cam", StateRecording, at(1), "")
	h.record("cam", StateRecording, at(2), "") // the stall detector's every second
	h.record("cam", StateRetrying, at(10), "dial tcp: connection refused")
	for s := 11; s < 100; s += 2 { // attempts that fail the same way
		h.record("cam", StateConnecting, at(s), "")
		h.record("cam", StateRetrying, at(s+1), "dial tcp: connection refused")
	}
	h.record("cam", StateConnecting, at(100), "")
	h.record("cam", StateRetrying, at(101), "401 Unauthorized")
	h.record("cam", StateConnecting, at(102), "")
	h.record("cam", StateRecording, at(103), "")
	got := h.changes("cam")
	want := []status.CameraChange{{State: StateConnecting, At: at(0)}, {State: StateRecording, At: at(1)},
		{State: StateRetrying, At: at(10), Error: "dial tcp: connection refused"},
		{State: StateRetrying, At: at(101), Error: "401 Unauthorized"}, {State: StateRecording, At: at(103)}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes:\n got %v\nwant %v", got, want)
	}
	for i := range 2 * maxChanges {
		h.record("flappy", []string{StateRecording, StatePaused}[i%2], at(i), "full")
	}
	if got := h.changes("flappy"); len(got) != maxChanges || !got[len(got)-1].At.Equal(at(2*maxChanges-1)) || !got[0].At.Equal(at(maxChanges)) {
		t.Fatalf("a flapping camera keeps %d changes, %v … %v", len(got), got[0].At, got[len(got)-1].At)
	}
	h.keep(map[string]bool{"flappy": true})
	if len(h.changes("cam")) != 0 || len(h.changes("flappy")) != maxChanges {
		t.Fatal("keep forgot the wrong camera")
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
