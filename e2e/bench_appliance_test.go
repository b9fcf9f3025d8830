package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// procStatus reads a field (in kB) of /proc/<pid>/status.
func procStatusKB(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			v, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return v
		}
	}
	return 0
}

// procWriteBytes is /proc/<pid>/io's write_bytes: what the process caused
// to be written to storage.
func procWriteBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// BenchmarkApplianceProfiles starts the box under three hardware profiles
// and reports, for each: start-up time to serving, idle resident memory
// and CPU (ms per second over 10 s with no camera and no client), and
// resident memory per camera while recording 2 Mbit/s cameras (as
// many as the profile allows, at most 4) for 20 s. Under the SD-card
// profile (pi4-2g) it also reports write amplification: bytes the store
// wrote (segments, WAL, flushes, compactions; its own count) and bytes
// the kernel was asked to write (/proc/<pid>/io, preallocation included),
// each over the media bytes recorded, and the bytes written per recorded
// camera-hour. Run with -benchtime 1x.
func BenchmarkApplianceProfiles(b *testing.B) {
	clip, fps := clusterBenchClip(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rl := publishCameras(ctx, b, clip, fps, "cam0", "cam1", "cam2", "cam3")
	for _, prof := range []struct {
		name string
		cams int
	}{{"pi-zero-2w", 4}, {"pi4-2g", 4}, {"x86-mini", 4}} {
		dir := b.TempDir()
		var cfg strings.Builder
		cfg.WriteString("cameras:\n")
		for i := range prof.cams {
			fmt.Fprintf(&cfg, "  - stream: cam%d\n    url: %s\n    transport: tcp\n    retention_hours: 1\n", i, rl.URL(fmt.Sprint("cam", i)))
		}
		cfgPath := filepath.Join(dir, "kvsedge.yaml")
		// The cameras start only when the file is given below; first the
		// idle box.
		env := append(streamEnv(filepath.Join(dir, "data")), "KVSEDGE_PROFILE="+prof.name)
		t0 := time.Now()
		p := startKvsedge(b, env, "--listen", "127.0.0.1:0")
		startup := time.Since(t0)
		time.Sleep(2 * time.Second)
		idle := procStatusKB(p.cmd.Process.Pid, "VmRSS")
		c0 := procCPUNanos(b, p.cmd.Process.Pid)
		time.Sleep(10 * time.Second)
		idleCPU := float64(procCPUNanos(b, p.cmd.Process.Pid)-c0) / 1e6 / 10
		p.stop(b)

		if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
			b.Fatal(err)
		}
		p = startKvsedge(b, env, "--listen", "127.0.0.1:0", "--config", cfgPath)
		pid := p.cmd.Process.Pid
		waitB(b, "the cameras record", 30*time.Second, func() bool {
			var cs cameraStates
			callJSON(b, p.endpoint, "/listCameras", map[string]any{}, &cs)
			n := 0
			for _, c := range cs.Cameras {
				if c.State == "RECORDING" && c.Fragments >= 1 {
					n++
				}
			}
			return n == prof.cams
		})
		w0 := procWriteBytes(pid)
		m0 := scrape(b, p.endpoint)
		time.Sleep(20 * time.Second)
		rss := procStatusKB(pid, "VmRSS")
		m1 := scrape(b, p.endpoint)
		w1 := procWriteBytes(pid)
		p.stop(b)

		written := func(fams map[string]*dto.MetricFamily, kind string) float64 {
			v, _ := metricValue(fams, "kvsedge_store_written_bytes_total", map[string]string{"kind": kind})
			return v
		}
		media := written(m1, "media") - written(m0, "media")
		store := media + (written(m1, "wal") - written(m0, "wal")) + (written(m1, "flush") - written(m0, "flush")) +
			(written(m1, "compaction") - written(m0, "compaction"))
		b.ReportMetric(startup.Seconds()*1000, prof.name+"-startup-ms")
		b.ReportMetric(float64(idle)/1024, prof.name+"-idle-MiB")
		b.ReportMetric(idleCPU, prof.name+"-idle-cpu-ms/s")
		b.ReportMetric(float64(rss-idle)/1024/float64(prof.cams), prof.name+"-MiB/camera")
		if prof.name == "pi4-2g" && media > 0 {
			b.ReportMetric(store/media, prof.name+"-store-write-amp")
			b.ReportMetric(float64(w1-w0)/media, prof.name+"-kernel-write-amp")
			b.ReportMetric(float64(w1-w0)/(20*float64(prof.cams))*3600/(1<<30), prof.name+"-GiB/camera-hour")
		}
	}
}

// procCPUNanos is the time the process's threads ran, in nanoseconds (the
// sum of /proc/<pid>/task/*/schedstat: finer than /proc/<pid>/stat's
// clock ticks, which cannot tell an idle box's 0.1 ms a second from 0).
// Threads that exited are not counted: for a process that keeps its
// threads (a Go program) the difference of two readings is its CPU time.
func procCPUNanos(b *testing.B, pid int) int64 {
	b.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no threads of %d: %v", pid, err)
	}
	var sum int64
	for _, t := range tasks {
		raw, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(raw))
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			b.Fatalf("%s: %q", t, raw)
		}
		sum += n
	}
	return sum
}
