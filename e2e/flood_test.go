package e2e

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestConnectionFloodDoesNotEndTheBox: a box whose file limit is 512 gets,
// from one address, 50 connections that send their request head one byte
// a second, 10 that first wait 1.5 s, and then 400 idle ones (more than
// its per-address cap of 100), while a real producer uploads from another
// address. The box stays up, closes the connections over the cap at once,
// the slow ones within its header timeout and the late ones within twice
// it (the timeout restarts at a request's first byte), and stores every
// fragment of the upload. (A scaled-down form of the 20,000-connection
// flood, TestConnectionFloodFullSize: the same limits are hit, in
// seconds.)
func TestConnectionFloodDoesNotEndTheBox(t *testing.T) {
	dir := t.TempDir()
	env := append(streamEnv(dir), "KVSEDGE_HTTP__HEADER_TIMEOUT=2s", "KVSEDGE_HTTP__MAX_CONNS_PER_IP=100")
	cmd := exec.Command("sh", "-c", `ulimit -n 512 && exec "$0" serve --listen 127.0.0.1:0`, kvsedgeBin)
	p := startServing(t, cmd, env, 30*time.Second)
	api := p.endpoint
	c := newSDK(t, api)
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("flood"),
		DataRetentionInHours: aws.Int32(24)}); err != nil {
		t.Fatal(err)
	}
	// The flood comes from 127.0.0.2; the producer from 127.0.0.1.
	flooder := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 2 * time.Second}
	target := strings.TrimPrefix(api, "http://")

	const nSlow, nLate, lateWait = 50, 10, 1500 * time.Millisecond
	var slow sync.WaitGroup
	closedAfter := make(chan time.Duration, nSlow)
	lateClosedAfter := make(chan time.Duration, nLate)
	for i := 0; i < nSlow+nLate; i++ {
		conn, err := flooder.Dial("tcp", target)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		slow.Add(1)
		closedAfter := closedAfter
		wait := time.Duration(0)
		if i >= nSlow {
			closedAfter, wait = lateClosedAfter, lateWait
		}
		go func() {
			defer slow.Done()
			defer conn.Close()
			start := time.Now()
			time.Sleep(wait)
			head := "POST /listStreams HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 60)
			for j := 0; j < len(head); j++ {
				_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := conn.Write([]byte{head[j]}); err != nil {
					closedAfter <- time.Since(start)
					return
				}
				_ = conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
				var b [512]byte
				if n, err := conn.Read(b[:]); n > 0 || err == io.EOF || isReset(err) {
					closedAfter <- time.Since(start) // an answer (408) or the close
					return
				}
				time.Sleep(750 * time.Millisecond)
			}
			closedAfter <- -1 // never closed
		}()
	}

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 400; i++ {
		conn, err := flooder.Dial("tcp", target)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		held = append(held, conn)
	}
	// Meanwhile a real producer's upload.
	capt := fixture.LoadCapture(t, fixture.AbsoluteH264)
	res := putMedia(t, api, putMediaReq{Stream: "flood", TimecodeType: "ABSOLUTE", Start: "1795579974.135", Body: capt.Body,
		AckWait: 60 * time.Second, Until: persistedAll(11)})
	if n := len(res.events("PERSISTED")); n != 11 {
		t.Fatalf("upload during the flood: %d of 11 PERSISTED\n%s", n, res.ackLog())
	}
	slow.Wait()
	close(closedAfter)
	close(lateClosedAfter)
	var worst, worstLate time.Duration
	for d := range closedAfter {
		if d < 0 {
			t.Fatal("a slow connection was never closed")
		}
		worst = max(worst, d)
	}
	for d := range lateClosedAfter {
		if d < 0 {
			t.Fatal("a late slow connection was never closed")
		}
		worstLate = max(worstLate, d)
	}
	if worst > 2*time.Second+1500*time.Millisecond {
		t.Fatalf("a slow connection was closed after %v (header timeout 2 s)", worst)
	}
	if worstLate > lateWait+2*time.Second+1500*time.Millisecond {
		t.Fatalf("a slow connection that began after %v was closed after %v (header timeout 2 s from its first byte)", lateWait, worstLate)
	}
	select {
	case <-p.exited:
		t.Fatalf("the box exited during the flood:\n%s", p.logs.String())
	default:
	}
	// Every idle connection was closed by the box: those over the
	// per-address cap at once, the 50 under it at the header timeout.
	for i, conn := range held {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		// The box may answer (408, 503) before it closes.
		if _, err := io.Copy(io.Discard, conn); err != nil && !isReset(err) {
			t.Fatalf("idle connection %d of %d not closed by the box: %v", i, len(held), err)
		}
	}
	if _, err := c.KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{}); err != nil {
		t.Fatalf("after the flood: %v", err)
	}
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	accepted := textMetric(string(body), "kvsedge_http_connections_accepted_total")
	if accepted < 450 {
		t.Fatalf("%v connections accepted: the flood did not reach the box", accepted)
	}
	t.Logf("flood: %d idle, %d slow and %d late slow connections; slowest closed after %v, late after %v; upload of 11 fragments took %v; accepted %v, open now %v",
		len(held), nSlow, nLate, worst.Round(time.Millisecond), worstLate.Round(time.Millisecond), res.UploadEnd.Sub(res.UploadStart).Round(time.Millisecond), accepted,
		textMetric(string(body), "kvsedge_http_connections_open"))
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// textMetric is a metric's value in Prometheus text (−1 if absent).
func textMetric(text, name string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
