package e2e

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// liveHLSWatch is a LIVE HLS client: it polls a session's media playlist
// and checks what a player relies on: EXT-X-MEDIA-SEQUENCE never goes
// back and a segment (its FragmentNumber) keeps its media sequence number
// from one reload to the next.
type liveHLSWatch struct {
	media string
	stop  chan struct{}
	done  chan struct{}

	mu       sync.Mutex
	polls    int
	failures int // non-200 answers (a box between recorders may have nothing in the last 30 s)
	failure  string
	given    map[string]uint64
	terms    map[string]bool // term+node of listed fragment numbers
	problems []string
	lastSeq  uint64
}

// watchLiveHLS opens a LIVE session on endpoint and polls it every 300 ms
// until finish.
func watchLiveHLS(t *testing.T, endpoint, stream string) *liveHLSWatch {
	t.Helper()
	var hls struct{ HLSStreamingSessionURL string }
	within(t, "a LIVE HLS session of "+stream, 30*time.Second, func() bool {
		st, _ := callJSON(t, endpoint, "/getHLSStreamingSessionURL", map[string]any{"StreamName": stream, "PlaybackMode": "LIVE", "Expires": 7200}, &hls)
		return st == 200
	})
	st, master := httpGet(hls.HLSStreamingSessionURL)
	if st != 200 {
		t.Fatalf("LIVE master playlist: %d %s", st, master)
	}
	var rel string
	for line := range strings.Lines(master) {
		if strings.HasPrefix(line, "getHLSMediaPlaylist.m3u8?") {
			rel = strings.TrimSpace(line)
		}
	}
	base, err := url.Parse(hls.HLSStreamingSessionURL)
	if err != nil || rel == "" {
		t.Fatalf("LIVE master playlist: %v\n%s", err, master)
	}
	ref, _ := url.Parse(rel)
	if !strings.HasPrefix(hls.HLSStreamingSessionURL, endpoint+"/") {
		t.Fatalf("the LIVE HLS session asked of %s is served by another box: %.80s", endpoint, hls.HLSStreamingSessionURL)
	}
	w := &liveHLSWatch{media: base.ResolveReference(ref).String(), stop: make(chan struct{}), done: make(chan struct{}),
		given: map[string]uint64{}, terms: map[string]bool{}}
	go w.run()
	return w
}

func (w *liveHLSWatch) run() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-time.After(300 * time.Millisecond):
		}
		st, body := httpGet(w.media)
		w.mu.Lock()
		w.polls++
		if st != 200 {
			w.failures++
			w.failure = fmt.Sprintf("%d %s", st, body[max(len(body)-200, 0):])
		} else {
			w.check(body)
		}
		w.mu.Unlock()
	}
}

// check is one reload; w.mu is held.
func (w *liveHLSWatch) check(body string) {
	var seq uint64
	var frags []string
	for line := range strings.Lines(body) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			seq, _ = strconv.ParseUint(v, 10, 64)
		}
		if q, ok := strings.CutPrefix(line, "getMP4MediaFragment.mp4?"); ok {
			v, _ := url.ParseQuery(q)
			frags = append(frags, v.Get("FragmentNumber"))
		}
	}
	if len(frags) == 0 {
		return
	}
	if seq < w.lastSeq {
		w.problems = append(w.problems, fmt.Sprintf("media sequence went back from %d to %d", w.lastSeq, seq))
	}
	w.lastSeq = max(w.lastSeq, seq)
	for i, n := range frags {
		msn := seq + uint64(i)
		if old, ok := w.given[n]; ok && old != msn {
			w.problems = append(w.problems, fmt.Sprintf("segment %s was number %d, now %d", n, old, msn))
		}
		w.given[n] = msn
		if len(n) == 32 {
			w.terms[n[1:22]] = true
		}
	}
}

// finish stops polling and fails t on any inconsistency; it returns how
// many ingest terms the client saw listed.
func (w *liveHLSWatch) finish(t *testing.T) int {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("LIVE HLS client: %d reloads (%d not 200, the last: %q), %d segments over %d ingest terms, media sequence up to %d",
		w.polls, w.failures, w.failure, len(w.given), len(w.terms), w.lastSeq)
	if len(w.problems) > 0 {
		t.Fatalf("LIVE HLS: %d inconsistencies: %s", len(w.problems), strings.Join(w.problems[:min(len(w.problems), 10)], "; "))
	}
	return len(w.terms)
}
