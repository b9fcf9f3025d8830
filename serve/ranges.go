package serve

import (
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// ListRecordedRanges (kvsedge's own, for the console's timeline): a
// stream's recordings over a server-time range as merged spans, computed
// on the box from the index, so that a week's timeline is a few hundred
// bytes instead of ListFragments pages of 300,000 fragments.
//
// Request: {"StreamName"|"StreamARN", "StartTimestamp", "EndTimestamp"
// (epoch seconds, at most maxRangesWindow apart), "JoinMs" (optional, at
// most a day, default 1000: fragments less than this apart are one range; the console
// sends a pixel's worth)}. Response: {"Ranges": [{"Start", "End" (epoch
// seconds; a range ends where its last fragment ends), "Fragments"}],
// "Fragments" (all), "MaxFragmentMs"}. The fragments counted are those
// whose server timestamp lies in the range, as ListFragments selects
// them. At most maxRanges ranges are returned: past that the answer is
// InvalidArgument (ask again with a larger JoinMs), never a cut list.

const (
	maxRangesWindow = 31 * 24 * 3600 * 1000 // ms
	maxRanges       = 20000
	defaultJoinMs   = 1000
	// maxJoinMs bounds JoinMs to a day (a pixel of a 7-day timeline is
	// ~10 minutes), and keeps it within a 32-bit int on armv6/armv7.
	maxJoinMs = 24 * 3600 * 1000
)

type listRangesIn struct {
	streamRefIn
	StartTimestamp *epochSeconds
	EndTimestamp   *epochSeconds
	JoinMs         *int
}

type recordedRange struct {
	Start, End float64
	Fragments  int
}

func (s *Server) listRecordedRanges(body []byte) (any, *apiError) {
	in, aerr := decode[listRangesIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	v.required("StartTimestamp", in.StartTimestamp != nil)
	v.required("EndTimestamp", in.EndTimestamp != nil)
	v.intRange("JoinMs", in.JoinMs, 0, maxJoinMs)
	var startMs, endMs int64
	if in.StartTimestamp != nil && in.EndTimestamp != nil {
		startMs, endMs = in.StartTimestamp.ms(), in.EndTimestamp.ms()
		switch {
		case endMs < startMs:
			v.add("The EndTimestamp must not be before the StartTimestamp.")
		case endMs-startMs > maxRangesWindow:
			v.add("The timestamp range must not exceed 31 days.")
		}
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return nil, aerr
	}
	join := int64(defaultJoinMs)
	if in.JoinMs != nil {
		join = int64(*in.JoinMs)
	}
	type span struct{ start, end int64 }
	var spans []span
	counts := []int{}
	total, maxLen, tooMany := 0, int64(0), false
	// In server-time order: a fragment joins the last range when it starts
	// at most join after that range's end.
	err := s.eng.ScanFragments(engine.StreamRef{ARN: info.ARN}, fragment.ByServerTime, startMs, endMs, func(m fragment.Meta) bool {
		a, b := m.ServerMs, m.ServerMs+int64(m.DurationMs)
		total++
		maxLen = max(maxLen, int64(m.DurationMs))
		if n := len(spans); n > 0 && a <= spans[n-1].end+join {
			spans[n-1].end = max(spans[n-1].end, b)
			counts[n-1]++
			return true
		}
		if len(spans) == maxRanges {
			tooMany = true
			return false
		}
		spans = append(spans, span{a, b})
		counts = append(counts, 1)
		return true
	})
	if err != nil {
		return nil, engineError(err)
	}
	if tooMany {
		return nil, invalidArgument("More than %d recorded ranges: ask with a larger JoinMs.", maxRanges)
	}
	out := struct {
		Ranges        []recordedRange
		Fragments     int
		MaxFragmentMs int64
	}{Ranges: make([]recordedRange, len(spans)), Fragments: total, MaxFragmentMs: maxLen}
	for i, sp := range spans {
		out.Ranges[i] = recordedRange{Start: msToSeconds(sp.start), End: msToSeconds(sp.end), Fragments: counts[i]}
	}
	return out, nil
}
