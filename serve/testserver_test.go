package serve

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/engine"
)

const (
	testAKID   = "AKIDKVSEDGETEST"
	testSecret = "kvsedge-test-secret-key"
	testRegion = "eu-west-1"
)

// testServer is a real server on a loopback port over a real store.
type testServer struct {
	t    testing.TB
	URL  string
	dir  string
	eng  *engine.Engine
	srv  *Server
	done chan error
}

func startServer(t testing.TB, dir string) *testServer {
	t.Helper()
	return startServerWith(t, dir, nil)
}

// startServerWith lets a test adjust the server options.
func startServerWith(t testing.TB, dir string, adjust func(*Options)) *testServer {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, Region: testRegion, AccountID: "123456789012", Logger: log,
		Media: engine.MediaOptions{Debug: true}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	opts := Options{
		DataEndpoint: url,
		Auth:         NewSigV4Auth(map[string]string{testAKID: testSecret}, 5*time.Minute),
		Logger:       log,
	}
	if adjust != nil {
		adjust(&opts)
	}
	srv, err := New(eng, opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, URL: url, dir: dir, eng: eng, srv: srv, done: make(chan error, 1)}
	go func() { ts.done <- srv.Serve(ln) }()
	t.Cleanup(ts.stop)
	return ts
}

func (ts *testServer) stop() {
	if ts.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		ts.t.Errorf("shutdown: %v", err)
	}
	if err := ts.eng.Close(); err != nil {
		ts.t.Errorf("close: %v", err)
	}
	ts.srv = nil
}

// client returns an aws-sdk-go-v2 kinesisvideo client for ts signed with
// the given secret.
func (ts *testServer) client(secret string) *kinesisvideo.Client {
	return kinesisvideo.New(kinesisvideo.Options{
		Region:           testRegion,
		BaseEndpoint:     aws.String(ts.URL),
		Credentials:      credentials.NewStaticCredentialsProvider(testAKID, secret, ""),
		RetryMaxAttempts: 1,
		// A new connection per call: with retries off, a pooled
		// connection the server closed while idle would fail a call now
		// and then (aws/aws-sdk-go-v2#2737).
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
	})
}

// raw sends a POST signed at signTime with secret, returning status,
// headers and body.
func (ts *testServer) raw(t testing.TB, path string, body []byte, signTime time.Time, secret string) (int, http.Header, []byte) {
	t.Helper()
	req := ts.signed(t, path, body, body, signTime, secret)
	return do(t, req)
}

// rawTampered signs signedBody but sends sentBody.
func (ts *testServer) rawTampered(t testing.TB, path string, signedBody, sentBody []byte) (int, http.Header, []byte) {
	t.Helper()
	return do(t, ts.signed(t, path, signedBody, sentBody, time.Now(), testSecret))
}

func (ts *testServer) signed(t testing.TB, path string, signedBody, sentBody []byte, signTime time.Time, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.URL+path, bytes.NewReader(sentBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(signedBody)
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: secret},
		req, hex.EncodeToString(sum[:]), "kinesisvideo", testRegion, signTime)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func do(t testing.TB, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}
