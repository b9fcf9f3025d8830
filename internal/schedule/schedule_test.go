package schedule

import (
	"testing"
	"time"
)

func TestScheduleWindows(t *testing.T) {
	// Every minute, for 20 s (the test schedule).
	s, err := Parse("0 * * * * ?", 20)
	if err != nil {
		t.Fatal(err)
	}
	at := func(hms string) time.Time {
		v, err := time.Parse("2006-01-02 15:04:05", "2026-12-05 "+hms)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		now       string
		open      bool
		ends, nxt string
	}{
		{"10:00:00", true, "10:00:20", ""},
		{"10:00:19", true, "10:00:20", ""},
		{"10:00:20", false, "", "10:01:00"},
		{"10:00:59", false, "", "10:01:00"},
	} {
		open, ends, next := s.Window(at(c.now))
		if open != c.open || (c.open && !ends.Equal(at(c.ends))) || (!c.open && !next.Equal(at(c.nxt))) {
			t.Errorf("at %s: open %v ends %v next %v", c.now, open, ends, next)
		}
	}
	// Quartz numbers Sunday 1: "MON-FRI" and "2-6" are the same days.
	a, err := Parse("0 0 9 ? * 2-6", 3600)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("0 0 9 ? * MON-FRI *", 3600)
	if err != nil {
		t.Fatal(err)
	}
	sat := at("10:00:00") // 2026-12-05 is a Saturday
	if _, _, na := a.Window(sat); !na.Equal(time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)) {
		t.Errorf("next weekday window from Saturday: %v", na)
	}
	_, _, na := a.Window(sat)
	_, _, nb := b.Window(sat)
	if !na.Equal(nb) {
		t.Errorf("2-6 and MON-FRI differ: %v %v", na, nb)
	}
	for _, bad := range []string{"0 0 9 L * ?", "* * *", "0 0 9 ? * 8", "0 0 9 ? * 1 2027"} {
		if _, err := Parse(bad, 10); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if _, err := Parse("0 * * * * ?", 0); err == nil {
		t.Error("a zero window was accepted")
	}
}
