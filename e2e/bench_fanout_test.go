package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
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
// over rounds of three windows of equal length, alternating:
//
//	0viewers       no viewer
//	<N>viewers     N pion WHEP viewers of the camera connected (each
//	               reads and discards its RTP, counting frames by marker
//	               bit; the benchmark fails if one receives none)
//	0viewers+burn  no viewer, but this process burns the CPU the viewers'
//	               clients took in that round's <N>viewers window (its
//	               CPU then less its CPU without viewers), in busy/sleep
//	               cycles: the viewers' clients share the machine's cores
//	               with the box, so a rise here as in <N>viewers is
//	               contention from the clients, not the box's sending.
//
// Reported per state, over every round's window: the persist latency's
// mean (exact: the histogram's sum over its count), p50 and p99 (from
// the summed bucket counts, interpolated inside the bucket as
// Prometheus' histogram_quantile: as coarse as engine.LatencyBucketsMs,
// so the bucket counts are logged); the ratio of each state's mean and
// p50 to 0viewers'; the box's CPU (user + system seconds per second of
// /proc/<pid>/stat), this process's CPU (the camera, its relay, the
// viewers or the burner), the box's Go allocation rate and collections
// per second (/metrics), the 1-minute load average at the start and
// end of the windows (the machine is shared), and the viewers' received
// frame rate (lowest and mean). Each round's figures are logged. No
// assertion on the figures. $KVSEDGE_FANOUT_SECONDS sets the window
// (default 20 s), $KVSEDGE_FANOUT_VIEWERS the viewers (default 20),
// $KVSEDGE_FANOUT_ROUNDS the rounds (default 3).
func BenchmarkFanOutPersistLatency(b *testing.B) {
	secs, viewers, rounds := 20, 20, 3
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_FANOUT_SECONDS")); err == nil && v > 0 {
		secs = v
	}
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_FANOUT_VIEWERS")); err == nil && v > 0 {
		viewers = v
	}
	if v, err := strconv.Atoi(os.Getenv("KVSEDGE_FANOUT_ROUNDS")); err == nil && v > 0 {
		rounds = v
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

		tag := fmt.Sprintf("%dviewers", viewers)
		states := []string{"0viewers", tag, "0viewers+burn"}
		acc := map[string]*windowSum{}
		for _, st := range states {
			acc[st] = &windowSum{}
		}
		fpsMin, fpsMean := 0.0, 0.0
		b.ResetTimer()
		for r := range rounds {
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
			if r == 0 || with.fpsMin < fpsMin {
				fpsMin = with.fpsMin
			}
			fpsMean += with.fpsMean / float64(rounds)
			for _, v := range vs {
				v.close()
			}
			waitB(b, "the viewers leave", 30*time.Second, func() bool {
				callJSON(b, p.endpoint, "/listLiveStreams", map[string]any{}, &live)
				return len(live.Streams) == 1 && live.Streams[0].Viewers == 0
			})

			burn := max(0, with.testCPU-none.testCPU)
			stop := burnCPU(burn)
			ctl := measureWindow(b, p.endpoint, pid, secs, nil)
			stop()

			for i, w := range []windowResult{none, with, ctl} {
				acc[states[i]].add(w)
				b.Logf("round %d %s: persist mean %.1f ms p50 %.1f p99 %.1f (%d fragments: %s); box CPU %.3f s/s, test CPU %.3f s/s; load %.2f→%.2f",
					r, states[i], w.meanMs, w.p50, w.p99, w.n, w.buckets, w.cpu, w.testCPU, w.load0, w.load1)
			}
			b.Logf("round %d: burned %.3f cores in 0viewers+burn", r, burn)
		}
		b.StopTimer()

		base := acc["0viewers"].result()
		for _, st := range states {
			w := acc[st].result()
			b.ReportMetric(w.meanMs, st+"-persist-mean-ms")
			b.ReportMetric(w.p50, st+"-persist-p50-ms")
			b.ReportMetric(w.p99, st+"-persist-p99-ms")
			b.ReportMetric(w.cpu, st+"-box-cpu-s/s")
			b.ReportMetric(w.testCPU, st+"-test-cpu-s/s")
			b.ReportMetric(w.allocMBps, st+"-box-alloc-MB/s")
			b.ReportMetric(w.gcPerSec, st+"-box-gc/s")
			b.ReportMetric(w.load0, st+"-load1-start")
			b.ReportMetric(w.load1, st+"-load1-end")
			if st != "0viewers" && base.meanMs > 0 && base.p50 > 0 {
				b.ReportMetric(w.meanMs/base.meanMs, st+"-mean-ratio")
				b.ReportMetric(w.p50/base.p50, st+"-p50-ratio")
			}
			b.Logf("%s over %d rounds: %d fragments persisted, latency buckets %s", st, rounds, w.n, w.buckets)
		}
		b.ReportMetric(fpsMin, "viewer-fps-min")
		b.ReportMetric(fpsMean, "viewer-fps-mean")
		p.stop(b)
		cancel()
	}
}

// burnCPU keeps about cores of the machine's CPU busy until stop is
// called: ceil(cores) goroutines, each busy for its share of every 4 ms
// and asleep for the rest.
func burnCPU(cores float64) (stop func()) {
	if cores <= 0 {
		return func() {}
	}
	n := int(math.Ceil(cores))
	const period = 4 * time.Millisecond
	busy := time.Duration(float64(period) * cores / float64(n))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				for t0 := time.Now(); time.Since(t0) < busy; {
				}
				time.Sleep(period - busy)
			}
		}()
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// windowResult is one measured window's figures (or several summed:
// windowSum).
type windowResult struct {
	n               uint64   // fragments persisted
	d               []uint64 // cumulative persist-latency bucket counts, then the total
	sumMs           float64  // persist latencies summed
	meanMs          float64
	p50, p99        float64 // persist latency, ms
	buckets         string
	cpu             float64 // box CPU seconds per second
	load0, load1    float64
	fpsMin, fpsMean float64 // viewers' frames per second (with viewers)
	// testCPU is this process's CPU seconds per second: the camera, its
	// relay and the viewers (SRTP, RTP reading) or the burner.
	testCPU float64
	// allocMBps and gcPerSec: the box's Go heap allocation rate (MB/s)
	// and garbage collections per second.
	allocMBps, gcPerSec float64
}

// windowSum sums the windows of one state.
type windowSum struct {
	ws []windowResult
}

func (s *windowSum) add(w windowResult) { s.ws = append(s.ws, w) }

// result is the state's figures: latency from the summed buckets, rates
// and loads averaged over its windows (of equal length).
func (s *windowSum) result() windowResult {
	var r windowResult
	k := float64(len(s.ws))
	for i, w := range s.ws {
		if i == 0 {
			r.d = make([]uint64, len(w.d))
			r.load0 = w.load0
		}
		for j := range w.d {
			r.d[j] += w.d[j]
		}
		r.sumMs += w.sumMs
		r.cpu += w.cpu / k
		r.testCPU += w.testCPU / k
		r.allocMBps += w.allocMBps / k
		r.gcPerSec += w.gcPerSec / k
		r.load1 = w.load1
	}
	r.fillLatency()
	return r
}

// fillLatency sets n, mean, p50, p99 and buckets from d and sumMs.
func (r *windowResult) fillLatency() {
	r.n = r.d[len(r.d)-1]
	if r.n == 0 {
		return
	}
	r.meanMs = r.sumMs / float64(r.n)
	r.p50, r.p99 = histQuantile(r.d, 0.5), histQuantile(r.d, 0.99)
	var sb strings.Builder
	prev := uint64(0)
	for i, le := range engine.LatencyBucketsMs {
		if r.d[i] > prev {
			fmt.Fprintf(&sb, " ≤%gms:%d", le, r.d[i]-prev)
		}
		prev = r.d[i]
	}
	if r.n > prev {
		fmt.Fprintf(&sb, " >%gms:%d", engine.LatencyBucketsMs[len(engine.LatencyBucketsMs)-1], r.n-prev)
	}
	r.buckets = strings.TrimSpace(sb.String())
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
	r.d = make([]uint64, len(m1))
	for i := range m1 {
		r.d[i] = m1[i] - m0[i]
	}
	r.sumMs = (persistLatencySum(b, fams1) - persistLatencySum(b, fams0)) * 1000
	r.fillLatency()
	if r.n == 0 {
		b.Fatalf("no fragment persisted in %d s", secs)
	}
	return r
}

// persistLatencySum is the persist latencies summed so far, in seconds.
func persistLatencySum(b *testing.B, fams map[string]*dto.MetricFamily) float64 {
	b.Helper()
	f, ok := fams["kvsedge_persist_latency_seconds"]
	if !ok || len(f.GetMetric()) == 0 {
		b.Fatal("no kvsedge_persist_latency_seconds in /metrics")
	}
	return f.GetMetric()[0].GetHistogram().GetSampleSum()
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
