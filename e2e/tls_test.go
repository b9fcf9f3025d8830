package e2e

import (
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
)

// TestHTTPSWithLocalCA: `kvsedge cert` makes a CA and a server certificate;
// the server speaks HTTPS with it; aws-sdk-go-v2 given the CA works, and
// clients that do not trust the CA are refused at the handshake.
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

	// aws-sdk-go-v2 trusting the CA works. (The aws CLI's --ca-bundle is
	// TestAWSCLITour's.)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	c := newSDKWith(t, p.endpoint, sdkOptions{RootCAs: pool})
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("tls-cam")}); err != nil {
		t.Fatalf("CreateStream over HTTPS: %v", err)
	}
	l, err := c.KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{})
	if err != nil || len(l.StreamInfoList) != 1 || aws.ToString(l.StreamInfoList[0].StreamName) != "tls-cam" {
		t.Fatalf("ListStreams over HTTPS: %v %+v", err, l)
	}
	ep, err := c.KV.GetDataEndpoint(sdkCtx(t), &kinesisvideo.GetDataEndpointInput{StreamName: aws.String("tls-cam"), APIName: types.APINamePutMedia})
	if err != nil || aws.ToString(ep.DataEndpoint) != p.endpoint {
		t.Fatalf("data endpoint %v %v, want %q", err, ep, p.endpoint)
	}
	res, err := c.KV.DescribeStream(sdkCtx(t), &kinesisvideo.DescribeStreamInput{StreamName: aws.String("tls-cam")})
	if err != nil {
		t.Fatalf("Go SDK over HTTPS: %v", err)
	}
	if aws.ToString(res.StreamInfo.StreamName) != "tls-cam" {
		t.Fatalf("describe over HTTPS: %+v", res.StreamInfo)
	}

	// Without the CA, the handshake is refused as unknown authority: with
	// no roots at all (so that a CA someone installed system-wide cannot
	// make the check pass by accident), and with the system roots.
	for what, roots := range map[string]*x509.CertPool{"no roots": x509.NewCertPool(), "system roots": nil} {
		_, err := newSDKWith(t, p.endpoint, sdkOptions{RootCAs: roots}).KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{})
		var uae x509.UnknownAuthorityError
		if !errors.As(err, &uae) {
			t.Fatalf("SDK with %s: err=%v, want x509.UnknownAuthorityError", what, err)
		}
	}
	_, err = http.Get(p.endpoint + "/listStreams")
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("untrusted Go client: err=%v, want x509.UnknownAuthorityError", err)
	}

	// HTTP/1.1 only, though the client offers HTTP/2.
	resp, err := c.HTTP.Get(p.endpoint + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 {
		t.Fatalf("negotiated %s, want HTTP/1.1 only", resp.Proto)
	}
}
