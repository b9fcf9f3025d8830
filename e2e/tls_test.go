package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
)

// TestHTTPSWithLocalCA: `kvsedge cert` makes a CA and a server certificate;
// the server speaks HTTPS with it; the aws CLI given the CA with
// --ca-bundle works, and clients that do not trust the CA are refused at
// the handshake.
func TestHTTPSWithLocalCA(t *testing.T) {
	dir := t.TempDir()
	env := streamEnv(dir)
	out, errOut, code := kvsedgeCmd(t, env, "cert", "--name", "127.0.0.1", "--name", "localhost")
	if code != 0 {
		t.Fatalf("kvsedge cert: exit %d\n%s", code, errOut)
	}
	tlsDir := filepath.Join(dir, "tls")
	caFile := filepath.Join(tlsDir, "ca.pem")
	certFile, keyFile := filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server-key.pem")
	for _, f := range []string{caFile, certFile, keyFile} {
		if !strings.Contains(out, f) {
			t.Fatalf("kvsedge cert output does not name %s:\n%s", f, out)
		}
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}

	// Running cert again re-issues the server certificate but keeps the CA.
	if _, errOut, code := kvsedgeCmd(t, env, "cert", "--name", "127.0.0.1", "--name", "localhost"); code != 0 {
		t.Fatalf("second kvsedge cert: exit %d\n%s", code, errOut)
	}
	if again, _ := os.ReadFile(caFile); string(again) != string(caPEM) {
		t.Fatal("second `kvsedge cert` replaced the CA")
	}

	p := startKvsedge(t, env, "--listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(p.endpoint, "https://127.0.0.1:") {
		t.Fatalf("endpoint %q, want https://127.0.0.1:PORT", p.endpoint)
	}

	// The aws CLI with the CA bundle.
	awsCLI(t, p.endpoint, nil, nil, "kinesisvideo", "create-stream", "--stream-name", "tls-cam", "--ca-bundle", caFile)
	var l struct{ StreamInfoList []struct{ StreamName string } }
	awsCLI(t, p.endpoint, nil, &l, "kinesisvideo", "list-streams", "--ca-bundle", caFile)
	if len(l.StreamInfoList) != 1 || l.StreamInfoList[0].StreamName != "tls-cam" {
		t.Fatalf("list-streams over HTTPS: %+v", l)
	}
	var ep struct{ DataEndpoint string }
	awsCLI(t, p.endpoint, nil, &ep, "kinesisvideo", "get-data-endpoint", "--stream-name", "tls-cam", "--api-name", "PUT_MEDIA", "--ca-bundle", caFile)
	if ep.DataEndpoint != p.endpoint {
		t.Fatalf("data endpoint %q, want %q", ep.DataEndpoint, p.endpoint)
	}

	// The aws CLI without it fails certificate verification. Point it at an
	// empty system bundle so a CA someone installed system-wide cannot make
	// the check pass by accident.
	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := awsCLIRaw(t, p.endpoint, []string{"AWS_CA_BUNDLE=" + empty}, "kinesisvideo", "list-streams")
	if err == nil {
		t.Fatal("aws CLI trusted the server without the CA")
	}
	if !strings.Contains(stderr, "SSL") && !strings.Contains(stderr, "certificate") {
		t.Fatalf("aws CLI failed for another reason than TLS trust:\n%s", stderr)
	}
	_, stderr, err = awsCLIRaw(t, p.endpoint, nil, "kinesisvideo", "list-streams", "--ca-bundle", "/etc/ssl/certs/ca-certificates.crt")
	if err == nil {
		t.Fatal("aws CLI with the system bundle trusted the local CA")
	}

	// A Go client with the system roots: handshake refused as unknown
	// authority.
	_, err = http.Get(p.endpoint + "/listStreams")
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("untrusted Go client: err=%v, want x509.UnknownAuthorityError", err)
	}

	// aws-sdk-go-v2 trusting the CA works, over HTTP/1.1.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	c := kinesisvideo.New(kinesisvideo.Options{
		Region:       "us-west-2",
		BaseEndpoint: aws.String(p.endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(e2eAKID, e2eSecret, ""),
		HTTPClient:   hc,
	})
	res, err := c.DescribeStream(context.Background(), &kinesisvideo.DescribeStreamInput{StreamName: aws.String("tls-cam")})
	if err != nil {
		t.Fatalf("Go SDK over HTTPS: %v", err)
	}
	if aws.ToString(res.StreamInfo.StreamName) != "tls-cam" {
		t.Fatalf("describe over HTTPS: %+v", res.StreamInfo)
	}
	resp, err := hc.Get(p.endpoint + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("negotiated %s, want HTTP/1.1 only", resp.Proto)
	}
}
