package ingest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
	"github.com/pion/rtp"
)

// The camera benchmark's publishers (an RTSP relay and N simulated
// cameras) run in a child process — this test binary started with
// KVSEDGE_BENCH_PUBLISH=<clip>:<fps>:<n>[:udp] (udp: the relay offers
// RTP over UDP too) — so the recorder's CPU and memory are this
// process's alone. So does its disk probe (KVSEDGE_BENCH_PROBE=<dir>:
// runProbe).
func TestMain(m *testing.M) {
	if spec := os.Getenv("KVSEDGE_BENCH_PUBLISH"); spec != "" {
		runPublishers(spec)
		return
	}
	if dir := os.Getenv("KVSEDGE_BENCH_PROBE"); dir != "" {
		runProbe(dir)
		return
	}
	os.Exit(m.Run())
}

// runPublishers serves N looping cameras and prints the relay's address;
// it runs until its stdin closes.
func runPublishers(spec string) {
	parts := strings.Split(spec, ":")
	fps, _ := strconv.Atoi(parts[1])
	n, _ := strconv.Atoi(parts[2])
	clip, err := os.ReadFile(parts[0])
	if err != nil {
		fmt.Println("ERR", err)
		return
	}
	d, err := NewDemoSource(clip, float64(fps))
	if err != nil {
		fmt.Println("ERR", err)
		return
	}
	t := &testing.T{}
	rl := rtsptest.StartRelay(t, "")
	if len(parts) > 3 && parts[3] == "udp" {
		rl.Close()
		rl = rtsptest.StartRelayUDP(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Cameras are started a key-frame interval / n apart (the clip has a
	// key frame a second), so their fragments end spread over the second
	// as independent cameras' do; KVSEDGE_BENCH_LOCKSTEP=1 starts them
	// together: every fragment of the box then ends within a few ms, a
	// burst of n segment syncs at once (the figures before this option).
	lockstep := os.Getenv("KVSEDGE_BENCH_LOCKSTEP") == "1"
	for i := 0; i < n; i++ {
		go func() {
			if !lockstep {
				select {
				case <-time.After(time.Duration(i) * time.Second / time.Duration(n)):
				case <-ctx.Done():
					return
				}
			}
			rtsptest.Publish(ctx, t, rl.URL(fmt.Sprint("cam", i)), d.aus, d.sps, d.pps, fps, 0)
		}()
	}
	fmt.Println("RELAY", rl.Addr)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	cancel()
	rl.Close()
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is this process's resident set size.
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, rss int64
	fmt.Sscan(string(b), &size, &rss)
	return rss * int64(os.Getpagesize())
}

// benchClip is the 2 Mbit/s clip of the simulated cameras (the 400 kbit/s
// demo clip without ffmpeg).
func benchClip(b *testing.B) (string, int) {
	p, _ := filepath.Abs("democlip.h264")
	return rtsptest.Clip2Mbit(b, p, 15)
}

// benchCameraCounts is the recorder benchmark's N (KVSEDGE_BENCH_CAMERAS,
// comma-separated; default 1,16,64) and benchWindow its measuring window
// per phase (KVSEDGE_BENCH_SECONDS; default 4).
func benchCameraCounts() []int {
	ns := []int{1, 16, 64}
	if v := os.Getenv("KVSEDGE_BENCH_CAMERAS"); v != "" {
		ns = ns[:0]
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
				ns = append(ns, n)
			}
		}
	}
	return ns
}

func benchWindow() time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv("KVSEDGE_BENCH_SECONDS"), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return 4 * time.Second
}

// benchWarmup is how long the recorder runs before its window
// (KVSEDGE_BENCH_WARMUP seconds; default 8): long enough for its hot
// rings to fill (two 2 s fragments after the first), so the window sees
// the steady state, where media buffers are reused, not mapped.
func benchWarmup() time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv("KVSEDGE_BENCH_WARMUP"), 64); err == nil && v >= 0 {
		return time.Duration(v * float64(time.Second))
	}
	return 8 * time.Second
}

// startPublishers starts the child process serving n cameras and returns
// the relay's address and the child.
func startPublishers(b *testing.B, clip string, fps, n int, transport string) (string, *exec.Cmd) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	child := exec.Command(self)
	child.Env = append(os.Environ(), fmt.Sprintf("KVSEDGE_BENCH_PUBLISH=%s:%d:%d:%s", clip, fps, n, transport))
	stdin, _ := child.StdinPipe()
	stdout, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = child.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "RELAY ") {
		b.Fatalf("publisher process: %q %v", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "RELAY ")), child
}

// phase is what one side (bare receiver or recorder) cost in its window.
type phase struct {
	cpu       time.Duration // this process
	pubCPU    time.Duration // the publishers' process
	rss, heap int64         // beyond the phase's idle start
	mallocs   uint64
	faults    int64 // minor page faults (first touches of new memory)
	reads     int64 // read system calls (/proc/self/io syscr)
}

// measure calls start, waits warmup, calls begin (if set) and returns the
// process's costs in the window that follows. Memory is taken after a GC,
// against the same at idle (before start).
func measure(pid int, warmup, window time.Duration, start, begin func()) phase {
	runtime.GC()
	debug.FreeOSMemory()
	rss0, heap0 := rssBytes(), heapInUse()
	start()
	time.Sleep(warmup)
	if begin != nil {
		begin()
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	c0, p0, f0, r0 := cpuTime(), procCPU(pid), minorFaults(), procIO("syscr")
	time.Sleep(window)
	c1, p1, f1, r1 := cpuTime(), procCPU(pid), minorFaults(), procIO("syscr")
	runtime.ReadMemStats(&ms1)
	runtime.GC()
	return phase{cpu: c1 - c0, pubCPU: p1 - p0, rss: rssBytes() - rss0, heap: heapInUse() - heap0, mallocs: ms1.Mallocs - ms0.Mallocs, faults: f1 - f0, reads: r1 - r0}
}

// minorFaults is this process's minor page faults so far.
func minorFaults() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return int64(ru.Minflt) // int32 on 32-bit Linux
}

func heapInUse() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// labelled runs f with the profiler label side=<side>, which the
// goroutines it starts inherit: a CPU profile of the benchmark
// (-cpuprofile) splits by side with `go tool pprof -tagfocus
// side=recorder` (or side=bare). Allocation profiles carry no labels.
func labelled(side string, f func()) {
	pprof.Do(context.Background(), pprof.Labels("side", side), func(context.Context) { f() })
}

// benchRecorder is a recorder as a box runs it: production media memory
// (freed buffers reused; the tests' Debug guard maps and protects every
// buffer anew, a cost no box pays). close stops its cameras and engine.
func benchRecorder(b *testing.B) (rec *recorder, close func()) {
	log := slog.New(slog.DiscardHandler)
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: b.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	r := &recorder{eng: eng, cams: NewManager(eng, log)}
	var once sync.Once
	close = func() { once.Do(func() { r.cams.Close(); eng.Close() }) }
	b.Cleanup(close)
	return r, close
}

// startProfile starts a CPU profile into a new file at path.
func startProfile(b *testing.B, path string) *os.File {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return f
}

// stopProfile ends the CPU profile into *f, if any.
func stopProfile(f **os.File) {
	if *f != nil {
		pprof.StopCPUProfile()
		(*f).Close()
		*f = nil
	}
}

// benchTransport is the RTSP transport of both sides
// (KVSEDGE_BENCH_TRANSPORT: tcp, the default, or udp).
func benchTransport() string {
	if v := os.Getenv("KVSEDGE_BENCH_TRANSPORT"); v == "udp" {
		return v
	}
	return "tcp"
}

// benchRounds is how many times each side is measured, alternating
// (KVSEDGE_BENCH_ROUNDS; default 2).
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("KVSEDGE_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// bareReceiver is the floor: a gortsplib client that reads a camera over
// the transport the recorder uses, through the recorder's connection layer
// (dialBuffered: the read buffer and paced reads, readpace.go, on the
// unwatched clock as the recorder's unwatched cameras), and discards
// every packet; so recorder/bare is what recording adds, not how the
// socket is read.
func bareReceiver(b *testing.B, url, transport string) *gortsplib.Client {
	u, err := base.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	t := gortsplib.TransportTCP
	if transport == "udp" {
		t = gortsplib.TransportUDP
	}
	unwatched := func() bool { return false }
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &t, DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
		return dialBuffered(ctx, network, address, unwatched)
	}}
	if err := c.Start2(); err != nil {
		b.Fatal(err)
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
		b.Fatal(err)
	}
	c.OnPacketRTPAny(func(*description.Media, format.Format, *rtp.Packet) {})
	if _, err := c.Play(nil); err != nil {
		b.Fatal(err)
	}
	return c
}

// fsyncLatency is the median of writing size bytes to a new file in dir
// and fsyncing it: one fsync of a fragment on this disk, now.
func fsyncLatency(b *testing.B, dir string, size, runs int) time.Duration {
	buf := make([]byte, size)
	lat := make([]time.Duration, 0, runs)
	for i := 0; i < runs; i++ {
		name := filepath.Join(dir, fmt.Sprintf("fsync-%d", i))
		d, err := writeSynced(name, buf)
		os.Remove(name)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
	}
	slices.Sort(lat)
	return lat[len(lat)/2]
}

// writeSynced writes buf into a new file at path and fsyncs it, and says
// how long the write and the fsync took.
func writeSynced(path string, buf []byte) (time.Duration, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	t0 := time.Now()
	if _, err := f.Write(buf); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// probeFsync starts a child process (runProbe) that writes 500 KB and
// fsyncs it into dir every 250 ms until the returned stop is called,
// which appends each write + fsync's latency to *lat: the disk's own
// figure under the recorder's load, beside the idle one (fsyncLatency)
// that p99/fsync divides by. A child, so that its CPU and allocations do
// not count as the recorder's; its writes do once it is reaped (the
// kernel adds a reaped child's I/O counters to its parent's), so the
// caller reads this process's counters before it calls stop.
func probeFsync(b *testing.B, dir string, lat *[]time.Duration) (stop func()) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	child := exec.Command(self)
	child.Env = append(os.Environ(), "KVSEDGE_BENCH_PROBE="+dir)
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	// Its output goes to a file: a pipe would take a goroutine of this
	// process to read it.
	out, err := os.CreateTemp(b.TempDir(), "probe-*.txt")
	if err != nil {
		b.Fatal(err)
	}
	child.Stdout, child.Stderr = out, os.Stderr
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	return func() {
		stdin.Close() // the child stops at its next tick
		err := child.Wait()
		out.Close()
		if err != nil {
			b.Fatalf("the disk probe: %v", err)
		}
		text, err := os.ReadFile(out.Name())
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Fields(string(text)) {
			if ns, err := strconv.ParseInt(l, 10, 64); err == nil {
				*lat = append(*lat, time.Duration(ns))
			}
		}
	}
}

// runProbe is probeFsync's child: every 250 ms a 500 KB write + fsync
// into dir, its latency in ns printed on a line, until stdin closes.
func runProbe(dir string) {
	closed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(closed)
	}()
	buf := make([]byte, 500<<10)
	name := filepath.Join(dir, fmt.Sprintf("probe-%d", os.Getpid()))
	defer os.Remove(name)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			return
		case <-tick.C:
		}
		d, err := writeSynced(name, buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "probe:", err)
			os.Exit(1)
		}
		fmt.Println(d.Nanoseconds())
	}
}

// addLatency is the sum of two histogram snapshots.
func addLatency(a, b engine.Latency) engine.Latency {
	if a.Counts == nil {
		return b
	}
	s := engine.Latency{Counts: slices.Clone(a.Counts), SumMs: a.SumMs + b.SumMs}
	for i := range b.Counts {
		s.Counts[i] += b.Counts[i]
	}
	return s
}

// writeBytes is what this process has sent to storage.
func writeBytes() int64 { return procIO("write_bytes") }

// procIO is one of this process's I/O counters (/proc/self/io).
func procIO(name string) int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkRecorder records N simulated 2 Mbit/s cameras (720p25 H.264
// from ffmpeg, a key frame a second; the demo clip without ffmpeg; the
// cameras started 1/N s apart, so their fragments do not all end at once
// unless KVSEDGE_BENCH_LOCKSTEP=1) pulled
// over TCP from a gortsplib relay in a child process, and, in the same run
// and against the same streams, a bare receiver (gortsplib clients that
// read and discard) as the floor. The two sides alternate,
// KVSEDGE_BENCH_ROUNDS times each (default 2), bare first, so both see
// the machine's load alike; each recorder round is a fresh engine. For
// each N it reports:
//
//	cpu-ms/camera-s          the recorder's CPU per camera-second (fsync
//	                         and indexing included; the publishers' apart)
//	bare-cpu-ms/camera-s     the bare receiver's
//	recorder/bare            their ratio, all rounds' CPU summed (goal
//	                         ≤ 1.3); recorder/bare-min and -max the
//	                         rounds' extremes
//	MiB/camera               the recorder's RSS per camera beyond idle and
//	                         beyond its hot rings (ring-MiB/camera), first
//	                         round
//	bare-MiB/camera          the bare receiver's RSS per camera beyond
//	                         idle, first round
//	heap-MiB/camera          the recorder's Go heap in use per camera
//	media-MiB/camera         its media memory in use per camera (rings,
//	                         fragments being built, live chunks), and
//	                         media-cache-MiB the free buffers it keeps
//	                         for reuse (box-wide), first round
//	allocs/frame             the recorder's allocations per video frame
//	                         (the whole process); bare-allocs/frame the
//	                         floor's: gortsplib's own per-packet ones
//	faults/frame             the recorder's minor page faults per video
//	                         frame (first touches of new memory: a media
//	                         buffer mapped anew instead of reused);
//	                         bare-faults/frame the floor's
//	reads/frame              the recorder's read system calls per video
//	                         frame (the RTSP connections' reads, mostly);
//	                         bare-reads/frame the floor's
//	persist-p50-ms, -p99-ms  a camera fragment complete → durable (what a
//	                         PERSISTED ack waits)
//	append-, media-sync-, index-commit-mean-ms, -p99-le-ms  the store's
//	                         steps of each put (engine.StoreStats): their
//	                         mean, and the bucket bound their p99 is within
//	fsync-ms                 one 500 KB write + fsync on the same disk
//	p99/fsync                (goal ≤ 3 at 64 streams)
//	loaded-fsync-p50-ms, -p99-ms  the same write + fsync every 250 ms
//	                         during the recorder's windows: the disk's
//	                         own latency under the recorder's load;
//	                         p99/loaded-fsync-p99 the persist p99 over it
//	write-amp                bytes this process wrote to storage per media
//	                         byte received
//
// Each phase warms up, then measures KVSEDGE_BENCH_SECONDS (default 4);
// KVSEDGE_BENCH_CAMERAS picks N, KVSEDGE_BENCH_TRANSPORT the RTSP
// transport of both sides (tcp, the default, or udp). The machine's other
// load shows in the figures: compare runs made under the same conditions
// only. With -cpuprofile, `go tool pprof -tagfocus side=recorder` (or
// side=bare) keeps one side's samples (labelled); KVSEDGE_BENCH_PROFILE=p
// (without -cpuprofile) profiles the first round's windows alone, the
// steady state, into p.<N> (recorder) and p.bare.<N>: `go tool pprof
// -diff_base p.bare.<N> p.<N>` is what recording adds.
func BenchmarkRecorder(b *testing.B) {
	clip, fps := benchClip(b)
	window := benchWindow()
	transport := benchTransport()
	rounds := benchRounds()
	prof := os.Getenv("KVSEDGE_BENCH_PROFILE")
	for _, n := range benchCameraCounts() {
		b.Run(fmt.Sprintf("cameras=%d", n), func(b *testing.B) {
			addr, child := startPublishers(b, clip, fps, n, transport)
			pid := child.Process.Pid
			time.Sleep(time.Second)
			url := func(i int) string { return fmt.Sprintf("rtsp://%s/cam%d", addr, i) }
			camSec := float64(n) * window.Seconds() * float64(rounds)
			frames := camSec * float64(fps)

			dir := b.TempDir()
			fsync := fsyncLatency(b, dir, 500<<10, 11)
			var mu sync.Mutex
			lat := make([]time.Duration, 0, 4096)
			measuring := false
			persistObserver = func(d time.Duration) {
				mu.Lock()
				if measuring {
					lat = append(lat, d)
				}
				mu.Unlock()
			}
			defer func() { persistObserver = nil }()
			var loaded []time.Duration  // the disk probe's fsyncs during the windows
			var steps [3]engine.Latency // the store's append, media sync, index commit in the windows
			stopProbe := func() {}

			var bare, rec phase // all rounds summed (memory: the first's)
			var media uint64
			var written int64
			var ringBytes int64
			ratioMin, ratioMax := 0.0, 0.0
			b.ResetTimer()
			for round := 0; round < rounds; round++ {
				// The floor.
				var clients []*gortsplib.Client
				var profFile *os.File
				bp := measure(pid, time.Second, window, func() {
					labelled("bare", func() {
						for i := 0; i < n; i++ {
							clients = append(clients, bareReceiver(b, url(i), transport))
						}
					})
				}, func() {
					if prof != "" && round == 0 {
						profFile = startProfile(b, fmt.Sprintf("%s.bare.%d", prof, n))
					}
				})
				stopProfile(&profFile)
				for _, c := range clients {
					c.Close()
				}

				// The recorder.
				var r *recorder
				var closeRec func()
				labelled("recorder", func() { r, closeRec = benchRecorder(b) })
				var st0 engine.Stats
				var ss0 engine.StoreStats
				var w0 int64
				rp := measure(pid, benchWarmup(), window, func() {
					labelled("recorder", func() {
						for i := 0; i < n; i++ {
							src, err := NewRTSPSource(url(i), transport)
							if err != nil {
								b.Fatal(err)
							}
							if err := r.cams.Apply(fmt.Sprint("g", i), []CameraConfig{{Stream: fmt.Sprint("cam", i), Source: src, Key: "k", RetentionHours: 1}}); err != nil {
								b.Fatal(err)
							}
						}
					})
				}, func() {
					mu.Lock()
					measuring = true
					mu.Unlock()
					stopProbe = probeFsync(b, dir, &loaded)
					st0, w0, ss0 = r.eng.Stats(), writeBytes(), r.eng.StoreStats()
					if prof != "" && round == 0 {
						profFile = startProfile(b, fmt.Sprintf("%s.%d", prof, n))
					}
				})
				stopProfile(&profFile)
				mu.Lock()
				measuring = false
				mu.Unlock()
				st1, w1, ss1 := r.eng.Stats(), writeBytes(), r.eng.StoreStats()
				stopProbe() // after writeBytes: the reaped probe's writes count as ours (probeFsync)
				for i, l := range []engine.Latency{ss1.Append.Since(ss0.Append), ss1.MediaSync.Since(ss0.MediaSync), ss1.IndexCommit.Since(ss0.IndexCommit)} {
					steps[i] = addLatency(steps[i], l)
				}
				media += st1.BytesReceived - st0.BytesReceived
				mu.Lock()
				written += w1 - w0
				mu.Unlock()
				recording := 0
				for _, s := range r.cams.States() {
					if s.State == StateRecording {
						recording++
					}
				}
				if recording < n {
					b.Errorf("round %d: %d of %d cameras recording", round, recording, n)
				}
				if round == 0 {
					ringBytes = int64(r.eng.RingBytes())
					mst := r.eng.Media().Stats()
					b.ReportMetric(float64(mst.CachedBytes)/(1<<20), "media-cache-MiB")
					b.ReportMetric(float64(mst.Used())/float64(n)/(1<<20), "media-MiB/camera")
					bare.rss, rec.rss, rec.heap = bp.rss, rp.rss, rp.heap
				}
				closeRec()

				ratio := float64(rp.cpu) / float64(max(bp.cpu, 1))
				if round == 0 || ratio < ratioMin {
					ratioMin = ratio
				}
				ratioMax = max(ratioMax, ratio)
				bare.cpu += bp.cpu
				bare.mallocs += bp.mallocs
				bare.faults += bp.faults
				bare.reads += bp.reads
				rec.cpu += rp.cpu
				rec.pubCPU += rp.pubCPU
				rec.mallocs += rp.mallocs
				rec.faults += rp.faults
				rec.reads += rp.reads
			}
			b.StopTimer()
			fsync = (fsync + fsyncLatency(b, dir, 500<<10, 11)) / 2

			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(rec.cpu)/camSec, "cpu-ms/camera-s")
			b.ReportMetric(ms(bare.cpu)/camSec, "bare-cpu-ms/camera-s")
			b.ReportMetric(float64(rec.cpu)/float64(max(bare.cpu, 1)), "recorder/bare")
			b.ReportMetric(ratioMin, "recorder/bare-min")
			b.ReportMetric(ratioMax, "recorder/bare-max")
			b.ReportMetric(ms(rec.pubCPU)/camSec, "publisher-cpu-ms/camera-s")
			b.ReportMetric(float64(rec.rss-ringBytes)/float64(n)/(1<<20), "MiB/camera")
			b.ReportMetric(float64(ringBytes)/float64(n)/(1<<20), "ring-MiB/camera")
			b.ReportMetric(float64(bare.rss)/float64(n)/(1<<20), "bare-MiB/camera")
			b.ReportMetric(float64(rec.heap)/float64(n)/(1<<20), "heap-MiB/camera")
			b.ReportMetric(float64(rec.mallocs)/frames, "allocs/frame")
			b.ReportMetric(float64(bare.mallocs)/frames, "bare-allocs/frame")
			b.ReportMetric(float64(rec.faults)/frames, "faults/frame")
			b.ReportMetric(float64(bare.faults)/frames, "bare-faults/frame")
			b.ReportMetric(float64(rec.reads)/frames, "reads/frame")
			b.ReportMetric(float64(bare.reads)/frames, "bare-reads/frame")
			mu.Lock()
			if len(lat) > 0 {
				slices.Sort(lat)
				p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
				b.ReportMetric(ms(p50), "persist-p50-ms")
				b.ReportMetric(ms(p99), "persist-p99-ms")
				for i, name := range []string{"append", "media-sync", "index-commit"} {
					b.ReportMetric(steps[i].MeanMs(), name+"-mean-ms")
					b.ReportMetric(steps[i].QuantileMs(0.99), name+"-p99-le-ms")
				}
				b.ReportMetric(float64(p99)/float64(fsync), "p99/fsync")
			}
			mu.Unlock()
			b.ReportMetric(ms(fsync), "fsync-ms")
			mu.Lock()
			if len(loaded) > 0 {
				slices.Sort(loaded)
				lp99 := loaded[min(len(loaded)-1, len(loaded)*99/100)]
				b.ReportMetric(ms(loaded[len(loaded)/2]), "loaded-fsync-p50-ms")
				b.ReportMetric(ms(lp99), "loaded-fsync-p99-ms")
				if len(lat) > 0 {
					b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)])/float64(lp99), "p99/loaded-fsync-p99")
				}
			}
			mu.Unlock()
			if media > 0 {
				b.ReportMetric(float64(written)/float64(media), "write-amp")
			}
		})
	}
}

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}

// recycleOutput is the camera path's sink: its fragments are assembled
// in an engine's media memory (as a camera's are), and it takes each one
// and frees its buffer, as the engine does once a fragment leaves the
// ring, so the benchmark sees the steady state.
type recycleOutput struct {
	mem              *engine.MediaMemory
	fragments, bytes int
	// moved counts the bytes a buffer's growth copied (a fragment that
	// outgrew its buffer moves to a bigger one).
	moved int
}

// benchMediaMemory is the media memory of an engine over a scratch
// store, with production buffers (no Debug guard: freed buffers are
// reused, as on a box).
func benchMediaMemory(b testing.TB) *engine.MediaMemory {
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: b.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	return eng.Media()
}

func (o *recycleOutput) Buffers() mkv.Buffers {
	return &movingBuffers{Buffers: o.mem.Buffers(engine.MediaCamera), moved: &o.moved}
}

// movingBuffers counts the bytes a growth copies to a new buffer.
type movingBuffers struct {
	mkv.Buffers
	moved *int
}

func (m *movingBuffers) Grow(b []byte, n int) ([]byte, error) {
	g, err := m.Buffers.Grow(b, n)
	if err == nil && len(b) > 0 && unsafe.SliceData(g) != unsafe.SliceData(b) {
		*m.moved += len(b)
	}
	return g, err
}

func (o *recycleOutput) StartFragment() error { return nil }

func (o *recycleOutput) Fragment(f *mkv.Fragment) error {
	o.fragments++
	o.bytes += len(f.Buf)
	o.mem.Free(f.Buf)
	return nil
}

// cameraPath is one camera's receive path after gortsplib has parsed each
// RTP packet (BenchmarkCameraPath): frame(i) sends the clip's frame i
// (modulo its length, times going on) in 1400-byte RTP packets through
// the depacketiser (reference: gortsplib's decoder and
// Fragmenter.WriteVideo) into a 2 s Fragmenter writing to out. frames is
// the clip's length, wire its RTP payload bytes.
func cameraPath(tb testing.TB, clip []byte, fps int, out Output, reference bool) (frame func(i int), frames, wire int) {
	tb.Helper()
	d, err := NewDemoSource(clip, float64(fps))
	if err != nil {
		tb.Fatal(err)
	}
	forma := &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: d.sps, PPS: d.pps}
	enc, err := forma.CreateEncoder()
	if err != nil {
		tb.Fatal(err)
	}
	pkts := make([][]*rtp.Packet, len(d.aus))
	for i, au := range d.aus {
		if pkts[i], err = enc.Encode(au); err != nil {
			tb.Fatal(err)
		}
		for _, p := range pkts[i] {
			wire += len(p.Payload)
		}
	}
	// The box's clock follows the stream's (a benchmark runs faster than
	// real time, and the timeline re-anchors a stream that drifts from
	// the clock).
	var pts time.Duration
	start := time.Now()
	now := func() time.Time { return start.Add(pts) }
	r := &rtspSession{fr: NewFragmenter(out, 2*time.Second), tl: &timeline{now: now}, st: &feedStats{}, videoTI: 0, audioTI: -1,
		tracks: []mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, Name: "video", CodecID: mkv.CodecH264}}}
	r.sps, r.pps = forma.SafeParams()
	if err := r.applyParams(); err != nil {
		tb.Fatal(err)
	}
	dec, err := forma.CreateDecoder()
	if err != nil {
		tb.Fatal(err)
	}
	r.vd = &videoDepacketizer{s: r}
	seq := uint16(0)
	frame = func(i int) {
		ts := uint32(i * 90000 / fps)
		pts = ptsDuration(int64(i*90000/fps), 90000)
		for _, p := range pkts[i%len(pkts)] {
			p.Timestamp, p.SequenceNumber = ts, seq
			seq++
			if !reference {
				if err := r.vd.packet(p, pts, true, time.Time{}, false); err != nil {
					tb.Fatal(err)
				}
				continue
			}
			if au, err := dec.Decode(p); err == nil {
				if err := referenceVideo(r, pts, time.Time{}, false, au); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
	return frame, len(pkts), wire
}

// BenchmarkCameraPath is one camera's receive path after gortsplib has
// parsed each RTP packet: depacketising, parameter sets, the timeline, the
// fragmenter and the fragments to a sink that recycles their buffers. One
// op is one video frame of the 2 Mbit/s clip (the demo clip without
// ffmpeg) in 1400-byte RTP packets. depacketizer is the path cameras take;
// gortsplib-decoder the one it replaced (gortsplib's rtph264 decoder, the
// whole access unit, then Fragmenter.WriteVideo). allocs/frame counts
// every allocation, the per-fragment ones (the fragment's metadata)
// included; moved-B/frame the bytes copied when a fragment outgrew its
// buffer (goal 0: each fragment's buffer is sized for it at its start).
func BenchmarkCameraPath(b *testing.B) {
	clipPath, fps := benchClip(b)
	clip, err := os.ReadFile(clipPath)
	if err != nil {
		b.Fatal(err)
	}
	for _, reference := range []bool{false, true} {
		name := "depacketizer"
		if reference {
			name = "gortsplib-decoder"
		}
		b.Run(name, func(b *testing.B) {
			out := &recycleOutput{mem: benchMediaMemory(b)}
			frame, frames, wire := cameraPath(b, clip, fps, out, reference)
			warm := 3 * frames
			for i := 0; i < warm; i++ { // warm up: buffers grown, pools filled
				frame(i)
			}
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			moved0 := out.moved
			b.SetBytes(int64(wire / frames))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				frame(warm + i) // times go on from the warm-up's
			}
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N), "allocs/frame")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(b.N), "alloc-B/frame")
			b.ReportMetric(float64(out.moved-moved0)/float64(b.N), "moved-B/frame")
			if out.fragments == 0 {
				b.Fatal("no fragment came out")
			}
		})
	}
}
