package ingest

import "time"

// timeline maps a source's presentation times to producer timestamps in
// epoch milliseconds.
//
// It anchors at the first frame of a connection: to the camera's NTP time
// (RTCP sender reports) when known, else to the arrival clock. A later NTP
// time more than a second away from the mapping (the camera's clock
// jumped, or its first sender report arrived late) re-anchors it, and so
// does a mapped time more than ten minutes from the box's own clock
// (absurd timestamps). Video times never go backwards, across reconnects
// too: the fragmenter needs increasing fragment timecodes.
type timeline struct {
	set       bool
	baseMs    int64 // producer ms at pts 0
	lastVideo int64
	now       func() time.Time
}

// maxClockDistance is how far a mapped time may drift from the box's
// clock before the timeline re-anchors.
const maxClockDistance = 10 * time.Minute

// reset starts a new connection (presentation times restart at 0).
func (t *timeline) reset() { t.set = false }

// ms maps pts (time since the connection's first frame) to epoch ms.
func (t *timeline) ms(pts time.Duration, ntp time.Time, haveNTP, video bool) int64 {
	now := t.now()
	p := pts.Milliseconds()
	switch {
	case !t.set:
		ref := now
		if haveNTP && absDur(ntp.Sub(now)) < maxClockDistance {
			ref = ntp
		}
		t.baseMs, t.set = ref.UnixMilli()-p, true
	case haveNTP && absDur(time.Duration(ntp.UnixMilli()-(t.baseMs+p))*time.Millisecond) > time.Second &&
		absDur(ntp.Sub(now)) < maxClockDistance:
		t.baseMs = ntp.UnixMilli() - p
	case absDur(time.Duration(t.baseMs+p-now.UnixMilli())*time.Millisecond) > maxClockDistance:
		t.baseMs = now.UnixMilli() - p
	}
	ms := t.baseMs + p
	if video {
		if ms <= t.lastVideo {
			ms = t.lastVideo + 1
		}
		t.lastVideo = ms
	}
	return ms
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
