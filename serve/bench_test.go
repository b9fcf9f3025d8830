package serve

// Media-path benchmarks over a real server on loopback (make bench). They
// report figures with b.ReportMetric and assert nothing about speed. The
// helpers of testserver_test.go and media_util_test.go take *testing.T, so
// the few needed here are re-done for testing.TB. The store uses lsm's
// default sizes (32 MiB cache, 16 MiB memtable) as a deployment would,
// not the tiny ones of the tests, and lives under b.TempDir() (the real
// disk on the development VMs; set TMPDIR to measure another).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/lsm"
	"github.com/kvsedge/kvsedge/serve/sigv4"
)

type benchServer struct {
	url string
	db  *lsm.DB
	srv *Server
}

func startBenchServer(tb testing.TB, dir string, adjust func(*Options)) *benchServer {
	tb.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := lsm.Open(lsm.Options{Dir: dir, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	eng, err := engine.Open(db, engine.Options{Region: testRegion, AccountID: "123456789012", Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
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
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	return &benchServer{url: url, db: db, srv: srv}
}

func (s *benchServer) stop(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		tb.Errorf("shutdown: %v", err)
	}
	if err := s.db.Close(); err != nil {
		tb.Errorf("close: %v", err)
	}
}

// post sends a signed JSON POST and returns the response (the caller
// closes its body).
func (s *benchServer) post(tb testing.TB, path, body string) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256([]byte(body))
	err = v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret},
		req, hex.EncodeToString(sum[:]), "kinesisvideo", testRegion, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

func (s *benchServer) createStream(tb testing.TB, name string) {
	tb.Helper()
	resp := s.post(tb, "/createStream", fmt.Sprintf(`{"StreamName":%q,"DataRetentionInHours":24}`, name))
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("create %s: %d %s", name, resp.StatusCode, b)
	}
}

// upload replays a capture as the C producer sends it (chunked, in the
// recorded chunk sizes, no pacing) and returns how many fragments were
// PERSISTED once the server ended the ack stream.
func (s *benchServer) upload(tb testing.TB, stream, tcType, start string, c capture) int {
	tb.Helper()
	host := strings.TrimPrefix(s.url, "http://")
	req, _ := http.NewRequest(http.MethodPost, s.url+"/putMedia", nil)
	req.Host = strings.Split(host, ":")[0]
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", tcType)
	req.Header.Set("x-amzn-producer-start-timestamp", start)
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "keep-alive")
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret},
		req, sigv4.EmptyPayloadHash, "kinesisvideo", testRegion, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := net.Dial("tcp", host)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	var hb strings.Builder
	fmt.Fprintf(&hb, "POST /putMedia HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n", req.Host)
	for k, vs := range req.Header {
		fmt.Fprintf(&hb, "%s: %s\r\n", k, vs[0])
	}
	hb.WriteString("\r\n")
	if _, err := io.WriteString(conn, hb.String()); err != nil {
		tb.Fatal(err)
	}
	type result struct {
		status, persisted, errors int
	}
	resc := make(chan result, 1)
	go func() {
		var r result
		defer func() { resc <- r }()
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, req)
		if err == nil && resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, req)
		}
		if err != nil {
			return
		}
		r.status = resp.StatusCode
		dec := json.NewDecoder(resp.Body)
		for {
			var a struct{ EventType string }
			if dec.Decode(&a) != nil {
				return
			}
			switch a.EventType {
			case "PERSISTED":
				r.persisted++
			case "ERROR":
				r.errors++
			}
		}
	}()
	bw := bufio.NewWriterSize(conn, 64<<10)
	data := c.data
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if i < len(c.sizes) {
			n = min(c.sizes[i], n)
		}
		fmt.Fprintf(bw, "%x\r\n", n)
		bw.Write(data[:n])
		bw.WriteString("\r\n")
		data = data[n:]
	}
	bw.WriteString("0\r\n\r\n")
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	var r result
	select {
	case r = <-resc:
	case <-time.After(60 * time.Second):
		tb.Fatal("acks did not end 60 s after the body")
	}
	if r.status != 200 || r.errors > 0 {
		tb.Fatalf("upload to %s: status %d, %d ERROR acks", stream, r.status, r.errors)
	}
	return r.persisted
}

// BenchmarkPutMediaIngest replays the real producer's absolute capture
// (10 MB, 11 fragments) through the real HTTP server with no pacing, into
// a fresh stream each op (a replay into the same stream would be
// recognised as re-sent fragments and not stored again), and waits for
// every PERSISTED ack. Metric: MB/s of request body.
func BenchmarkPutMediaIngest(b *testing.B) {
	c := loadCapture(b, "real-producer-h264-absolute")
	want := len(clusterTimecodes(c.data))
	s := startBenchServer(b, b.TempDir(), nil)
	defer s.stop(b)
	var el time.Duration
	i := 0
	for b.Loop() {
		b.StopTimer()
		name := fmt.Sprintf("cam-%d", i)
		s.createStream(b, name)
		i++
		b.StartTimer()
		t0 := time.Now()
		if n := s.upload(b, name, "ABSOLUTE", "1795579974.135", c); n != want {
			b.Fatalf("%d PERSISTED, want %d", n, want)
		}
		el += time.Since(t0)
	}
	b.ReportMetric(float64(i)*float64(len(c.data))/1e6/el.Seconds(), "MB/s")
}

// BenchmarkGetMediaArchiveCatchUp stores about 52 MB in one stream (the
// absolute capture once and the relative one 8 times at different
// producer start times: 59 fragments), restarts the server so the hot
// ring is empty and every fragment comes from the store, then times
// GetMedia EARLIEST over loopback: a Go HTTP client reads the chunked body
// up to its last fragment (the length is learnt by one untimed read; the
// timed reads do not wait for the live-edge idle timeout). The store's
// files are in the page cache (just written): this is the server's read
// path, not the disk's. Metric: MB/s of response body (goal ≥ 500).
func BenchmarkGetMediaArchiveCatchUp(b *testing.B) {
	dir := b.TempDir()
	s := startBenchServer(b, dir, nil)
	s.createStream(b, "cam")
	abs := loadCapture(b, "real-producer-h264-absolute")
	rel := loadCapture(b, "real-producer-h264-aac-relative")
	frags := s.upload(b, "cam", "ABSOLUTE", "1795579974.135", abs)
	for i := range 8 {
		frags += s.upload(b, "cam", "RELATIVE", fmt.Sprintf("%d.500", 1795580000+20*i), rel)
	}
	s.stop(b)

	s = startBenchServer(b, dir, func(o *Options) { o.GetMediaIdleTimeout = 200 * time.Millisecond })
	defer s.stop(b)
	const req = `{"StreamName":"cam","StartSelector":{"StartSelectorType":"EARLIEST"}}`
	resp := s.post(b, "/getMedia", req)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("GetMedia: %d %v", resp.StatusCode, err)
	}
	if n := len(readChunks(b, body)); n != frags {
		b.Fatalf("GetMedia returned %d chunks, %d fragments were stored", n, frags)
	}
	total := int64(len(body))

	var el time.Duration
	for b.Loop() {
		t0 := time.Now()
		resp := s.post(b, "/getMedia", req)
		n, err := io.CopyN(io.Discard, resp.Body, total)
		el += time.Since(t0)
		resp.Body.Close()
		if err != nil || n != total {
			b.Fatalf("read %d of %d bytes: %v", n, total, err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(total)/1e6/el.Seconds(), "MB/s")
	b.ReportMetric(float64(total)/1e6, "MB/read")
}
