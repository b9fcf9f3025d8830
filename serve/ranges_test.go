package serve

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"
)

// TestListRecordedRanges: two uploads 4 s apart are two recorded ranges
// whose bounds are the fragments' (as ListFragments lists them), one range
// when JoinMs bridges the gap, none outside them; bad requests are
// refused.
func TestListRecordedRanges(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	before := time.Now()
	if n := len(putUpload(t, ts, "cam", "RELATIVE", "1795580000.000", c, 0).events("PERSISTED")); n != 6 {
		t.Fatalf("first upload: %d PERSISTED", n)
	}
	time.Sleep(4 * time.Second)
	if n := len(putUpload(t, ts, "cam", "RELATIVE", "1795580100.000", c, 0).events("PERSISTED")); n != 6 {
		t.Fatalf("second upload: %d PERSISTED", n)
	}
	from, to := float64(before.Add(-time.Minute).UnixMilli())/1000, float64(time.Now().Add(time.Minute).UnixMilli())/1000
	type answer struct {
		Ranges []struct {
			Start, End float64
			Fragments  int
		}
		Fragments     int
		MaxFragmentMs int64
	}
	ask := func(body string) (int, answer, string) {
		t.Helper()
		code, _, out := ts.raw(t, "/listRecordedRanges", []byte(body), time.Now(), testSecret)
		var a answer
		if code == 200 {
			if err := json.Unmarshal(out, &a); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
		}
		return code, a, string(out)
	}
	// What ListFragments says.
	code, _, out := ts.raw(t, "/listFragments", []byte(fmt.Sprintf(`{"StreamName":"cam","FragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":%f,"EndTimestamp":%f}}}`, from, to)), time.Now(), testSecret)
	var l struct{ Fragments []fragmentJSON }
	if err := json.Unmarshal(out, &l); code != 200 || err != nil || len(l.Fragments) != 12 {
		t.Fatalf("ListFragments: %d %s", code, out)
	}
	first, last := l.Fragments[0], l.Fragments[0]
	var maxLen int64
	for _, f := range l.Fragments {
		if f.ServerTimestamp < first.ServerTimestamp {
			first = f
		}
		if f.ServerTimestamp+float64(f.FragmentLengthInMilliseconds)/1000 > last.ServerTimestamp+float64(last.FragmentLengthInMilliseconds)/1000 {
			last = f
		}
		maxLen = max(maxLen, f.FragmentLengthInMilliseconds)
	}

	code, a, raw := ask(fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f,"EndTimestamp":%f}`, from, to))
	if code != 200 || len(a.Ranges) != 2 || a.Fragments != 12 || a.Ranges[0].Fragments != 6 || a.Ranges[1].Fragments != 6 || a.MaxFragmentMs != maxLen {
		t.Fatalf("two uploads 4 s apart: %d %s", code, raw)
	}
	if math.Abs(a.Ranges[0].Start-first.ServerTimestamp) > 0.0005 ||
		math.Abs(a.Ranges[1].End-(last.ServerTimestamp+float64(last.FragmentLengthInMilliseconds)/1000)) > 0.0005 ||
		a.Ranges[1].Start-a.Ranges[0].End < 1 {
		t.Fatalf("ranges %s; fragments from %v to %v + %d ms", raw, first.ServerTimestamp, last.ServerTimestamp, last.FragmentLengthInMilliseconds)
	}
	code, a, raw = ask(fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f,"EndTimestamp":%f,"JoinMs":60000}`, from, to))
	if code != 200 || len(a.Ranges) != 1 || a.Ranges[0].Fragments != 12 {
		t.Fatalf("with JoinMs over the gap: %d %s", code, raw)
	}
	if code, _, raw = ask(fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f,"EndTimestamp":%f}`, from-3600, from)); code != 200 || raw != `{"Ranges":[],"Fragments":0,"MaxFragmentMs":0}` {
		t.Fatalf("before the recordings: %d %s", code, raw)
	}
	for _, bad := range []struct {
		body string
		code int
	}{
		{fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f,"EndTimestamp":%f}`, to, from), 400},
		{fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f,"EndTimestamp":%f}`, from, from+32*86400), 400},
		{fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f}`, from), 400},
		{fmt.Sprintf(`{"StreamName":"cam","StartTimestamp":%f,"EndTimestamp":%f,"JoinMs":-1}`, from, to), 400},
		{fmt.Sprintf(`{"StreamName":"nowhere","StartTimestamp":%f,"EndTimestamp":%f}`, from, to), 404},
	} {
		if code, _, raw := ask(bad.body); code != bad.code {
			t.Errorf("%s: %d %s, want %d", bad.body, code, raw, bad.code)
		}
	}
}
