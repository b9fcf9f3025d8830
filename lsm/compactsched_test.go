package lsm

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// fakeCompactionDB is the DB side of a compaction scheduler: an allowance,
// and compactions waiting for a grant.
type fakeCompactionDB struct {
	mu        sync.Mutex
	allowed   int
	waiting   int
	scheduled int
	handles   []pebble.CompactionGrantHandle
	samples   atomic.Int64 // calls of GetAllowedWithoutPermission
}

func (f *fakeCompactionDB) GetAllowedWithoutPermission() int {
	f.samples.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allowed
}

func (f *fakeCompactionDB) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting > 0, pebble.WaitingCompaction{}
}

func (f *fakeCompactionDB) Schedule(h pebble.CompactionGrantHandle) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.waiting == 0 {
		return false
	}
	f.waiting--
	f.scheduled++
	f.handles = append(f.handles, h)
	return true
}

func (f *fakeCompactionDB) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

func (f *fakeCompactionDB) scheduledNow() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.scheduled
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The store's compaction scheduler grants what the DB allows, grants a
// refused compaction once the allowance grows unseen (its clock) or a
// compaction finishes, and samples nothing while no compaction waits: an
// idle box is not woken.
func TestCompactionSchedulerGrantsAndSleeps(t *testing.T) {
	db := &fakeCompactionDB{allowed: 1}
	s := newCompactionScheduler()
	s.Register(1, db)
	unregistered := false
	defer func() {
		if !unregistered {
			s.Unregister()
		}
	}()

	ok, first := s.TrySchedule()
	if !ok || first == nil {
		t.Fatal("a compaction within the allowance was refused")
	}
	db.set(func() { db.waiting = 1 }) // the DB keeps the one refused next
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("a compaction beyond the allowance was granted")
	}
	// The pass the refusal starts finds no room (it samples once more);
	// then the allowance grows with no call to the scheduler (a flush):
	// the clock finds it.
	refused := db.samples.Load()
	waitFor(t, "the refusal's pass", func() bool { return db.samples.Load() > refused })
	db.set(func() { db.allowed = 2 })
	waitFor(t, "the waiting compaction granted after the allowance grew", func() bool { return db.scheduledNow() == 1 })

	// Full again; one more waits; the first finishing makes room at once.
	db.set(func() { db.waiting = 1 })
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("a third compaction granted with an allowance of two")
	}
	first.Done()
	waitFor(t, "the waiting compaction granted when one finished", func() bool { return db.scheduledNow() == 2 })

	// Nothing waits: once a pass has seen that, the scheduler samples no
	// more (Pebble's default samples ten times a second).
	for _, h := range db.handles {
		h.Done()
	}
	waitFor(t, "the scheduler seeing nothing waits", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.waiting && s.running == 0
	})
	time.Sleep(2 * compactionSamplePeriod) // a pass poked by the last Done may still run
	before := db.samples.Load()
	time.Sleep(5 * compactionSamplePeriod)
	if n := db.samples.Load() - before; n != 0 {
		t.Fatalf("sampled the allowance %d times in %v with nothing waiting", n, 5*compactionSamplePeriod)
	}

	s.Unregister()
	unregistered = true
	select {
	case <-s.done:
	default:
		t.Fatal("Unregister returned with the scheduler's goroutine running")
	}
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("granted after Unregister")
	}
}

// With the store's scheduler, Pebble still compacts: L0 files from
// flushes are compacted away.
func TestStoreCompactsWithItsScheduler(t *testing.T) {
	opts := memOpts(vfs.NewMem())
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	val := make([]byte, 4096)
	for f := range 6 { // more flushed L0 files than L0's compaction threshold
		b := d.db.NewBatch()
		for i := range 64 {
			if err := b.Set(fmt.Appendf(nil, "\xfftest-%02d-%04d", i, f), val, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := d.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "a compaction of the flushed files", func() bool { return d.db.Metrics().Compact.Count > 0 })
}

// failingTempFS fails the creation of Pebble's temporary files, which
// pebble.Open makes after it registered its compaction scheduler.
type failingTempFS struct{ vfs.FS }

func (f failingTempFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	if strings.HasSuffix(name, ".dbtmp") {
		return nil, errors.New("injected: no temporary files")
	}
	return f.FS.Create(name, cat)
}

// An Open that fails after Pebble registered the scheduler stops it (the
// review found its goroutine left running); Unregister without Register,
// or twice, returns at once.
func TestFailedOpenStopsTheScheduler(t *testing.T) {
	var scheds []*compactionScheduler
	testSchedulerHook = func(s *compactionScheduler) { scheds = append(scheds, s) }
	defer func() { testSchedulerHook = nil }()
	if d, err := Open(memOpts(failingTempFS{vfs.NewMem()})); err == nil {
		d.Close()
		t.Fatal("Open succeeded without temporary files")
	}
	if len(scheds) != 1 {
		t.Fatalf("%d schedulers made", len(scheds))
	}
	s := scheds[0]
	s.mu.Lock()
	registered := s.registered
	s.mu.Unlock()
	if !registered {
		t.Skip("this Pebble fails before registering the scheduler: nothing to stop")
	}
	select {
	case <-s.done:
	default:
		t.Fatal("the scheduler of a failed Open still runs")
	}
	s.Unregister() // again: returns

	never := newCompactionScheduler()
	returned := make(chan struct{})
	go func() { never.Unregister(); never.Unregister(); close(returned) }()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Unregister without Register blocked")
	}
	if ok, _ := never.TrySchedule(); ok {
		t.Fatal("an unregistered scheduler granted")
	}
}
