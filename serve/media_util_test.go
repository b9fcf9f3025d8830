package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
	"github.com/kvsedge/kvsedge/serve/sigv4"
)

type capture struct {
	data   []byte
	sizes  []int
	delays []time.Duration
}

func loadCapture(t testing.TB, name string) capture {
	t.Helper()
	fc := fixture.LoadCapture(t, name)
	c := capture{data: fc.Body}
	for _, ch := range fc.Chunks {
		c.sizes = append(c.sizes, ch.Size)
		c.delays = append(c.delays, ch.Delay)
	}
	return c
}

type gotAck struct {
	EventType        string
	FragmentTimecode *uint64
	FragmentNumber   string
	ErrorId          int
	at               time.Time
}

type uploadResult struct {
	acks     []gotAck
	status   int
	bodyDone time.Time
}

// putHead returns the head of a chunked PutMedia signed with secret as
// the KVS C producer sends it (Host without port, empty-payload hash,
// with expect its Expect: 100-continue).
func putHead(t testing.TB, host, stream, tcType, start, secret string, expect bool) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+host+"/putMedia", nil)
	req.Host = strings.Split(host, ":")[0]
	req.Header.Set("x-amzn-stream-name", stream)
	req.Header.Set("x-amzn-fragment-timecode-type", tcType)
	req.Header.Set("x-amzn-producer-start-timestamp", start)
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connection", "keep-alive")
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: secret},
		req, sigv4.EmptyPayloadHash, "kinesisvideo", testRegion, time.Now()); err != nil {
		t.Fatal(err)
	}
	var hb strings.Builder
	fmt.Fprintf(&hb, "POST /putMedia HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n", req.Host)
	if expect {
		hb.WriteString("Expect: 100-continue\r\n")
	}
	for k, vs := range req.Header {
		fmt.Fprintf(&hb, "%s: %s\r\n", k, vs[0])
	}
	hb.WriteString("\r\n")
	return hb.String()
}

// putUpload sends body to /putMedia over a raw connection as the C producer
// does (chunked, Host without port, empty-payload hash), in the given
// chunk sizes with delays scaled by pace (0: no delay), reading acks
// concurrently.
func putUpload(t testing.TB, ts *testServer, stream, tcType, start string, c capture, pace float64) uploadResult {
	t.Helper()
	return putUploadWatch(t, ts, stream, tcType, start, c, pace, nil)
}

// putUploadWatch is putUpload that also calls onAck (when not nil) with
// each ack as it arrives, from the goroutine reading them.
func putUploadWatch(t testing.TB, ts *testServer, stream, tcType, start string, c capture, pace float64, onAck func(gotAck)) uploadResult {
	t.Helper()
	host := strings.TrimPrefix(ts.URL, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, putHead(t, host, stream, tcType, start, testSecret, true)); err != nil {
		t.Fatal(err)
	}
	res := uploadResult{}
	var mu sync.Mutex
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return
		}
		if resp.StatusCode == http.StatusContinue {
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				return
			}
		}
		mu.Lock()
		res.status = resp.StatusCode
		mu.Unlock()
		dec := json.NewDecoder(resp.Body)
		for {
			var a gotAck
			if err := dec.Decode(&a); err != nil {
				return
			}
			a.at = time.Now()
			mu.Lock()
			res.acks = append(res.acks, a)
			mu.Unlock()
			if onAck != nil {
				onAck(a)
			}
		}
	}()
	data := c.data
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if i < len(c.sizes) {
			n = min(c.sizes[i], n)
			if pace > 0 {
				time.Sleep(time.Duration(float64(c.delays[i]) * pace))
			}
		}
		if _, err := fmt.Fprintf(conn, "%x\r\n", n); err != nil {
			break
		}
		if _, err := conn.Write(data[:n]); err != nil {
			break
		}
		if _, err := io.WriteString(conn, "\r\n"); err != nil {
			break
		}
		data = data[n:]
	}
	_, _ = io.WriteString(conn, "0\r\n\r\n")
	mu.Lock()
	res.bodyDone = time.Now()
	mu.Unlock()
	select {
	case <-readDone:
	case <-time.After(30 * time.Second):
		t.Fatal("acks did not end 30 s after the body")
	}
	return res
}

// events returns the acks of one type, in order.
func (r uploadResult) events(typ string) []gotAck {
	var out []gotAck
	for _, a := range r.acks {
		if a.EventType == typ {
			out = append(out, a)
		}
	}
	return out
}

// getMedia posts a signed GetMedia request and returns the whole body
// (the server ends it at the live edge after its idle timeout).
func getMedia(t testing.TB, ts *testServer, body string) (int, []byte) {
	t.Helper()
	st, _, b := ts.raw(t, "/getMedia", []byte(body), time.Now(), testSecret)
	return st, b
}

// liveBody is a GetMedia response body read to its end.
type liveBody struct {
	b   []byte
	err error
}

// startGetMedia posts a signed GetMedia request and returns once the
// server has answered 200 with its headers: the server opens the request's
// cursor before it answers, so a NOW reader then gets every fragment that
// arrives from this point on. The channel yields the whole body when the
// server ends it (at the live edge, after its idle timeout).
func startGetMedia(t testing.TB, ts *testServer, body string) <-chan liveBody {
	t.Helper()
	resp, err := http.DefaultClient.Do(ts.signed(t, "/getMedia", []byte(body), []byte(body), time.Now(), testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("GetMedia: %d %s", resp.StatusCode, b)
	}
	out := make(chan liveBody, 1)
	go func() {
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		out <- liveBody{b, err}
	}()
	return out
}

// liveChunks waits for a body started by startGetMedia and splits it
// into chunks (mkvcheck.MustParseMedia).
func liveChunks(t testing.TB, body <-chan liveBody) []*mkvcheck.Chunk {
	t.Helper()
	select {
	case lb := <-body:
		if lb.err != nil {
			t.Fatalf("reading GetMedia: %v", lb.err)
		}
		return mkvcheck.MustParseMedia(t, lb.b)
	case <-time.After(60 * time.Second):
		t.Fatal("GetMedia did not end 60 s after the upload")
		return nil
	}
}

// httpGet GETs u with a plain client (no signature: session URLs) and
// returns the status, the headers and the whole body.
func httpGet(t testing.TB, u string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}
