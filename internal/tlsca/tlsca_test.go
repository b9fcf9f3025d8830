package tlsca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnsureCAIsStable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ca1, created, err := EnsureCA(dir)
	if err != nil || !created {
		t.Fatalf("first EnsureCA: created=%v err=%v", created, err)
	}
	ca2, created, err := EnsureCA(dir)
	if err != nil || created {
		t.Fatalf("second EnsureCA: created=%v err=%v", created, err)
	}
	if !ca1.Cert.Equal(ca2.Cert) {
		t.Fatal("CA changed between runs")
	}
	st, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode %v, want 0600", st.Mode().Perm())
	}
	if err := os.Remove(filepath.Join(dir, CAFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := EnsureCA(dir); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("half a CA: err=%v, want refusal", err)
	}
}

// serveTLS runs an HTTPS server over the given files and returns its
// address.
func serveTLS(t *testing.T, certFile, keyFile string) string {
	t.Helper()
	cfg, err := LoadServerTLSConfig(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1" {
		t.Fatalf("NextProtos %v, want only http/1.1", cfg.NextProtos)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestHandshakeTrustedAndUntrusted(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := ca.IssueServer([]string{"localhost", "127.0.0.1"}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := WriteServer(dir, chain, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certFile, keyFile)

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		t.Fatal("CA PEM not parsable")
	}
	trusted := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	resp, err := trusted.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("trusted client: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "HTTP/1.1" {
		t.Fatalf("protocol %q, want HTTP/1.1 even for a client offering h2", b)
	}

	// A client with the system roots only must fail the handshake.
	untrusted := &http.Client{Transport: &http.Transport{}}
	_, err = untrusted.Get("https://" + addr + "/")
	var uae x509.UnknownAuthorityError
	if !errors.As(err, &uae) {
		t.Fatalf("untrusted client: err=%v, want unknown authority", err)
	}

	// A name the certificate does not hold is refused too.
	_, port, _ := net.SplitHostPort(addr)
	conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{RootCAs: pool, ServerName: "camera.example"})
	if err == nil {
		conn.Close()
		t.Fatal("handshake succeeded for a name not in the certificate")
	}
}

func TestReloadOnReissue(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	chain, key, _ := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	certFile, keyFile, err := WriteServer(dir, chain, key)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, certFile, keyFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	serial := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	chain, key, _ = ca.IssueServer([]string{"127.0.0.1", "localhost"}, time.Hour)
	if _, _, err := WriteServer(dir, chain, key); err != nil {
		t.Fatal(err)
	}
	// Make sure the modification time moves even on coarse-grained clocks.
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(certFile, later, later)
	os.Chtimes(keyFile, later, later)
	if after := serial(); after == before {
		t.Fatal("server kept the old certificate after re-issue")
	}
}

func TestLoadServerTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadServerTLSConfig(filepath.Join(dir, "none.pem"), filepath.Join(dir, "none-key.pem")); err == nil {
		t.Fatal("missing files accepted")
	}
	ca, _, _ := EnsureCA(dir)
	_, key, _ := ca.IssueServer([]string{"a"}, time.Hour)
	os.WriteFile(filepath.Join(dir, "k.pem"), key, 0o600)
	if _, err := LoadServerTLSConfig(filepath.Join(dir, CAFile), filepath.Join(dir, "k.pem")); err == nil {
		t.Fatal("mismatched pair accepted")
	}
}
