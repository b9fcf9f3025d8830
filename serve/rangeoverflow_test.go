package serve

import (
	"testing"
	"time"
)

// TestRangeLimitsDoNotOverflow: a range longer than ~292 years
// (StartTimestamp 1 s, EndTimestamp 1e10 s: 1e13 ms) overflowed
// time.Duration(ms)*time.Millisecond to a negative duration, so the
// 24-hour limits of GetClip, getClipURL and HLS ON_DEMAND (and GetImages'
// 300 s) let it through: a clip of the whole stream (every fragment's
// metadata listed in memory first) from one call, or a bearer clip URL
// for it. Each must be InvalidArgument like any range over the limit.
func TestRangeLimitsDoNotOverflow(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	const rng = `"TimestampRange":{"StartTimestamp":1,"EndTimestamp":1e10}`
	for _, c := range []struct{ op, body string }{
		{"/getClip", `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP",` + rng + `}}`},
		{"/getClipURL", `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP",` + rng + `}}`},
		{"/getHLSStreamingSessionURL", `{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP",` + rng + `}}`},
		{"/getImages", `{"StreamName":"cam","ImageSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":1,"EndTimestamp":1e10,"SamplingInterval":3000,"Format":"JPEG"}`},
	} {
		st, hdr, b := ts.raw(t, c.op, []byte(c.body), time.Now(), testSecret)
		if st != 400 || hdr.Get("x-amzn-ErrorType") != errInvalidArgument {
			t.Errorf("%s over ~317 years: %d %s %s; want 400 %s", c.op, st, hdr.Get("x-amzn-ErrorType"), b, errInvalidArgument)
		}
	}
}
