package ingest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/ingest/rtsptest"
)

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

// benchClip is a 2 Mbit/s H.264 clip (ffmpeg's testsrc2 at 1280x720, 25
// fps, a key frame per second), made once per run; the demo clip when
// ffmpeg is missing.
func benchClip(b *testing.B) *DemoSource {
	b.Helper()
	path := filepath.Join(b.TempDir(), "2mbit.h264")
	ff, err := exec.LookPath("ffmpeg")
	if err == nil {
		err = exec.Command(ff, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25", "-t", "10",
			"-c:v", "libx264", "-preset", "veryfast", "-bf", "0", "-g", "25", "-sc_threshold", "0",
			"-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M", "-x264-params", "repeat-headers=1", "-f", "h264", path).Run()
	}
	clip, rerr := os.ReadFile(path)
	fps := 25.0
	if err != nil || rerr != nil {
		b.Logf("no ffmpeg: using the 400 kbit/s demo clip")
		if clip, err = os.ReadFile("../testdata/demo.h264"); err != nil {
			b.Fatal(err)
		}
		fps = 15
	}
	d, err := NewDemoSource(clip, fps)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkCameras records N simulated cameras (in-process RTSP
// publishers through a relay) for 10 s and reports the recorder's CPU per
// camera-second (the publishers' and relay's CPU, measured alone in the
// same run, subtracted) and resident memory per added camera beyond what
// its hot ring holds. Run with -benchtime 1x.
//
// The relay forwards to the recorders only while they are attached, so
// its fan-out work (and its per-reader queues) counts against the
// recorder here: the figures are an upper bound.
func BenchmarkCameras(b *testing.B) {
	d := benchClip(b)
	aus, _, sps, pps := d.Clip()
	fps := int(d.fps)
	const window = 10 * time.Second
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("cameras=%d", n), func(b *testing.B) {
			rl := rtsptest.StartRelay(b, "")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for i := 0; i < n; i++ {
				go rtsptest.Publish(ctx, b, rl.URL(fmt.Sprint("cam", i)), aus, sps, pps, fps, 0)
			}
			time.Sleep(time.Second)
			// Publishers and relay alone.
			c0 := cpuTime()
			time.Sleep(window)
			pubCPU := cpuTime() - c0

			runtime.GC()
			rss0 := rssBytes()
			rec := newRecorderTB(b)
			for i := 0; i < n; i++ {
				src, err := NewRTSPSource(rl.URL(fmt.Sprint("cam", i)), "tcp")
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
			time.Sleep(window)
			total := cpuTime() - c1
			b.StopTimer()
			runtime.GC()
			rss1 := rssBytes()
			ringBytes := int64(rec.eng.RingBytes())
			recorded := 0
			for _, s := range rec.cams.States() {
				if s.State == StateRecording {
					recorded++
				}
			}
			rec.cams.Close()
			perCamSec := float64(total-pubCPU) / float64(time.Millisecond) / (float64(n) * window.Seconds())
			b.ReportMetric(perCamSec, "cpu-ms/camera-s")
			b.ReportMetric(float64(pubCPU)/float64(time.Millisecond)/(float64(n)*window.Seconds()), "publisher-cpu-ms/camera-s")
			b.ReportMetric(float64(rss1-rss0-ringBytes)/float64(n)/(1<<20), "MiB/camera")
			b.ReportMetric(float64(ringBytes)/float64(n)/(1<<20), "ring-MiB/camera")
			b.ReportMetric(float64(recorded), "recording")
		})
	}
}
