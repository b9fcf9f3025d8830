package engine

// Engine benchmarks (make bench). They report their goal figures with
// b.ReportMetric and assert nothing. Stores live under b.TempDir(), i.e.
// os.TempDir(): on the development VMs that is the real disk (ext4), not a
// tmpfs; set TMPDIR to measure another one.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

var benchCapture = fixture.Path(fixture.AbsoluteH264 + ".mkv")

// benchTemplates parses the real producer's absolute capture once into
// fragments whose copies the benchmarks feed to Receive. The templates
// themselves are never handed to the engine.
func benchTemplates(b testing.TB) []mkv.Fragment {
	b.Helper()
	data, err := os.ReadFile(benchCapture)
	if err != nil {
		b.Fatal(err)
	}
	rd := mkv.NewReader(bytes.NewReader(data), mkv.Options{})
	var out []mkv.Fragment
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if ev == mkv.EventFragmentEnd {
			out = append(out, *rd.TakeFragment())
		}
	}
	if len(out) == 0 {
		b.Fatal("no fragment in the capture")
	}
	return out
}

// copyFragment returns a fresh fragment for Receive: the template with
// its media (cut to at most n bytes when n > 0) copied into a pooled
// buffer, as the PutMedia reader hands them over.
func copyFragment(t *mkv.Fragment, n int) *mkv.Fragment {
	g := *t
	src := t.Buf
	if n > 0 && n < len(src) {
		src = src[:n]
		g.ClusterLen = min(g.ClusterLen, n)
	}
	g.Buf = append(NewMediaBuffer(), src...)
	return &g
}

func openBenchEngine(b *testing.B, dir string, opts Options) (*lsm.DB, *Engine) {
	return openBenchEngineWith(b, lsm.Options{Dir: dir}, opts)
}

func openBenchEngineWith(b *testing.B, lo lsm.Options, opts Options) (*lsm.DB, *Engine) {
	b.Helper()
	log := slog.New(slog.DiscardHandler)
	lo.Logger = log
	db, err := lsm.Open(lo)
	if err != nil {
		b.Fatal(err)
	}
	opts.Logger = log
	e, err := openOn(db, opts)
	if err != nil {
		_ = db.Close()
		b.Fatal(err)
	}
	return db, e
}

// fsyncLatency writes n bytes to a fresh file and fsyncs it, samples
// times, and returns the median: the floor under any durable write of a
// fragment of that size on this disk.
func fsyncLatency(b *testing.B, dir string, n, samples int) time.Duration {
	b.Helper()
	f, err := os.Create(filepath.Join(dir, "fsync-probe"))
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := bytes.Repeat([]byte{0x5A}, n)
	d := make([]time.Duration, samples)
	for i := range d {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		d[i] = time.Since(t0)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkPersistLatency64Streams runs 64 ingest sessions, each
// persisting fragments of a 2 Mbit/s camera with 2 s fragments (≈ 500 KB,
// cut from the real capture's fragments), and records the latency of every
// Persist (one segment record fdatasync'ed and one unsynced Pebble batch
// each: lsm/replay.go).
//
//	paced-4x: each stream sends a fragment every 500 ms (its real rate
//	          compressed 4×, streams staggered): 64 MB/s in all.
//	unpaced:  every stream as fast as it can.
//
// Metrics: p50-ms and p99-ms of Persist; fsync-ms and fsync-p99-ms, the
// median and p99 of one fdatasync of a small write (4 KiB appended to a
// file on the same file system) probed every 50 ms during the same run;
// p99/fsync (Persist's p99 over that median; goal ≤ 3) and p99/fsync-p99
// (over the probe's own p99, which ran at the same moments); frag-fsync-ms (the
// median of a plain 500 KB write + fsync, measured just before);
// floor-p50-ms and floor-p99-ms, the latencies of the same persists done
// with bare system calls in the same op (rawPersist: what the disk alone
// costs for them at that moment; the two alternate which goes first), and
// p99/floor-p99 (what kvsedge adds to the tail);
// cpu-ms/stream-s (process CPU time per second of video per stream) and
// MB/s. One op is one run of `rounds` fragments per stream.
func BenchmarkPersistLatency64Streams(b *testing.B) {
	b.Run("paced-4x", func(b *testing.B) { benchPersist64(b, 500*time.Millisecond, 10) })
	b.Run("paced-1x", func(b *testing.B) { benchPersist64(b, 2*time.Second, 5) })
	b.Run("unpaced", func(b *testing.B) { benchPersist64(b, 0, 4) })
	b.Run("rolls-4x-seg4m", benchPersistRolls)
}

// benchPersistRolls measures what a segment roll costs a Persist: the
// paced-4x load (64 streams, a ≈ 500 KB fragment every 500 ms each) on
// two stores side by side with 4 MiB segments, so that about one persist
// in eight rolls (with the default 64 MiB, one in ~130): "prep", whose
// next segments are prepared in the background (the default), and
// "inline" (lsm.Options.InlineRolls), whose rolls make the segment on the
// PERSISTED path. Each op runs both, alternating which goes first. A
// persist rolled when the stream's active segment changed across it
// (lsm.DB.ActiveSegment; every stream rolled once before the timing, so
// a stream's first segment is not counted).
//
// Metrics per store: {prep,inline}-p50-ms, -p99-ms, -max-ms of every
// persist; {prep,inline}-roll-p50-ms and -roll-max-ms of the persists that
// rolled; {prep,inline}-p99/fsync (p99 over the median of the fsync probe
// of the same op: a 4 KiB append + fdatasync every 50 ms); fsync-ms;
// roll-share (the rolling persists' share); prep-prepared-share (of the
// "prep" store's timed rolls, the share that were swaps:
// lsm.DB.SegmentRolls).
func benchPersistRolls(b *testing.B) {
	const (
		streams   = 64
		fragBytes = 500_000
		videoMs   = 2000
		rounds    = 10
		period    = 500 * time.Millisecond
		segBytes  = 4 << 20
	)
	tmpls := benchTemplates(b)
	dir := b.TempDir()
	type store struct {
		name     string
		db       *lsm.DB
		sessions []*IngestSession
		produce  []int64
		lat      []time.Duration
		rollLat  []time.Duration
	}
	var stores []*store
	for _, inline := range []bool{false, true} {
		st := &store{name: "prep"}
		if inline {
			st.name = "inline"
		}
		db, e := openBenchEngineWith(b, lsm.Options{Dir: filepath.Join(dir, st.name), SegmentBytes: segBytes, InlineRolls: inline}, Options{})
		defer db.Close()
		st.db = db
		for i := range streams {
			name := fmt.Sprintf("cam-%02d", i)
			if _, err := e.CreateStream(CreateStreamInput{Name: name, DataRetentionInHours: 24}); err != nil {
				b.Fatal(err)
			}
			s, err := e.BeginIngest(StreamRef{Name: name})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			st.sessions = append(st.sessions, s)
			st.produce = append(st.produce, 1_795_579_974_135)
		}
		stores = append(stores, st)
	}
	probe, err := os.Create(filepath.Join(dir, "fsync-probe-small"))
	if err != nil {
		b.Fatal(err)
	}
	defer probe.Close()
	small := bytes.Repeat([]byte{0x5A}, 4096)
	var probes []time.Duration
	// run persists n fragments per stream of st, paced unless warm-up;
	// with timed, it records their latencies.
	run := func(st *store, n int, timed bool) {
		t0 := time.Now()
		var (
			mu sync.Mutex
			wg sync.WaitGroup
		)
		errc := make(chan error, streams)
		for i, sess := range st.sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var local, rolls []time.Duration
				for r := range n {
					if timed {
						time.Sleep(time.Until(t0.Add(time.Duration(i)*period/streams + time.Duration(r)*period)))
					}
					num, serverMs, err := sess.StartFragment()
					if err != nil {
						errc <- err
						return
					}
					rec, err := sess.Receive(num, serverMs, st.produce[i], copyFragment(&tmpls[(i+r)%len(tmpls)], fragBytes))
					st.produce[i] += videoMs
					if err != nil {
						errc <- err
						return
					}
					seg := st.db.ActiveSegment(sess.s.id)
					p0 := time.Now()
					if err := sess.Persist(rec.Fragment); err != nil {
						errc <- err
						return
					}
					d := time.Since(p0)
					local = append(local, d)
					if seg != st.db.ActiveSegment(sess.s.id) {
						rolls = append(rolls, d)
					}
				}
				if timed {
					mu.Lock()
					st.lat = append(st.lat, local...)
					st.rollLat = append(st.rollLat, rolls...)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	for _, st := range stores {
		run(st, 1, false) // each stream's first segment, made inline in both
	}
	prepared0, inline0 := stores[0].db.SegmentRolls()
	ops := 0
	for b.Loop() {
		stopProbe := startFsyncProbe(probe, small)
		for k := range stores {
			run(stores[(k+ops)%len(stores)], rounds, true)
		}
		probes = append(probes, stopProbe()...)
		ops++
	}
	slices.Sort(probes)
	if len(probes) == 0 {
		b.Fatal("no fsync probe completed")
	}
	fsync := percentile(probes, 0.50)
	b.ReportMetric(ms(fsync), "fsync-ms")
	for _, st := range stores {
		slices.Sort(st.lat)
		slices.Sort(st.rollLat)
		p99 := percentile(st.lat, 0.99)
		b.ReportMetric(ms(percentile(st.lat, 0.50)), st.name+"-p50-ms")
		b.ReportMetric(ms(p99), st.name+"-p99-ms")
		b.ReportMetric(ms(st.lat[len(st.lat)-1]), st.name+"-max-ms")
		b.ReportMetric(float64(p99)/float64(fsync), st.name+"-p99/fsync")
		if len(st.rollLat) > 0 {
			b.ReportMetric(ms(percentile(st.rollLat, 0.50)), st.name+"-roll-p50-ms")
			b.ReportMetric(ms(percentile(st.rollLat, 0.90)), st.name+"-roll-p90-ms")
			b.ReportMetric(ms(st.rollLat[len(st.rollLat)-1]), st.name+"-roll-max-ms")
		}
		if st.name == "prep" {
			b.ReportMetric(float64(len(st.rollLat))/float64(len(st.lat)), "roll-share")
			prepared, inline := st.db.SegmentRolls()
			prepared, inline = prepared-prepared0, inline-inline0
			b.ReportMetric(float64(prepared)/float64(max(prepared+inline, 1)), "prep-prepared-share")
		}
	}
}

func benchPersist64(b *testing.B, period time.Duration, rounds int) {
	const (
		streams   = 64
		fragBytes = 500_000 // 2 Mbit/s × 2 s
		videoMs   = 2000    // per fragment
	)
	tmpls := benchTemplates(b)
	dir := b.TempDir()
	db, e := openBenchEngine(b, filepath.Join(dir, "db"), Options{})
	defer db.Close()
	sessions := make([]*IngestSession, streams)
	for i := range sessions {
		name := fmt.Sprintf("cam-%02d", i)
		if _, err := e.CreateStream(CreateStreamInput{Name: name, DataRetentionInHours: 24}); err != nil {
			b.Fatal(err)
		}
		s, err := e.BeginIngest(StreamRef{Name: name})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		sessions[i] = s
	}
	fragFsync := fsyncLatency(b, dir, fragBytes, 21)
	probe, err := os.Create(filepath.Join(dir, "fsync-probe-small"))
	if err != nil {
		b.Fatal(err)
	}
	defer probe.Close()
	var probes []time.Duration
	small := bytes.Repeat([]byte{0x5A}, 4096)

	var (
		mu      sync.Mutex
		lat     []time.Duration
		cpu     time.Duration
		wall    time.Duration
		frags   int
		produce = make([]int64, streams) // next producer ms per stream
		floor   []time.Duration
		ops     int
	)
	for i := range produce {
		produce[i] = 1_795_579_974_135
	}
	for b.Loop() {
		if ops%2 == 1 {
			floor = append(floor, rawPersist(b, dir, streams, rounds, period, fragBytes)...)
		}
		c0, t0 := cpuTime(), time.Now()
		stopProbe := startFsyncProbe(probe, small) // one small synced write every 50 ms while the streams persist
		var wg sync.WaitGroup
		errc := make(chan error, streams)
		for i, sess := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := make([]time.Duration, 0, rounds)
				for r := range rounds {
					if period > 0 {
						at := t0.Add(time.Duration(i)*period/streams + time.Duration(r)*period)
						time.Sleep(time.Until(at))
					}
					num, serverMs, err := sess.StartFragment()
					if err != nil {
						errc <- err
						return
					}
					rec, err := sess.Receive(num, serverMs, produce[i], copyFragment(&tmpls[(i+r)%len(tmpls)], fragBytes))
					produce[i] += videoMs
					if err != nil {
						errc <- err
						return
					}
					p0 := time.Now()
					if err := sess.Persist(rec.Fragment); err != nil {
						errc <- err
						return
					}
					local = append(local, time.Since(p0))
				}
				mu.Lock()
				lat = append(lat, local...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		probes = append(probes, stopProbe()...)
		close(errc)
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		wall += time.Since(t0)
		frags += streams * rounds
		if ops%2 == 0 {
			floor = append(floor, rawPersist(b, dir, streams, rounds, period, fragBytes)...)
		}
		ops++
	}
	slices.Sort(lat)
	if testing.Verbose() {
		b.Logf("%d persists; p90 %v p95 %v p99 %v max %v", len(lat), percentile(lat, 0.90), percentile(lat, 0.95), percentile(lat, 0.99), lat[len(lat)-1])
	}
	slices.Sort(probes)
	if len(probes) == 0 {
		b.Fatal("no fsync probe completed")
	}
	fsync := percentile(probes, 0.50)
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(fsync), "fsync-ms")
	b.ReportMetric(ms(percentile(probes, 0.99)), "fsync-p99-ms")
	b.ReportMetric(ms(fragFsync), "frag-fsync-ms")
	b.ReportMetric(float64(p99)/float64(fsync), "p99/fsync")
	b.ReportMetric(float64(p99)/float64(percentile(probes, 0.99)), "p99/fsync-p99")
	slices.Sort(floor)
	b.ReportMetric(ms(percentile(floor, 0.50)), "floor-p50-ms")
	b.ReportMetric(ms(percentile(floor, 0.99)), "floor-p99-ms")
	b.ReportMetric(float64(p99)/float64(percentile(floor, 0.99)), "p99/floor-p99")
	videoS := float64(frags) * videoMs / 1000 // stream-seconds of video
	b.ReportMetric(ms(cpu)/videoS, "cpu-ms/stream-s")
	b.ReportMetric(float64(frags)*fragBytes/1e6/wall.Seconds(), "MB/s")
}

// rawPersist does what a Persist costs the disk, with bare system calls
// and paced as benchPersist64's streams: each stream writes fragBytes
// (rounded up to whole 4 KiB blocks) with O_DIRECT at the end of its own
// file (preallocated like a segment) and fdatasyncs it: a Persist's one
// sync (the index's commit is not synced: lsm/replay.go). It returns each
// persist's latency: the floor under Persist's.
func rawPersist(b *testing.B, dir string, streams, rounds int, period time.Duration, fragBytes int) []time.Duration {
	b.Helper()
	const align = 4096
	n := (fragBytes + align - 1) &^ (align - 1)
	raw := make([]byte, n+align)
	off := (align - int(uintptr(unsafe.Pointer(&raw[0]))&(align-1))) & (align - 1)
	buf := raw[off : off+n] // read only: shared by the streams
	fdir, err := os.MkdirTemp(dir, "raw")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(fdir)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		errc = make(chan error, streams)
		wg   sync.WaitGroup
	)
	t0 := time.Now()
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd, err := syscall.Open(filepath.Join(fdir, fmt.Sprint(i)), syscall.O_CREAT|syscall.O_WRONLY|syscall.O_DIRECT, 0o600)
			if err != nil {
				errc <- err
				return
			}
			defer syscall.Close(fd)
			_ = syscall.Fallocate(fd, 1 /* FALLOC_FL_KEEP_SIZE */, 0, 64<<20)
			local := make([]time.Duration, 0, rounds)
			for r := range rounds {
				if period > 0 {
					time.Sleep(time.Until(t0.Add(time.Duration(i)*period/time.Duration(streams) + time.Duration(r)*period)))
				}
				p0 := time.Now()
				if _, err := syscall.Pwrite(fd, buf, int64(r*n)); err != nil {
					errc <- err
					return
				}
				if err := syscall.Fdatasync(fd); err != nil {
					errc <- err
					return
				}
				local = append(local, time.Since(p0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return lat
}

// BenchmarkPersistUpload measures one upload's persist path alone (no
// HTTP, no Matroska parsing): fragments of the real capture, received
// beforehand, stored in runs of 8 as serve's PutMedia does, two ways in
// the same op, alternating which goes first:
//
//	sync:      PersistAll of each run, one after the other (each run's
//	           media written, synced, its index committed, then the next);
//	pipelined: PersistAsync of each run chained to the one before, which
//	           is waited for after the next one was started (a run's media
//	           written while the run before syncs and commits).
//
// and, in the same op, `dd bs=1M oflag=direct conv=fsync` of the same
// number of bytes into the same file system. Metrics: sync-MB/s,
// pipelined-MB/s, dd-MB/s (medians over the ops), pipelined/sync and
// pipelined/dd (medians of each op's ratio). One op stores `frags`
// fragments each way.
func BenchmarkPersistUpload(b *testing.B) {
	const (
		frags = 48
		run   = 8
	)
	tmpls := benchTemplates(b)
	dir := b.TempDir()
	db, e := openBenchEngine(b, filepath.Join(dir, "db"), Options{})
	defer db.Close()
	sessions := map[string]*IngestSession{}
	for _, mode := range []string{"sync", "pipelined"} {
		if _, err := e.CreateStream(CreateStreamInput{Name: mode, DataRetentionInHours: 24}); err != nil {
			b.Fatal(err)
		}
		s, err := e.BeginIngest(StreamRef{Name: mode})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		sessions[mode] = s
	}
	var total int
	for i := range frags {
		total += len(tmpls[i%len(tmpls)].Buf)
	}
	src := filepath.Join(dir, "dd.in")
	if err := os.WriteFile(src, bytes.Repeat([]byte{0x5A}, total), 0o600); err != nil {
		b.Fatal(err)
	}
	producer := map[string]int64{"sync": 1_795_579_974_135, "pipelined": 1_795_579_974_135}
	receive := func(mode string) []*Fragment {
		sess := sessions[mode]
		out := make([]*Fragment, 0, frags)
		for i := range frags {
			num, serverMs, err := sess.StartFragment()
			if err != nil {
				b.Fatal(err)
			}
			rec, err := sess.Receive(num, serverMs, producer[mode], copyFragment(&tmpls[i%len(tmpls)], 0))
			if err != nil {
				b.Fatal(err)
			}
			producer[mode] += 2000
			out = append(out, rec.Fragment)
		}
		return out
	}
	store := map[string]func([]*Fragment) error{
		"sync": func(fs []*Fragment) error {
			for i := 0; i < len(fs); i += run {
				if err := sessions["sync"].PersistAll(fs[i:min(i+run, len(fs))]); err != nil {
					return err
				}
			}
			return nil
		},
		"pipelined": func(fs []*Fragment) error {
			var prev *PendingPersist
			for i := 0; i < len(fs); i += run {
				p := sessions["pipelined"].PersistAsync(fs[i:min(i+run, len(fs))], prev)
				if prev != nil {
					if err := prev.Wait(); err != nil {
						return err
					}
				}
				prev = p
			}
			return prev.Wait()
		},
	}
	mbps := map[string][]float64{}
	var vsSync, vsDD []float64
	mb := float64(total) / 1e6
	n := 0
	for b.Loop() {
		order := []string{"sync", "pipelined"}
		if n%2 == 1 {
			order = []string{"pipelined", "sync"}
		}
		n++
		got := map[string]float64{}
		for _, mode := range order {
			fs := receive(mode)
			t0 := time.Now()
			if err := store[mode](fs); err != nil {
				b.Fatal(err)
			}
			got[mode] = mb / time.Since(t0).Seconds()
		}
		out := filepath.Join(dir, "dd.out")
		t0 := time.Now()
		if raw, err := exec.Command("dd", "if="+src, "of="+out, "bs=1M", "oflag=direct", "conv=fsync").CombinedOutput(); err != nil {
			b.Fatalf("dd: %v: %s", err, raw)
		}
		got["dd"] = mb / time.Since(t0).Seconds()
		os.Remove(out)
		for k, v := range got {
			mbps[k] = append(mbps[k], v)
		}
		vsSync = append(vsSync, got["pipelined"]/got["sync"])
		vsDD = append(vsDD, got["pipelined"]/got["dd"])
	}
	median := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(mbps["sync"]), "sync-MB/s")
	b.ReportMetric(median(mbps["pipelined"]), "pipelined-MB/s")
	b.ReportMetric(median(mbps["dd"]), "dd-MB/s")
	b.ReportMetric(median(vsSync), "pipelined/sync")
	b.ReportMetric(median(vsDD), "pipelined/dd")
}

// BenchmarkRingFanout100Readers: one stream, 100 cursors at the live edge
// (StartNow), a producer pushing the real capture's fragments through
// Receive (no retention: the ring only). Every reader calls Next and
// Release on each fragment. The producer stays at most `window` fragments
// ahead of the slowest reader, so nobody falls out of the ring.
//
// One op is one fragment delivered to all 100 readers. allocs/op counts
// the whole process (producer included); allocs/frag/reader divides it by
// 100; reader-allocs/frag/reader first subtracts the producer's own
// allocations per fragment (Receive, Persist, copying the fragment,
// measured alone before the readers start). Goal: no allocation per
// reader in steady state.
func BenchmarkRingFanout100Readers(b *testing.B) {
	const (
		readers = 100
		window  = 8
	)
	tmpls := benchTemplates(b)
	db, e := openBenchEngine(b, filepath.Join(b.TempDir(), "db"), Options{})
	defer db.Close()
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam"}); err != nil {
		b.Fatal(err)
	}
	ref := StreamRef{Name: "cam"}
	sess, err := e.BeginIngest(ref)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	producerMs := int64(1_795_579_974_135)
	seq := 0
	push := func() {
		num, serverMs, err := sess.StartFragment()
		if err != nil {
			b.Fatal(err)
		}
		rec, err := sess.Receive(num, serverMs, producerMs, copyFragment(&tmpls[seq%len(tmpls)], 0))
		if err != nil {
			b.Fatal(err)
		}
		producerMs += 1800
		seq++
		if err := sess.Persist(rec.Fragment); err != nil {
			b.Fatal(err)
		}
	}

	// The producer's own allocations per fragment, with no reader, once
	// the ring is full and its buffers circulate through the pool.
	for range 64 {
		push()
	}
	const alone = 64
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range alone {
		push()
	}
	runtime.ReadMemStats(&m1)
	producerAllocs := float64(m1.Mallocs-m0.Mallocs) / alone

	// Readers consume in order; the last of the 100 to release fragment k
	// signals done, so fragments complete in order.
	var (
		counts      [window]atomic.Int32
		done        = make(chan struct{}, window+1)
		ctx, cancel = context.WithCancel(context.Background())
		wg          sync.WaitGroup
		rerr        = make(chan error, readers)
	)
	defer cancel()
	for range readers {
		c, err := e.OpenCursor(ref, Start{Kind: StartNow})
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				f, err := c.Next(ctx, 0)
				if err != nil {
					if ctx.Err() == nil {
						rerr <- err
					}
					return
				}
				n := f.Meta.Number.Seq()
				f.Release()
				slot := &counts[n%window]
				if slot.Add(1) == readers {
					slot.Store(0)
					done <- struct{}{}
				}
			}
		}()
	}
	inflight := 0
	step := func() {
		if inflight == window {
			select {
			case <-done:
			case err := <-rerr:
				b.Fatal(err)
			}
			inflight--
		}
		push()
		inflight++
	}
	// Warm up: readers at the live edge, buffers back in the pool.
	for range 4 * window {
		step()
	}
	b.ReportAllocs()
	runtime.ReadMemStats(&m0)
	for b.Loop() {
		step()
	}
	runtime.ReadMemStats(&m1)
	for ; inflight > 0; inflight-- {
		<-done
	}
	cancel()
	wg.Wait()
	select {
	case err := <-rerr:
		b.Fatal(err)
	default:
	}
	perFrag := float64(m1.Mallocs-m0.Mallocs) / float64(b.N)
	b.ReportMetric(producerAllocs, "producer-allocs/frag")
	b.ReportMetric(perFrag/readers, "allocs/frag/reader")
	b.ReportMetric(max(perFrag-producerAllocs, 0)/readers, "reader-allocs/frag/reader")
}

// BenchmarkListFragments1hOf86400 stores a day of one-second fragments
// (86,400 of them, 300 bytes of media each; setup, untimed, writes them
// with 64 concurrent synced PutFragment calls so WAL syncs are shared,
// then reopens the store as after a restart) and times ListFragments over
// a one-hour server-time window: 3,600 results in pages of 1,000 (4
// calls). Successive ops walk different hours of the day.
//
// Metric: ms/list (goal ≤ 20 ms).
func BenchmarkListFragments1hOf86400(b *testing.B) {
	const (
		day     = 86_400
		base    = int64(1_795_564_800_000) // midnight UTC
		writers = 64
	)
	dir := filepath.Join(b.TempDir(), "db")
	db, e := openBenchEngine(b, dir, Options{})
	info, err := e.CreateStream(CreateStreamInput{Name: "day", DataRetentionInHours: 48})
	if err != nil {
		b.Fatal(err)
	}
	media := bytes.Repeat([]byte{0xA3}, 300)
	header := bytes.Repeat([]byte{0x1A}, 200)
	put := func(i int) error {
		w := lsm.FragmentWrite{
			Meta: fragment.Meta{
				Number:     fragment.MakeNumber(uint64(base), 0, uint32(i)),
				ProducerMs: base + int64(i)*1000 - 250,
				ServerMs:   base + int64(i)*1000,
				DurationMs: 1000,
				HeaderID:   7,
				ClusterLen: uint32(len(media)),
				MediaLen:   uint32(len(media)),
				Frames:     25,
			},
			Media: media,
		}
		if i == 0 {
			w.Header = header
		}
		return db.PutFragment(info.ID, &w)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for wi := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := wi; i < day; i += writers {
				if err := put(i); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	setup := time.Since(t0)
	db, e = openBenchEngine(b, dir, Options{})
	defer db.Close()
	ref := StreamRef{Name: "day"}

	hour := 0
	for b.Loop() {
		start := base + int64(hour%24)*3_600_000
		hour++
		var cur *fragment.TimeCursor
		n, calls := 0, 0
		for {
			page, next, err := e.ListFragments(ref, fragment.ByServerTime, start, start+3_599_999, cur, 1000)
			if err != nil {
				b.Fatal(err)
			}
			n += len(page)
			calls++
			if next == nil {
				break
			}
			cur = next
		}
		if n != 3600 || calls != 4 {
			b.Fatalf("hour %d: %d fragments in %d calls, want 3600 in 4", hour-1, n, calls)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/1e6, "ms/list")
	b.ReportMetric(setup.Seconds(), "setup-s")
}

// startFsyncProbe writes small to probe and fdatasyncs it every 50 ms
// until the returned stop is called, which returns each write's time
// (the baseline "one fsync" the persist latencies are compared with).
func startFsyncProbe(probe *os.File, small []byte) (stop func() []time.Duration) {
	quit, probed := make(chan struct{}), make(chan []time.Duration)
	go func() {
		var d []time.Duration
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				probed <- d
				return
			case <-tick.C:
			}
			p0 := time.Now()
			if _, err := probe.Write(small); err != nil {
				continue
			}
			if err := syscall.Fdatasync(int(probe.Fd())); err == nil {
				d = append(d, time.Since(p0))
			}
		}
	}()
	return func() []time.Duration {
		close(quit)
		return <-probed
	}
}

// BenchmarkIngestFragment is one camera's fragment through the engine:
// StartFragment, Receive (the re-send check, the ring), Persist (media
// synced, index committed) and the settle, on a stream nobody reads. One
// op is one fragment of the real capture. allocs/fragment counts every
// allocation of the op but the benchmark's own copy of the fragment
// (measured alone first and subtracted). Goal: a handful per fragment, none
// growing with its frames (a camera's frames allocate nothing: ingest's
// BenchmarkCameraPath).
func BenchmarkIngestFragment(b *testing.B) {
	db, e := openBenchEngine(b, filepath.Join(b.TempDir(), "db"), Options{})
	b.Cleanup(func() { _ = db.Close() }) // after the session's (cameraFragments)
	tmpls, one := cameraFragments(b, e)
	var ms0, ms1 runtime.MemStats
	const copies = 64
	runtime.ReadMemStats(&ms0)
	for i := range copies {
		e.mem.Free(copyFragment(&tmpls[i%len(tmpls)], 0).Buf)
	}
	runtime.ReadMemStats(&ms1)
	copyAllocs := float64(ms1.Mallocs-ms0.Mallocs) / copies
	b.ResetTimer()
	runtime.ReadMemStats(&ms0)
	for i := 0; i < b.N; i++ {
		one()
	}
	runtime.ReadMemStats(&ms1)
	b.StopTimer()
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N)-copyAllocs, "allocs/fragment")
}

// cameraFragments creates stream "cam" on e and returns the real
// capture's fragments and a function that takes the next one of them (a
// copy) through a camera's path: StartFragment, Receive (a new fragment,
// never a re-send: producer times 2 s apart), Persist. It has already
// taken two rounds of them (segments prepared, the header stored).
func cameraFragments(tb testing.TB, e *Engine) ([]mkv.Fragment, func()) {
	tb.Helper()
	tmpls := benchTemplates(tb)
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 24}); err != nil {
		tb.Fatal(err)
	}
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sess.Close)
	producer, i := int64(1_795_579_974_135), 0
	one := func() {
		num, serverMs, err := sess.StartFragment()
		if err != nil {
			tb.Fatal(err)
		}
		rec, err := sess.Receive(num, serverMs, producer, copyFragment(&tmpls[i%len(tmpls)], 0))
		if err != nil {
			tb.Fatal(err)
		}
		if rec.Duplicate {
			tb.Fatal("a new fragment taken for a re-send")
		}
		producer += 2000
		i++
		if err := sess.Persist(rec.Fragment); err != nil {
			tb.Fatal(err)
		}
	}
	for range 2 * len(tmpls) {
		one()
	}
	return tmpls, one
}
