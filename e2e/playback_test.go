package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia"
	amtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia/types"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestPlaybackSessionURLs: aws-sdk-go-v2 obtains HLS session URLs in each
// playback mode and a DASH one for the demo camera's stream, and ffprobe
// plays them from their URLs. (The aws CLI's playback commands are in
// TestAWSCLITour.)
func TestPlaybackSessionURLs(t *testing.T) {
	dir := t.TempDir()
	p := startKvsedge(t, append(streamEnv(dir), "KVSEDGE_DEMO=true"), "--listen", "127.0.0.1:0")
	c := newSDK(t, p.endpoint)
	c.waitFragments(t, "demo", 3, 20*time.Second)
	rng := &amtypes.HLSTimestampRange{StartTimestamp: aws.Time(time.Now().Add(-2 * time.Minute)), EndTimestamp: aws.Time(time.Now())}
	var urls []string
	for _, mode := range []amtypes.HLSPlaybackMode{amtypes.HLSPlaybackModeLive, amtypes.HLSPlaybackModeLiveReplay, amtypes.HLSPlaybackModeOnDemand} {
		in := &kinesisvideoarchivedmedia.GetHLSStreamingSessionURLInput{StreamName: aws.String("demo"), PlaybackMode: mode}
		if mode != amtypes.HLSPlaybackModeLive {
			in.HLSFragmentSelector = &amtypes.HLSFragmentSelector{FragmentSelectorType: amtypes.HLSFragmentSelectorTypeServerTimestamp, TimestampRange: rng}
		}
		out, err := c.Archived.GetHLSStreamingSessionURL(sdkCtx(t), in)
		if err != nil {
			t.Fatalf("GetHLSStreamingSessionURL %s: %v", mode, err)
		}
		u := aws.ToString(out.HLSStreamingSessionURL)
		if !strings.HasPrefix(u, p.endpoint+"/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
			t.Fatalf("%s: %q", mode, u)
		}
		urls = append(urls, u)
	}
	dash, err := c.Archived.GetDASHStreamingSessionURL(sdkCtx(t), &kinesisvideoarchivedmedia.GetDASHStreamingSessionURLInput{
		StreamName: aws.String("demo"), PlaybackMode: amtypes.DASHPlaybackModeOnDemand,
		DASHFragmentSelector: &amtypes.DASHFragmentSelector{FragmentSelectorType: amtypes.DASHFragmentSelectorTypeServerTimestamp,
			TimestampRange: &amtypes.DASHTimestampRange{StartTimestamp: rng.StartTimestamp, EndTimestamp: rng.EndTimestamp}},
	})
	if err != nil {
		t.Fatalf("GetDASHStreamingSessionURL: %v", err)
	}
	if u := aws.ToString(dash.DASHStreamingSessionURL); !strings.HasPrefix(u, p.endpoint+"/dash/v1/getDASHManifest.mpd?SessionToken=") {
		t.Fatalf("DASH: %q", u)
	}
	urls = append(urls, aws.ToString(dash.DASHStreamingSessionURL))
	ffprobe := fixture.Tool(t, "ffprobe")
	for _, u := range []string{urls[0], urls[2], urls[3]} {
		out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0", u).Output()
		if err != nil || !strings.Contains(string(out), "h264,640,360") {
			t.Fatalf("ffprobe %s: %v %q", u[:60], err, out)
		}
	}
}
