package ingest

import "time"

// timeline maps a source's presentation times to producer timestamps in
// epoch milliseconds.
//
// It anchors at the first frame of a connection: to the camera's NTP time
// (RTCP sender reports) when known, else to the arrival clock. From then
// on a frame's time is the anchor plus its presentation time (the
// camera's RTP clock) plus, while the camera sends NTP times, a
// correction that follows them without steps: it moves toward the NTP
// time by at most maxSlew of the media time that passed (0.5 %: a frame
// of 40 ms is stretched or shrunk by at most 0.2 ms), so a camera whose
// RTP clock drifts from its own clock (crystals are off by tens to
// hundreds of ppm) keeps its timestamps on that clock with no jump and no
// gap. Every box recording the camera follows the same clock, so their
// timestamps of one frame agree once each has followed its reports a
// while; until then one anchored on arrival and one on a report differ by
// the camera's latency, or by the reports' error (a gortsplib v4 relay's
// are up to 0.77 s off: senderClock), which a cluster's hand-back allows
// for (engineOutput.handOver).
// A camera without sender reports keeps the arrival anchor: slewing it to
// the arrival clock would move it by each box's own first-frame delay (a
// relay may send a cached key frame first), and two boxes would disagree.
//
// Steps remain for what is not drift: an NTP time more than a second
// away (the camera's clock was set, or its first sender report arrived
// late) and a mapped time more than ten minutes from the box's own clock
// (absurd timestamps) re-anchor at once. Video times never go backwards,
// across reconnects too: the fragmenter needs increasing fragment
// timecodes.
type timeline struct {
	set    bool
	baseMs int64 // producer ms at pts 0, without the correction
	// corrMs is the slewed correction added to baseMs + pts; lastPts
	// (ms) the latest presentation time, whose advance is the slew's
	// budget.
	corrMs    float64
	lastPts   int64
	lastVideo int64
	now       func() time.Time
}

const (
	// maxClockDistance is how far a mapped time may drift from the box's
	// clock before the timeline re-anchors.
	maxClockDistance = 10 * time.Minute
	// maxNTPDistance is how far the NTP time may be before the timeline
	// steps to it rather than slewing.
	maxNTPDistance = time.Second
	// maxSlew is the largest correction per ms of media.
	maxSlew = 0.005
)

// reset starts a new connection (presentation times restart at 0).
func (t *timeline) reset() { t.set = false }

// ms maps pts (time since the connection's first frame) to epoch ms.
func (t *timeline) ms(pts time.Duration, ntp time.Time, haveNTP, video bool) int64 {
	now := t.now()
	p := pts.Milliseconds()
	nowMs := now.UnixMilli()
	useNTP := haveNTP && absDur(ntp.Sub(now)) < maxClockDistance
	if !t.set {
		ref := nowMs
		if useNTP {
			ref = ntp.UnixMilli()
		}
		t.anchor(ref, p)
	}
	raw := t.baseMs + p // the mapping without the correction
	target := float64(ntp.UnixMilli() - raw)
	switch {
	case useNTP && absDur(time.Duration(target-t.corrMs)*time.Millisecond) > maxNTPDistance:
		t.anchor(ntp.UnixMilli(), p)
	case absDur(time.Duration(raw+int64(t.corrMs)-nowMs)*time.Millisecond) > maxClockDistance:
		t.anchor(nowMs, p)
	case useNTP && p > t.lastPts:
		budget := maxSlew * float64(p-t.lastPts)
		t.corrMs += min(max(target-t.corrMs, -budget), budget)
	}
	t.lastPts = max(t.lastPts, p)
	ms := t.baseMs + p + int64(t.corrMs)
	if video {
		if ms <= t.lastVideo {
			ms = t.lastVideo + 1
		}
		t.lastVideo = ms
	}
	return ms
}

// anchor maps pts p to ref (epoch ms) with no correction.
func (t *timeline) anchor(ref, p int64) {
	t.baseMs, t.set, t.corrMs, t.lastPts = ref-p, true, 0, p
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
