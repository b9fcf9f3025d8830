package serve

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/tlsca"
	"github.com/kvsedge/kvsedge/serve/sigv4"
)

// An upload whose producer ended its body and read the whole response
// but keeps its connection open (as a pooled client may) does not hold
// Shutdown for lingerTime: Shutdown cuts the linger (found by review:
// Shutdown took 2 s before).
func TestShutdownCutsALingeringUpload(t *testing.T) {
	ts := startServer(t, t.TempDir())
	if _, err := ts.eng.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(ts.URL, "http://")
	c := loadCapture(t, "real-producer-h264-absolute")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, putHead(t, host, "cam", "ABSOLUTE", "1795579974.135", testSecret, false)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "%x\r\n", len(c.data))
	conn.Write(c.data)
	io.WriteString(conn, "\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body) // to the last chunk
	if err != nil || !strings.Contains(string(b), "PERSISTED") {
		t.Fatalf("%v %q", err, b)
	}
	// The connection stays open on our side.
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = ts.srv.Shutdown(ctx)
	d := time.Since(start)
	ts.eng.Close()
	ts.srv = nil
	if err != nil {
		t.Fatal(err)
	}
	if d > time.Second {
		t.Errorf("Shutdown took %v: an ended upload lingering for its producer's close holds it (lingerClose ignores s.life)", d)
	}
}

// A refused PutMedia lingers on a connection fasthttp no longer tracks:
// Shutdown waits for it (and cuts it), so nothing of the server is left
// once it returns (found by review: one connection was).
func TestShutdownWaitsForARefusedLinger(t *testing.T) {
	ts := startServer(t, t.TempDir())
	host := strings.TrimPrefix(ts.URL, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, putHead(t, host, "missing", "ABSOLUTE", "1795579974.135", testSecret, false))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	open := ts.srv.ConnStats().Open
	lingering := ts.srv.lingerSigned.n.Load() + ts.srv.lingerUnsigned.n.Load()
	ts.eng.Close()
	ts.srv = nil
	if open != 0 || lingering != 0 {
		t.Errorf("after Shutdown returned: %d connections open, %d lingering (a refused PutMedia outlives Shutdown by up to %v)", open, lingering, lingerTime)
	}
}

// Connections that send a PutMedia with a bad signature and then stay
// open take only the unsigned refusals' slots: a signed producer's
// refusal still lingers and reaches it (found by review: with one pool
// for all, 8 of 10 such refusals were lost to a reset).
func TestUnsignedRefusalsLeaveSignedOnesTheirSlots(t *testing.T) {
	ts := startServer(t, t.TempDir())
	host := strings.TrimPrefix(ts.URL, "http://")
	head := putHead(t, host, "x", "ABSOLUTE", "1795579974.135", "not-the-secret", false)
	var mu sync.Mutex
	var hogs []net.Conn
	defer func() {
		for _, c := range hogs {
			c.Close()
		}
	}()
	failures := 0
	rounds := 10
	for round := range rounds {
		// Fill (or refill) the slots: each hog's refusal lingers lingerTime.
		var wg sync.WaitGroup
		for range 2 * maxLingeringUnsigned {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", host)
				if err != nil {
					return
				}
				mu.Lock()
				hogs = append(hogs, c)
				mu.Unlock()
				io.WriteString(c, head)
				r, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil {
					io.ReadAll(r.Body)
				}
			}()
		}
		wg.Wait()
		if n := ts.srv.lingerUnsigned.n.Load(); n < maxLingeringUnsigned {
			t.Logf("round %d: only %d unsigned refusals lingering", round, n)
		}
		body := &endlessBody{fill: 0x1A}
		resp, err := putEndless(t, ts, "missing", body, testSecret)
		if err != nil {
			failures++
			t.Logf("round %d: producer got %v instead of its 404", round, err)
			continue
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if failures > 0 {
		t.Errorf("%d of %d refusals of a signed producer were lost to a reset while unsigned connections held all %d of their linger slots", failures, rounds, maxLingeringUnsigned)
	}
}

// A refused PutMedia sent with Expect:
// 100-continue and no body yet gets 100 Continue (fasthttp, before the
// handler) and then its error at once; an HTTP/1.0 refused request gets
// its error with a Content-Length; a pipelined request after a refused one
// is dropped and the connection ends within lingerTime.
func TestRefusalExpectContinueHTTP10Pipelined(t *testing.T) {
	ts := startServer(t, t.TempDir())
	host := strings.TrimPrefix(ts.URL, "http://")

	t.Run("expect", func(t *testing.T) {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, putHead(t, host, "missing", "ABSOLUTE", "1795579974.135", testSecret, true))
		conn.SetReadDeadline(time.Now().Add(time.Second))
		br := bufio.NewReader(conn)
		r1, err := http.ReadResponse(br, nil)
		if err != nil || r1.StatusCode != http.StatusContinue {
			t.Fatalf("first: %v %v", r1, err)
		}
		r2, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no error response before any body byte: %v", err)
		}
		b, _ := io.ReadAll(r2.Body)
		if r2.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "ResourceNotFound") {
			t.Fatalf("%d %s", r2.StatusCode, b)
		}
	})
	t.Run("http10", func(t *testing.T) {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// (A Content-Length body up to fasthttp's 4 MiB is read whole before
		// the handler runs, so it is sent whole.)
		io.WriteString(conn, "POST /putMedia HTTP/1.0\r\nHost: x\r\nContent-Length: 10\r\nx-amzn-stream-name: cam\r\nx-amzn-fragment-timecode-type: ABSOLUTE\r\nx-amzn-producer-start-timestamp: 1795579974.135\r\n\r\n0123456789")
		conn.SetReadDeadline(time.Now().Add(time.Second))
		r, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r.Body)
		if r.StatusCode != http.StatusForbidden || r.ContentLength != int64(len(b)) {
			t.Fatalf("%s %d %d %q", r.Proto, r.StatusCode, r.ContentLength, b)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "POST /putMedia HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(4 * time.Second))
		start := time.Now()
		all, err := io.ReadAll(conn)
		d := time.Since(start)
		if strings.Count(string(all), "HTTP/1.1 ") != 1 || d > lingerTime+time.Second {
			t.Fatalf("after %v (%v): %q", d, err, all)
		}
		t.Logf("pipelined: one response, connection closed after %v", d)
	})
}

// The refusal and its linger work over TLS.
func TestRefusalOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, _, err := tlsca.EnsureCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	chain, key, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cp, kp, err := tlsca.WriteServer(dir, chain, key)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tlsca.LoadServerTLSConfig(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: t.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, Region: testRegion, AccountID: "123456789012", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	srv, err := New(eng, Options{DataEndpoint: url, TLS: tc, Logger: log, Auth: NewSigV4Auth(map[string]string{testAKID: testSecret}, 5*time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 20 * time.Second}
	ts := &testServer{URL: url}
	for i := range 10 {
		body := &endlessBody{fill: 0x1A}
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/putMedia", body)
		req.Header.Set("x-amzn-stream-name", "missing")
		req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
		req.Header.Set("x-amzn-producer-start-timestamp", "1795579974.135")
		v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret},
			req, sigv4.EmptyPayloadHash, "kinesisvideo", testRegion, time.Now())
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("round %d: %d %s", i, resp.StatusCode, b)
		}
	}
}

// Many refused uploads, more than the slots, some clients trickling
// bytes and some keeping their connection open, leave no connection or
// linger slot behind once lingerTime has passed.
func TestLingerLeavesNothingBehind(t *testing.T) {
	ts := startServer(t, t.TempDir())
	host := strings.TrimPrefix(ts.URL, "http://")
	head := putHead(t, host, "missing", "ABSOLUTE", "1795579974.135", testSecret, false)
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", host)
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, head)
			// trickle body bytes for a while (slowloris)
			go func() {
				for range 40 {
					if _, err := io.WriteString(c, "1\r\nx\r\n"); err != nil {
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}()
			r, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				io.ReadAll(r.Body)
			}
			if i%2 == 0 {
				time.Sleep(lingerTime + time.Second) // keep it open past lingerTime
			}
		}()
	}
	time.Sleep(lingerTime + 500*time.Millisecond)
	if n := ts.srv.lingerSigned.n.Load() + ts.srv.lingerUnsigned.n.Load(); n != 0 {
		t.Errorf("%d still lingering after lingerTime", n)
	}
	if n := ts.srv.ConnStats().Open; n != 0 {
		t.Errorf("%d connections still open after lingerTime (clients still holding theirs)", n)
	}
	wg.Wait()
}
