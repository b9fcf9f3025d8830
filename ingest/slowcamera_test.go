package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// TestCameraAtOneFrameEveryFiveSeconds: a timelapse or motion-only camera
// (0.2 fps, every frame a key frame) is recorded without reconnects and
// without losing a frame: each frame is stored, the silence between frames
// is neither a stall nor a fragment cut inside a frame.
func TestCameraAtOneFrameEveryFiveSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	d := loadDemo(t)
	var keys [][][]byte
	for i, au := range d.aus {
		if d.keys[i] {
			keys = append(keys, au)
		}
	}
	rl := rtsptest.StartRelay(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const frames = 6
	sentc := make(chan int, 1)
	go func() {
		sentc <- rtsptest.PublishEvery(ctx, t, rl.URL("slow"), keys, d.sps, d.pps, 5*time.Second, frames)
	}()
	rl.WaitPublished(t, "slow", 20*time.Second)
	rec := newRecorder(t)
	src, err := NewRTSPSource(rl.URL("slow"), "tcp")
	if err != nil {
		t.Fatal(err)
	}
	// The camera's defaults: the stall timeout and read timeout are what a
	// deployed box uses.
	if err := rec.cams.Apply("slow", []CameraConfig{{Stream: "slow", Source: src, Key: "slow", RetentionHours: 1}}); err != nil {
		t.Fatal(err)
	}
	// The publisher sends frames 0…5 at 0, 5, …, 25 s, then nothing. The
	// camera joins at one of the first frames; every frame after that is
	// stored once the next one arrives (a fragment ends at the next key
	// frame), the last one when the camera stops.
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		st := rec.state("slow")
		if st.Reconnects > 0 || (st.State != "" && st.State != StateRecording && st.State != StateConnecting) {
			t.Fatalf("a 0.2 fps camera is not recording: %+v", st)
		}
		if st.Fragments >= frames-2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	st := rec.state("slow")
	if st.Reconnects != 0 || st.State != StateRecording {
		t.Fatalf("after 45 s: %+v", st)
	}
	frags := rec.fragments(t, "slow")
	stored := 0
	for i, f := range frags {
		stored += int(f.Frames)
		if i > 0 && f.ProducerMs-frags[i-1].ProducerMs < 4500 {
			t.Fatalf("fragments %d and %d are %d ms apart, the camera sends a frame every 5 s", i-1, i, f.ProducerMs-frags[i-1].ProducerMs)
		}
	}
	if stored < frames-2 {
		t.Fatalf("%d frames stored of %d sent: %+v", stored, frames, frags)
	}
	cancel()
	<-sentc
}
