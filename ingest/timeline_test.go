package ingest

import (
	"math/rand/v2"
	"testing"
	"time"
)

// driftRun feeds a timeline three hours of 25 fps video whose RTP clock
// runs ppm parts per million off real time, each frame with the camera's
// NTP time (real time), arriving minDelay plus jitter later (a burst of
// late ones now and then), and reports the largest distance from real
// time after the first minute and the smallest and largest step between
// frames.
func driftRun(t *testing.T, ppm float64, minDelay time.Duration) (worst time.Duration, minStep, maxStep int64) {
	t.Helper()
	start := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var now time.Time
	tl := &timeline{now: func() time.Time { return now }}
	rng := rand.New(rand.NewPCG(1, 2))
	const frame = 40 * time.Millisecond
	minStep, maxStep = 1<<62, 0
	var prev int64
	for i := 0; i < 3*3600*25; i++ {
		real := time.Duration(i) * frame
		pts := time.Duration(float64(real) * (1 + ppm/1e6))
		delay := minDelay + time.Duration(rng.IntN(80))*time.Millisecond
		if i%500 == 100 {
			delay += 700 * time.Millisecond // a burst held up somewhere
		}
		now = start.Add(real + delay)
		ms := tl.ms(pts, start.Add(real), true, true)
		if i > 0 {
			minStep, maxStep = min(minStep, ms-prev), max(maxStep, ms-prev)
		}
		prev = ms
		if real > time.Minute {
			worst = max(worst, absDur(time.Duration(ms-start.Add(real).UnixMilli())*time.Millisecond))
		}
	}
	return worst, minStep, maxStep
}

// TestTimelineSlewsAwayDrift: a camera whose RTP clock drifts 200 ppm
// from its own NTP clock (sender reports) keeps its timestamps within a
// few ms of that clock for three hours, with every frame 40 ms ± 2 after
// the one before: no step, so no gap or overlap in the recording (before,
// they stepped by a second every 83 minutes).
func TestTimelineSlewsAwayDrift(t *testing.T) {
	for _, c := range []struct {
		name  string
		ppm   float64
		delay time.Duration
		most  time.Duration
	}{
		{"RTP clock slow", -200, 30 * time.Millisecond, 5 * time.Millisecond},
		{"RTP clock fast", 200, 30 * time.Millisecond, 5 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			worst, lo, hi := driftRun(t, c.ppm, c.delay)
			t.Logf("farthest from the reference %v; steps %d…%d ms", worst, lo, hi)
			if worst > c.most || lo < 38 || hi > 42 {
				t.Fatalf("farthest from the reference %v (at most %v), steps %d…%d ms (40 ± 2)", worst, c.most, lo, hi)
			}
		})
	}
}

// TestTimelineStepsForWhatIsNotDrift: the camera's clock set five
// minutes ahead is followed at once (ten minutes from the box's clock is
// absurd: TestTimelineIsMonotonicAndFollowsNTP); video times never go
// back.
func TestTimelineStepsForWhatIsNotDrift(t *testing.T) {
	start := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	now := start
	tl := &timeline{now: func() time.Time { return now }}
	ms := func(pts time.Duration, ntp time.Time, have bool) int64 { return tl.ms(pts, ntp, have, true) }
	for i := range 100 {
		now = start.Add(time.Duration(i) * 40 * time.Millisecond)
		ms(time.Duration(i)*40*time.Millisecond, now, true)
	}
	now = start.Add(4 * time.Second)
	if got, want := ms(4*time.Second, now.Add(5*time.Minute), true), now.Add(5*time.Minute).UnixMilli(); got != want {
		t.Fatalf("the camera's clock set five minutes ahead: %d, want %d", got, want)
	}
	if back := ms(4040*time.Millisecond, now, true); back <= now.Add(5*time.Minute).UnixMilli() {
		t.Fatalf("video time went back: %d", back)
	}

}
