// Package schedule reads KVS's ScheduleConfig (a Quartz cron expression and
// a window length) and says whether a moment is inside a window: the
// uploader's UploaderConfig schedule (internal/uplink) and the recorder's
// RecorderConfig schedule (ingest's edge agent). It is a leaf: it imports
// only robfig/cron and the standard library.
package schedule

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is KVS's ScheduleConfig: a Quartz cron expression whose every
// firing opens a window of Duration. robfig/cron parses the expression
// once it is translated from Quartz's dialect: Quartz numbers the days of
// the week 1–7 from Sunday (cron 0–6), has an optional seventh field (the
// year; only "*" is accepted here), and its L, W and # forms are refused
// with a clear error rather than misread.
type Schedule struct {
	expr     cron.Schedule
	duration time.Duration
	text     string
}

var quartz = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Parse parses a Quartz expression and a window length in seconds.
func Parse(expr string, durationSeconds int) (*Schedule, error) {
	if durationSeconds <= 0 {
		return nil, fmt.Errorf("schedule %q: DurationInSeconds must be positive", expr)
	}
	f := strings.Fields(expr)
	if len(f) == 7 {
		if f[6] != "*" && f[6] != "?" {
			return nil, fmt.Errorf("schedule %q: a year field other than * is not supported", expr)
		}
		f = f[:6]
	}
	if len(f) != 6 {
		return nil, fmt.Errorf("schedule %q: a Quartz expression has 6 or 7 fields", expr)
	}
	if strings.ContainsAny(f[3]+f[5], "LW#") {
		return nil, fmt.Errorf("schedule %q: the L, W and # forms are not supported", expr)
	}
	dow, err := quartzDow(f[5])
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", expr, err)
	}
	f[5] = dow
	s, err := quartz.Parse(strings.Join(f, " "))
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", expr, err)
	}
	return &Schedule{expr: s, duration: time.Duration(durationSeconds) * time.Second, text: expr}, nil
}

// quartzDow maps Quartz day-of-week numbers (1 = Sunday … 7) to cron's
// (0 = Sunday … 6); names and * ? pass unchanged.
func quartzDow(field string) (string, error) {
	out := []byte{}
	for i := 0; i < len(field); {
		c := field[i]
		if c < '0' || c > '9' {
			out = append(out, c)
			i++
			continue
		}
		j := i
		for j < len(field) && field[j] >= '0' && field[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(field[i:j])
		// A number after "/" is a step, not a day.
		if i > 0 && field[i-1] == '/' {
			out = append(out, field[i:j]...)
		} else {
			if n < 1 || n > 7 {
				return "", fmt.Errorf("day of week %d is outside 1–7", n)
			}
			out = strconv.AppendInt(out, int64(n-1), 10)
		}
		i = j
	}
	return string(out), nil
}

// Window reports whether now is inside a window (and when it ends), or
// else when the next one begins.
func (s *Schedule) Window(now time.Time) (open bool, ends, next time.Time) {
	// The firing that opened a window containing now is the first firing
	// after now-duration, if it is not after now.
	if f := s.expr.Next(now.Add(-s.duration)); !f.After(now) {
		return true, f.Add(s.duration), time.Time{}
	}
	return false, time.Time{}, s.expr.Next(now)
}

func (s *Schedule) String() string { return fmt.Sprintf("%s for %v", s.text, s.duration) }
