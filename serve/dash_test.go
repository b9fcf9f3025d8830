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
)

func TestDASHSessions(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-aac-relative")
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	putUpload(t, ts, "cam", "RELATIVE", strconv.FormatInt(start.Unix(), 10)+".000", c, 0)
	body := `{"StreamName":"cam","PlaybackMode":"ON_DEMAND","DisplayFragmentNumber":"ALWAYS","DASHFragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":` +
		strconv.FormatInt(start.Unix()-1, 10) + `,"EndTimestamp":` + strconv.FormatInt(start.Unix()+30, 10) + `}}}`
	st, _, b := ts.raw(t, "/getDASHStreamingSessionURL", []byte(body), time.Now(), testSecret)
	var out struct{ DASHStreamingSessionURL string }
	if st != 200 || json.Unmarshal(b, &out) != nil || !strings.HasPrefix(out.DASHStreamingSessionURL, ts.URL+"/dash/v1/getDASHManifest.mpd?SessionToken=") {
		t.Fatalf("DASH session: %d %s", st, b)
	}
	resp, err := http.Get(out.DASHStreamingSessionURL)
	if err != nil {
		t.Fatal(err)
	}
	mpd, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/dash+xml" ||
		strings.Count(string(mpd), "<SegmentURL") != 12 || strings.Count(string(mpd), "kvs:fn=") != 12 || !strings.Contains(string(mpd), `type="static"`) {
		t.Fatalf("manifest: %d\n%s", resp.StatusCode, mpd)
	}
	bin, err := exec.LookPath("ffprobe")
	if err != nil {
		needFFprobe(t)
		return
	}
	cmd := exec.Command(bin, "-v", "error", "-count_frames", "-show_streams", "-of", "json", out.DASHStreamingSessionURL)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	js, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffprobe of the DASH manifest: %v\n%s\n%s", err, stderr.String(), mpd)
	}
	var probe struct {
		Streams []struct {
			CodecName    string `json:"codec_name"`
			NbReadFrames string `json:"nb_read_frames"`
		}
	}
	if err := json.Unmarshal(js, &probe); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range probe.Streams {
		names = append(names, s.CodecName+"/"+s.NbReadFrames)
	}
	if strings.Join(names, ",") != "h264/248,aac/495" {
		t.Fatalf("ffprobe of the DASH session: %v", names)
	}
}
