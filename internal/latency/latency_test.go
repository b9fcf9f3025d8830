package latency

import (
	"math"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	var h Histogram
	if len(BucketsMs) != buckets {
		t.Fatalf("%d bucket bounds, the histogram has %d buckets", len(BucketsMs), buckets)
	}
	before := h.Snapshot()
	// 97 fast ones (at most 0.5 ms: a bound is inside its bucket), two in
	// the 2 to 5 ms bucket, one past the last bound.
	for range 97 {
		h.Observe(500 * time.Microsecond)
	}
	h.Observe(3 * time.Millisecond)
	h.Observe(5 * time.Millisecond)
	h.Observe(11 * time.Second)
	s := h.Snapshot().Since(before)
	if s.Count() != 100 {
		t.Fatalf("count %d, want 100", s.Count())
	}
	if s.Counts[1] != 97 || s.Counts[4] != 2 || s.Counts[buckets] != 1 {
		t.Fatalf("counts %v", s.Counts)
	}
	if got, want := s.MeanMs(), (97*0.5+3+5+11000)/100; math.Abs(got-want) > 1e-9 {
		t.Fatalf("mean %g ms, want %g", got, want)
	}
	for _, c := range []struct{ q, ms float64 }{{0.5, 0.5}, {0.97, 0.5}, {0.98, 5}, {0.99, 5}, {1, math.Inf(1)}} {
		if got := s.QuantileMs(c.q); got != c.ms {
			t.Errorf("quantile %g: %g ms, want %g", c.q, got, c.ms)
		}
	}
	// Since subtracts: what came before is not counted again.
	h.Observe(time.Millisecond)
	if d := h.Snapshot().Since(h.Snapshot()); d.Count() != 0 {
		t.Fatalf("nothing observed between two snapshots, counted %d", d.Count())
	}
	if got := h.Snapshot().Since(before).Counts[2]; got != 1 {
		t.Fatalf("1 ms counted in the ≤1 ms bucket %d times, want 1", got)
	}
	if (Snapshot{}).QuantileMs(0.99) != 0 || (Snapshot{}).MeanMs() != 0 {
		t.Fatal("an empty snapshot has a quantile or mean")
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	var h Histogram
	if a := testing.AllocsPerRun(100, func() { h.Observe(time.Millisecond) }); a != 0 {
		t.Fatalf("%.1f allocations per observation", a)
	}
}
