package lsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestReplayStress stores one stream from two writers at once, a
// pipelined camera (PutFragmentsAsync, each run chained to the one before)
// and a replica (PutFragment under its own numbers, now and then a partial
// copy followed by the whole fragment that replaces it), in small
// segments, with the checkpointer running every few milliseconds,
// retention now and then, a sync window in some seeds and injected
// segment sync failures in others (a failed put is re-sent under a new
// number, as producers and the engine do). At random points of progress
// it takes crash images (keeping a random share of what was not synced),
// and checks each after reopening it:
//
//   - every fragment acknowledged before the image (PutFragment returned
//     nil, or a PendingPut's Wait did) is present, byte for byte, unless
//     retention may have deleted it;
//   - every fragment present is the one written under its number;
//   - no fragment whose put had returned an error is present (its record
//     was voided before the error returned; its re-send is), and no
//     partial copy whose replacing fragment was acknowledged;
//   - no fragment retention deleted (acknowledged before DeleteBefore
//     began) is back if its record lies before the image's durable
//     checkpoint, or before the checkpoint DeleteBefore had to write
//     when it deleted something (a fragment after a put then in flight
//     may come back: FORMAT.md, "Retention");
//   - Check finds no problem; writing goes on; a clean Close after it
//     leaves nothing to replay.
//
// Seeds: 6; KVSEDGE_REPLAY_STRESS_SEEDS=n runs n.
func TestReplayStress(t *testing.T) {
	seeds := 6
	if s := os.Getenv("KVSEDGE_REPLAY_STRESS_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("KVSEDGE_REPLAY_STRESS_SEEDS=%q: want a positive count", s)
		}
		seeds = n
	}
	for seed := 1; seed <= seeds; seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { replayStress(t, uint64(seed), (*replayStressRun).verify) })
	}
}

const (
	stressCamera = iota
	stressReplica
)

// Outcomes of a stress put.
const (
	stressPending = iota
	stressAcked
	stressFailed
)

type stressFrag struct {
	w      FragmentWrite // Header dropped
	writer int
	state  int
	ev     uint64 // the event of its outcome
	// replacedEv: the event at which a put that replaced it was
	// acknowledged (0: none).
	replacedEv uint64
}

type stressRetention struct {
	cutoff  int64
	startEv uint64     // events before this one were resolved before it began
	cp      segmentRef // the stream's replay checkpoint just before it began
	cpOK    bool
}

type stressImage struct {
	fs        *vfs.MemFS
	ev        uint64
	frags     map[fragment.Number]stressFrag
	retention []stressRetention
}

type replayStressRun struct {
	t      *testing.T
	seed   uint64
	d      *DB
	window time.Duration
	clock  atomic.Int64 // server and producer times
	stop   atomic.Bool

	mu        sync.Mutex
	ev        uint64
	frags     map[fragment.Number]*stressFrag
	resolved  int
	hdrStored [2]bool
	retention []stressRetention
}

var stressHeaders = [2][]byte{[]byte("camera session header"), []byte("replica session header")}

func (s *replayStressRun) opts(fs vfs.FS) Options {
	return Options{Dir: "/data", FS: fs, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20,
		SegmentBytes: 1 << 20, IndexSyncInterval: 3 * time.Millisecond, SyncWindow: s.window}
}

// write makes a fragment of writer with media media (a copy is kept).
func (s *replayStressRun) write(writer int, num fragment.Number, producerMs int64, media []byte) FragmentWrite {
	meta := fragment.Meta{Number: num, ProducerMs: producerMs, ServerMs: s.clock.Add(10), DurationMs: 1000,
		HeaderID: uint64(7 + writer), ClusterLen: uint32(len(media)), MediaLen: uint32(len(media)), Frames: 25}
	binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(media))
	return FragmentWrite{Meta: meta, Media: media}
}

// media is a fragment's content: tens of KB, unique.
func stressMedia(rng *rand.Rand, writer int, n int) []byte {
	b := make([]byte, 20_000+rng.IntN(60_000))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	b[0], b[1] = byte(writer), byte(n)
	return b
}

// started notes the writes of a put about to begin, with the writer's
// session header while none of its puts succeeded.
func (s *replayStressRun) started(writer int, ws []FragmentWrite) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ws {
		ws[i].Header = nil
		if !s.hdrStored[writer] {
			ws[i].Header = stressHeaders[writer]
		}
		w := ws[i]
		w.Header = nil
		s.frags[w.Meta.Number] = &stressFrag{w: w, writer: writer}
	}
}

// resolve notes a put's outcome and returns its writes to send again
// (under new numbers) when it failed.
func (s *replayStressRun) resolve(writer int, ws []FragmentWrite, err error) []FragmentWrite {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev++
	s.resolved += len(ws)
	var again []FragmentWrite
	for i := range ws {
		f := s.frags[ws[i].Meta.Number]
		f.ev = s.ev
		if err != nil {
			f.state = stressFailed
			again = append(again, ws[i])
			continue
		}
		f.state = stressAcked
		s.hdrStored[writer] = true
		for _, r := range ws[i].Replaces {
			if p := s.frags[r.Number]; p != nil && p.replacedEv == 0 {
				p.replacedEv = s.ev
			}
		}
	}
	if err != nil && !errors.Is(err, errorfs.ErrInjected) {
		s.t.Errorf("a put failed otherwise than by an injected sync failure: %v", err)
	}
	return again
}

// camera writes runs of 1-3 fragments with PutFragmentsAsync, each
// chained to the one in flight, acknowledging a run when its Wait
// returns nil; a failed run (and the one chained to it) is sent again
// under new numbers in a new chain.
func (s *replayStressRun) camera(quota int) {
	rng := rand.New(rand.NewPCG(s.seed, 1))
	term := 1000 + s.seed
	var seq uint32
	var again []FragmentWrite
	var prev *PendingPut
	var prevWs []FragmentWrite
	for n := 0; n < quota && !s.stop.Load(); {
		k := 1 + rng.IntN(3)
		ws := make([]FragmentWrite, 0, k)
		for range k {
			num := fragment.MakeNumber(term, 1, seq)
			seq++
			if len(again) > 0 {
				w := s.write(stressCamera, num, again[0].Meta.ProducerMs, again[0].Media)
				again = again[1:]
				ws = append(ws, w)
				continue
			}
			ws = append(ws, s.write(stressCamera, num, s.clock.Load(), stressMedia(rng, stressCamera, n)))
			n++
		}
		s.started(stressCamera, ws)
		p, err := s.d.PutFragmentsAsync(1, ws, prev)
		if err != nil {
			again = append(again, s.resolve(stressCamera, ws, err)...)
			if prev != nil {
				again = append(again, s.resolve(stressCamera, prevWs, prev.Wait())...)
				prev = nil
			}
			continue
		}
		if prev != nil {
			err := prev.Wait()
			again = append(again, s.resolve(stressCamera, prevWs, err)...)
			if err != nil {
				// Chained to a failed run: it fails too.
				again = append(again, s.resolve(stressCamera, ws, p.Wait())...)
				prev = nil
				continue
			}
		}
		prev, prevWs = p, ws
	}
	if prev != nil {
		s.resolve(stressCamera, prevWs, prev.Wait())
	}
}

// replica stores fragments one by one under its own numbers; now and
// then a partial copy, then (once it is stored) the whole fragment
// replacing it. A failed put is sent again under a new number.
func (s *replayStressRun) replica(quota int) {
	rng := rand.New(rand.NewPCG(s.seed, 2))
	term := 2000 + s.seed
	var seq uint32
	var queue []FragmentWrite
	for n := 0; n < quota && !s.stop.Load(); n++ {
		num := fragment.MakeNumber(term, 2, seq)
		seq++
		var w, whole FragmentWrite
		switch {
		case len(queue) > 0:
			w = s.write(stressReplica, num, queue[0].Meta.ProducerMs, queue[0].Media)
			w.Replaces = queue[0].Replaces
			queue = queue[1:]
		case rng.IntN(6) == 0:
			full := stressMedia(rng, stressReplica, n)
			w = s.write(stressReplica, num, s.clock.Load(), full[:len(full)/2])
			whole = FragmentWrite{Meta: fragment.Meta{ProducerMs: w.Meta.ProducerMs}, Media: full}
		default:
			w = s.write(stressReplica, num, s.clock.Load(), stressMedia(rng, stressReplica, n))
		}
		ws := []FragmentWrite{w}
		s.started(stressReplica, ws)
		err := s.d.PutFragment(1, &ws[0])
		queue = append(queue, s.resolve(stressReplica, ws, err)...)
		if err == nil && whole.Media != nil {
			whole.Replaces = []fragment.Meta{w.Meta}
			queue = append(queue, whole)
		}
	}
}

// retain runs retention at cutoff, noting what it certainly deleted and
// the checkpoint it wrote.
func (s *replayStressRun) retain(cutoff int64) {
	ss := s.d.segs.stream(1)
	s.mu.Lock()
	r := stressRetention{cutoff: cutoff, startEv: s.ev + 1}
	s.mu.Unlock()
	ss.mu.Lock()
	r.cp, r.cpOK = ss.replayFrom()
	ss.mu.Unlock()
	n, _, err := s.d.DeleteBefore(1, cutoff)
	if err != nil {
		s.t.Fatalf("retention: %v", err)
	}
	// A run that deleted nothing writes no checkpoint: what lies before
	// its cutoff went in an earlier run, and a fragment that one deleted
	// after a put then in flight may come back, though it lies before
	// this run's r.cp (it failed this test so, once in ~1500 seeds, until
	// the second run at the same cutoff made it common).
	r.cpOK = r.cpOK && n > 0
	s.mu.Lock()
	s.retention = append(s.retention, r)
	s.mu.Unlock()
}

func replayStress(t *testing.T, seed uint64, verify func(*replayStressRun, *testing.T, int, stressImage)) {
	s := &replayStressRun{t: t, seed: seed, frags: map[fragment.Number]*stressFrag{}}
	inject := seed%3 != 0
	if seed%2 == 0 {
		s.window = 2 * time.Millisecond
	}
	live := vfs.NewCrashableMem()
	var failing atomic.Bool
	failing.Store(inject)
	failRng := rand.New(rand.NewPCG(seed, 3))
	var failMu sync.Mutex
	fs := errorfs.Wrap(live, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !failing.Load() || op.Kind != errorfs.OpFileSyncData || !strings.HasSuffix(op.Path, segmentSuffix) {
			return nil
		}
		failMu.Lock()
		defer failMu.Unlock()
		if failRng.IntN(15) == 0 {
			return errorfs.ErrInjected
		}
		return nil
	}))
	d, err := Open(s.opts(fs))
	if err != nil {
		t.Fatal(err)
	}
	s.d = d
	if err := d.PutStream(1, []byte{1}); err != nil {
		t.Fatal(err)
	}
	s.clock.Store(1_000_000)

	const camQuota, repQuota = 90, 60
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.camera(camQuota) }()
	go func() { defer wg.Done(); s.replica(repQuota) }()
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	rng := rand.New(rand.NewPCG(seed, 4))
	const images = 4
	var imgs []stressImage
	for i := range images {
		// A random point of progress (fragments resolved).
		target := (i*(camQuota+repQuota))/images + 1 + rng.IntN((camQuota+repQuota)/images)
		for {
			s.mu.Lock()
			r := s.resolved
			s.mu.Unlock()
			done := false
			select {
			case <-writersDone:
				done = true
			default:
			}
			if r >= target || done {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
		if rng.IntN(2) == 0 {
			// Retention: the fragments older than a random point of the
			// last few dozen; in some images run again at the same cutoff
			// after a pause of up to 2 ms, when it deletes nothing new
			// (or what arrived late: a replica's re-send).
			cutoff := s.clock.Load() - int64(10*rng.IntN(40))
			s.retain(cutoff)
			if rng.IntN(2) == 0 {
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
				s.retain(cutoff)
			}
		}
		// Outcomes before the image, then the image, then every put
		// begun by then (one begun after the outcomes were read may be
		// in the image, and replace a partial copy there).
		s.mu.Lock()
		img := stressImage{ev: s.ev, frags: make(map[fragment.Number]stressFrag, len(s.frags)), retention: append([]stressRetention(nil), s.retention...)}
		for n, f := range s.frags {
			img.frags[n] = *f
		}
		s.mu.Unlock()
		img.fs = live.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: rng.IntN(100), RNG: rng})
		s.mu.Lock()
		for n, f := range s.frags {
			if _, ok := img.frags[n]; !ok {
				img.frags[n] = stressFrag{w: f.w, writer: f.writer} // in flight at the image
			}
		}
		s.mu.Unlock()
		imgs = append(imgs, img)
	}
	s.stop.Store(true)
	<-writersDone
	failing.Store(false)
	if err := d.Close(); err != nil {
		t.Fatalf("closing the live store: %v", err)
	}
	s.mu.Lock()
	var acked, failed int
	for _, f := range s.frags {
		switch f.state {
		case stressAcked:
			acked++
		case stressFailed:
			failed++
		}
	}
	s.mu.Unlock()
	t.Logf("window %v, injected failures %v: %d fragments acknowledged, %d failed, %d retention runs, %d images",
		s.window, inject, acked, failed, len(s.retention), len(imgs))
	for i, img := range imgs {
		verify(s, t, i, img)
	}
}

// verify reopens a crash image and checks it (TestReplayStress).
func (s *replayStressRun) verify(t *testing.T, i int, img stressImage) {
	t.Helper()
	// The image's durable checkpoint, before Open's replay moves it.
	ro := s.opts(img.fs)
	ro.ReadOnly = true
	rd, err := Open(ro)
	if err != nil {
		t.Fatalf("image %d: read-only open: %v", i, err)
	}
	cpImg, cpImgOK, err := rd.checkpoint(1)
	if err != nil {
		t.Fatalf("image %d: reading its checkpoint: %v", i, err)
	}
	_ = rd.Close()

	d, err := Open(s.opts(img.fs))
	if err != nil {
		t.Fatalf("image %d: open: %v", i, err)
	}
	cutoffMax := int64(-1 << 63)
	for _, r := range img.retention {
		cutoffMax = max(cutoffMax, r.cutoff)
	}
	// Partial copies a put begun before the image replaces, unless that
	// put had failed: its replay may delete them.
	mayBeReplaced := map[fragment.Number]bool{}
	for _, f := range img.frags {
		if f.state != stressFailed {
			for _, r := range f.w.Replaces {
				mayBeReplaced[r.Number] = true
			}
		}
	}
	present := 0
	for num, f := range img.frags {
		_, media, err := d.Fragment(1, num, nil)
		if errors.Is(err, ErrNotFound) {
			if f.state == stressAcked && !mayBeReplaced[num] && f.w.Meta.ServerMs >= cutoffMax {
				t.Errorf("image %d: acknowledged fragment %s (writer %d) is missing (replayed %+v)", i, num, f.writer, d.Replayed())
			}
			continue
		}
		if err != nil {
			t.Errorf("image %d: fragment %s: %v", i, num, err)
			continue
		}
		present++
		v, closer, err := d.db.Get(fragmentKey(nil, 1, num))
		if err != nil {
			t.Fatalf("image %d: fragment %s: %v", i, num, err)
		}
		m, ref, err := decodeFragment(fragmentKey(nil, 1, num), v)
		closer.Close()
		if err != nil || m != f.w.Meta || !bytes.Equal(media, f.w.Media) {
			t.Errorf("image %d: fragment %s differs from what was written (%v)", i, num, err)
		}
		switch {
		case f.state == stressFailed:
			t.Errorf("image %d: fragment %s (writer %d), whose put returned an error before the image, is present (replayed %+v)", i, num, f.writer, d.Replayed())
		case f.replacedEv != 0:
			t.Errorf("image %d: partial copy %s, replaced by an acknowledged fragment before the image, is present", i, num)
		}
		for _, r := range img.retention {
			if f.state != stressAcked || f.ev >= r.startEv || f.w.Meta.ServerMs >= r.cutoff {
				continue // not certainly deleted by r
			}
			if cpImgOK && ref.before(cpImg) {
				t.Errorf("image %d: fragment %s, deleted by retention, is back though its record lies before the durable checkpoint %+v", i, num, cpImg)
			}
			if r.cpOK && ref.before(r.cp) {
				t.Errorf("image %d: fragment %s, deleted by retention, is back though its record lies before the checkpoint %+v retention wrote (durable %+v)", i, num, r.cp, cpImg)
			}
		}
	}
	rep, err := d.Check()
	if err != nil {
		t.Fatalf("image %d: check: %v", i, err)
	}
	for _, p := range rep.Problems {
		t.Errorf("image %d: check: stream %d fragment %s: %s", i, p.Stream, p.Number, p.What)
	}
	// Writing goes on: one fragment alone, then a pipelined pair.
	rng := rand.New(rand.NewPCG(s.seed, 100+uint64(i)))
	w := s.write(stressCamera, fragment.MakeNumber(9000, 1, 0), s.clock.Load(), stressMedia(rng, stressCamera, 0))
	w.Header = stressHeaders[stressCamera]
	if err := d.PutFragment(1, &w); err != nil {
		t.Fatalf("image %d: writing after the restart: %v", i, err)
	}
	ws := []FragmentWrite{
		s.write(stressCamera, fragment.MakeNumber(9000, 1, 1), s.clock.Load(), stressMedia(rng, stressCamera, 1)),
		s.write(stressCamera, fragment.MakeNumber(9000, 1, 2), s.clock.Load(), stressMedia(rng, stressCamera, 2)),
	}
	p1, err := d.PutFragmentsAsync(1, ws[:1], nil)
	if err != nil {
		t.Fatalf("image %d: %v", i, err)
	}
	p2, err := d.PutFragmentsAsync(1, ws[1:], p1)
	if err != nil {
		t.Fatalf("image %d: %v", i, err)
	}
	if err := errors.Join(p1.Wait(), p2.Wait()); err != nil {
		t.Fatalf("image %d: pipelined writing after the restart: %v", i, err)
	}
	for _, w := range append(ws, w) {
		if _, b, err := d.Fragment(1, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
			t.Fatalf("image %d: fragment %s written after the restart: %v", i, w.Meta.Number, err)
		}
	}
	t.Logf("image %d: %d of %d fragments present, replayed %+v, durable checkpoint %+v", i, present, len(img.frags), d.Replayed(), cpImg)
	if err := d.Close(); err != nil {
		t.Fatalf("image %d: close: %v", i, err)
	}
	// A clean Close leaves nothing to replay.
	d, err = Open(s.opts(img.fs))
	if err != nil {
		t.Fatalf("image %d: reopening after a clean close: %v", i, err)
	}
	if r := d.Replayed(); r != (ReplayReport{}) {
		t.Errorf("image %d: Open after a clean close replayed %+v", i, r)
	}
	if _, b, err := d.Fragment(1, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
		t.Errorf("image %d: fragment written after the restart, after a clean close: %v", i, err)
	}
	_ = d.Close()
}
