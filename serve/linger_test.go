package serve

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/serve/sigv4"
)

// endlessBody is a producer's body that keeps coming, 32 KiB a read of
// fill, until the request ends (the client closes it), at up to
// endlessRate: a producer faster than any camera's media, within what the
// box lingers for (lingerBytes in lingerTime). Unthrottled, on loopback,
// it sends lingerBytes in tens of milliseconds, and a client whose
// goroutine reading the response is not scheduled that long (a loaded
// machine: the full suite failed once so) sees the reset the box's
// bounded linger ends with, which the box's rules allow.
type endlessBody struct {
	fill   byte
	closed atomic.Bool
	sent   atomic.Int64
	start  time.Time
}

// endlessRate is endlessBody's rate: 16 MB/s, lingerBytes in about a
// second.
const endlessRate = 16 << 20

func (b *endlessBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, io.EOF
	}
	if b.start.IsZero() {
		b.start = time.Now()
	}
	if ahead := time.Duration(b.sent.Load())*time.Second/endlessRate - time.Since(b.start); ahead > 0 {
		time.Sleep(ahead)
	}
	n := min(len(p), 32<<10)
	for i := range p[:n] {
		p[i] = b.fill
	}
	b.sent.Add(int64(n))
	return n, nil
}

func (b *endlessBody) Close() error { b.closed.Store(true); return nil }

// putEndless starts a signed PutMedia of stream whose body never ends and
// returns the response (or the client's error).
func putEndless(t *testing.T, ts *testServer, stream string, body *endlessBody, secret string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+"/putMedia", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-producer-start-timestamp", "1795579974.135")
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: secret},
		req, sigv4.EmptyPayloadHash, "kinesisvideo", testRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	return client.Do(req)
}

// A producer that is still sending its body when the box refuses the
// upload gets KVS's error, never a connection reset: the box reads and
// drops the body for a while after answering (Server.lingerClose). Before
// it closed at once with the body unread, the kernel reset the
// connection, and Go's client reported the failed write (this failed the
// e2e producer test about one run in ten).
func TestPutMediaRefusalReachesASendingProducer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir())
	for i := range 10 {
		for _, tc := range []struct {
			name, stream, secret string
			status               int
			code                 string
		}{
			{"missing stream", "missing", testSecret, http.StatusNotFound, errResourceNotFound},
			{"bad signature", "missing", "wrong-secret", http.StatusForbidden, ""},
		} {
			body := &endlessBody{fill: 0x1A}
			resp, err := putEndless(t, ts, tc.stream, body, tc.secret)
			if err != nil {
				t.Fatalf("round %d, %s: %v (after %d body bytes)", i, tc.name, err, body.sent.Load())
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != tc.status || !strings.Contains(string(b), tc.code) {
				t.Fatalf("round %d, %s: status %d, %q, %v; want %d %s", i, tc.name, resp.StatusCode, b, err, tc.status, tc.code)
			}
		}
	}
}

// An upload that the box ends with an ERROR ack while the producer is
// still sending delivers that ack and the response's end to the producer.
func TestPutMediaErrorAckReachesASendingProducer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir())
	if _, err := ts.eng.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		body := &endlessBody{fill: 0xFF} // not Matroska
		resp, err := putEndless(t, ts, "cam", body, testSecret)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"EventType":"ERROR"`)) {
			t.Fatalf("round %d: status %d, %q, %v; want 200 with an ERROR ack and a clean end", i, resp.StatusCode, b, err)
		}
	}
}
