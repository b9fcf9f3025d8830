package serve

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

func TestHLSSessions(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	res := putUpload(t, ts, "cam", "RELATIVE", strconv.FormatInt(start.Unix(), 10)+".000", c, 0)
	if n := len(res.events("PERSISTED")); n != 6 {
		t.Fatalf("%d PERSISTED", n)
	}
	session := func(body string) (int, string, string) {
		st, hdr, b := ts.raw(t, "/getHLSStreamingSessionURL", []byte(body), time.Now(), testSecret)
		var out struct{ HLSStreamingSessionURL string }
		_ = json.Unmarshal(b, &out)
		return st, hdr.Get("x-amzn-ErrorType"), out.HLSStreamingSessionURL
	}
	get := func(u string) (int, string, []byte) {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	}
	rng := `"HLSFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":` +
		strconv.FormatInt(start.Unix()-1, 10) + `,"EndTimestamp":` + strconv.FormatInt(start.Unix()+30, 10) + `}}`
	st, typ, u := session(`{"StreamName":"cam","PlaybackMode":"ON_DEMAND",` + rng + `}`)
	if st != 200 || !strings.HasPrefix(u, ts.URL+"/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
		t.Fatalf("ON_DEMAND session: %d %s %q", st, typ, u)
	}
	st, ct, master := get(u)
	if st != 200 || ct != "application/vnd.apple.mpegurl" || !strings.Contains(string(master), `CODECS="avc1.64001e,mp4a.40.2"`) ||
		!strings.Contains(string(master), "RESOLUTION=640x480") {
		t.Fatalf("master playlist: %d %s\n%s", st, ct, master)
	}
	media := ts.URL + "/hls/v1/" + strings.TrimSpace(strings.Split(string(master), "\n")[4])
	_, _, pl := get(media)
	if strings.Count(string(pl), "#EXTINF:") != 6 || !strings.Contains(string(pl), "#EXT-X-ENDLIST") || !strings.Contains(string(pl), "#EXT-X-MAP:URI=") {
		t.Fatalf("ON_DEMAND media playlist:\n%s", pl)
	}

	// ffprobe plays the session from its URL: both codecs, every frame,
	// timestamps without gaps.
	if bin, err := exec.LookPath("ffprobe"); err == nil {
		out, err := exec.Command(bin, "-v", "error", "-count_frames", "-show_streams", "-show_entries", "packet=pts_time,stream_index", "-of", "json", u).Output()
		if err != nil {
			t.Fatalf("ffprobe %s: %v", u, err)
		}
		var probe struct {
			Streams []struct {
				CodecName    string `json:"codec_name"`
				NbReadFrames string `json:"nb_read_frames"`
			}
			Packets []struct {
				PTS   string `json:"pts_time"`
				Index int    `json:"stream_index"`
			}
		}
		if err := json.Unmarshal(out, &probe); err != nil {
			t.Fatal(err)
		}
		names := []string{}
		frames := 0
		for _, s := range probe.Streams {
			names = append(names, s.CodecName)
			if s.CodecName == "h264" {
				frames, _ = strconv.Atoi(s.NbReadFrames)
			}
		}
		if strings.Join(names, ",") != "h264,aac" || frames != 248 {
			t.Fatalf("ffprobe of the HLS session: %v, %d video frames", names, frames)
		}
		prev := -1.0
		for _, p := range probe.Packets {
			if p.Index != 0 {
				continue
			}
			v, _ := strconv.ParseFloat(p.PTS, 64)
			if prev >= 0 && (v <= prev || v-prev > 0.081) {
				t.Fatalf("video timestamps jump from %.3f to %.3f", prev, v)
			}
			prev = v
		}
	} else {
		needFFprobe(t)
	}

	// LIVE: the newest fragments, no ENDLIST.
	st, _, live := session(`{"StreamName":"cam","PlaybackMode":"LIVE","MaxMediaPlaylistFragmentResults":3}`)
	if st != 200 {
		t.Fatalf("LIVE session: %d", st)
	}
	_, _, master = get(live)
	_, _, pl = get(ts.URL + "/hls/v1/" + strings.TrimSpace(strings.Split(string(master), "\n")[4]))
	if strings.Count(string(pl), "#EXTINF:") != 3 || strings.Contains(string(pl), "#EXT-X-ENDLIST") {
		t.Fatalf("LIVE media playlist:\n%s", pl)
	}

	// A tampered or expired token is refused.
	if st, _, _ := get(strings.Replace(u, "SessionToken=", "SessionToken=x", 1)); st != 403 {
		t.Fatalf("tampered token: %d", st)
	}
	sess, err := ts.srv.openSession(u[strings.Index(u, "=")+1:])
	if err != nil {
		t.Fatal(err)
	}
	sess.Expires = time.Now().Add(-time.Second).Unix()
	old, _ := ts.srv.signSession(sess)
	if st, _, b := get(ts.URL + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=" + old); st != 403 || !strings.Contains(string(b), "expired") {
		t.Fatalf("expired token: %d %s", st, b)
	}

	// Bad requests get KVS's errors, never a broken playlist.
	cases := []struct{ name, body, want string }{
		{"on-demand without range", `{"StreamName":"cam","PlaybackMode":"ON_DEMAND"}`, "InvalidArgumentException"},
		{"live with range", `{"StreamName":"cam","PlaybackMode":"LIVE",` + rng + `}`, "InvalidArgumentException"},
		{"empty range", `{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1000,"EndTimestamp":2000}}}`, "ResourceNotFoundException"},
		{"end before start", `{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":2000,"EndTimestamp":1000}}}`, "InvalidArgumentException"},
		{"expires too short", `{"StreamName":"cam","Expires":10}`, "InvalidArgumentException"},
		{"unknown stream", `{"StreamName":"nope"}`, "ResourceNotFoundException"},
	}
	for _, tc := range cases {
		if _, got, _ := session(tc.body); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	createMediaStream(t, ts, "nothing-kept", 0)
	if _, got, _ := session(`{"StreamName":"nothing-kept"}`); got != "NoDataRetentionException" {
		t.Errorf("retention 0: %s", got)
	}
}

func needFFprobe(t *testing.T) {
	t.Helper()
	ffprobeJSON(t, "/dev/null") // fails in CI, skips elsewhere
}

// TestMFHDSequenceAcrossTerms: fMP4 sequence numbers keep increasing when
// ingest moves to another box (a new term restarts the number's seq at 0).
func TestMFHDSequenceAcrossTerms(t *testing.T) {
	base := int64(1_700_000_000_000)
	metas := []fragment.Meta{
		{Number: fragment.MakeNumber(1_700_000_000_000, 1, 7), ProducerMs: base + 7000},
		{Number: fragment.MakeNumber(1_700_000_000_000, 1, 8), ProducerMs: base + 8000},
		{Number: fragment.MakeNumber(1_700_000_009_500, 2, 0), ProducerMs: base + 9500},
		{Number: fragment.MakeNumber(1_700_000_012_000, 1, 0), ProducerMs: base + 12000},
	}
	prev := uint32(0)
	for _, m := range metas {
		seq := mfhdSequence(base, m)
		if seq <= prev {
			t.Fatalf("fragment %s: mfhd sequence %d after %d", m.Number, seq, prev)
		}
		prev = seq
	}
	if got := mfhdSequence(base, fragment.Meta{ProducerMs: base - 5}); got != 1 {
		t.Fatalf("a fragment before the session's base: sequence %d, want 1", got)
	}
}
