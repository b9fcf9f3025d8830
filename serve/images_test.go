package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

type imagesOut struct {
	Images []struct {
		TimeStamp    float64
		Error        string
		ImageContent string
	}
	NextToken string
}

func TestGetImages(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		needFFprobe(t) // ffmpeg comes with ffprobe: fails in CI, skips elsewhere
	}
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	putUpload(t, ts, "cam", "RELATIVE", strconv.FormatInt(start.Unix(), 10)+".000", loadCapture(t, "real-producer-h264-aac-relative"), 0)
	s0 := float64(start.Unix())
	images := func(extra string, from, to float64) (int, string, imagesOut) {
		body := fmt.Sprintf(`{"StreamName":"cam","ImageSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":%.3f,"EndTimestamp":%.3f%s}`, from, to, extra)
		st, hdr, b := ts.raw(t, "/getImages", []byte(body), time.Now(), testSecret)
		var out imagesOut
		_ = json.Unmarshal(b, &out)
		return st, hdr.Get("x-amzn-ErrorType"), out
	}
	decode := func(b64 string) (string, image.Point) {
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			t.Fatal(err)
		}
		img, format, err := image.Decode(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("image does not decode: %v", err)
		}
		return format, img.Bounds().Size()
	}
	// Absurd timestamps fail the range check instead of overflowing
	// (found by fuzzing: ±1e300 answered 200 with a negative timestamp).
	if st, typ, _ := images(`,"Format":"JPEG","SamplingInterval":1000`, -1e300, 1e300); st != 400 || typ != "InvalidArgumentException" {
		t.Fatalf("GetImages over ±1e300 s: %d %s", st, typ)
	}
	st, typ, out := images(`,"Format":"JPEG","SamplingInterval":1000`, s0, s0+9.5)
	if st != 200 || len(out.Images) != 10 {
		t.Fatalf("GetImages: %d %s, %d images", st, typ, len(out.Images))
	}
	for i, img := range out.Images {
		if img.Error != "" || img.ImageContent == "" || img.TimeStamp != s0+float64(i) {
			t.Fatalf("image %d: %+v", i, img.Error)
		}
		if f, size := decode(img.ImageContent); f != "jpeg" || size != (image.Point{640, 480}) {
			t.Fatalf("image %d: %s %v", i, f, size)
		}
	}
	// The last moment of each fragment (after its last frame, before the
	// next fragment starts) is its last frame, not an error.
	st, _, lb := ts.raw(t, "/listFragments", []byte(`{"StreamName":"cam","FragmentSelector":{"FragmentSelectorType":"PRODUCER_TIMESTAMP","TimestampRange":{"StartTimestamp":0,"EndTimestamp":4e9}}}`), time.Now(), testSecret)
	var frags struct{ Fragments []fragmentJSON }
	if err := json.Unmarshal(lb, &frags); st != 200 || err != nil || len(frags.Fragments) != 6 {
		t.Fatalf("ListFragments: %d %s", st, lb)
	}
	for _, f := range frags.Fragments {
		end := f.ProducerTimestamp + float64(f.FragmentLengthInMilliseconds-1)/1000
		if _, _, out := images(`,"Format":"JPEG","SamplingInterval":1000`, end, end); len(out.Images) != 1 || out.Images[0].ImageContent == "" {
			t.Fatalf("the image 1 ms before the end of fragment %s (%d ms): %+v", f.FragmentNumber, f.FragmentLengthInMilliseconds, out.Images)
		}
	}
	// PNG at another size; a time without media.
	_, _, out = images(`,"Format":"PNG","WidthPixels":320,"HeightPixels":240,"SamplingInterval":20000`, s0+4, s0+24)
	if len(out.Images) != 2 || out.Images[1].Error != "NO_MEDIA" {
		t.Fatalf("PNG images: %+v", out.Images)
	}
	if f, size := decode(out.Images[0].ImageContent); f != "png" || size != (image.Point{320, 240}) {
		t.Fatalf("PNG image: %s %v", f, size)
	}
	// Pages.
	_, _, out = images(`,"Format":"JPEG","SamplingInterval":1000,"MaxResults":3`, s0, s0+9.5)
	if len(out.Images) != 3 || out.NextToken == "" {
		t.Fatalf("first page: %d images, token %q", len(out.Images), out.NextToken)
	}
	_, _, page2 := images(`,"Format":"JPEG","SamplingInterval":1000,"MaxResults":3,"NextToken":"`+out.NextToken+`"`, s0, s0+9.5)
	if len(page2.Images) != 3 || page2.Images[0].TimeStamp != s0+3 {
		t.Fatalf("second page: %+v", page2.Images)
	}
	// Errors.
	for name, extra := range map[string]string{
		"interval too short": `,"Format":"JPEG","SamplingInterval":100`,
		"no format":          `,"SamplingInterval":1000`,
		"bad quality":        `,"Format":"JPEG","FormatConfig":{"JPEGQuality":"101"}`,
	} {
		if st, typ, _ := images(extra, s0, s0+5); st != 400 || typ != "InvalidArgumentException" {
			t.Errorf("%s: %d %s", name, st, typ)
		}
	}
	if st, typ, _ := images(`,"Format":"JPEG"`, s0, s0+301); st != 400 || typ != "InvalidArgumentException" {
		t.Errorf("range over 300 s: %d %s", st, typ)
	}
}

// TestGetImagesWithoutFFmpeg: a box without ffmpeg says so, clearly, for
// a stream whose video needs decoding.
func TestGetImagesWithoutFFmpeg(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	createMediaStream(t, ts, "cam", 24)
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	putUpload(t, ts, "cam", "RELATIVE", strconv.FormatInt(start.Unix(), 10)+".000", loadCapture(t, "real-producer-h264-aac-relative"), 0)
	t.Setenv("PATH", t.TempDir()) // no ffmpeg on this box
	body := fmt.Sprintf(`{"StreamName":"cam","ImageSelectorType":"PRODUCER_TIMESTAMP","StartTimestamp":%d,"EndTimestamp":%d,"Format":"JPEG"}`, start.Unix(), start.Unix()+2)
	st, hdr, b := ts.raw(t, "/getImages", []byte(body), time.Now(), testSecret)
	if st != 501 || hdr.Get("x-amzn-ErrorType") != "NotImplementedException" || !bytes.Contains(b, []byte("ffmpeg is not installed")) {
		t.Fatalf("without ffmpeg: %d %s %s", st, hdr.Get("x-amzn-ErrorType"), b)
	}
}
