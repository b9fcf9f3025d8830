package e2e

// The full-size connection flood of issue 13, run by `make flood`
// (KVSEDGE_FLOOD_FULL=1; skipped otherwise): 20,000 idle connections and
// 2,000 that send their request head one byte a second, from 253 loopback
// addresses, while a real producer's capture is uploaded at its recorded
// pace and an RTSP camera records. The flood comes from helper processes
// (this test binary re-run with KVSEDGE_FLOOD_HELPER set, see TestMain):
// one process may hold no more descriptors than its hard file limit, which
// can be below 22,000 (20,000 on the development machines), and only a
// privileged process can raise a hard limit.
//
// Helper protocol: the parent gives the counts in the environment; the
// helper dials its slow connections and writes one JSON report
// {"phase":"slow",…} on stdout, waits for the line "idle" on stdin, dials
// its idle connections and writes {"phase":"idle",…}, then waits until the
// box has closed every connection (or each has been open floodHold) and
// writes {"phase":"done",…} with one result per connection.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia"
	amtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideoarchivedmedia/types"
	"github.com/kvsedge/kvsedge/hwprofiles"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

const (
	floodFullEnv   = "KVSEDGE_FLOOD_FULL"
	floodHelperEnv = "KVSEDGE_FLOOD_HELPER"

	floodIdle = 20000
	floodSlow = 2000
	// floodHeaderTimeout is the box's default http.header_timeout; the test
	// leaves it as shipped.
	floodHeaderTimeout = 10 * time.Second
	// floodSlack is how late after the header timeout a connection may be
	// seen closed: the box accepts 22,000 connections through one accept
	// loop on two shared cores, and a connection's timeout starts when the
	// box accepts it, not when the client's dial completes.
	floodSlack = 5 * time.Second
	// floodHold: a connection still open this long after it was dialed was
	// never closed by the box; the helper gives up on it.
	floodHold = floodHeaderTimeout + 30*time.Second
	// floodServerFileLimit is the box's file limit (at most the test's hard
	// limit): with http.max_conns above the flood the box caps connections
	// at 3/4 of it, 15,000, fewer than the flood.
	floodServerFileLimit = 20000

	// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): a socket
	// bound to a source address gets its port at connect, unique per
	// 4-tuple, so 22,000 bound sockets do not take the machine's ephemeral
	// ports from other processes.
	ipBindAddressNoPort = 0x18
)

// TestConnectionFloodFullSize is the full-size flood of issue 13. It runs
// twice:
//
//   - pi-zero-2w: the box as shipped on its smallest profile (160 MiB Go
//     memory limit; the profile's http.max_conns 1024, max_conns_per_ip
//     512, header_timeout 10 s). Spread over 253 addresses (~87 each) the
//     flood stays under the per-address cap, so the total cap is the
//     limit hit: the first 1,024 of the 2,000 slow connections (dialed
//     first) are held until the header timeout, the rest answered 503 at
//     once.
//   - file-limit: the profile for this machine and http.max_conns above
//     the flood; the box lowers its cap to 3/4 of its file limit (20,000 →
//     15,000), keeping descriptors for the store and the camera: it holds
//     15,000 connections, near its file limit (the crash of the issue),
//     and answers the rest 503.
//
// KVSEDGE_FLOOD_AFTER (a duration, default 15s) is when after the flood
// the box's memory is read again.
//
// Either way the box stays up and answers /readyz, the upload has every
// fragment PERSISTED, the camera records through the flood, every
// connection the box served is closed within its header timeout (+ slack)
// and accepting never failed. The figures are logged.
func TestConnectionFloodFullSize(t *testing.T) {
	if os.Getenv(floodFullEnv) == "" {
		t.Skip("the full-size flood runs with " + floodFullEnv + "=1 (make flood)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the flood reads /proc and uses Linux socket options")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("raising the file limit to %d: %v", lim.Max, err)
	}
	if lim.Max < 4096 {
		t.Fatalf("hard file limit %d: the flood needs thousands of descriptors per process", lim.Max)
	}
	serverLimit := min(lim.Max, floodServerFileLimit)
	// The helpers inherit the raised limit; each keeps 1,024 descriptors
	// spare.
	perHelper := int(lim.Max) - 1024
	t.Logf("machine: %d CPUs (shared), file limit %d (hard) for the test and its helpers, %d for the box; %d helper processes",
		runtime.NumCPU(), lim.Max, serverLimit, (floodIdle+floodSlow+perHelper-1)/perHelper)

	afterWait := 15 * time.Second
	if v := os.Getenv("KVSEDGE_FLOOD_AFTER"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("KVSEDGE_FLOOD_AFTER: %v", err)
		}
		afterWait = d
	}
	t.Run("pi-zero-2w", func(t *testing.T) { fullFlood(t, "pi-zero-2w", 0, serverLimit, perHelper, afterWait) })
	t.Run("file-limit", func(t *testing.T) { fullFlood(t, "auto", 1<<20, serverLimit, perHelper, afterWait) })
}

// fullFlood runs one flood against a box on hardware profile profile with
// http.max_conns maxConns (0: the default) and file limit serverLimit; it
// reads the box's memory again afterWait after the flood.
func fullFlood(t *testing.T, profile string, maxConns int, serverLimit uint64, perHelper int, afterWait time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, "cam")
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	if err := os.WriteFile(cfgPath, []byte("cameras:\n  - stream: cam\n    url: "+rl.URL("cam")+
		"\n    transport: tcp\n    retention_hours: 2\n    fragment_duration: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(streamEnv(filepath.Join(dir, "data")), "KVSEDGE_PROFILE="+profile)
	prof, ok := hwprofiles.ByName(profile)
	if !ok {
		t.Fatalf("no profile %s", profile)
	}
	wantCap := prof.MaxConns
	if maxConns > 0 {
		env = append(env, fmt.Sprintf("KVSEDGE_HTTP__MAX_CONNS=%d", maxConns))
		wantCap = maxConns
	}
	wantCap = min(wantCap, int(serverLimit*3/4))
	cmd := exec.Command("sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" serve --listen 127.0.0.1:0 --config "$1"`, serverLimit),
		kvsedgeBin, cfgPath)
	p := startServing(t, cmd, env, 30*time.Second)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("box log (tail):\n%s", tail(p.logs.String(), 6000))
		}
	})
	api := p.endpoint
	pid := p.cmd.Process.Pid // sh exec'd the box: same process
	c := newSDK(t, api)
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("flood"),
		DataRetentionInHours: aws.Int32(24)}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(listFragmentsRetryingClosed(t, c, "cam")) < 2; time.Sleep(250 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the camera did not record 2 fragments in 30 s")
		}
	}

	mon := watchBox(pid, api)
	defer mon.stop()
	time.Sleep(time.Second) // a first scrape and memory sample
	before := mon.now()

	// The upload: the real producer's capture at its recorded pace (~20 s),
	// on a connection opened before the flood fills the box's cap.
	plan := loadChunkPlan(t, fixture.AbsoluteH264, 1, 2*time.Second)
	capt := fixture.LoadCapture(t, fixture.AbsoluteH264)
	uploaded := make(chan *putMediaResult, 1)
	go func() {
		uploaded <- putMedia(t, api, putMediaReq{Stream: "flood", TimecodeType: "ABSOLUTE", Start: "1795579974.135",
			Body: capt.Body, Plan: plan, TolerateDown: true, AckWait: 90 * time.Second, Until: persistedAll(11)})
	}()
	time.Sleep(time.Second)

	floodStart := time.Now()
	reports, helperLogs := runFloodHelpers(t, strings.TrimPrefix(api, "http://"), perHelper)
	floodEnd := time.Now()

	var res *putMediaResult
	select {
	case res = <-uploaded:
	case <-time.After(3 * time.Minute):
		t.Fatal("the upload did not end")
	}
	select {
	case <-p.exited:
		t.Fatalf("the box exited during the flood:\n%s", p.logs.String())
	default:
	}
	// After the flood: /readyz answers and says ready.
	var ready int
	var readyBody string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		ready, readyBody = httpGet(api + "/readyz")
		if ready == 200 || time.Now().After(deadline) {
			break
		}
	}
	if ready != 200 {
		t.Errorf("/readyz after the flood: %d %s", ready, readyBody)
	}
	// Memory after: afterWait after the flood ended.
	time.Sleep(time.Until(floodEnd.Add(afterWait)))
	after := mon.now()
	mon.stop()
	peak := mon.peak()
	_, metrics := httpGet(api + "/metrics")

	// The upload: every fragment PERSISTED, no ERROR.
	if n := len(res.events("PERSISTED")); res.Status != 200 || n != 11 || len(res.events("ERROR")) > 0 {
		t.Errorf("upload during the flood: status %d, %d of 11 PERSISTED, read error %v\n%s",
			res.Status, n, res.ReadErr, res.ackLog())
	}
	// The camera recorded through the flood: fragments in the flood's
	// window with no hole longer than one fragment (1 s).
	var camStarts []time.Time
	var hole time.Duration
	frags := listFragmentsRetryingClosed(t, c, "cam")
	slices.SortFunc(frags, func(a, b amtypes.Fragment) int { return a.ProducerTimestamp.Compare(*b.ProducerTimestamp) })
	var prevEnd time.Time
	for _, f := range frags {
		start := *f.ProducerTimestamp
		end := start.Add(time.Duration(f.FragmentLengthInMilliseconds) * time.Millisecond)
		if end.Before(floodStart) || start.After(floodEnd) {
			prevEnd = end
			continue
		}
		camStarts = append(camStarts, start)
		if !prevEnd.IsZero() {
			hole = max(hole, start.Sub(prevEnd))
		}
		prevEnd = end
	}
	floodDur := floodEnd.Sub(floodStart)
	if len(camStarts) < int(floodDur/time.Second)/2 || hole > time.Second {
		t.Errorf("camera during the %v flood: %d fragments, longest hole %v", floodDur.Round(time.Millisecond), len(camStarts), hole)
	}

	// The connections.
	var slow, idle []floodConnResult
	dialed, dialErrs := 0, 0
	for _, r := range reports {
		slow = append(slow, r.Slow...)
		idle = append(idle, r.Idle...)
		dialed += r.Dialed
		dialErrs += r.DialErrors
	}
	sum := summarize(slow, idle)
	limit := floodHeaderTimeout + floodSlack
	for _, g := range []struct {
		what string
		s    closeSummary
	}{{"slow", sum.slow}, {"idle", sum.idle}} {
		if g.s.neverClosed > 0 {
			t.Errorf("%d %s connections still open %v after they were dialed", g.s.neverClosed, g.what, floodHold)
		}
		if g.s.maxServed > limit {
			t.Errorf("a served %s connection was closed after %v (header timeout %v, slack %v)", g.what, g.s.maxServed,
				floodHeaderTimeout, floodSlack)
		}
	}
	not408 := 0
	for _, r := range slow {
		if r.Ms >= 1000 && r.Answer != "503" && r.Answer != "408" {
			not408++
		}
	}
	if not408 > 0 {
		t.Errorf("%d slow connections closed by the header timeout were not answered 408: %v", not408, sum.slow.answers)
	}
	// The slow connections are dialed first: the box serves as many as its
	// cap allows (all 2,000 above it; a few slots go to the upload, the
	// camera's API client and the scraper) and answers the rest 503.
	if want := min(floodSlow, wantCap-8) * 9 / 10; len(sum.slow.served) < want {
		t.Errorf("only %d of %d slow connections were served (cap %d): the test did not measure the header timeout", len(sum.slow.served), floodSlow, wantCap)
	}
	if dialErrs > 0 {
		t.Errorf("%d of %d dials failed (first: %s)", dialErrs, floodSlow+floodIdle, firstDialErr(reports))
	}
	accepted := textMetric(metrics, "kvsedge_http_connections_accepted_total")
	acceptErrs := textMetric(metrics, "kvsedge_http_accept_errors_total")
	if accepted < float64(dialed) {
		t.Errorf("the box accepted %v connections, the helpers dialed %d", accepted, dialed)
	}
	if acceptErrs != 0 {
		t.Errorf("%v accept errors: the box ran out of descriptors (cap %d, file limit %d)", acceptErrs, wantCap, serverLimit)
	}
	if peak.fds >= int(serverLimit) {
		t.Errorf("the box held %d descriptors, its file limit is %d", peak.fds, serverLimit)
	}
	if t.Failed() {
		t.Logf("helper logs:\n%s", helperLogs)
	}

	mib := func(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
	t.Logf("flood of %d slow + %d idle connections from %d helper processes over 127.0.0.2-254; box on profile %s, cap %d (file limit %d, header timeout %v); flood lasted %v",
		floodSlow, floodIdle, len(reports), profile, wantCap, serverLimit, floodHeaderTimeout, floodDur.Round(time.Millisecond))
	t.Logf("held at peak: kvsedge_http_connections_open %.0f (from %d scrapes on a kept-alive connection, %d failed), box descriptors %d (/proc/PID/fd), goroutines %.0f",
		peak.open, peak.scrapes, peak.scrapeFails, peak.fds, peak.goroutines)
	t.Logf("served (held until the box closed them): %d slow + %d idle; refused (503, or closed within 1 s): %d slow + %d idle; answers: slow %v, idle %v",
		len(sum.slow.served), len(sum.idle.served), sum.slow.refused, sum.idle.refused, sum.slow.answers, sum.idle.answers)
	t.Logf("time to close a served slow connection: p50 %v, p99 %v, max %v; served idle: p50 %v, max %v (header timeout %v)",
		pct(sum.slow.served, 50), pct(sum.slow.served, 99), sum.slow.maxServed, pct(sum.idle.served, 50), sum.idle.maxServed, floodHeaderTimeout)
	t.Logf("box memory: VmRSS before %s, peak sampled %s, VmHWM %s, %v after %s; Go heap in use before %s, peak %s, after %s (of which hot rings before %s, after %s); goroutine stacks before %s, peak %s, after %s",
		mib(before.rssKB), mib(peak.rssKB), mib(after.hwmKB), afterWait, mib(after.rssKB),
		mibf(before.heapInuse), mibf(peak.heapInuse), mibf(textMetric(metrics, "go_memstats_heap_inuse_bytes")),
		mibf(before.ringBytes), mibf(textMetric(metrics, "kvsedge_ring_bytes")),
		mibf(before.stackInuse), mibf(peak.stackInuse), mibf(textMetric(metrics, "go_memstats_stack_inuse_bytes")))
	t.Logf("upload: %d of 11 PERSISTED, body sent in %v, last ack %v after start; camera: %d fragments during the flood, longest hole %v; accepted %v, accept errors %v; /readyz %d",
		len(res.events("PERSISTED")), res.DataEnd.Sub(res.UploadStart).Round(time.Millisecond), lastAck(res), len(camStarts), hole,
		accepted, acceptErrs, ready)
}

// listFragmentsRetryingClosed lists every fragment of stream, retrying a
// page (twice at most) that failed with "use of closed network connection":
// aws-sdk-go-v2's client, with retries off as in every e2e client, can
// close its own kept-alive connection while it reads a 200 answer when the
// box answers before the transport has seen the end of the request body
// (aws/aws-sdk-go-v2#2737; its default retryer retries net.ErrClosed).
func listFragmentsRetryingClosed(t *testing.T, c *sdkClients, stream string) []amtypes.Fragment {
	t.Helper()
	var out []amtypes.Fragment
	in := &kinesisvideoarchivedmedia.ListFragmentsInput{StreamName: aws.String(stream), FragmentSelector: allTime}
	for attempt := 0; ; {
		page, err := c.Archived.ListFragments(sdkCtx(t), in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) && attempt < 2 {
				attempt++
				t.Logf("ListFragments %s: %v; retrying (aws/aws-sdk-go-v2#2737)", stream, err)
				continue
			}
			t.Fatalf("ListFragments %s: %v", stream, err)
		}
		out = append(out, page.Fragments...)
		if page.NextToken == nil {
			return out
		}
		in = &kinesisvideoarchivedmedia.ListFragmentsInput{StreamName: aws.String(stream), FragmentSelector: allTime,
			NextToken: page.NextToken} // as the SDK's paginator sends it
	}
}

// runFloodHelpers floods target from helper processes of at most perHelper
// connections each: slow connections first, then idle ones; it returns
// each helper's final report once every connection has ended.
func runFloodHelpers(t *testing.T, target string, perHelper int) ([]floodHelperReport, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	total := floodSlow + floodIdle
	n := (total + perHelper - 1) / perHelper
	type helper struct {
		cmd   *exec.Cmd
		in    io.WriteCloser
		dec   *json.Decoder
		errBf *syncBuffer
	}
	hs := make([]*helper, n)
	first := 0
	for i := range hs {
		slow := floodSlow/n + btoi(i < floodSlow%n)
		idle := floodIdle/n + btoi(i < floodIdle%n)
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), floodHelperEnv+"=1", "FLOOD_TARGET="+target,
			fmt.Sprintf("FLOOD_SLOW=%d", slow), fmt.Sprintf("FLOOD_IDLE=%d", idle), fmt.Sprintf("FLOOD_FIRST=%d", first))
		first += slow + idle
		h := &helper{cmd: cmd, errBf: &syncBuffer{}}
		if h.in, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		h.dec = json.NewDecoder(bufio.NewReaderSize(out, 1<<20))
		cmd.Stderr = writerFunc(func(b []byte) (int, error) { h.errBf.WriteString(string(b)); return len(b), nil })
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		hs[i] = h
	}
	logs := func() string {
		var sb strings.Builder
		for i, h := range hs {
			fmt.Fprintf(&sb, "helper %d:\n%s", i, h.errBf.String())
		}
		return sb.String()
	}
	read := func(h *helper, phase string) floodHelperReport {
		var r floodHelperReport
		if err := h.dec.Decode(&r); err != nil || r.Phase != phase {
			t.Fatalf("flood helper: want its %q report: %v %+v\n%s", phase, err, r, logs())
		}
		return r
	}
	var phases []string
	for _, h := range hs { // all slow connections first, so that the box serves them
		r := read(h, "slow")
		phases = append(phases, fmt.Sprintf("slow %d dialed in %v", r.Dialed, time.Duration(r.DialMs)*time.Millisecond))
	}
	for _, h := range hs {
		if _, err := io.WriteString(h.in, "idle\n"); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range hs {
		r := read(h, "idle")
		phases = append(phases, fmt.Sprintf("idle %d dialed in %v", r.Dialed, time.Duration(r.DialMs)*time.Millisecond))
	}
	t.Logf("helpers: %s", strings.Join(phases, "; "))
	var out []floodHelperReport
	for _, h := range hs {
		out = append(out, read(h, "done"))
		h.in.Close()
		if err := h.cmd.Wait(); err != nil {
			t.Fatalf("flood helper: %v\n%s", err, logs())
		}
	}
	return out, logs()
}

// floodHelperReport is a helper's report of one phase (see the file's
// comment).
type floodHelperReport struct {
	Phase      string            `json:"phase"`
	Dialed     int               `json:"dialed"`
	DialErrors int               `json:"dial_errors"`
	DialErr    string            `json:"dial_err,omitempty"`
	DialMs     int64             `json:"dial_ms"`
	Slow       []floodConnResult `json:"slow,omitempty"`
	Idle       []floodConnResult `json:"idle,omitempty"`
}

// floodConnResult is how one flood connection ended.
type floodConnResult struct {
	// Ms is the time from the end of the dial to the box's close (or its
	// answer, after which it closes); -1: still open after floodHold.
	Ms int64 `json:"ms"`
	// Answer is the status code the box wrote before closing, "" for a
	// bare close.
	Answer string `json:"answer,omitempty"`
}

// floodHelperMain is a helper process (TestMain runs it when
// KVSEDGE_FLOOD_HELPER is set); it returns the exit code.
func floodHelperMain() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	target := os.Getenv("FLOOD_TARGET")
	nSlow, err1 := strconv.Atoi(os.Getenv("FLOOD_SLOW"))
	nIdle, err2 := strconv.Atoi(os.Getenv("FLOOD_IDLE"))
	first, err3 := strconv.Atoi(os.Getenv("FLOOD_FIRST"))
	if target == "" || err1 != nil || err2 != nil || err3 != nil {
		fmt.Fprintln(os.Stderr, "flood helper: FLOOD_TARGET, FLOOD_SLOW, FLOOD_IDLE and FLOOD_FIRST must be set")
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	slow := make([]floodConnResult, nSlow)
	idle := make([]floodConnResult, nIdle)
	var conns sync.WaitGroup
	// dialAll dials n connections (64 at a time) from addresses spread over
	// 127.0.0.2-254 and runs serve on each.
	dialAll := func(phase string, n, base int, serve func(i int, conn net.Conn, res *floodConnResult), res []floodConnResult) floodHelperReport {
		r := floodHelperReport{Phase: phase}
		var mu sync.Mutex
		var dials sync.WaitGroup
		sem := make(chan struct{}, 64)
		start := time.Now()
		for i := range n {
			sem <- struct{}{}
			dials.Add(1)
			go func() {
				defer func() { <-sem; dials.Done() }()
				d := net.Dialer{Timeout: 30 * time.Second,
					LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+(base+i)%253))},
					Control: func(_, _ string, rc syscall.RawConn) error {
						var serr error
						if err := rc.Control(func(fd uintptr) {
							serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
						}); err != nil {
							return err
						}
						return serr
					}}
				conn, err := d.Dial("tcp", target)
				mu.Lock()
				if err != nil {
					r.DialErrors++
					if r.DialErr == "" {
						r.DialErr = err.Error()
					}
					mu.Unlock()
					res[i] = floodConnResult{Ms: -2, Answer: "dial failed"}
					return
				}
				r.Dialed++
				mu.Unlock()
				conns.Add(1)
				go func() {
					defer conns.Done()
					defer conn.Close()
					serve(i, conn, &res[i])
				}()
			}()
		}
		dials.Wait()
		r.DialMs = time.Since(start).Milliseconds()
		return r
	}
	// A slow connection sends its request head one byte a second until the
	// box answers or closes.
	head := "POST /listStreams HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 4096)
	serveSlow := func(_ int, conn net.Conn, res *floodConnResult) {
		start := time.Now()
		var b [512]byte
		for j := 0; ; j++ {
			if time.Since(start) > floodHold {
				*res = floodConnResult{Ms: -1}
				return
			}
			_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := conn.Write([]byte{head[j%len(head)]}); err != nil {
				*res = floodConnResult{Ms: time.Since(start).Milliseconds()}
				return
			}
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(b[:])
			if n > 0 || (err != nil && !os.IsTimeout(err)) {
				*res = floodConnResult{Ms: time.Since(start).Milliseconds(), Answer: statusOf(b[:n])}
				return
			}
		}
	}
	// An idle connection sends nothing and waits for the box to close it.
	serveIdle := func(_ int, conn net.Conn, res *floodConnResult) {
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(floodHold))
		var b [512]byte
		n, err := conn.Read(b[:])
		if n == 0 && os.IsTimeout(err) {
			*res = floodConnResult{Ms: -1}
			return
		}
		*res = floodConnResult{Ms: time.Since(start).Milliseconds(), Answer: statusOf(b[:n])}
	}

	if err := out.Encode(dialAll("slow", nSlow, first, serveSlow, slow)); err != nil {
		return 1
	}
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "idle" {
		fmt.Fprintln(os.Stderr, "flood helper: no \"idle\" on stdin")
		return 1
	}
	if err := out.Encode(dialAll("idle", nIdle, first+nSlow, serveIdle, idle)); err != nil {
		return 1
	}
	conns.Wait()
	if err := out.Encode(floodHelperReport{Phase: "done", Slow: slow, Idle: idle}); err != nil {
		return 1
	}
	return 0
}

// statusOf is the status code of an HTTP response's first bytes ("" if
// none).
func statusOf(b []byte) string {
	if _, rest, ok := strings.Cut(string(b), " "); ok && len(rest) >= 3 {
		return rest[:3]
	}
	if len(b) > 0 {
		return "bytes"
	}
	return ""
}

// closeSummary sums up one kind of flood connection.
type closeSummary struct {
	served      []time.Duration // closed by the box after serving them, sorted
	maxServed   time.Duration
	refused     int // answered 503, or closed within 1 s
	neverClosed int
	answers     map[string]int // what the box wrote before closing ("" for nothing)
}

func summarizeKind(rs []floodConnResult) closeSummary {
	s := closeSummary{answers: map[string]int{}}
	for _, r := range rs {
		switch {
		case r.Ms == -2: // dial failed
			continue
		case r.Ms < 0:
			s.neverClosed++
		case r.Answer == "503" || r.Ms < 1000:
			// Refused: answered 503 by the total cap (perhaps late, when
			// the box accepted it late) or closed at once by the
			// per-address cap.
			s.refused++
		default:
			d := time.Duration(r.Ms) * time.Millisecond
			s.served = append(s.served, d)
			s.maxServed = max(s.maxServed, d)
		}
		s.answers[r.Answer]++
	}
	slices.Sort(s.served)
	return s
}

func summarize(slow, idle []floodConnResult) struct{ slow, idle closeSummary } {
	return struct{ slow, idle closeSummary }{summarizeKind(slow), summarizeKind(idle)}
}

// pct is the p-th percentile of sorted ds (0 if empty).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, len(ds)*p/100)]
}

func firstDialErr(rs []floodHelperReport) string {
	for _, r := range rs {
		if r.DialErr != "" {
			return r.DialErr
		}
	}
	return ""
}

// boxSample is one sample of the box's state.
type boxSample struct {
	rssKB, hwmKB int64
	fds          int
	open         float64 // kvsedge_http_connections_open (last good scrape)
	goroutines   float64
	heapInuse    float64
	stackInuse   float64
	ringBytes    float64 // kvsedge_ring_bytes: media the hot rings hold (part of the heap)
}

// boxWatch samples the box every 250 ms (memory and descriptors from
// /proc) and scrapes /metrics every second on one kept-alive connection,
// as a monitoring system does, and keeps the peaks.
type boxWatch struct {
	mu                   sync.Mutex
	last, max            boxSample
	scrapes, scrapeFails int
	done                 chan struct{}
	stopped              chan struct{}
	once                 sync.Once
}

type boxPeak struct {
	boxSample
	scrapes, scrapeFails int
}

func watchBox(pid int, api string) *boxWatch {
	w := &boxWatch{done: make(chan struct{}), stopped: make(chan struct{})}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	go func() {
		defer close(w.stopped)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			s := boxSample{fds: -1}
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				s.rssKB, s.hwmKB = statusKB(string(st), "VmRSS:"), statusKB(string(st), "VmHWM:")
			}
			if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
				s.fds = len(ents)
			}
			w.mu.Lock()
			s.open, s.goroutines, s.heapInuse, s.stackInuse = w.last.open, w.last.goroutines, w.last.heapInuse, w.last.stackInuse
			s.ringBytes = w.last.ringBytes
			w.mu.Unlock()
			if i%4 == 0 {
				if resp, err := hc.Get(api + "/metrics"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if m := string(b); resp.StatusCode == 200 {
						s.open = textMetric(m, "kvsedge_http_connections_open")
						s.goroutines = textMetric(m, "go_goroutines")
						s.heapInuse = textMetric(m, "go_memstats_heap_inuse_bytes")
						s.stackInuse = textMetric(m, "go_memstats_stack_inuse_bytes")
						s.ringBytes = textMetric(m, "kvsedge_ring_bytes")
						w.mu.Lock()
						w.scrapes++
						w.mu.Unlock()
					} else {
						w.mu.Lock()
						w.scrapeFails++
						w.mu.Unlock()
					}
				} else {
					w.mu.Lock()
					w.scrapeFails++
					w.mu.Unlock()
				}
			}
			w.mu.Lock()
			w.last = s
			w.max.rssKB, w.max.hwmKB = max(w.max.rssKB, s.rssKB), max(w.max.hwmKB, s.hwmKB)
			w.max.fds, w.max.open = max(w.max.fds, s.fds), max(w.max.open, s.open)
			w.max.goroutines, w.max.heapInuse = max(w.max.goroutines, s.goroutines), max(w.max.heapInuse, s.heapInuse)
			w.max.stackInuse = max(w.max.stackInuse, s.stackInuse)
			w.mu.Unlock()
			select {
			case <-w.done:
				hc.CloseIdleConnections()
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *boxWatch) now() boxSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *boxWatch) peak() boxPeak {
	w.mu.Lock()
	defer w.mu.Unlock()
	return boxPeak{boxSample: w.max, scrapes: w.scrapes, scrapeFails: w.scrapeFails}
}

func (w *boxWatch) stop() {
	w.once.Do(func() { close(w.done) })
	<-w.stopped
}

// statusKB is a "Name:   123 kB" field of /proc/PID/status (−1 if absent).
func statusKB(status, field string) int64 {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

func mibf(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// httpGet is a GET's status and body (0 and the error if it failed).
func httpGet(url string) (int, string) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func lastAck(r *putMediaResult) time.Duration {
	if len(r.Acks) == 0 {
		return 0
	}
	return r.Acks[len(r.Acks)-1].At.Sub(r.UploadStart).Round(time.Millisecond)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
