package lsm

// Storage benchmarks (make bench). They report their goal figures with
// b.ReportMetric and assert nothing: the machine is noisy, read them as
// ratios measured in one run.
//
// Directories come from b.TempDir(), i.e. os.TempDir() (/tmp). On the
// development VMs /tmp is the root ext4 file system on the real disk, not
// a tmpfs: check with `findmnt -T /tmp` before trusting the figures (on a
// tmpfs fsync is free and every ratio is meaningless). Set TMPDIR to
// measure another disk (an SD card, say).

import (
	"bufio"
	"bytes"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fragment"
)

// benchMedia returns n incompressible bytes (video does not compress).
func benchMedia(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'k', 'v', 's'})
	_, _ = r.Read(b)
	return b
}

func openBenchDB(b *testing.B, dir string) *DB {
	b.Helper()
	d, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// benchFragment builds the i-th fragment of a stream: 1 s apart in both
// time indexes, header written with the first one.
func benchFragment(i int, media []byte) *FragmentWrite {
	const base = int64(1_795_579_974_135)
	w := &FragmentWrite{
		Meta: fragment.Meta{
			Number:     fragment.MakeNumber(1_795_579_974_000, 0, uint32(i)),
			ProducerMs: base + int64(i)*1000,
			ServerMs:   base + int64(i)*1000 + 40,
			DurationMs: 1000,
			Timecode:   uint64(i) * 1000,
			HeaderID:   0x1234,
			ClusterLen: uint32(len(media)),
			MediaLen:   uint32(len(media)),
			Frames:     25,
		},
		Media: media,
	}
	if i == 0 {
		w.Header = bytes.Repeat([]byte{0x1A}, 300)
	}
	return w
}

// BenchmarkIngestVsFsync compares, in one run and interleaved so that the
// machine's noise hits both alike, PutFragment of 1 MiB fragments of one
// stream (each call synced) with the raw speed of the same disk: 1 MiB
// appended to a plain file and fsynced. One op is one of each.
//
// Goal (issue): ingest ≥ 0.7 × raw ("ratio").
func BenchmarkIngestVsFsync(b *testing.B) {
	const block = 1 << 20
	media := benchMedia(block)
	dir := b.TempDir()
	d := openBenchDB(b, filepath.Join(dir, "db"))
	defer d.Close()

	// Raw file: appended to, and started afresh every 256 MiB so a long
	// -benchtime does not fill the disk.
	var f *os.File
	var fileBytes int
	newFile := func() {
		if f != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
		var err error
		f, err = os.Create(filepath.Join(dir, "raw"))
		if err != nil {
			b.Fatal(err)
		}
		fileBytes = 0
	}
	newFile()
	defer func() { _ = f.Close() }()

	var rawDur, putDur time.Duration
	i := 0
	for b.Loop() {
		if fileBytes >= 256<<20 {
			newFile()
		}
		t0 := time.Now()
		if _, err := f.Write(media); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := d.PutFragment(1, benchFragment(i, media)); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		rawDur += t1.Sub(t0)
		putDur += t2.Sub(t1)
		fileBytes += block
		i++
	}
	mb := float64(i) * block / 1e6
	ingest, raw := mb/putDur.Seconds(), mb/rawDur.Seconds()
	b.ReportMetric(ingest, "MB/s")
	b.ReportMetric(raw, "fsyncMB/s")
	b.ReportMetric(ingest/raw, "ratio")
}

// procWriteBytes is the process's write_bytes from /proc/self/io: bytes it
// caused to be sent to the block layer (counted when pages are dirtied;
// all threads of the process). -1 where unavailable.
func procWriteBytes() int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("write_bytes: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// sizeByKind sums file sizes under dir by extension (".blob", ".sst",
// ".log", …), for the verbose report.
func sizeByKind(dir string) map[string]int64 {
	m := map[string]int64{}
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				ext := filepath.Ext(p)
				if ext == "" {
					ext = filepath.Base(p)
				}
				m[ext] += fi.Size()
			}
		}
		return nil
	})
	return m
}

// settle flushes the memtable and waits until no flush or compaction has
// run for a while. It reaches into Pebble: lsm.DB exports no Flush or
// Metrics (see the report of this benchmark).
func (d *DB) settle(b *testing.B) {
	if err := d.db.Flush(); err != nil {
		b.Fatal(err)
	}
	quiet := 0
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && quiet < 5; {
		m := d.db.Metrics()
		if m.Compact.NumInProgress == 0 && m.Flush.NumInProgress == 0 {
			quiet++
		} else {
			quiet = 0
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkWriteAmplification writes 512 MiB of 256 KiB fragments for 16
// streams, each from its own goroutine (as 16 cameras' persisters do, so
// their keys interleave in the memtable), flushes, waits for compactions
// to settle and reports:
//
//	wamp        /proc/self/io write_bytes delta ÷ media bytes (goal ≤ 1.5)
//	pebble-wamp Pebble's own count: WAL bytes + table and blob bytes
//	            flushed and compacted, ÷ media bytes
//	blob-rewrite blob bytes written by compactions (not flushes) ÷ media
//	            bytes: values Pebble copied again after the flush wrote
//	            them to a blob file
//	disk-ratio  data directory size at the end ÷ media bytes
//	MB/s        media ingest rate (synced PutFragment calls)
//
// One op is the whole 512 MiB into a fresh store.
func BenchmarkWriteAmplification(b *testing.B) {
	const (
		streams  = 16
		fragSize = 256 << 10
		total    = 512 << 20
		perStrm  = total / fragSize / streams
	)
	media := benchMedia(fragSize)
	var wamp, pwamp, rewrite, diskRatio, mbps float64
	run := 0
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "db")
		d := openBenchDB(b, dir)
		w0 := procWriteBytes()
		t0 := time.Now()
		var wg sync.WaitGroup
		errc := make(chan error, streams)
		for s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perStrm {
					if err := d.PutFragment(StreamID(s+1), benchFragment(i, media)); err != nil {
						errc <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		el := time.Since(t0)
		close(errc)
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		wIngest := procWriteBytes()
		d.settle(b)
		wSettled := procWriteBytes()
		m := d.db.Metrics()
		var pw uint64 = m.WAL.BytesWritten
		for _, l := range m.Levels {
			// Pebble v2.1 sets BlobBytesCompacted for flushes too (equal to
			// BlobBytesFlushed), so BlobBytesCompacted alone counts every
			// blob byte written.
			pw += l.TableBytesFlushed + l.TableBytesCompacted + l.BlobBytesCompacted
		}
		var rw uint64
		for _, l := range m.Levels {
			rw += l.BlobBytesCompacted - l.BlobBytesFlushed
		}
		size := dirSize(dir)
		kinds := sizeByKind(dir)
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
		w1 := procWriteBytes()
		wamp += float64(w1-w0) / total
		pwamp += float64(pw) / total
		rewrite += float64(rw) / total
		diskRatio += float64(size) / total
		mbps += total / 1e6 / el.Seconds()
		run++
		if testing.Verbose() {
			for li, l := range m.Levels {
				b.Logf("L%d tableFlushed %d tableCompacted %d blobFlushed %d blobCompacted %d", li, l.TableBytesFlushed, l.TableBytesCompacted, l.BlobBytesFlushed, l.BlobBytesCompacted)
			}
			b.Logf("files by kind: %v", kinds)
			b.Logf("write_bytes after ingest %d, after settle %d; WAL written %d", wIngest-w0, wSettled-w0, m.WAL.BytesWritten)
			b.Logf("run %d: write_bytes %d, pebble %d, dir %d, media %d in %v\n%s", run, w1-w0, pw, size, total, el, m)
		}
	}
	n := float64(run)
	b.ReportMetric(wamp/n, "wamp")
	b.ReportMetric(pwamp/n, "pebble-wamp")
	b.ReportMetric(rewrite/n, "blob-rewrite")
	b.ReportMetric(diskRatio/n, "disk-ratio")
	b.ReportMetric(mbps/n, "MB/s")
}

// BenchmarkSegmentRoll isolates what a segment roll adds to one
// PutFragment: two stores on the same disk, one stream each, 1 MiB
// segments and 128 KiB fragments (a roll every eighth put), one with its
// next segments prepared in the background (the default) and one rolling
// inline (Options.InlineRolls). One op is one put on each, alternating
// which goes first, 10 ms apart (a camera's fragments are seconds apart;
// the preparation runs in between). A put rolled when the stream's active
// segment changed across it (ActiveSegment).
//
// Metrics per store: {prep,inline}-put-p50-ms and -put-p90-ms (puts
// that did not roll),
// -roll-p50-ms, -roll-p90-ms, -roll-max-ms (puts that rolled), and
// -roll-extra-ms (roll-p50 minus put-p50: what the roll costs the write
// path); prep-prepared-share (of the prepared store's rolls after the
// first, the share that were swaps).
func BenchmarkSegmentRoll(b *testing.B) {
	const fragBytes = 128 << 10
	dir := b.TempDir()
	type store struct {
		name       string
		d          *DB
		id         StreamID
		put, rolls []time.Duration
	}
	var stores []*store
	for _, inline := range []bool{false, true} {
		st := &store{name: "prep"}
		if inline {
			st.name = "inline"
		}
		d, err := Open(Options{Dir: filepath.Join(dir, st.name), Logger: slog.New(slog.DiscardHandler), SegmentBytes: 1 << 20, InlineRolls: inline})
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		st.d = d
		if st.id, err = d.AllocStreamID(); err != nil {
			b.Fatal(err)
		}
		if err := d.PutStream(st.id, []byte(`{"name":"cam"}`)); err != nil {
			b.Fatal(err)
		}
		stores = append(stores, st)
	}
	media := benchMedia(fragBytes)
	i := 0
	for b.Loop() {
		for k := range stores {
			st := stores[(k+i)%len(stores)]
			seg := st.d.ActiveSegment(st.id)
			t0 := time.Now()
			if err := st.d.PutFragment(st.id, benchFragment(i, media)); err != nil {
				b.Fatal(err)
			}
			d := time.Since(t0)
			switch {
			case seg == 0: // the stream's first segment: inline in both
			case seg != st.d.ActiveSegment(st.id):
				st.rolls = append(st.rolls, d)
			default:
				st.put = append(st.put, d)
			}
		}
		i++
		time.Sleep(10 * time.Millisecond)
	}
	for _, st := range stores {
		if len(st.rolls) == 0 || len(st.put) == 0 {
			b.Logf("%s: %d puts, %d rolls: run more ops (-benchtime)", st.name, len(st.put), len(st.rolls))
			continue
		}
		slices.Sort(st.put)
		slices.Sort(st.rolls)
		at := func(s []time.Duration, p float64) time.Duration { return s[min(int(p*float64(len(s))), len(s)-1)] }
		msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(msOf(at(st.put, 0.5)), st.name+"-put-p50-ms")
		b.ReportMetric(msOf(at(st.put, 0.9)), st.name+"-put-p90-ms")
		b.ReportMetric(msOf(at(st.rolls, 0.5)), st.name+"-roll-p50-ms")
		b.ReportMetric(msOf(at(st.rolls, 0.9)), st.name+"-roll-p90-ms")
		b.ReportMetric(msOf(st.rolls[len(st.rolls)-1]), st.name+"-roll-max-ms")
		b.ReportMetric(msOf(at(st.rolls, 0.5)-at(st.put, 0.5)), st.name+"-roll-extra-ms")
		if st.name == "prep" {
			prepared, inline := st.d.SegmentRolls()
			b.ReportMetric(float64(prepared)/float64(max(prepared+inline-1, 1)), "prep-prepared-share")
		}
	}
}

// BenchmarkSyncWindowFlush: 8 streams (KVSEDGE_BENCH_STREAMS) put one
// 500 KB fragment each per 100 ms sync window, as 8 cameras of an SD-card
// profile do; one op is one window. It reports the window's steps
// (StoreStats): the fdatasync of every segment written in the window
// (media-sync-ms), then the one synced index commit (index-commit-ms),
// and fdatasync-ms, one 500 KB write + fdatasync of a plain file on the
// same disk, measured between the windows.
func BenchmarkSyncWindowFlush(b *testing.B) {
	streams := 8
	if n, err := strconv.Atoi(os.Getenv("KVSEDGE_BENCH_STREAMS")); err == nil && n > 0 {
		streams = n
	}
	media := benchMedia(500_000)
	dir := b.TempDir()
	d, err := Open(Options{Dir: filepath.Join(dir, "db"), Logger: slog.New(slog.DiscardHandler), SyncWindow: 100 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	raw, err := os.Create(filepath.Join(dir, "raw"))
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	var rawDur time.Duration
	i := 0
	before := d.Stats()
	for b.Loop() {
		var wg sync.WaitGroup
		errs := make([]error, streams)
		for s := range streams {
			wg.Go(func() { errs[s] = d.PutFragment(StreamID(s+1), benchFragment(i, media)) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		if _, err := raw.WriteAt(media, 0); err != nil {
			b.Fatal(err)
		}
		if err := raw.Sync(); err != nil {
			b.Fatal(err)
		}
		rawDur += time.Since(t0)
		i++
	}
	after := d.Stats()
	b.ReportMetric(after.MediaSync.Since(before.MediaSync).MeanMs(), "media-sync-ms")
	b.ReportMetric(after.IndexCommit.Since(before.IndexCommit).MeanMs(), "index-commit-ms")
	b.ReportMetric(rawDur.Seconds()*1000/float64(i), "fdatasync-ms")
}
