package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/pion/webrtc/v4"
	dto "github.com/prometheus/client_model/go"
)

// BenchmarkFanOutPersistLatency measures whether WebRTC viewers cost the
// camera they watch its PERSISTED latency: the built binary records one
// RTSP camera (rtsptest, the 2 Mbit/s 25 fps clip, 1 s fragments) and,
// in one run, the persist latency (kvsedge_persist_latency_seconds: a
// fragment complete → durable, when its PERSISTED ack may go) is taken
// over a window with no viewer, then over an equal window with 20 pion
// WHEP viewers of that camera connected (each reads and discards its
// RTP, counting frames by marker bit; the benchmark fails if one
// receives none in the window), then once more with the viewers gone
// (0viewers-after: what the machine's load did meanwhile, viewers
// aside).
//
// Reported per window: p50 and p99 of the persist latency in ms, read
// from the histogram's bucket counts over the window with linear
// interpolation inside the bucket (as Prometheus' histogram_quantile;
// buckets engine.LatencyBucketsMs, so the figures are as coarse as the
// buckets: the bucket counts are logged), the ratio of each with
// viewers to the mean of the two windows without, the box's CPU (user + system seconds per second of
// /proc/<pid>/stat), its Go allocation rate and collections per second
// (/metrics: go_memstats_alloc_bytes_total, go_gc_duration_seconds) and
// the viewers' received frame rate (lowest and mean). The 1-minute load average at the start and end of each window
// is reported too: the machine is shared. No assertion on the figures.
// $KVSEDGE_FANOUT_SECONDS sets the window (default 20 s), and
// $KVSEDGE_FANOUT_VIEWERS the viewers (default 20).
func BenchmarkFanOutPersistLatency(b *testing.B) {
	secs, viewers := 20, 20
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_FANOUT_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_FANOUT_VIEWERS")); err == nil && v > 0 {
		viewers = v
	}
	clip, fps := clusterBenchClip(b)
	for range b.N {
		ctx, cancel := context.WithCancel(context.Background())
		rl := publishCameras(ctx, b, clip, fps, "fan")
		dir := b.TempDir()
		cfgPath := filepath.Join(dir, "kvsedge.yaml")
		cfg := "cameras:\n  - stream: fan\n    url: " + rl.URL("fan") + "\n    transport: tcp\n    retention_hours: 1\n    fragment_duration: 1s\n"
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			b.Fatal(err)
		}
		// KVSEDGE_MEDIA_DEBUG=0: the media buffers without the use-after-
		// free guard (mprotect per buffer), as a box runs.
		env := append(streamEnv(filepath.Join(dir, "data")), "KVSEDGE_MEDIA_DEBUG=0")
		p := startKvsedge(b, env, "--listen", "127.0.0.1:0", "--config", cfgPath)
		newSDK(b, p.endpoint).waitFragments(b, "fan", 3, 30*time.Second)
		pid := p.cmd.Process.Pid

		b.ResetTimer()
		none := measureWindow(b, p.endpoint, pid, secs, nil)

		vs := make([]*fanViewer, viewers)
		for i := range vs {
			vs[i] = startFanViewer(b, p.endpoint, "fan")
		}
		waitB(b, "every viewer receives frames", 30*time.Second, func() bool {
			for _, v := range vs {
				if v.frames.Load() < 10 {
					return false
				}
			}
			return true
		})
		var live struct{ Streams []struct{ Viewers int } }
		callJSON(b, p.endpoint, "/listLiveStreams", map[string]any{}, &live)
		if len(live.Streams) != 1 || live.Streams[0].Viewers != viewers {
			b.Fatalf("listLiveStreams: %+v, want one stream with %d viewers", live.Streams, viewers)
		}
		time.Sleep(2 * time.Second) // past the viewers' catch-up bursts
		with := measureWindow(b, p.endpoint, pid, secs, vs)
		fpsMin, fpsMean := with.fpsMin, with.fpsMean
		for _, v := range vs {
			v.close()
		}
		waitB(b, "the viewers leave", 30*time.Second, func() bool {
			callJSON(b, p.endpoint, "/listLiveStreams", map[string]any{}, &live)
			return len(live.Streams) == 1 && live.Streams[0].Viewers == 0
		})
		after := measureWindow(b, p.endpoint, pid, secs, nil)
		b.StopTimer()

		tag := fmt.Sprintf("%dviewers", viewers)
		for _, w := range []struct {
			name string
			r    windowResult
		}{{"0viewers", none}, {tag, with}, {"0viewers-after", after}} {
			b.ReportMetric(w.r.p50, w.name+"-persist-p50-ms")
			b.ReportMetric(w.r.p99, w.name+"-persist-p99-ms")
			b.ReportMetric(w.r.cpu, w.name+"-box-cpu-s/s")
			b.ReportMetric(w.r.testCPU, w.name+"-test-cpu-s/s")
			b.ReportMetric(w.r.allocMBps, w.name+"-box-alloc-MB/s")
			b.ReportMetric(w.r.gcPerSec, w.name+"-box-gc/s")
			b.ReportMetric(w.r.load0, w.name+"-load1-start")
			b.ReportMetric(w.r.load1, w.name+"-load1-end")
			b.Logf("%s: %d fragments persisted in %d s, latency buckets %s", w.name, w.r.n, secs, w.r.buckets)
		}
		// The ratios: with viewers over the mean of the two windows
		// without.
		if base := (none.p50 + after.p50) / 2; base > 0 {
			b.ReportMetric(with.p50/base, "p50-ratio")
		}
		if base := (none.p99 + after.p99) / 2; base > 0 {
			b.ReportMetric(with.p99/base, "p99-ratio")
		}
		b.ReportMetric(fpsMin, "viewer-fps-min")
		b.ReportMetric(fpsMean, "viewer-fps-mean")
		p.stop(b)
		cancel()
	}
}

// windowResult is one measured window's figures.
type windowResult struct {
	n               uint64  // fragments persisted
	p50, p99        float64 // persist latency, ms
	buckets         string
	cpu             float64 // box CPU seconds per second
	load0, load1    float64
	fpsMin, fpsMean float64 // viewers' frames per second (with viewers)
	// testCPU is this process's CPU seconds per second: the camera, its
	// relay and the viewers (SRTP, RTP reading).
	testCPU float64
	// allocMBps and gcPerSec: the box's Go heap allocation rate (MB/s)
	// and garbage collections per second.
	allocMBps, gcPerSec float64
}

// gcCycles is the box's garbage collections so far (the Go collector's
// go_gc_duration_seconds summary count).
func gcCycles(b *testing.B, fams map[string]*dto.MetricFamily) uint64 {
	b.Helper()
	f, ok := fams["go_gc_duration_seconds"]
	if !ok || len(f.GetMetric()) == 0 || f.GetMetric()[0].GetSummary() == nil {
		b.Fatal("no go_gc_duration_seconds in /metrics")
	}
	return f.GetMetric()[0].GetSummary().GetSampleCount()
}

// measureWindow samples the box for secs seconds: persist latency from
// /metrics, CPU from /proc, and the viewers' frame counts.
func measureWindow(b *testing.B, endpoint string, pid, secs int, vs []*fanViewer) windowResult {
	b.Helper()
	r := windowResult{load0: loadAvg1()}
	fams0 := scrape(b, endpoint)
	m0, c0, s0, t0 := persistLatencyCounts(b, fams0), procCPUTicks(b, pid), procCPUTicks(b, os.Getpid()), time.Now()
	f0 := make([]uint64, len(vs))
	for i, v := range vs {
		f0[i] = v.frames.Load()
	}
	time.Sleep(time.Duration(secs) * time.Second)
	fams1 := scrape(b, endpoint)
	m1, c1, s1, el := persistLatencyCounts(b, fams1), procCPUTicks(b, pid), procCPUTicks(b, os.Getpid()), time.Since(t0).Seconds()
	a0, ok0 := metricValue(fams0, "go_memstats_alloc_bytes_total", nil)
	a1, ok1 := metricValue(fams1, "go_memstats_alloc_bytes_total", nil)
	if !ok0 || !ok1 {
		b.Fatal("no go_memstats_alloc_bytes_total in /metrics")
	}
	r.allocMBps = (a1 - a0) / el / 1e6
	r.gcPerSec = float64(gcCycles(b, fams1)-gcCycles(b, fams0)) / el
	r.load1 = loadAvg1()
	r.cpu = float64(c1-c0) / clkTck / el
	r.testCPU = float64(s1-s0) / clkTck / el
	for i, v := range vs {
		n := v.frames.Load() - f0[i]
		if n == 0 {
			b.Fatalf("viewer %d received no frame in %d s", i, secs)
		}
		fps := float64(n) / el
		if i == 0 || fps < r.fpsMin {
			r.fpsMin = fps
		}
		r.fpsMean += fps / float64(len(vs))
	}
	d := make([]uint64, len(m1))
	for i := range m1 {
		d[i] = m1[i] - m0[i]
	}
	r.n = d[len(d)-1]
	if r.n == 0 {
		b.Fatalf("no fragment persisted in %d s", secs)
	}
	r.p50, r.p99 = histQuantile(d, 0.5), histQuantile(d, 0.99)
	var sb strings.Builder
	prev := uint64(0)
	for i, le := range engine.LatencyBucketsMs {
		if d[i] > prev {
			fmt.Fprintf(&sb, " ≤%gms:%d", le, d[i]-prev)
		}
		prev = d[i]
	}
	if r.n > prev {
		fmt.Fprintf(&sb, " >%gms:%d", engine.LatencyBucketsMs[len(engine.LatencyBucketsMs)-1], r.n-prev)
	}
	r.buckets = strings.TrimSpace(sb.String())
	return r
}

// histQuantile is the q-quantile of cumulative bucket counts c (the
// bounds engine.LatencyBucketsMs, then the total), interpolated linearly
// inside its bucket (the first bucket from 0; past the last bound, the
// last bound).
func histQuantile(c []uint64, q float64) float64 {
	total := c[len(c)-1]
	rank := q * float64(total)
	lo, below := 0.0, uint64(0)
	for i, le := range engine.LatencyBucketsMs {
		if float64(c[i]) >= rank {
			in := c[i] - below
			if in == 0 {
				return le
			}
			return lo + (le-lo)*(rank-float64(below))/float64(in)
		}
		lo, below = le, c[i]
	}
	return engine.LatencyBucketsMs[len(engine.LatencyBucketsMs)-1]
}

// clkTck is the kernel's USER_HZ, the unit of /proc/<pid>/stat's times
// (100 on every Linux architecture the box is built for).
const clkTck = 100

// procCPUTicks is the process's user + system time, in clock ticks.
func procCPUTicks(b *testing.B, pid int) uint64 {
	b.Helper()
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (in parentheses, may hold spaces):
	// state is field 3, utime 14, stime 15.
	i := strings.LastIndexByte(string(s), ')')
	f := strings.Fields(string(s[i+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return u + st
}

// loadAvg1 is the machine's 1-minute load average.
func loadAvg1() float64 {
	s, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(s))[0], 64)
	return v
}

// fanViewer is a receive-only pion WHEP viewer that reads and discards
// its RTP, counting video frames (packets with the marker bit).
type fanViewer struct {
	pc     *webrtc.PeerConnection
	frames atomic.Uint64
}

func startFanViewer(b *testing.B, endpoint, stream string) *fanViewer {
	b.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	v := &fanViewer{pc: pc}
	b.Cleanup(v.close)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		b.Fatal(err)
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			// RTP: the marker bit is the top bit of the second byte.
			if n >= 12 && buf[1]&0x80 != 0 {
				v.frames.Add(1)
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	<-gathered
	sdp := pc.LocalDescription().SDP
	req, err := http.NewRequest(http.MethodPost, endpoint+"/whep/v1/streams/"+stream, strings.NewReader(sdp))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/sdp")
	sum := sha256.Sum256([]byte(sdp))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: e2eAKID, SecretAccessKey: e2eSecret},
		req, hex.EncodeToString(sum[:]), "kinesisvideo", "us-west-2", time.Now()); err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("WHEP offer: %d %s %v", resp.StatusCode, answer, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		b.Fatal(err)
	}
	return v
}

func (v *fanViewer) close() { _ = v.pc.Close() }
