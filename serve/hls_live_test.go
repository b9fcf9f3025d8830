package serve

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// livePlaylist is a parsed LIVE media playlist: its media sequence and its
// segments' fragment numbers, in order.
type livePlaylist struct {
	seq   uint64
	frags []string
}

func getLivePlaylist(t *testing.T, u string) livePlaylist {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("media playlist: %d %s", resp.StatusCode, b)
	}
	var pl livePlaylist
	seen := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			pl.seq, err = strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("media sequence %q", v)
			}
			seen = true
		}
		if strings.HasPrefix(line, "getMP4MediaFragment.mp4?") {
			q, err := url.ParseQuery(strings.TrimPrefix(line, "getMP4MediaFragment.mp4?"))
			if err != nil {
				t.Fatal(err)
			}
			pl.frags = append(pl.frags, q.Get("FragmentNumber"))
		}
	}
	if !seen || strings.Contains(string(b), "#EXT-X-ENDLIST") {
		t.Fatalf("not a LIVE media playlist:\n%s", b)
	}
	return pl
}

// TestHLSLiveSequenceAcrossTerms: a LIVE client reloading its media
// playlist while the stream's ingest moves between boxes twice (three
// ingest terms, each restarting the fragment number's seq at 0) sees every
// segment keep its media sequence number and consecutive segments get
// consecutive numbers; a late fragment of an older term (a box still
// recording during a hand-over) is not inserted before segments already
// numbered.
func TestHLSLiveSequenceAcrossTerms(t *testing.T) {
	ts := startServerWith(t, "", nil)
	createMediaStream(t, ts, "cam", 24)
	src := captureFragments(t, "real-producer-h264-absolute")[0]
	hdr, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: src.Header.Tracks[0].CodecPrivate, Width: 640, Height: 480}})
	if err != nil {
		t.Fatal(err)
	}
	hid := xxhash.Sum64(hdr.Raw)
	t0 := time.Now().Add(-20 * time.Second).UnixMilli()
	// Terms are ms timestamps of when ingest started (node 1, then 2, then 1).
	termA, termB, termC := uint64(t0-60_000), uint64(t0+5_000), uint64(t0+9_000)
	put := func(term uint64, node uint16, seq uint32, atMs int64) fragment.Number {
		t.Helper()
		// Frames of their own: a fragment with another's frames near its
		// time is a copy of it (engine/resend.go).
		var fb mkv.FragmentBuilder
		_ = fb.Start(hdr, 0, 64)
		_ = fb.AddBlock(0, 0, true, binary.BigEndian.AppendUint64([]byte{0, 0, 0, 1, 0x65}, uint64(atMs)))
		_ = fb.AddBlock(0, 900, false, []byte{0, 0, 0, 1, 0x41})
		f, err := fb.Finish()
		if err != nil {
			t.Fatal(err)
		}
		m := fragment.Meta{Number: fragment.MakeNumber(term, node, seq), ProducerMs: atMs, ServerMs: atMs + 20,
			DurationMs: 1000, HeaderID: hid, ClusterLen: uint32(f.ClusterLen), MediaLen: uint32(len(f.Buf)), Frames: 2}
		m.Digest = engine.ContentDigest(f.Buf[:f.ClusterLen], 2)
		if stored, err := ts.eng.ImportFragment(engine.StreamRef{Name: "cam"}, m, hdr.Raw, append(engine.NewMediaBufferFor(len(f.Buf)), f.Buf...)); err != nil || !stored {
			t.Fatalf("import %s: %v %v", m.Number, stored, err)
		}
		return m.Number
	}
	// Term A has been recording a while: seq 40.. (the session starts mid-term).
	type step struct {
		term uint64
		node uint16
		seq  uint32
	}
	var steps []step
	for i := range 5 {
		steps = append(steps, step{termA, 1, 40 + uint32(i)})
	}
	for i := range 4 {
		steps = append(steps, step{termB, 2, uint32(i)})
	}
	for i := range 7 {
		steps = append(steps, step{termC, 1, uint32(i)})
	}
	at := func(i int) int64 { return t0 + int64(i)*1000 }
	for i := range 3 {
		put(steps[i].term, steps[i].node, steps[i].seq, at(i))
	}
	master := sessionURL(t, ts, `{"StreamName":"cam","PlaybackMode":"LIVE","MaxMediaPlaylistFragmentResults":5}`)
	media := mediaPlaylistURL(t, ts, master)

	given := map[string]uint64{} // fragment number → media sequence number
	var prevSeq uint64
	var lastListed string
	check := func(when string) livePlaylist {
		t.Helper()
		pl := getLivePlaylist(t, media)
		if len(pl.frags) == 0 {
			t.Fatalf("%s: an empty LIVE playlist", when)
		}
		if pl.seq < prevSeq {
			t.Fatalf("%s: media sequence went back from %d to %d", when, prevSeq, pl.seq)
		}
		prevSeq = pl.seq
		for i, n := range pl.frags {
			msn := pl.seq + uint64(i)
			if old, ok := given[n]; ok && old != msn {
				t.Fatalf("%s: segment %s was number %d, now %d", when, n, old, msn)
			}
			given[n] = msn
		}
		// The segment after the last one listed before is the next number.
		if lastListed != "" {
			if i := indexOf(pl.frags, lastListed); i >= 0 && i+1 < len(pl.frags) && given[pl.frags[i+1]] != given[lastListed]+1 {
				t.Fatalf("%s: %s follows %s as %d after %d", when, pl.frags[i+1], lastListed, given[pl.frags[i+1]], given[lastListed])
			}
		}
		lastListed = pl.frags[len(pl.frags)-1]
		return pl
	}
	check("start")
	// Reload twice per new fragment (a client polls faster than fragments
	// arrive), so the window slides over both term changes.
	for i := 3; i < len(steps); i++ {
		put(steps[i].term, steps[i].node, steps[i].seq, at(i))
		check(fmt.Sprintf("after fragment %d", i))
		pl := check(fmt.Sprintf("reload after fragment %d", i))
		if i == 6 {
			// Term B is listed: term A's box, still recording, hands in
			// a late fragment. It must not renumber B's segments.
			late := put(termA, 1, 45, at(5)+500)
			pl = check("after a late fragment of term A")
			if indexOf(pl.frags, late.String()) >= 0 {
				t.Fatalf("the late fragment %s of an older term was listed: %v", late, pl.frags)
			}
		}
	}
	// Every segment listed got a distinct number, 16 consecutive ones
	// across the three terms.
	byNum := map[uint64]string{}
	lo, hi := uint64(1<<63), uint64(0)
	for n, msn := range given {
		if other, ok := byNum[msn]; ok {
			t.Fatalf("segments %s and %s share number %d", n, other, msn)
		}
		byNum[msn] = n
		lo, hi = min(lo, msn), max(hi, msn)
	}
	if len(given) != len(steps) || hi-lo+1 != uint64(len(steps)) {
		t.Fatalf("%d segments numbered %d..%d, want %d consecutive", len(given), lo, hi, len(steps))
	}
	for i, s := range steps {
		n := fragment.MakeNumber(s.term, s.node, s.seq).String()
		if given[n] != lo+uint64(i) {
			t.Fatalf("segment %d (%s) has number %d, want %d", i, n, given[n], lo+uint64(i))
		}
	}
	if lo != 0 {
		t.Fatalf("a new session's first segment is number %d, want 0", lo)
	}
	if ts.srv.live.len() != 1 {
		t.Fatalf("%d session records, want 1", ts.srv.live.len())
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestLiveSeqsBounds: records of expired sessions go, the table holds at
// most maxLiveSessions, and a session without a record (a restart) starts
// at or after every number it was given before.
func TestLiveSeqsBounds(t *testing.T) {
	var l liveSeqs
	now := time.Now()
	base := now.UnixMilli() - 60_000
	frag := func(term uint64, seq uint32, ms int64) fragment.Meta {
		return fragment.Meta{Number: fragment.MakeNumber(term, 1, seq), ProducerMs: base + ms}
	}
	w := []fragment.Meta{frag(1, 0, 0), frag(1, 1, 1000), frag(1, 2, 2000)}
	if _, seq := l.window("ended", now.Unix()-1, base, w, now); seq != 0 {
		t.Fatalf("first playlist: sequence %d", seq)
	}
	// Slide 30 fragments, then lose the record (restart).
	var last uint64
	for i := range 30 {
		w = []fragment.Meta{frag(1, uint32(i), int64(i)*1000), frag(1, uint32(i+1), int64(i+1)*1000)}
		_, last = l.window("s", now.Unix()+60, base, w, now)
	}
	if last != 29 {
		t.Fatalf("after sliding: sequence %d, want 29", last)
	}
	var fresh liveSeqs
	if _, seq := fresh.window("s", now.Unix()+60, base, w, now); seq < last {
		t.Fatalf("after a restart: sequence %d, below %d", seq, last)
	}
	for i := range maxLiveSessions + 10 {
		l.window(strconv.Itoa(i), now.Unix()+60, base, w, now.Add(2*time.Minute))
	}
	if n := l.len(); n > maxLiveSessions {
		t.Fatalf("%d records, bound %d", n, maxLiveSessions)
	}
	l.mu.Lock()
	_, old := l.sessions["ended"]
	l.mu.Unlock()
	if old {
		t.Fatal("the record of an expired session is kept")
	}
}
