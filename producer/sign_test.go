package producer

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestPutMediaIsSignedAsTheSDKSignsIt: a PutMedia to the real service's
// endpoint shape (https://<id>.kinesisvideo.<region>.amazonaws.com, reached
// here through a dialer that sends every host to a local TLS server) with
// temporary credentials carries the session token, and its Authorization
// is exactly what aws-sdk-go-v2's signer computes for the same request.
func TestPutMediaIsSignedAsTheSDKSignsIt(t *testing.T) {
	creds := credentials.NewStaticCredentialsProvider("ASIATESTKEY", "temporary-secret", "the-session-token")
	type seen struct {
		req  *http.Request
		auth string
	}
	got := make(chan seen, 4)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- seen{r.Clone(context.Background()), r.Header.Get("Authorization")}:
		default:
		}
		http.Error(w, `{"message":"stop"}`, http.StatusForbidden)
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String())
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // a local test server
	}}
	const host = "s-1a2b3c4d.kinesisvideo.eu-west-1.amazonaws.com"
	p, err := New(Config{Endpoint: "https://" + host, StreamName: "door", Region: "eu-west-1", Credentials: creds, HTTPClient: client, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _ = p.Put(ctx, f, Options{})
	var s seen
	select {
	case s = <-got:
	case <-ctx.Done():
		t.Fatal("no PutMedia request arrived")
	}
	r := s.req
	if r.Host != host || r.URL.Path != "/putMedia" || r.Header.Get("X-Amz-Security-Token") != "the-session-token" {
		t.Fatalf("request: host %q path %q token %q", r.Host, r.URL.Path, r.Header.Get("X-Amz-Security-Token"))
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		t.Fatal(err)
	}
	// The same request, signed by the SDK's signer at the same time.
	again, err := http.NewRequest(http.MethodPost, "https://"+host+"/putMedia", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.Header {
		switch strings.ToLower(k) {
		case "authorization", "x-amz-date", "x-amz-security-token", "user-agent", "accept-encoding", "transfer-encoding":
			continue
		}
		again.Header[k] = v
	}
	again.ContentLength = -1
	c, _ := creds.Retrieve(context.Background())
	if err := v4.NewSigner().SignHTTP(context.Background(), c, again, emptyPayloadHash, "kinesisvideo", "eu-west-1", at); err != nil {
		t.Fatal(err)
	}
	if want := again.Header.Get("Authorization"); want != s.auth || !strings.Contains(want, "/eu-west-1/kinesisvideo/aws4_request") {
		t.Fatalf("Authorization\n got %s\nwant %s", s.auth, want)
	}
}
