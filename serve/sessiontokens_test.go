package serve

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestSessionTokensOpenOnEveryClusterBox: two boxes given one
// Options.SessionKey (what internal/app derives from the cluster key) hold
// copies of a stream (as replication makes them); the HLS session, clip
// download and WHEP session URLs box A hands out open on box B (the same
// playlist, the same MP4 bytes; the WHEP offer gets past its token),
// while a box signing with its own store key (a single box, as before)
// refuses them with NotAuthorized and no media.
func TestSessionTokensOpenOnEveryClusterBox(t *testing.T) {
	clusterKey := bytes.Repeat([]byte{0x5a}, 32)
	withKey := func(o *Options) { fastMedia(o); o.SessionKey = clusterKey }
	a := startServerWith(t, "", withKey)
	b := startServerWith(t, "", withKey)
	single := startServerWith(t, "", fastMedia)
	createMediaStream(t, a, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	if n := len(putUpload(t, a, "cam", "RELATIVE", "1795580000.000", c, 0).events("PERSISTED")); n != 6 {
		t.Fatalf("%d PERSISTED", n)
	}
	// Copies of the stream's record and fragments on b and on the single
	// box, as the cluster's replication makes them.
	info, err := a.eng.Stream(engine.StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	metas, _, err := a.eng.ListFragments(engine.StreamRef{ARN: info.ARN}, fragment.ByServerTime, 0, 1<<50, nil, 100)
	if err != nil || len(metas) != 6 {
		t.Fatalf("ListFragments: %d %v", len(metas), err)
	}
	for _, dst := range []*testServer{b, single} {
		if _, err := dst.eng.ImportStream(info); err != nil {
			t.Fatal(err)
		}
		for _, m := range metas {
			f, err := a.eng.Fragment(engine.StreamRef{ARN: info.ARN}, m.Number)
			if err != nil {
				t.Fatal(err)
			}
			media := append(engine.NewMediaBufferFor(len(f.Media))[:0], f.Media...)
			if _, err := dst.eng.ImportFragment(engine.StreamRef{ARN: info.ARN}, f.Meta, f.Header.Raw, media); err != nil {
				t.Fatal(err)
			}
			f.Release()
		}
	}
	get := func(u string) (int, http.Header, []byte) { t.Helper(); return httpGet(t, u) }
	url := func(what, op, body, field string) string {
		t.Helper()
		st, _, out := a.raw(t, op, []byte(body), time.Now(), testSecret)
		var m map[string]string
		if st != 200 || json.Unmarshal(out, &m) != nil || !strings.HasPrefix(m[field], a.URL+"/") {
			t.Fatalf("%s: %d %s", what, st, out)
		}
		return strings.TrimPrefix(m[field], a.URL)
	}
	refused := func(what string, st int, hdr http.Header, body []byte) {
		t.Helper()
		if st != 403 || hdr.Get("x-amzn-ErrorType") != errNotAuthorized || bytes.Contains(body, []byte("#EXTM3U")) || bytes.Contains(body, []byte("ftyp")) {
			t.Fatalf("%s on a box with its own key: %d %v %q; want 403 %s", what, st, hdr, body[:min(200, len(body))], errNotAuthorized)
		}
	}
	const sel = `"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":1795580000,"EndTimestamp":1795580020}`

	// HLS: a's session plays on b, the same master and media playlists.
	hls := url("HLS session", "/getHLSStreamingSessionURL", `{"StreamName":"cam","PlaybackMode":"ON_DEMAND","HLSFragmentSelector":{`+sel+`}}`, "HLSStreamingSessionURL")
	stA, _, masterA := get(a.URL + hls)
	stB, _, masterB := get(b.URL + hls)
	if stA != 200 || stB != 200 || !bytes.Equal(masterA, masterB) {
		t.Fatalf("HLS master: a %d, b %d %q", stA, stB, masterB)
	}
	media := strings.Replace(hls, "getHLSMasterPlaylist.m3u8", "getHLSMediaPlaylist.m3u8", 1)
	stA, _, mediaA := get(a.URL + media)
	stB, _, mediaB := get(b.URL + media)
	if stA != 200 || stB != 200 || !bytes.Equal(mediaA, mediaB) || !bytes.Contains(mediaB, []byte("#EXT-X-ENDLIST")) {
		t.Fatalf("HLS media playlist: a %d, b %d %q", stA, stB, mediaB)
	}
	st, hdr, body := get(single.URL + hls)
	refused("a's HLS session", st, hdr, body)

	// Clip download: the same MP4 from b.
	clip := url("clip URL", "/getClipURL", `{"StreamName":"cam","ClipFragmentSelector":{`+sel+`}}`, "ClipURL")
	stA, _, mp4A := get(a.URL + clip)
	stB, _, mp4B := get(b.URL + clip)
	if stA != 200 || stB != 200 || len(mp4A) < 1000 || !bytes.Equal(mp4A, mp4B) {
		t.Fatalf("clip download: a %d (%d bytes), b %d (%d bytes)", stA, len(mp4A), stB, len(mp4B))
	}
	st, hdr, body = get(single.URL + clip)
	refused("a's clip URL", st, hdr, body)

	// WHEP: a's token gets the offer past authorisation on b (no live
	// frame there: 404 after the first-frame wait), not on the single box.
	whep := url("WHEP session", "/getWHEPSessionURL", `{"StreamName":"cam"}`, "WHEPSessionURL")
	offer := func(ts *testServer) (int, http.Header, []byte) {
		resp, err := http.Post(ts.URL+whep, "application/sdp", strings.NewReader("v=0\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, body
	}
	st, hdr, body = offer(b)
	if st != 404 || hdr.Get("x-amzn-ErrorType") != errResourceNotFound || !strings.Contains(string(body), "no live media") {
		t.Fatalf("a's WHEP token on b: %d %v %s; want past the token to 404 (no live media)", st, hdr, body)
	}
	st, hdr, body = offer(single)
	refused("a's WHEP token", st, hdr, body)

	// Single box: tokens under the store's key, as before.
	if k, _ := single.srv.sessionKey(); k == nil || bytes.Equal(k, clusterKey) {
		t.Fatal("the single box signs with no key or the cluster's")
	} else if sk, _ := single.eng.SessionKey(); !bytes.Equal(k, sk) {
		t.Fatal("the single box does not sign with its store's session key")
	}
}
