package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// streamEnv configures a server on a random loopback port with one key pair
// and the data in dir.
func streamEnv(dir string) []string {
	return []string{
		"KVSEDGE_ACCESS_KEY_ID=" + e2eAKID,
		"KVSEDGE_SECRET_ACCESS_KEY=" + e2eSecret,
		"KVSEDGE_DATA_DIR=" + dir,
		"KVSEDGE_REGION=us-west-2",
		"KVSEDGE_ACCOUNT_ID=111122223333",
		"KVSEDGE_DEMO=false", // tests count streams; TestDemoCamera turns it on
		// A test machine's disk may be nearly full: keep the capacity
		// controller from deleting test data (the disk-full test sets its own).
		"KVSEDGE_STORAGE__MIN_FREE_MIB=8",
		// Freed media buffers become inaccessible and complete ones
		// read-only (engine/media.go): a use after free crashes the box.
		"KVSEDGE_MEDIA_DEBUG=1",
	}
}

type describeOut struct {
	StreamInfo struct {
		StreamName, StreamARN, Status, Version, MediaType, DeviceName string
		DataRetentionInHours                                          int
		CreationTime                                                  float64
	}
}

// TestAWSCLITour is the one test that drives the installed aws CLI (the
// others use aws-sdk-go-v2, which starts in milliseconds where the CLI
// takes a second or more a call): the control plane (create → describe →
// list → update → tag → retention → delete, errors by their KVS names),
// then the CLI's own behaviour on our answers: auto-pagination over our
// NextTokens, its archived-media and media commands against a recording
// box, and HTTPS with --ca-bundle.
func TestAWSCLITour(t *testing.T) {
	fixture.Tool(t, "aws")
	// The playback steps read the demo camera of a second box, started
	// first so that it has recorded by the time they run.
	media := startKvsedge(t, append(streamEnv(t.TempDir()), "KVSEDGE_DEMO=true", "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=1s"), "--listen", "127.0.0.1:0")
	p := startKvsedge(t, streamEnv(t.TempDir()), "--listen", "127.0.0.1:0")
	ep := p.endpoint

	var created struct{ StreamARN string }
	awsCLI(t, ep, nil, &created, "kinesisvideo", "create-stream", "--stream-name", "porch",
		"--data-retention-in-hours", "24", "--media-type", "video/h264", "--tags", "site=home")
	if !strings.HasPrefix(created.StreamARN, "arn:aws:kinesisvideo:us-west-2:111122223333:stream/porch/") {
		t.Fatalf("ARN %q", created.StreamARN)
	}

	var d describeOut
	awsCLI(t, ep, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "porch")
	if d.StreamInfo.StreamARN != created.StreamARN || d.StreamInfo.Status != "ACTIVE" || d.StreamInfo.DataRetentionInHours != 24 || d.StreamInfo.CreationTime < 1.7e9 {
		t.Fatalf("describe: %+v", d.StreamInfo)
	}

	var l struct{ StreamInfoList []struct{ StreamName string } }
	awsCLI(t, ep, nil, &l, "kinesisvideo", "list-streams")
	if len(l.StreamInfoList) != 1 || l.StreamInfoList[0].StreamName != "porch" {
		t.Fatalf("list: %+v", l)
	}

	awsCLI(t, ep, nil, nil, "kinesisvideo", "update-stream", "--stream-name", "porch",
		"--current-version", d.StreamInfo.Version, "--device-name", "cam-porch")
	awsCLI(t, ep, nil, nil, "kinesisvideo", "tag-stream", "--stream-name", "porch", "--tags", "owner=me,room=hall")
	var tags struct{ Tags map[string]string }
	awsCLI(t, ep, nil, &tags, "kinesisvideo", "list-tags-for-stream", "--stream-name", "porch")
	if tags.Tags["site"] != "home" || tags.Tags["owner"] != "me" || tags.Tags["room"] != "hall" || len(tags.Tags) != 3 {
		t.Fatalf("tags: %v", tags.Tags)
	}

	awsCLI(t, ep, nil, &d, "kinesisvideo", "describe-stream", "--stream-arn", created.StreamARN)
	if d.StreamInfo.DeviceName != "cam-porch" {
		t.Fatalf("device after update: %+v", d.StreamInfo)
	}
	awsCLI(t, ep, nil, nil, "kinesisvideo", "update-data-retention", "--stream-name", "porch",
		"--current-version", d.StreamInfo.Version, "--operation", "INCREASE_DATA_RETENTION", "--data-retention-change-in-hours", "48")
	awsCLI(t, ep, nil, &d, "kinesisvideo", "describe-stream", "--stream-name", "porch")
	if d.StreamInfo.DataRetentionInHours != 72 {
		t.Fatalf("retention: %d", d.StreamInfo.DataRetentionInHours)
	}

	var de struct{ DataEndpoint string }
	awsCLI(t, ep, nil, &de, "kinesisvideo", "get-data-endpoint", "--stream-name", "porch", "--api-name", "GET_MEDIA")
	if de.DataEndpoint != ep {
		t.Fatalf("data endpoint %q, want %q", de.DataEndpoint, ep)
	}

	// The CLI reports our errors by their KVS names.
	_, stderr, err := awsCLIRaw(t, ep, nil, "kinesisvideo", "describe-stream", "--stream-name", "nope")
	if err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("describe unknown: %v %s", err, stderr)
	}
	_, stderr, err = awsCLIRaw(t, ep, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, "kinesisvideo", "list-streams")
	if err == nil || !strings.Contains(stderr, "InvalidSignatureException") {
		t.Fatalf("wrong secret: %v %s", err, stderr)
	}

	awsCLI(t, ep, nil, nil, "kinesisvideo", "delete-stream", "--stream-arn", created.StreamARN)
	awsCLI(t, ep, nil, &l, "kinesisvideo", "list-streams")
	if len(l.StreamInfoList) != 0 {
		t.Fatalf("list after delete: %+v", l)
	}

	// The CLI pages through our NextTokens by itself (and aborts on a
	// repeated token). The streams are made with the SDK: only the listing
	// is the CLI's.
	t.Run("pagination", func(t *testing.T) {
		c := newSDK(t, ep)
		for _, n := range []string{"a1", "a2", "a3", "a4", "a5", "b1"} {
			if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String(n)}); err != nil {
				t.Fatalf("CreateStream %s: %v", n, err)
			}
		}
		var l struct{ StreamInfoList []struct{ StreamName string } }
		awsCLI(t, ep, nil, &l, "kinesisvideo", "list-streams", "--page-size", "2",
			"--stream-name-condition", "ComparisonOperator=BEGINS_WITH,ComparisonValue=a")
		var names []string
		for _, s := range l.StreamInfoList {
			names = append(names, s.StreamName)
		}
		if strings.Join(names, ",") != "a1,a2,a3,a4,a5" {
			t.Fatalf("paginated list: %v", names)
		}
	})

	// The archived-media and media commands: list-fragments, session URLs
	// for HLS (live, and on demand with the CLI's shorthand selector) and
	// DASH, and get-media writing its payload to a file. That the URLs play
	// is TestPlaybackSessionURLs's.
	t.Run("playback", func(t *testing.T) {
		mep := media.endpoint
		recorded := newSDK(t, mep).waitFragments(t, "demo", 3, 20*time.Second)
		sel := "FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=2020-01-01T00:00:00Z,EndTimestamp=2100-01-01T00:00:00Z}"
		var l struct {
			Fragments []struct {
				FragmentNumber               string
				FragmentLengthInMilliseconds int64
				ServerTimestamp              float64
			}
		}
		awsCLI(t, mep, nil, &l, "kinesis-video-archived-media", "list-fragments", "--stream-name", "demo", "--fragment-selector", sel)
		if len(l.Fragments) < len(recorded) {
			t.Fatalf("list-fragments: %d fragments, the SDK listed %d", len(l.Fragments), len(recorded))
		}
		for _, f := range l.Fragments {
			if f.FragmentNumber == "" || f.FragmentLengthInMilliseconds <= 0 || f.ServerTimestamp < 1.7e9 {
				t.Fatalf("list-fragments: %+v", f)
			}
		}
		from := time.Now().Add(-2 * time.Minute).UTC().Format(time.RFC3339)
		to := time.Now().UTC().Format(time.RFC3339)
		rng := "FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=" + from + ",EndTimestamp=" + to + "}"
		for _, mode := range []string{"LIVE", "ON_DEMAND"} {
			args := []string{"kinesis-video-archived-media", "get-hls-streaming-session-url", "--stream-name", "demo", "--playback-mode", mode}
			if mode != "LIVE" {
				args = append(args, "--hls-fragment-selector", rng)
			}
			var out struct{ HLSStreamingSessionURL string }
			awsCLI(t, mep, nil, &out, args...)
			if !strings.HasPrefix(out.HLSStreamingSessionURL, mep+"/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=") {
				t.Fatalf("HLS %s: %q", mode, out.HLSStreamingSessionURL)
			}
		}
		var dash struct{ DASHStreamingSessionURL string }
		awsCLI(t, mep, nil, &dash, "kinesis-video-archived-media", "get-dash-streaming-session-url", "--stream-name", "demo",
			"--playback-mode", "ON_DEMAND", "--dash-fragment-selector", rng)
		if !strings.HasPrefix(dash.DASHStreamingSessionURL, mep+"/dash/v1/getDASHManifest.mpd?SessionToken=") {
			t.Fatalf("DASH: %q", dash.DASHStreamingSessionURL)
		}

		out := filepath.Join(t.TempDir(), "demo.mkv")
		var meta struct{ ContentType string }
		awsCLI(t, mep, nil, &meta, "kinesis-video-media", "get-media", "--stream-name", "demo",
			"--start-selector", "StartSelectorType=EARLIEST", out)
		mkv, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if meta.ContentType != "video/webm" || len(mkv) < 100_000 || !bytes.HasPrefix(mkv, []byte{0x1a, 0x45, 0xdf, 0xa3}) {
			t.Fatalf("get-media: %q, %d bytes starting % x", meta.ContentType, len(mkv), mkv[:min(len(mkv), 8)])
		}
	})

	// HTTPS with a CA of `kvsedge cert`: the CLI (Python's TLS checks, not
	// Go's) accepts the chain given --ca-bundle, and refuses the server
	// without it.
	t.Run("https", func(t *testing.T) {
		dir := t.TempDir()
		env := streamEnv(dir)
		if _, errOut, code := kvsedgeCmd(t, env, "cert", "--name", "127.0.0.1", "--name", "localhost"); code != 0 {
			t.Fatalf("kvsedge cert: exit %d\n%s", code, errOut)
		}
		tlsDir := filepath.Join(dir, "tls")
		caFile := filepath.Join(tlsDir, "ca.pem")
		tp := startKvsedge(t, env, "--listen", "127.0.0.1:0",
			"--tls-cert", filepath.Join(tlsDir, "server.pem"), "--tls-key", filepath.Join(tlsDir, "server-key.pem"))
		awsCLI(t, tp.endpoint, nil, nil, "kinesisvideo", "create-stream", "--stream-name", "tls-cam", "--ca-bundle", caFile)
		var l struct{ StreamInfoList []struct{ StreamName string } }
		awsCLI(t, tp.endpoint, nil, &l, "kinesisvideo", "list-streams", "--ca-bundle", caFile)
		if len(l.StreamInfoList) != 1 || l.StreamInfoList[0].StreamName != "tls-cam" {
			t.Fatalf("list-streams over HTTPS: %+v", l)
		}
		// Without it, certificate verification fails. An empty system
		// bundle keeps a CA someone installed system-wide from making the
		// check pass by accident.
		empty := filepath.Join(t.TempDir(), "empty.pem")
		if err := os.WriteFile(empty, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := awsCLIRaw(t, tp.endpoint, []string{"AWS_CA_BUNDLE=" + empty}, "kinesisvideo", "list-streams")
		if err == nil {
			t.Fatal("aws CLI trusted the server without the CA")
		}
		if !strings.Contains(stderr, "SSL") && !strings.Contains(stderr, "certificate") {
			t.Fatalf("aws CLI failed for another reason than TLS trust:\n%s", stderr)
		}
		if _, _, err := awsCLIRaw(t, tp.endpoint, nil, "kinesisvideo", "list-streams", "--ca-bundle", "/etc/ssl/certs/ca-certificates.crt"); err == nil {
			t.Fatal("aws CLI with the system bundle trusted the local CA")
		}
	})
}
