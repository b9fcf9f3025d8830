package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// putMediaHelperEnv makes the test binary a PutMedia client process
// (putMediaHelperMain), so the server's throughput is measured with the
// client in another process.
const putMediaHelperEnv = "KVSEDGE_PUTMEDIA_HELPER"

// bigUploadBody is the real producer's absolute capture (11 fragments, one
// EBML header and Segment, then Clusters each followed by its Tags)
// repeated copies times in one body: the header once, then the clusters
// and tags again and again with every cluster Timecode moved 20 s further
// per copy, so each copy's fragments are new ones (not re-sends). The
// capture's clusters have an unknown size (0xFF) and an 8-byte Timecode
// (0xE7 0x88) first (testdata/README.md); each one found is checked to be
// that, so a stray 1F43B675 inside a frame is never patched.
func bigUploadBody(tb testing.TB, copies int) (body []byte, frags int) {
	tb.Helper()
	src, err := os.ReadFile(fixture.Path(fixture.AbsoluteH264 + ".mkv"))
	if err != nil {
		tb.Fatal(err)
	}
	clusterID := []byte{0x1F, 0x43, 0xB6, 0x75}
	var tcAt []int // offsets of the 8-byte cluster timecodes
	for i := 0; ; {
		j := bytes.Index(src[i:], clusterID)
		if j < 0 {
			break
		}
		at := i + j
		if at+7+8 <= len(src) && src[at+4] == 0xFF && src[at+5] == 0xE7 && src[at+6] == 0x88 {
			tcAt = append(tcAt, at+7)
		}
		i = at + 4
	}
	if len(tcAt) == 0 {
		tb.Fatal("no cluster in the capture")
	}
	first := tcAt[0] - 7
	head, rest := src[:first], src[first:]
	body = make([]byte, 0, len(head)+copies*len(rest))
	body = append(body, head...)
	const shiftMs = 20_000 // the capture spans 11 × 1.8 s
	for c := range copies {
		base := len(body)
		body = append(body, rest...)
		for _, at := range tcAt {
			p := body[base+at-first:]
			binary.BigEndian.PutUint64(p, binary.BigEndian.Uint64(p)+uint64(c*shiftMs))
		}
	}
	return body, copies * len(tcAt)
}

// bigPutResult is what the helper process prints.
type bigPutResult struct {
	Persisted, Errors int
	Seconds           float64 // request start to the last PERSISTED ack
	CPUSeconds        float64 // the helper's own CPU time
}

// putMediaHelperMain uploads PUTMEDIA_FILE to stream PUTMEDIA_STREAM at
// PUTMEDIA_ENDPOINT in one PutMedia request (ABSOLUTE timecodes), reads the
// acks, and prints a bigPutResult as JSON. The body goes out in 1 MiB
// HTTP chunks.
func putMediaHelperMain() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "putmedia helper:", err); return 1 }
	f, err := os.Open(os.Getenv("PUTMEDIA_FILE"))
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	req, err := http.NewRequest(http.MethodPost, os.Getenv("PUTMEDIA_ENDPOINT")+"/putMedia", bigChunks{f})
	if err != nil {
		return fail(err)
	}
	req.Header.Set("x-amzn-stream-name", os.Getenv("PUTMEDIA_STREAM"))
	req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	req.Header.Set("x-amzn-producer-start-timestamp", "1795579974.135")
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: e2eSecret},
		req, emptySHA256, "kinesisvideo", "us-west-2", time.Now()); err != nil {
		return fail(err)
	}
	tr := &http.Transport{WriteBufferSize: 1 << 20}
	var res bigPutResult
	t0 := time.Now()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(resp.Body)
		return fail(fmt.Errorf("status %d: %s", resp.StatusCode, raw))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var a struct{ EventType string }
		if json.Unmarshal(sc.Bytes(), &a) != nil {
			continue
		}
		switch a.EventType {
		case "PERSISTED":
			res.Persisted++
			res.Seconds = time.Since(t0).Seconds()
		case "ERROR":
			res.Errors++
			fmt.Fprintln(os.Stderr, "putmedia helper: ack", sc.Text())
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	res.CPUSeconds = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return fail(err)
	}
	return 0
}

// bigChunks hands its file to the HTTP client's chunked writer 1 MiB at a
// time (io.Copy uses WriteTo), not in io.Copy's 32 KiB.
type bigChunks struct{ f *os.File }

func (r bigChunks) Read(p []byte) (int, error) { return r.f.Read(p) }

func (r bigChunks) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(struct{ io.Writer }{w}, struct{ io.Reader }{r.f}, make([]byte, 1<<20))
}

// procStat returns a process's user + system CPU time and its minor page
// faults so far (/proc/<pid>/stat).
func procStat(pid int) (cpuSeconds, minFaults float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name (which may hold spaces) start at ')':
	// state is field 3, minflt 10, utime 14, stime 15.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, 0
	}
	f := bytes.Fields(raw[i+2:])
	if len(f) < 13 {
		return 0, 0
	}
	flt, _ := strconv.ParseFloat(string(f[7]), 64)
	ut, _ := strconv.ParseFloat(string(f[11]), 64)
	st, _ := strconv.ParseFloat(string(f[12]), 64)
	return (ut + st) / 100, flt // USER_HZ
}

// BenchmarkPutMediaVsDD: one PutMedia upload of a ~200 MB Matroska body
// (bigUploadBody: the real producer's capture 20 times, 220 fragments)
// over loopback to the built binary, from a client in another process
// (putMediaHelperMain), against `dd oflag=direct conv=fsync` of the same
// file into the same file system in the same op. Each op uploads into a
// fresh box. Metrics: putmedia-MB/s (body bytes ÷ time from the request to
// the last PERSISTED ack), dd-MB/s, ratio (goal ≥ 0.6), server-cpu-s/GB,
// client-cpu-s/GB and server-faults/MB (the server's minor page faults). PUTMEDIA_COPIES sets the number of copies (default
// 20); KVSEDGE_PUTMEDIA_PERF=file records the server with `perf record -g`
// into file during the upload (KVSEDGE_PUTMEDIA_PERF_EVENT: of that event,
// e.g. page-faults).
func BenchmarkPutMediaVsDD(b *testing.B) {
	copies := 20
	if v := os.Getenv("PUTMEDIA_COPIES"); v != "" {
		fmt.Sscan(v, &copies)
	}
	body, frags := bigUploadBody(b, copies)
	dir := b.TempDir()
	src := filepath.Join(dir, "body.mkv")
	if err := os.WriteFile(src, body, 0o600); err != nil {
		b.Fatal(err)
	}
	mb := float64(len(body)) / 1e6
	var putS, ddS, srvCPU, cliCPU, faults float64
	i := 0
	for b.Loop() {
		i++
		// dd first: the same bytes, direct I/O, one fsync at the end.
		out := filepath.Join(dir, "dd.out")
		t0 := time.Now()
		if raw, err := exec.Command("dd", "if="+src, "of="+out, "bs=1M", "oflag=direct", "conv=fsync").CombinedOutput(); err != nil {
			b.Fatalf("dd: %v: %s", err, raw)
		}
		ddS += time.Since(t0).Seconds()
		os.Remove(out)

		data := filepath.Join(dir, fmt.Sprint("data", i))
		env := append(streamEnv(data), "KVSEDGE_MEDIA_DEBUG=0")
		p := startKvsedge(b, env, "--listen", "127.0.0.1:0")
		status, raw := callJSON(b, p.endpoint, "/createStream", map[string]any{"StreamName": "big", "DataRetentionInHours": 24}, nil)
		if status != 200 {
			b.Fatalf("createStream: %d %s", status, raw)
		}
		pid := p.cmd.Process.Pid
		var perf *exec.Cmd
		if f := os.Getenv("KVSEDGE_PUTMEDIA_PERF"); f != "" {
			args := []string{"record", "-g", "-o", f, "-p", strconv.Itoa(pid)}
			if ev := os.Getenv("KVSEDGE_PUTMEDIA_PERF_EVENT"); ev != "" {
				args = append(args, "-e", ev)
			}
			perf = exec.Command("perf", args...)
			if err := perf.Start(); err != nil {
				b.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		c0, f0 := procStat(pid)
		cl := exec.Command(os.Args[0])
		cl.Env = append(os.Environ(), putMediaHelperEnv+"=1", "PUTMEDIA_FILE="+src, "PUTMEDIA_STREAM=big", "PUTMEDIA_ENDPOINT="+p.endpoint)
		var stderr bytes.Buffer
		cl.Stderr = &stderr
		outJSON, err := cl.Output()
		if err != nil {
			b.Fatalf("client: %v: %s", err, stderr.Bytes())
		}
		c1, f1 := procStat(pid)
		srvCPU += c1 - c0
		faults += f1 - f0
		if perf != nil {
			_ = perf.Process.Signal(os.Interrupt)
			_ = perf.Wait()
		}
		p.stop(b)
		var res bigPutResult
		if err := json.Unmarshal(outJSON, &res); err != nil {
			b.Fatalf("client said %q: %v", outJSON, err)
		}
		if res.Persisted != frags || res.Errors != 0 {
			b.Fatalf("%d of %d fragments PERSISTED, %d ERROR acks; client: %s", res.Persisted, frags, res.Errors, stderr.Bytes())
		}
		putS += res.Seconds
		cliCPU += res.CPUSeconds
		os.RemoveAll(data)
	}
	gb := mb * float64(i) / 1000
	b.ReportMetric(mb, "MB/upload")
	b.ReportMetric(mb*float64(i)/putS, "putmedia-MB/s")
	b.ReportMetric(mb*float64(i)/ddS, "dd-MB/s")
	b.ReportMetric(ddS/putS, "ratio")
	b.ReportMetric(srvCPU/gb, "server-cpu-s/GB")
	b.ReportMetric(cliCPU/gb, "client-cpu-s/GB")
	b.ReportMetric(faults/(mb*float64(i)), "server-faults/MB")
}
