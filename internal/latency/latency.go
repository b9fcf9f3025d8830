// Package latency counts durations in fixed buckets, a Prometheus
// histogram's shape, with atomics: observing one takes no lock and
// allocates nothing, so the ingest path can afford it per fragment. The
// engine's PERSISTED latency and the store's write phases use it.
package latency

import (
	"math"
	"sync/atomic"
	"time"
)

// BucketsMs are the upper bounds of every histogram, in milliseconds:
// fine below a few ms, where one fsync of a fragment lies on a healthy
// disk, and up to 10 s for a disk that stalls.
var BucketsMs = []float64{0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}

const buckets = 15 // len(BucketsMs)

// Histogram counts observations by bucket (and one overflow). The zero
// value is ready.
type Histogram struct {
	counts [buckets + 1]atomic.Uint64
	sumUs  atomic.Uint64
}

// Observe counts d.
func (h *Histogram) Observe(d time.Duration) {
	ms := float64(d) / float64(time.Millisecond)
	i := 0
	for i < buckets && ms > BucketsMs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumUs.Add(uint64(d / time.Microsecond))
}

// Snapshot is a histogram's counts at one moment: Counts[i] observations
// at most BucketsMs[i] and above the bucket before (not cumulative; the
// last is the overflow).
type Snapshot struct {
	Counts []uint64
	SumMs  float64
}

// Snapshot returns the counts now.
func (h *Histogram) Snapshot() Snapshot {
	s := Snapshot{Counts: make([]uint64, len(h.counts)), SumMs: float64(h.sumUs.Load()) / 1000}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	return s
}

// Count is the number of observations.
func (s Snapshot) Count() uint64 {
	var n uint64
	for _, c := range s.Counts {
		n += c
	}
	return n
}

// Since is what was observed between earlier and s.
func (s Snapshot) Since(earlier Snapshot) Snapshot {
	d := Snapshot{Counts: make([]uint64, len(s.Counts)), SumMs: s.SumMs - earlier.SumMs}
	for i := range s.Counts {
		d.Counts[i] = s.Counts[i]
		if i < len(earlier.Counts) {
			d.Counts[i] -= earlier.Counts[i]
		}
	}
	return d
}

// MeanMs is the mean observation (0 for none).
func (s Snapshot) MeanMs() float64 {
	if n := s.Count(); n > 0 {
		return s.SumMs / float64(n)
	}
	return 0
}

// QuantileMs is the upper bound of the bucket holding the q quantile
// (0 < q ≤ 1): the quantile is at most that. An overflow gives +Inf; no
// observation gives 0.
func (s Snapshot) QuantileMs(q float64) float64 {
	n := s.Count()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var cum uint64
	for i, c := range s.Counts {
		cum += c
		if cum >= rank {
			if i < len(BucketsMs) {
				return BucketsMs[i]
			}
			break
		}
	}
	return math.Inf(1)
}
