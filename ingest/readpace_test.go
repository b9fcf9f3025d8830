package ingest

import (
	"testing"
	"time"
)

// untilAligned finds the next multiple of the period: the instant every
// camera's once-a-second checks share.
func TestUntilAligned(t *testing.T) {
	base := time.Unix(1_700_000_000, 0) // a whole second
	for _, c := range []struct {
		now    time.Time
		period time.Duration
		want   time.Duration
	}{
		{base, time.Second, 0},
		{base.Add(time.Nanosecond), time.Second, time.Second - time.Nanosecond},
		{base.Add(300 * time.Millisecond), time.Second, 700 * time.Millisecond},
		{base.Add(300 * time.Millisecond), 250 * time.Millisecond, 200 * time.Millisecond},
		{base.Add(999 * time.Millisecond), 500 * time.Millisecond, time.Millisecond},
	} {
		if got := untilAligned(c.now, c.period); got != c.want {
			t.Errorf("from %v, period %v: %v, want %v", c.now.Sub(base), c.period, got, c.want)
		}
	}
	done := make(chan struct{})
	close(done)
	if tk := alignedTicker(time.Hour, done); tk != nil {
		tk.Stop()
		t.Error("a ticker made after done closed")
	}
}
