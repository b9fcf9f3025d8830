package e2e

// JSON API helpers of the media end-to-end tests: hand-signed calls, stream
// setup, ListFragments (CLI and signed, with paging), timestamps, and
// waiting for a condition.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

var e2eCreds = aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: e2eSecret}

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// signedJSONRequest builds a SigV4-signed JSON POST like the SDKs send.
func signedJSONRequest(ctx context.Context, t testing.TB, endpoint, path string, body any) *http.Request {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(raw)
	if err := v4.NewSigner().SignHTTP(ctx, e2eCreds, req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-west-2", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

// callJSON does a signed JSON call and decodes a 200 answer into out.
func callJSON(t testing.TB, endpoint, path string, in, out any) (int, []byte) {
	t.Helper()
	status, raw, _ := callJSONH(t, endpoint, path, in, out)
	return status, raw
}

// callJSONH is callJSON that also returns the response headers.
func callJSONH(t testing.TB, endpoint, path string, in, out any) (int, []byte, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(signedJSONRequest(ctx, t, endpoint, path, in))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", path, err)
	}
	if resp.StatusCode == 200 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: %q: %v", path, raw, err)
		}
	}
	return resp.StatusCode, raw, resp.Header
}

// mediaEnv is streamEnv plus a short GetMedia idle end so that CLI get-media
// returns.
func mediaEnv(dir string) []string {
	return append(streamEnv(dir), "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=3s")
}

func createStream(t *testing.T, endpoint, name string) string {
	t.Helper()
	return createStreamRetention(t, endpoint, name, 24)
}

// createStreamRetention creates a stream and returns its ARN.
func createStreamRetention(t *testing.T, endpoint, name string, hours int) string {
	t.Helper()
	var out struct{ StreamARN string }
	status, raw := callJSON(t, endpoint, "/createStream", map[string]any{"StreamName": name, "DataRetentionInHours": hours}, &out)
	if status != 200 || out.StreamARN == "" {
		t.Fatalf("createStream %s: %d %s", name, status, raw)
	}
	return out.StreamARN
}

// fragment is one ListFragments entry as the CLI prints it.
type fragment struct {
	FragmentNumber               string
	FragmentSizeInBytes          int64
	ProducerTimestamp            float64
	ServerTimestamp              float64
	FragmentLengthInMilliseconds int64
}

type listFragmentsOut struct {
	Fragments []fragment
	NextToken string
}

// listFragmentsCLI runs `aws kinesis-video-archived-media list-fragments`.
func listFragmentsCLI(t *testing.T, endpoint, stream string, args ...string) listFragmentsOut {
	t.Helper()
	var out listFragmentsOut
	awsCLI(t, endpoint, nil, &out, append([]string{"kinesis-video-archived-media", "list-fragments", "--stream-name", stream}, args...)...)
	return out
}

func producerRange(fromSec, toSec int64) string {
	return fmt.Sprintf("FragmentSelectorType=PRODUCER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", fromSec, toSec)
}

func serverRange(fromSec, toSec int64) string {
	return fmt.Sprintf("FragmentSelectorType=SERVER_TIMESTAMP,TimestampRange={StartTimestamp=%d,EndTimestamp=%d}", fromSec, toSec)
}

func sortedNumbers(fs []fragment) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.FragmentNumber)
	}
	sort.Strings(out)
	return out
}

// listAllRaw lists a stream's fragments in a producer time range with signed
// HTTP (cheaper than the CLI for polling), following NextToken.
func listAllRaw(t *testing.T, endpoint, stream string, fromMs, toMs int64) []fragment {
	t.Helper()
	var all []fragment
	in := map[string]any{
		"StreamName": stream,
		"FragmentSelector": map[string]any{
			"FragmentSelectorType": "PRODUCER_TIMESTAMP",
			"TimestampRange": map[string]any{
				"StartTimestamp": float64(fromMs) / 1000, "EndTimestamp": float64(toMs) / 1000,
			},
		},
	}
	for range 1000 {
		var out listFragmentsOut
		status, raw := callJSON(t, endpoint, "/listFragments", in, &out)
		if status != 200 {
			t.Fatalf("listFragments: %d %s", status, raw)
		}
		all = append(all, out.Fragments...)
		if out.NextToken == "" {
			return all
		}
		in = map[string]any{"StreamName": stream, "NextToken": out.NextToken}
	}
	t.Fatal("listFragments: NextToken never ends")
	return nil
}

// isFragmentNumber checks the documented fixed-width form.
func isFragmentNumber(s string) bool {
	if len(s) != 32 || s[0] == '0' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// secondsToMillis rounds a JSON seconds timestamp to milliseconds.
func secondsToMillis(f float64) int64 {
	if f >= 0 {
		return int64(f*1000 + 0.5)
	}
	return int64(f*1000 - 0.5)
}

// requireRunning fails the test when the server process has exited.
func (p *proc) requireRunning(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("kvsedge exited:\n%s", p.logs.String())
	default:
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// pollUntil checks cond every 50 ms until it holds or d has passed, and
// reports whether it held: for state that is only observable by asking
// (ListFragments is eventually consistent, §6).
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
