package lsm

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// compactionScheduler is Pebble's compaction scheduler for the store
// (pebble.Options.Experimental.CompactionScheduler): it grants as many
// compactions as the DB allows without permission, as Pebble's default
// (ConcurrencyLimitScheduler) does, but samples that allowance on a clock
// only while a compaction may be waiting for a grant.
//
// Why not the default: it samples every 100 ms for the life of the DB,
// busy or idle, and those ten wakes a second were nearly all an idle
// box's CPU: 2.6 ms per second against 0.09 with this scheduler (the
// threads' schedstat over 20 s, the 2-core development VM; a Pi Zero
// pays more for each wake; BenchmarkApplianceProfiles reports the idle
// figure). Pebble needs the sampling because it does not ask again while
// a compaction it picked waits (DB.maybeScheduleCompaction is damped
// then), and flushes can raise the allowance unseen. Both need a
// compaction waiting: one that TrySchedule refused. So the clock runs from a refusal until a
// grant pass finds nothing waiting; a finished compaction (Done) and
// UpdateGetAllowedWithoutPermission trigger a pass at once.
//
// Lock order: Pebble calls TrySchedule and UpdateGetAllowedWithoutPermission
// with its own mutexes held, and they must not call back into the DB
// (GetWaitingCompaction, Schedule take them); so those passes run on the
// scheduler's goroutine, which holds no lock of ours while it calls the
// DB. TrySchedule calls GetAllowedWithoutPermission, which Pebble allows.
type compactionScheduler struct {
	db pebble.DBForCompaction

	mu         sync.Mutex
	registered bool // Register ran (the goroutine was started)
	running    int  // compactions granted and not Done
	// waiting: TrySchedule refused a compaction since a pass last found
	// none waiting; refusals counts the refusals, so that a pass clears
	// waiting only if none came while it asked the DB.
	waiting      bool
	refusals     uint64
	unregistered bool

	poke chan struct{} // a pass now (buffered, one pending at most)
	stop chan struct{}
	done chan struct{} // closed when the goroutine has returned
}

// compactionSamplePeriod is how often the allowance is sampled while a
// compaction waits (Pebble's default samples at this period always).
const compactionSamplePeriod = 100 * time.Millisecond

// testSchedulerHook, set by tests, sees each scheduler Open makes.
var testSchedulerHook func(*compactionScheduler)

func newCompactionScheduler() *compactionScheduler {
	return &compactionScheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

var (
	_ pebble.CompactionScheduler   = (*compactionScheduler)(nil)
	_ pebble.CompactionGrantHandle = (*compactionScheduler)(nil)
)

// Register starts the scheduler for db (once, as Pebble opens).
func (s *compactionScheduler) Register(_ int, db pebble.DBForCompaction) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unregistered {
		return
	}
	s.db, s.registered = db, true
	go s.run()
}

// Unregister stops the scheduler and returns once it makes no more calls
// to the DB. Pebble calls it as the DB closes; lsm.Open also calls it
// when pebble.Open fails, which may come after Register (and then nothing
// else would stop the goroutine) or before it: a second call, or one
// without Register, returns at once.
func (s *compactionScheduler) Unregister() {
	s.mu.Lock()
	first, registered := !s.unregistered, s.registered
	s.unregistered = true
	s.mu.Unlock()
	if !first || !registered {
		return
	}
	close(s.stop)
	<-s.done
}

// TrySchedule grants a compaction if the DB's allowance has room.
func (s *compactionScheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unregistered {
		return false, nil
	}
	if s.db.GetAllowedWithoutPermission() > s.running {
		s.running++
		return true, s
	}
	s.waiting = true // the DB keeps it and waits for a grant
	s.refusals++
	s.pokeLocked() // the pass starts the clock
	return false, nil
}

// UpdateGetAllowedWithoutPermission: the allowance may have grown.
func (s *compactionScheduler) UpdateGetAllowedWithoutPermission() {
	s.mu.Lock()
	s.pokeLocked()
	s.mu.Unlock()
}

// Started, MeasureCPU and CumulativeStats: the grant handle's reports,
// which this scheduler does not use.
func (s *compactionScheduler) Started()                                          {}
func (s *compactionScheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *compactionScheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done: a granted compaction finished; its slot may go to a waiting one.
func (s *compactionScheduler) Done() {
	s.mu.Lock()
	s.running--
	s.pokeLocked()
	s.mu.Unlock()
}

func (s *compactionScheduler) pokeLocked() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// run makes grant passes when poked, and on the sampling clock while a
// compaction may wait.
func (s *compactionScheduler) run() {
	defer close(s.done)
	clock := time.NewTimer(compactionSamplePeriod)
	clock.Stop()
	defer clock.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.poke:
		case <-clock.C:
		}
		if s.grant() {
			clock.Reset(compactionSamplePeriod)
		} else {
			clock.Stop()
		}
	}
}

// grant schedules waiting compactions while the allowance has room, and
// reports whether one may still wait (the clock must go on).
func (s *compactionScheduler) grant() (mayWait bool) {
	for {
		s.mu.Lock()
		if s.unregistered {
			s.mu.Unlock()
			return false
		}
		room := s.db.GetAllowedWithoutPermission() > s.running
		waiting, refusals := s.waiting, s.refusals
		s.mu.Unlock()
		if !room {
			return waiting
		}
		if w, _ := s.db.GetWaitingCompaction(); !w {
			s.mu.Lock()
			if s.refusals == refusals {
				s.waiting = false
			}
			waiting = s.waiting
			s.mu.Unlock()
			return waiting
		}
		s.mu.Lock()
		s.running++ // before Schedule: the compaction may be Done at once
		s.mu.Unlock()
		if !s.db.Schedule(s) {
			s.mu.Lock()
			s.running--
			s.mu.Unlock()
			return true // refused now; sample again
		}
	}
}
