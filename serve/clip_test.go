package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

func ffprobeJSON(t *testing.T, path string, extra ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("ffprobe is not installed: .ci/run must install it")
		}
		t.Skip("ffprobe is not installed")
	}
	args := append([]string{"-v", "error", "-of", "json"}, extra...)
	out, err := exec.Command(bin, append(args, path)...).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	return out
}

func TestGetClip(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	// The clip's 6 fragments are listed 2 at a time while it streams.
	defer func(n int) { clipPageSize = n }(clipPageSize)
	clipPageSize = 2
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	res := putUpload(t, ts, "cam", "RELATIVE", "1795580000.000", c, 0)
	if n := len(res.events("PERSISTED")); n != 6 {
		t.Fatalf("%d PERSISTED", n)
	}
	clip := func(body string) (int, string, []byte) {
		st, hdr, b := ts.raw(t, "/getClip", []byte(body), time.Now(), testSecret)
		return st, hdr.Get("x-amzn-ErrorType") + hdr.Get("Content-Type"), b
	}
	// The whole upload by producer time.
	st, ct, body := clip(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580020}}}`)
	if st != 200 || ct != "video/mp4" {
		t.Fatalf("GetClip: %d %s %s", st, ct, body[:min(200, len(body))])
	}
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	var probe struct {
		Streams []struct {
			CodecName    string `json:"codec_name"`
			NbReadFrames string `json:"nb_read_frames"`
		}
		Format struct {
			Duration string
		}
		Packets []struct {
			PTS   string `json:"pts_time"`
			Index int    `json:"stream_index"`
		}
	}
	if err := json.Unmarshal(ffprobeJSON(t, path, "-count_frames", "-show_streams", "-show_format", "-show_entries", "packet=pts_time,stream_index"), &probe); err != nil {
		t.Fatal(err)
	}
	if len(probe.Streams) != 2 || probe.Streams[0].CodecName != "h264" || probe.Streams[1].CodecName != "aac" ||
		probe.Streams[0].NbReadFrames != "248" || probe.Streams[1].NbReadFrames != "495" {
		t.Fatalf("ffprobe streams: %+v", probe.Streams)
	}
	if d, _ := strconv.ParseFloat(probe.Format.Duration, 64); d < 9.5 || d > 10.6 {
		t.Fatalf("clip duration %v s, the upload is 10 s", d)
	}
	// No timestamp gap between fragments: video packets are 40 ms apart.
	var prev float64 = -1
	for _, p := range probe.Packets {
		if p.Index != 0 {
			continue
		}
		v, _ := strconv.ParseFloat(p.PTS, 64)
		if prev >= 0 && (v-prev > 0.081 || v <= prev) {
			t.Fatalf("video timestamps jump from %.3f to %.3f", prev, v)
		}
		prev = v
	}

	// A sub-range: fragments starting within it (1.8 s each: 2 of them).
	st, _, body = clip(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580001,"EndTimestamp":1795580004}}}`)
	if st != 200 {
		t.Fatalf("sub-range: %d", st)
	}
	os.WriteFile(path, body, 0o644)
	if err := json.Unmarshal(ffprobeJSON(t, path, "-show_format"), &probe); err != nil {
		t.Fatal(err)
	}
	if d, _ := strconv.ParseFloat(probe.Format.Duration, 64); d < 3.4 || d > 3.8 {
		t.Fatalf("sub-range clip lasts %v s, want two 1.8 s fragments", d)
	}

	// Errors.
	cases := []struct{ name, body, want string }{
		{"empty range", `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1000,"EndTimestamp":2000}}}`, "ResourceNotFoundException"},
		{"end before start", `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":2000,"EndTimestamp":1000}}}`, "InvalidArgumentException"},
		{"over 24 h", `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1000,"EndTimestamp":200000}}}`, "InvalidArgumentException"},
		{"no selector", `{"StreamName":"cam"}`, "InvalidArgumentException"},
		{"unknown stream", `{"StreamName":"nope","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1000,"EndTimestamp":2000}}}`, "ResourceNotFoundException"},
	}
	for _, tc := range cases {
		if _, got, _ := clip(tc.body); got != tc.want+"application/json" {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	createMediaStream(t, ts, "nothing-kept", 0)
	if _, got, _ := clip(`{"StreamName":"nothing-kept","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":1000,"EndTimestamp":2000}}}`); got != "NoDataRetentionException"+"application/json" {
		t.Errorf("retention 0: %s", got)
	}

	// A codec MP4 playback does not carry (MJPEG from a USB camera).
	createMediaStream(t, ts, "mjpeg", 24)
	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecMJPG, Width: 320, Height: 240}})
	if err != nil {
		t.Fatal(err)
	}
	persistWith(t, ts, "mjpeg", h, 1795580000000, []byte{0xFF, 0xD8, 0xFF, 0xD9})
	if _, got, _ := clip(`{"StreamName":"mjpeg","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795579999,"EndTimestamp":1795580001}}}`); got != "UnsupportedStreamMediaTypeException"+"application/json" {
		t.Errorf("MJPEG stream: %s", got)
	}
	// HLS cannot carry it either: an error, never a broken playlist.
	for _, path := range []string{"/getHLSStreamingSessionURL", "/getDASHStreamingSessionURL"} {
		sel := "HLSFragmentSelector"
		if path == "/getDASHStreamingSessionURL" {
			sel = "DASHFragmentSelector"
		}
		body := `{"StreamName":"mjpeg","PlaybackMode":"ON_DEMAND","` + sel + `":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795579999,"EndTimestamp":1795580001}}}`
		st, hdr, _ := ts.raw(t, path, []byte(body), time.Now(), testSecret)
		if st != 400 || hdr.Get("x-amzn-ErrorType") != "UnsupportedStreamMediaTypeException" {
			t.Errorf("%s of an MJPEG stream: %d %s", path, st, hdr.Get("x-amzn-ErrorType"))
		}
	}
}

// TestClipURL: getClipURL (signed) gives a short-lived URL whose plain GET
// streams the same MP4 as GetClip, as an attachment; a forged, expired,
// missing or other kind of token (HLS's) gets NotAuthorized and no media;
// a range with nothing in it is ResourceNotFound at getClipURL.
func TestClipURL(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	if n := len(putUpload(t, ts, "cam", "RELATIVE", "1795580000.000", c, 0).events("PERSISTED")); n != 6 {
		t.Fatalf("%d PERSISTED", n)
	}
	const sel = `"ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580004.5}}`
	st, _, b := ts.raw(t, "/getClipURL", []byte(`{"StreamName":"cam",`+sel+`}`), time.Now(), testSecret)
	var out struct{ ClipURL string }
	if st != 200 || json.Unmarshal(b, &out) != nil || !strings.HasPrefix(out.ClipURL, ts.URL+clipDownloadPath+"?SessionToken=") {
		t.Fatalf("getClipURL: %d %s", st, b)
	}
	get := func(u string) (int, http.Header, []byte) { t.Helper(); return httpGet(t, u) }
	// The download is GetClip's MP4, byte for byte, named as an attachment.
	st, hdr, dl := get(out.ClipURL)
	if st != 200 || hdr.Get("Content-Type") != "video/mp4" ||
		hdr.Get("Content-Disposition") != `attachment; filename="cam_2026-11-25T04-13-20-000Z_2026-11-25T04-13-24-500Z.mp4"` {
		t.Fatalf("GET the clip URL: %d %v %q", st, hdr, dl[:min(200, len(dl))])
	}
	st, _, want := ts.raw(t, "/getClip", []byte(`{"StreamName":"cam",`+sel+`}`), time.Now(), testSecret)
	if st != 200 || len(want) < 1000 || string(want[4:8]) != "ftyp" || !bytes.Equal(dl, want) {
		t.Fatalf("the download (%d bytes) is not GetClip's MP4 (%d, %d bytes)", len(dl), st, len(want))
	}
	tok := strings.TrimPrefix(out.ClipURL, ts.URL+clipDownloadPath+"?SessionToken=")
	refused := func(what, u, why string) {
		t.Helper()
		st, hdr, body := get(u)
		if st != 403 || hdr.Get("x-amzn-ErrorType") != errNotAuthorized || hdr.Get("Content-Disposition") != "" ||
			bytes.Contains(body, []byte("ftyp")) || !strings.Contains(string(body), why) {
			t.Fatalf("%s: %d %v %q; want 403 %s (%s) and no media", what, st, hdr, body[:min(200, len(body))], errNotAuthorized, why)
		}
	}
	// Forged: the range widened, the signature kept.
	payload, sig, _ := strings.Cut(tok, ".")
	js, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(js), `"t":1795580004500`, `"t":1795580020000`, 1)
	if forged == string(js) {
		t.Fatalf("token content %s", js)
	}
	refused("a forged token", ts.URL+clipDownloadPath+"?SessionToken="+base64.RawURLEncoding.EncodeToString([]byte(forged))+"."+sig, "not valid")
	refused("no token", ts.URL+clipDownloadPath, "not valid")
	// Expired: signed with the right key, an expiry in the past.
	key, err := ts.srv.tokenKey(clipTokenLabel)
	if err != nil {
		t.Fatal(err)
	}
	var ct clipToken
	if err := json.Unmarshal(js, &ct); err != nil {
		t.Fatal(err)
	}
	if ct.Expires < time.Now().Add(50*time.Second).Unix() || ct.Expires > time.Now().Add(61*time.Second).Unix() {
		t.Fatalf("the clip URL expires at %d, want in 60 s", ct.Expires)
	}
	ct.Expires = time.Now().Add(-time.Second).Unix()
	refused("an expired token", ts.URL+clipDownloadPath+"?SessionToken="+signToken(key, ct), "expired")
	// An HLS session's token is no clip token (and the other way round).
	st, _, b = ts.raw(t, "/getHLSStreamingSessionURL", []byte(`{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580004.5}}}`), time.Now(), testSecret)
	var hls struct{ HLSStreamingSessionURL string }
	if st != 200 || json.Unmarshal(b, &hls) != nil {
		t.Fatalf("getHLSStreamingSessionURL: %d %s", st, b)
	}
	_, hlsTok, _ := strings.Cut(hls.HLSStreamingSessionURL, "SessionToken=")
	refused("an HLS token", ts.URL+clipDownloadPath+"?SessionToken="+hlsTok, "not valid")
	if st, _, _ := get(ts.URL + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=" + tok); st != 403 {
		t.Fatalf("a clip token opened an HLS session: %d", st)
	}
	// Only GET.
	if resp, err := http.Post(out.ClipURL, "application/json", nil); err != nil || resp.StatusCode != 405 {
		t.Fatalf("POST to the clip URL: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// getClipURL: a range with nothing, a bad expiry, no signature.
	if st, hdr, b := ts.raw(t, "/getClipURL", []byte(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795590000,"EndTimestamp":1795590010}}}`), time.Now(), testSecret); st != 404 || hdr.Get("x-amzn-ErrorType") != errResourceNotFound {
		t.Fatalf("getClipURL of an empty range: %d %s", st, b)
	}
	if st, hdr, b := ts.raw(t, "/getClipURL", []byte(`{"StreamName":"cam","Expires":5,`+sel+`}`), time.Now(), testSecret); st != 400 || hdr.Get("x-amzn-ErrorType") != errInvalidArgument {
		t.Fatalf("getClipURL with Expires 5: %d %s", st, b)
	}
	if st, _, b := ts.raw(t, "/getClipURL", []byte(`{"StreamName":"cam",`+sel+`}`), time.Now(), "wrong-secret"); st != 403 {
		t.Fatalf("getClipURL signed with a wrong key: %d %s", st, b)
	}
}

// TestGetClipCutShortEndsAsACutTransfer: a clip that cannot be written to
// its end (here: a byte flipped in its fourth fragment's stored media)
// must not look whole. The answer starts as 200 with the first fragments,
// then its chunked transfer ends without its last chunk, so the client
// reads an unexpected EOF (a browser's download fails) instead of a short
// MP4 ending normally. Before, the damaged fragment was left out
// silently and the clip ended as a normal 200.
func TestGetClipCutShortEndsAsACutTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	dir := t.TempDir()
	ts := startServerWith(t, dir, fastMedia)
	createMediaStream(t, ts, "cam", 24)
	res := putUpload(t, ts, "cam", "RELATIVE", "1795580000.000", loadCapture(t, "real-producer-h264-aac-relative"), 0)
	acks := res.events("PERSISTED")
	if len(acks) != 6 {
		t.Fatalf("%d PERSISTED", len(acks))
	}
	metas, _, err := ts.eng.ListFragments(engine.StreamRef{Name: "cam"}, fragment.ByProducerTime, 0, 1<<62, nil, 10)
	if err != nil || len(metas) != 6 {
		t.Fatalf("%d fragments listed (%v)", len(metas), err)
	}
	f, err := ts.eng.Fragment(engine.StreamRef{Name: "cam"}, metas[3].Number)
	if err != nil {
		t.Fatal(err)
	}
	cluster := append([]byte(nil), f.Media[:f.Meta.ClusterLen]...)
	f.Release()
	// Restarted, the box reads the fragments from its segments (not from
	// the live ring), where the fourth is damaged.
	ts.stop()
	flipped := 0
	err = filepath.WalkDir(filepath.Join(dir, "media"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if i := bytes.Index(b, cluster); i >= 0 {
			b[i+len(cluster)/2] ^= 0xFF
			flipped++
			return os.WriteFile(path, b, 0o644)
		}
		return nil
	})
	if err != nil || flipped != 1 {
		t.Fatalf("flipping a byte of the fourth fragment: %d segments changed (%v)", flipped, err)
	}
	ts = startServerWith(t, dir, fastMedia)

	body := []byte(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580020}}}`)
	resp, err := http.DefaultClient.Do(ts.signed(t, "/getClip", body, body, time.Now(), testSecret))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("GetClip over a damaged fragment: %d, %d bytes read, read error %v; want 200 and a cut transfer (unexpected EOF)", resp.StatusCode, len(got), err)
	}
	// What came before the cut is the clip's start: init segment and the
	// first three fragments' moof+mdat.
	if n := bytes.Count(got, []byte("moof")); n != 3 || !bytes.Contains(got[:64], []byte("ftyp")) {
		t.Fatalf("before the cut: %d moof boxes (want 3), starts % x", n, got[:min(16, len(got))])
	}
}

// streamWithTrackChange is a box whose stream "cam" holds the real
// producer's 6 fragments (producer times from 1795580000 s) and then,
// 30 s of producer time and at least 20 ms of server time later, one
// fragment of another codec (its tracks change): that one's number and
// server time.
func streamWithTrackChange(t *testing.T) (*testServer, fragment.Number, int64) {
	t.Helper()
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	res := putUpload(t, ts, "cam", "RELATIVE", "1795580000.000", loadCapture(t, "real-producer-h264-aac-relative"), 0)
	if n := len(res.events("PERSISTED")); n != 6 {
		t.Fatalf("%d PERSISTED", n)
	}
	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecMJPG, Width: 320, Height: 240}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the change's server time differs from the upload's
	n, serverMs := persistWith(t, ts, "cam", h, 1795580030000, []byte{0xFF, 0xD8, 0xFF, 0xD9})
	return ts, n, serverMs
}

// TestGetClipOverATrackChangeSaysWhere: one MP4 has one set of tracks, so
// a clip whose range spans a change of the stream's tracks (a camera
// reconfigured) is refused before it starts, InvalidCodecPrivateData
// naming where the change is, at GetClip and at getClipURL (the console
// shows it), instead of a 200 cut at the change; the range up to the
// change still plays.
func TestGetClipOverATrackChangeSaysWhere(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts, n, _ := streamWithTrackChange(t)

	whole := `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580040}}}`
	for _, path := range []string{"/getClip", "/getClipURL"} {
		st, hdr, body := ts.raw(t, path, []byte(whole), time.Now(), testSecret)
		if st != 400 || hdr.Get("x-amzn-ErrorType") != "InvalidCodecPrivateDataException" || !strings.Contains(string(body), "2026-11-25T") || !strings.Contains(string(body), n.String()) {
			t.Fatalf("%s over the change: %d %s %s; want 400 InvalidCodecPrivateDataException naming the change's time and fragment %s", path, st, hdr.Get("x-amzn-ErrorType"), body, n)
		}
	}
	upTo := `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580020}}}`
	st, hdr, body := ts.raw(t, "/getClip", []byte(upTo), time.Now(), testSecret)
	if st != 200 || hdr.Get("Content-Type") != "video/mp4" || bytes.Count(body, []byte("moof")) != 6 {
		t.Fatalf("the range up to the change: %d %s, %d moof boxes (want 200, the 6 fragments)", st, hdr.Get("Content-Type"), bytes.Count(body, []byte("moof")))
	}
}

// persistWith stores one fragment of stream name under header h at
// producer time producerMs (one key frame, payload as its sample) through
// an ingest session, as a producer's upload does; it returns its number
// and server time.
func persistWith(t *testing.T, ts *testServer, name string, h *mkv.Header, producerMs int64, payload []byte) (fragment.Number, int64) {
	t.Helper()
	sess, err := ts.eng.BeginIngest(engine.StreamRef{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	b := mkv.FragmentBuilder{Buffers: sess.Buffers(engine.MediaCamera)}
	if err := b.Start(h, producerMs, 64); err != nil {
		t.Fatal(err)
	}
	if err := b.AddBlock(0, producerMs, true, payload); err != nil {
		t.Fatal(err)
	}
	f, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	n, serverMs, err := sess.StartFragment()
	if err != nil {
		t.Fatal(err)
	}
	rec, err := sess.Receive(n, serverMs, producerMs, f)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Persist(rec.Fragment); err != nil {
		t.Fatal(err)
	}
	return n, serverMs
}

// TestGetClipByServerTimeOverATrackChangeSaysWhenInServerTime: a clip
// asked by SERVER_TIMESTAMP over a change of the stream's tracks is
// refused naming the change's server time, the time its caller can ask
// "up to or from" (its producer time, from another clock, is not).
func TestGetClipByServerTimeOverATrackChangeSaysWhenInServerTime(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	ts, n, serverMs := streamWithTrackChange(t)
	now := time.Now().Unix()
	whole := `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"SERVER_TIMESTAMP","TimestampRange":{"StartTimestamp":` +
		strconv.FormatInt(now-300, 10) + `,"EndTimestamp":` + strconv.FormatInt(now+300, 10) + `}}}`
	want := time.UnixMilli(serverMs).UTC().Format("2006-01-02T15:04:05.000Z")
	for _, path := range []string{"/getClip", "/getClipURL"} {
		st, hdr, body := ts.raw(t, path, []byte(whole), time.Now(), testSecret)
		if st != 400 || hdr.Get("x-amzn-ErrorType") != "InvalidCodecPrivateDataException" || !strings.Contains(string(body), want) || !strings.Contains(string(body), n.String()) {
			t.Fatalf("%s by server time over the change: %d %s %s; want 400 InvalidCodecPrivateDataException naming the change's server time %s and fragment %s", path, st, hdr.Get("x-amzn-ErrorType"), body, want, n)
		}
	}
}

// TestGetClipTrackCheckReadsAtMostMaxClipHeaders: the check of a clip's
// tracks before it starts reads one fragment for each of at most
// maxClipHeaders distinct headers, however many one page of the range
// holds (a producer whose every upload has its own header: 500 reads
// before the clip starts); past them a change of tracks cuts the
// transfer where it is (FORMAT.md). At the bound, a change is refused.
func TestGetClipTrackCheckReadsAtMostMaxClipHeaders(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	const base = 1795580000000
	avcc := captureFragments(t, "real-producer-h264-absolute")[0].Header.Tracks[0].CodecPrivate
	header := func(i int, number uint64) *mkv.Header {
		h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: number, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: avcc, Name: "upload " + strconv.Itoa(i), Width: 64, Height: 64}})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	// 4 KiB key frames: the clip is flushed (its 200 sent) before the cut.
	idr := append([]byte{0, 0, 0x10, 0, 0x65}, make([]byte, 4<<10-1)...)
	// maxClipHeaders-1 headers with the same tracks (names differ), then
	// a change (another track number) at the maxClipHeaders-th header,
	// then another same-tracks header and a change past the bound.
	for i := 0; i < maxClipHeaders-1; i++ {
		persistWith(t, ts, "cam", header(i, 1), base+int64(i)*1000, idr)
	}
	changeAt, _ := persistWith(t, ts, "cam", header(maxClipHeaders-1, 2), base+int64(maxClipHeaders-1)*1000, idr)
	clip := func(endMs int64) (int, http.Header, []byte, error) {
		body := []byte(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":` + strconv.FormatFloat(float64(endMs)/1000, 'f', 3, 64) + `}}}`)
		resp, err := http.DefaultClient.Do(ts.signed(t, "/getClip", body, body, time.Now(), testSecret))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, got, err
	}
	st, hdr, body, _ := clip(base + 60_000)
	if st != 400 || hdr.Get("x-amzn-ErrorType") != "InvalidCodecPrivateDataException" || !strings.Contains(string(body), changeAt.String()) {
		t.Fatalf("a change at the %d-th header: %d %s %s; want 400 naming fragment %s", maxClipHeaders, st, hdr.Get("x-amzn-ErrorType"), body, changeAt)
	}
	// One more same-tracks header before the change puts it past the
	// bound: it is not read before the clip starts.
	ts = startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	for i := 0; i < maxClipHeaders; i++ {
		persistWith(t, ts, "cam", header(i, 1), base+int64(i)*1000, idr)
	}
	persistWith(t, ts, "cam", header(maxClipHeaders, 2), base+int64(maxClipHeaders)*1000, idr)
	st, _, body, err := clip(base + 60_000)
	if st != 200 || !errors.Is(err, io.ErrUnexpectedEOF) || bytes.Count(body, []byte("moof")) != maxClipHeaders {
		t.Fatalf("a change past %d headers: %d, %d moof boxes, read error %v; want 200 cut at the change (%d moof boxes) after at most %d header reads", maxClipHeaders, st, bytes.Count(body, []byte("moof")), err, maxClipHeaders, maxClipHeaders)
	}
}

// TestGetClipCutBeforeItsFirstFlushIsA200CutShort: a clip that fails
// before its first 16 KiB are buffered (small fragments, then a change of
// tracks past the headers checked before it starts) still answers 200 and
// a cut transfer, as FORMAT.md says, not a connection closed before any
// answer (Go's client: EOF from Do, which the AWS SDK retries as a
// network error).
func TestGetClipCutBeforeItsFirstFlushIsA200CutShort(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	const base = 1795580000000
	avcc := captureFragments(t, "real-producer-h264-absolute")[0].Header.Tracks[0].CodecPrivate
	for i := 0; i <= maxClipHeaders; i++ {
		number := uint64(1)
		if i == maxClipHeaders {
			number = 2 // the change, past the headers checked
		}
		h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: number, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: avcc, Name: "upload " + strconv.Itoa(i), Width: 64, Height: 64}})
		if err != nil {
			t.Fatal(err)
		}
		persistWith(t, ts, "cam", h, base+int64(i)*1000, []byte{0, 0, 0, 2, 0x65, 0x88})
	}
	body := []byte(`{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580060}}}`)
	resp, err := http.DefaultClient.Do(ts.signed(t, "/getClip", body, body, time.Now(), testSecret))
	if err != nil {
		t.Fatalf("GetClip cut within its first 16 KiB: %v; want 200 and a cut transfer", err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Contains(got, []byte("ftyp")) {
		t.Fatalf("GetClip cut within its first 16 KiB: %d, %d bytes, read error %v; want 200, the init segment, a cut transfer", resp.StatusCode, len(got), err)
	}
}

// TestGetClipOfAnUnparsableSPSIsAnError: an H.264 stream whose codec
// private data parses as avcC but whose SPS is too short to build an MP4
// init segment from gets 400 InvalidCodecPrivateData, not a connection
// closed before any status (review9b).
func TestGetClipOfAnUnparsableSPSIsAnError(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	// avcC: version 1, profile 0x64, compat 0, level 0x1f, 4-byte lengths,
	// one SPS of 2 bytes (too short), one PPS of 1 byte.
	avcc := []byte{1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x64, 1, 0, 1, 0x68}
	h, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264, CodecPrivate: avcc, Width: 64, Height: 64}})
	if err != nil {
		t.Fatal(err)
	}
	persistWith(t, ts, "cam", h, 1795580000000, []byte{0, 0, 0, 2, 0x65, 0x88})
	body := `{"StreamName":"cam","ClipFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795579999,"EndTimestamp":1795580001}}}`
	resp, err := http.DefaultClient.Do(ts.signed(t, "/getClip", []byte(body), []byte(body), time.Now(), testSecret))
	if err != nil {
		t.Fatalf("GetClip of a stream whose SPS cannot start an MP4: %v (want an error answer)", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || resp.Header.Get("x-amzn-ErrorType") != "InvalidCodecPrivateDataException" {
		t.Fatalf("GetClip of a stream whose SPS cannot start an MP4: %d %s", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"))
	}
}
