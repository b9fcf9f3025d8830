package ingest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// The camera benchmark's publishers (an RTSP relay and N simulated
// cameras) run in a child process — this test binary started with
// KVSEDGE_BENCH_PUBLISH=<clip>:<fps>:<n> — so the recorder's CPU and
// memory are this process's alone.
func TestMain(m *testing.M) {
	if spec := os.Getenv("KVSEDGE_BENCH_PUBLISH"); spec != "" {
		runPublishers(spec)
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
	ctx, cancel := context.WithCancel(context.Background())
	for i := 0; i < n; i++ {
		go rtsptest.Publish(ctx, t, rl.URL(fmt.Sprint("cam", i)), d.aus, d.sps, d.pps, fps, 0)
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

// BenchmarkCameras records N simulated 2 Mbit/s cameras for 10 s and
// reports the recorder's CPU per camera-second (fsync and indexing
// included; the publishers run in another process, their CPU reported
// apart) and its resident memory per camera beyond what the camera's hot
// ring holds. Run with -benchtime 1x.
func BenchmarkCameras(b *testing.B) {
	clip, fps := benchClip(b)
	const window = 10 * time.Second
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("cameras=%d", n), func(b *testing.B) {
			self, err := os.Executable()
			if err != nil {
				b.Fatal(err)
			}
			child := exec.Command(self)
			child.Env = append(os.Environ(), fmt.Sprintf("KVSEDGE_BENCH_PUBLISH=%s:%d:%d", clip, fps, n))
			stdin, _ := child.StdinPipe()
			stdout, _ := child.StdoutPipe()
			if err := child.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { stdin.Close(); _ = child.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "RELAY ") {
				b.Fatalf("publisher process: %q %v", line, err)
			}
			addr := strings.TrimSpace(strings.TrimPrefix(line, "RELAY "))
			time.Sleep(time.Second)

			runtime.GC()
			rss0 := rssBytes()
			rec := newRecorderTB(b)
			for i := 0; i < n; i++ {
				src, err := NewRTSPSource(fmt.Sprintf("rtsp://%s/cam%d", addr, i), "tcp")
				if err != nil {
					b.Fatal(err)
				}
				if err := rec.cams.Apply(fmt.Sprint("g", i), []CameraConfig{{Stream: fmt.Sprint("cam", i), Source: src, Key: "k", RetentionHours: 1}}); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(3 * time.Second) // connect and fill the first fragments
			b.ResetTimer()
			c1 := cpuTime()
			childCPU0 := procCPU(child.Process.Pid)
			time.Sleep(window)
			total := cpuTime() - c1
			pubCPU := procCPU(child.Process.Pid) - childCPU0
			b.StopTimer()
			runtime.GC()
			rss1 := rssBytes()
			ringBytes := int64(rec.eng.RingBytes())
			recording := 0
			for _, s := range rec.cams.States() {
				if s.State == StateRecording {
					recording++
				}
			}
			rec.cams.Close()
			camSec := float64(n) * window.Seconds()
			b.ReportMetric(float64(total)/float64(time.Millisecond)/camSec, "cpu-ms/camera-s")
			b.ReportMetric(float64(pubCPU)/float64(time.Millisecond)/camSec, "publisher-cpu-ms/camera-s")
			b.ReportMetric(float64(rss1-rss0-ringBytes)/float64(n)/(1<<20), "MiB/camera")
			b.ReportMetric(float64(ringBytes)/float64(n)/(1<<20), "ring-MiB/camera")
			b.ReportMetric(float64(recording), "recording")
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
