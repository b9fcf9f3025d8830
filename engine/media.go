package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/kvsedge/kvsedge/engine/mkv"
)

// MediaMemory is the box-wide media allocator and its budget: every media
// byte the engine holds lives in one of its buffers, and every buffer is
// counted against one budget.
//
// Memory. On Linux (media_linux.go) a buffer is an anonymous private
// mapping (mmap), outside the Go heap: the garbage collector neither scans
// it nor counts it, so GOMEMLIMIT's headroom never doubles media, and the
// process's resident memory is the live media plus a small constant.
// Buffers up to 8 MiB come in size classes four to a doubling (64 KiB,
// 80 KiB, 96 KiB, 112 KiB, 128 KiB, …), so a fragment wastes at most a
// quarter of its buffer; a freed one is cached for reuse (steady-state
// ingest maps nothing and allocates nothing on the Go heap), up to
// cacheMax (a full cache unmaps its least recently freed buffers first),
// and cached buffers idle for idleRelease are unmapped. Every buffer is
// a mapping of its own, so one that must grow (a fragment bigger than
// its buffer) is grown in place or moved by mremap, to its new size class
// or beyond: its bytes are never copied. Larger buffers are cut to their
// content when the fragment is complete (Seal), and unmapped the moment
// they are freed: memory goes back to the system after a spike.
// Elsewhere (media_other.go) buffers are Go slices with the same
// accounting, and growing one copies it.
//
// Budget. Used bytes are buffer capacities (what is mapped); cached
// buffers are also within the budget (they are unmapped first when a new
// mapping needs the room). Each class of holder may fill the budget up to
// its own limit, so what cannot be re-sent is refused last:
//
//	MediaUpload  PutMedia, replicas     budget − 2×reserve  (the sender re-sends)
//	MediaCamera  cameras                budget − reserve    (what is refused is lost)
//	MediaRead    archive reads          budget
//
// with reserve = budget/8. A request the limit has no room for sheds
// first: the hot rings give back settled fragments beyond their minimum,
// the biggest ring first (Engine.shedRings), then settled fragments down
// to none. If that is not enough, the oldest fragment still arriving may
// wait up to growWait for room (so one upload always progresses while the
// others are refused, instead of all of them growing and all failing),
// and a new upload fragment may wait as long for room, queued behind the
// oldest; every other request is refused with ErrMemoryFull, counted and
// logged.
// A fragment being persisted is never dropped: its buffer is held by the
// persister until the store has it.
//
// Ownership. A buffer has one owner at a time until it is complete: the
// PutMedia reader or a camera's fragment builder while it is assembled
// (growing through Grow), then the Fragment that Receive builds around it,
// whose references (ring, persister, readers: Fragment.Retain/Release)
// share it read-only; the last Release frees it. A buffer dropped before
// Receive (a refused or broken fragment) is freed by whoever holds it
// (mkv.Reader.Close, Fragmenter, FreeMedia). Nothing may touch a buffer
// after it was freed: with Debug (tests) a freed buffer is never reused
// but made inaccessible (PROT_NONE), and a complete one read-only, so a
// use after free or a write after Seal faults at once.
//
// Locks: mu is a leaf below ring.mu (a ring's Release frees under it);
// the shedding callback runs with mu released.
type MediaMemory struct {
	budget   int64
	reserve  int64
	cacheMax int64
	growWait time.Duration
	debug    bool
	log      *slog.Logger
	// shed, set by the engine, evicts ring fragments to free need bytes
	// (hard: down to none) and reports what it released. Called without
	// mu.
	shed func(need int64, hard bool) int64

	mu struct {
		sync.Mutex
		// spans maps every mapping's base to its span, free or not.
		spans map[unsafe.Pointer]*span
		// free are cached spans by size class, oldest first.
		free [][]*span
		// spare are span descriptors of released mappings, for reuse.
		spare []*span
		// assembling lists spans of fragments still arriving, oldest
		// first.
		assembling spanList
		// quarantine (Debug): freed spans, inaccessible, oldest first.
		quarantine      []*span
		quarantineBytes int64
		used            [mediaClassCount]int64
		usedTotal       int64
		assemblingBytes int64
		cached          int64
		lastTrim        int64
		// wake is closed (and replaced) when memory is freed while
		// someone waits for room; starving counts the oldest assembly
		// waiting to grow (new upload fragments queue behind it).
		wake     chan struct{}
		waiters  int
		starving int
	}
	refusals    [mediaClassCount]atomic.Uint64
	shedBytes   atomic.Uint64
	lastRefusal atomic.Int64 // unix ns
	lastLog     atomic.Int64 // unix ns of the last refusal logged
}

// MediaClass says who holds media memory; it sets how much of the budget
// a request may fill.
type MediaClass uint8

// Holder classes, from the first refused to the last.
const (
	// MediaUpload: PutMedia uploads and replicas from peers; what is
	// refused, the sender re-sends.
	MediaUpload MediaClass = iota
	// MediaCamera: cameras; what is refused is lost.
	MediaCamera
	// MediaRead: fragments read back from the archive.
	MediaRead
	mediaClassCount
)

func (c MediaClass) String() string {
	switch c {
	case MediaUpload:
		return "upload"
	case MediaCamera:
		return "camera"
	case MediaRead:
		return "read"
	}
	return fmt.Sprintf("class%d", c)
}

// MediaClasses lists the holder classes (for metrics).
var MediaClasses = []MediaClass{MediaUpload, MediaCamera, MediaRead}

// ErrMemoryFull: the media memory budget has no room for the request; new
// media is refused (PutMedia: a retriable ERROR ack, the producer re-sends
// the fragment; a camera drops it).
var ErrMemoryFull = errors.New("engine: media memory budget full: new media is refused")

// MediaOptions configures the media memory.
type MediaOptions struct {
	// BudgetBytes bounds the media the engine holds: fragments arriving
	// (PutMedia, cameras, replicas), in the hot rings, waiting to be
	// stored, and read back for readers. Default 256 MiB.
	BudgetBytes int64
	// GrowWait is how long the oldest fragment still arriving may wait
	// for room before it too is refused. Default 5 s.
	GrowWait time.Duration
	// Debug never reuses a freed buffer: it is made inaccessible, and a
	// complete one read-only, so a use after free faults at once (tests;
	// also KVSEDGE_MEDIA_DEBUG=1). Linux only.
	Debug bool
}

// span is one buffer: a mapping (or, off Linux, a Go slice).
type span struct {
	base  unsafe.Pointer
	size  int
	class int // size class; -1: a mapping of its own (large)
	state spanState
	owner MediaClass
	// born orders assemblies (unix ns of the assembly's first buffer);
	// idle is when a cached span was freed.
	born, idle int64
	prev, next *span // the assembling list
}

type spanState uint8

const (
	spanCached spanState = iota
	spanAssembling
	spanComplete
	spanQuarantined
)

// spanList is an intrusive doubly linked list (no allocation).
type spanList struct{ head, tail *span }

func (l *spanList) push(s *span) {
	s.prev, s.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = s
	} else {
		l.head = s
	}
	l.tail = s
}

func (l *spanList) remove(s *span) {
	if s.prev != nil {
		s.prev.next = s.next
	} else if l.head == s {
		l.head = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else if l.tail == s {
		l.tail = s.prev
	}
	s.prev, s.next = nil, nil
}

// insertOrdered puts s (whose born is set) in born order.
func (l *spanList) insertOrdered(s *span) {
	at := l.tail
	for at != nil && at.born > s.born {
		at = at.prev
	}
	if at == nil {
		s.prev, s.next = nil, l.head
		if l.head != nil {
			l.head.prev = s
		} else {
			l.tail = s
		}
		l.head = s
		return
	}
	s.prev, s.next = at, at.next
	if at.next != nil {
		at.next.prev = s
	} else {
		l.tail = s
	}
	at.next = s
}

var (
	pageSize = os.Getpagesize()
	// sizeClasses are the cached buffer sizes: 64 KiB to 8 MiB, four
	// steps per doubling, page multiples.
	sizeClasses = func() []int {
		var out []int
		for p := 64 << 10; p <= maxClassSize; p <<= 1 {
			for q := 0; q < 4 && (q == 0 || p < maxClassSize); q++ {
				s := roundUp(p+p*q/4, pageSize)
				if len(out) == 0 || s > out[len(out)-1] {
					out = append(out, s)
				}
			}
		}
		return out
	}()
)

const (
	maxClassSize = 8 << 20
	// idleRelease unmaps cached buffers nobody reused for this long.
	idleRelease = 30 * time.Second
)

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// sizeFor is the capacity a request of n bytes gets and its size class
// (-1: a mapping of its own).
func sizeFor(n int) (int, int) {
	if n <= sizeClasses[len(sizeClasses)-1] {
		lo, hi := 0, len(sizeClasses)-1
		for lo < hi {
			mid := (lo + hi) / 2
			if sizeClasses[mid] >= n {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		return sizeClasses[lo], lo
	}
	return roundUp(n, pageSize), -1
}

func newMediaMemory(o MediaOptions, log *slog.Logger) *MediaMemory {
	if o.BudgetBytes <= 0 {
		o.BudgetBytes = 256 << 20
	}
	if o.GrowWait <= 0 {
		o.GrowWait = 5 * time.Second
	}
	if os.Getenv("KVSEDGE_MEDIA_DEBUG") == "1" {
		o.Debug = true
	}
	m := &MediaMemory{budget: o.BudgetBytes, reserve: o.BudgetBytes / 8, growWait: o.GrowWait, debug: o.Debug && canGuard, log: log}
	m.cacheMax = min(max(o.BudgetBytes/16, 4<<20), o.BudgetBytes)
	m.mu.spans = make(map[unsafe.Pointer]*span)
	m.mu.free = make([][]*span, len(sizeClasses))
	return m
}

// limit is how much of the budget class c may fill.
func (m *MediaMemory) limit(c MediaClass) int64 {
	switch c {
	case MediaUpload:
		return m.budget - 2*m.reserve
	case MediaCamera:
		return m.budget - m.reserve
	}
	return m.budget
}

// Budget is the budget in bytes.
func (m *MediaMemory) Budget() int64 { return m.budget }

// Alloc returns an empty buffer with room for at least n bytes, counted
// against c's share of the budget, or ErrMemoryFull. Free it, or hand it
// to the engine (Receive, ImportFragment), which frees it.
func (m *MediaMemory) Alloc(n int, c MediaClass) ([]byte, error) {
	s, err := m.acquire(n, c, spanComplete, nil, false)
	if err != nil {
		return nil, err
	}
	return s.bytes()[:0], nil
}

func (s *span) bytes() []byte { return unsafe.Slice((*byte)(s.base), s.size) }

// Buffers returns the allocator fragments of class c are assembled with
// (mkv.Reader, mkv.FragmentBuilder): the first Grow of a fragment starts
// an assembly, Receive completes it.
func (m *MediaMemory) Buffers(c MediaClass) mkv.Buffers { return &mediaBuffers{m: m, c: c} }

type mediaBuffers struct {
	m *MediaMemory
	c MediaClass
}

func (b *mediaBuffers) Grow(buf []byte, n int) ([]byte, error) { return b.m.Grow(buf, n, b.c) }
func (b *mediaBuffers) Free(buf []byte)                        { b.m.Free(buf) }

// Grow returns buf with room for n more bytes: buf itself when it has the
// room (no lock, no allocation), else a larger buffer holding buf's bytes
// (buf is freed), or ErrMemoryFull with buf untouched and still the
// caller's. A nil or empty buf starts an assembly: a fragment arriving.
func (m *MediaMemory) Grow(buf []byte, n int, c MediaClass) ([]byte, error) {
	if cap(buf)-len(buf) >= n {
		return buf, nil
	}
	want := len(buf) + n
	if cap(buf) == 0 {
		s, err := m.acquire(want, c, spanAssembling, nil, false)
		if err != nil {
			return buf, err
		}
		return s.bytes()[:0], nil
	}
	m.mu.Lock()
	old := m.mu.spans[unsafe.Pointer(unsafe.SliceData(buf))]
	m.mu.Unlock()
	if old == nil {
		// A buffer from outside (the Go heap): move it in.
		s, err := m.acquire(want, c, spanAssembling, nil, false)
		if err != nil {
			return buf, err
		}
		return append(s.bytes()[:0], buf...), nil
	}
	if old.state != spanAssembling {
		m.bug("Grow of a buffer that is not being assembled", old)
	}
	// Amortised: a quarter more than asked for (the size classes are
	// quarter steps too) when the budget has it, else what is needed.
	target := max(want, old.size+old.size/4)
	if canRemap {
		if err := m.remap(old, target, want, c); err != nil {
			return buf, err
		}
		return old.bytes()[:len(buf)], nil
	}
	s, err := m.acquire(target, c, spanAssembling, old, true)
	if s == nil && err == nil {
		s, err = m.acquire(want, c, spanAssembling, old, false)
	}
	if err != nil {
		return buf, err
	}
	nb := append(s.bytes()[:0], buf...)
	m.Free(buf)
	return nb, nil
}

// remap grows a span in place or by moving it (mremap: no copy): to
// target bytes when the budget has them at once, else to want, each
// rounded up to its size class (a span of a class is one to the cache
// when freed) or, past the classes, to pages.
func (m *MediaMemory) remap(s *span, target, want int, c MediaClass) error {
	size, class := sizeFor(target)
	delta := int64(size - s.size)
	if !m.tryReserve(delta, c) {
		size, class = sizeFor(want)
		delta = int64(size - s.size)
		if err := m.reserveBytes(delta, c, s, false); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.makeRoomLocked()
	p, err := remapMem(s.base, s.size, size)
	if err != nil {
		m.unreserveLocked(delta, c, false)
		return fmt.Errorf("%w: growing a buffer to %d bytes: %v", ErrMemoryFull, size, err)
	}
	if p != s.base {
		delete(m.mu.spans, s.base)
		m.mu.spans[p] = s
	}
	s.base, s.size, s.class = p, size, class
	m.mu.assemblingBytes += delta
	return nil
}

// acquire reserves a buffer of at least n bytes for class c and returns
// its span in state st. from is the span of the same assembly being
// grown (its birth passes on; the oldest assembly may wait for room).
// With try, a budget without room at once returns nil and no error
// (nothing shed, waited for or counted as refused).
func (m *MediaMemory) acquire(n int, c MediaClass, st spanState, from *span, try bool) (*span, error) {
	size, class := sizeFor(n)
	if try {
		if !m.tryReserve(int64(size), c) {
			return nil, nil
		}
	} else if err := m.reserveBytes(int64(size), c, from, st == spanAssembling && from == nil && c == MediaUpload); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var s *span
	if class >= 0 {
		if l := m.mu.free[class]; len(l) > 0 {
			s = l[len(l)-1]
			l[len(l)-1] = nil
			m.mu.free[class] = l[:len(l)-1]
			m.mu.cached -= int64(size)
		}
	}
	if s == nil {
		m.makeRoomLocked()
		p, err := mapMem(size)
		if err != nil {
			m.unreserveLocked(int64(size), c, false)
			return nil, fmt.Errorf("%w: mapping %d bytes: %v", ErrMemoryFull, size, err)
		}
		s = m.newSpanLocked(p, size, class)
	}
	s.state, s.owner = st, c
	if st == spanAssembling {
		m.mu.assemblingBytes += int64(s.size)
		if from != nil {
			s.born = from.born
			m.mu.assembling.insertOrdered(s)
		} else {
			s.born = time.Now().UnixNano()
			m.mu.assembling.push(s)
		}
	}
	m.trimLocked()
	return s, nil
}

func (m *MediaMemory) newSpanLocked(p unsafe.Pointer, size, class int) *span {
	var s *span
	if n := len(m.mu.spare); n > 0 {
		s = m.mu.spare[n-1]
		m.mu.spare[n-1] = nil
		m.mu.spare = m.mu.spare[:n-1]
		*s = span{}
	} else {
		s = new(span)
	}
	s.base, s.size, s.class = p, size, class
	m.mu.spans[p] = s
	return s
}

// makeRoomLocked unmaps cached buffers until what is mapped, the new
// mapping included (its bytes are reserved in usedTotal), stays within the
// budget.
func (m *MediaMemory) makeRoomLocked() {
	for m.mu.usedTotal+m.mu.cached > m.budget && m.mu.cached > 0 {
		m.releaseCachedLocked()
	}
}

// releaseCachedLocked unmaps one cached span: the oldest of the largest
// class that has any.
func (m *MediaMemory) releaseCachedLocked() {
	for ci := len(m.mu.free) - 1; ci >= 0; ci-- {
		if len(m.mu.free[ci]) > 0 {
			m.unmapOldestLocked(ci)
			return
		}
	}
}

// releaseStalestCachedLocked unmaps the cached span freed longest ago
// (each class's list is oldest first).
func (m *MediaMemory) releaseStalestCachedLocked() {
	ci := -1
	for i, l := range m.mu.free {
		if len(l) > 0 && (ci < 0 || l[0].idle < m.mu.free[ci][0].idle) {
			ci = i
		}
	}
	if ci >= 0 {
		m.unmapOldestLocked(ci)
	}
}

// unmapOldestLocked unmaps the cached span of class ci freed longest ago
// (the class has one).
func (m *MediaMemory) unmapOldestLocked(ci int) {
	l := m.mu.free[ci]
	s := l[0]
	copy(l, l[1:])
	l[len(l)-1] = nil
	m.mu.free[ci] = l[:len(l)-1]
	m.mu.cached -= int64(s.size)
	m.unmapLocked(s)
}

func (m *MediaMemory) unmapLocked(s *span) {
	if err := unmapMem(s.base, s.size); err != nil {
		m.log.Error("unmapping a media buffer failed", "bytes", s.size, "err", err)
	}
	delete(m.mu.spans, s.base)
	*s = span{}
	m.mu.spare = append(m.mu.spare, s)
}

// trimLocked unmaps cached buffers idle for idleRelease (looked at once a
// second at most).
func (m *MediaMemory) trimLocked() {
	now := time.Now().UnixNano()
	if now-m.mu.lastTrim < int64(time.Second) {
		return
	}
	m.mu.lastTrim = now
	for ci, l := range m.mu.free {
		k := 0
		for k < len(l) && now-l[k].idle > int64(idleRelease) {
			m.mu.cached -= int64(l[k].size)
			m.unmapLocked(l[k])
			k++
		}
		if k > 0 {
			n := copy(l, l[k:])
			clear(l[n:])
			m.mu.free[ci] = l[:n]
		}
	}
}

// reserveBytes counts delta bytes against c's limit: at once when there
// is room; else after the rings shed; else, for the oldest assembly
// (from) and for a new upload fragment (queue), after waiting up to
// growWait for room; else ErrMemoryFull. A queued request also waits
// while an older assembly is waiting for room: new uploads line up behind
// it instead of taking the room it waits for.
func (m *MediaMemory) reserveBytes(delta int64, c MediaClass, from *span, queue bool) error {
	if m.take(delta, c, queue) {
		return nil
	}
	if m.shed != nil {
		for _, hard := range [2]bool{false, true} {
			short := m.usedNow() + delta - m.limit(c)
			if short > 0 && m.shed(short, hard) > 0 && m.take(delta, c, queue) {
				return nil
			}
		}
	}
	if ((from != nil && c != MediaRead) || queue) && m.awaitRoom(delta, c, from) {
		return nil
	}
	m.refused(delta, c)
	return fmt.Errorf("%w (%s: %d bytes more; %d of %d bytes in use)", ErrMemoryFull, c, delta, m.usedNow(), m.budget)
}

// take reserves delta bytes if c's limit has room (and, for a queued
// request, no older assembly waits for room).
func (m *MediaMemory) take(delta int64, c MediaClass, queued bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.takeLocked(delta, c, queued)
}

func (m *MediaMemory) takeLocked(delta int64, c MediaClass, queued bool) bool {
	if (queued && m.mu.starving > 0) || m.mu.usedTotal+delta > m.limit(c) {
		return false
	}
	m.mu.usedTotal += delta
	m.mu.used[c] += delta
	return true
}

func (m *MediaMemory) tryReserve(delta int64, c MediaClass) bool { return m.take(delta, c, false) }

// awaitRoom waits up to growWait for delta bytes of room and reserves
// them: for from, the oldest assembly growing (false at once when from is
// not the oldest), or with from nil for a new upload fragment, queued
// behind any older assembly waiting. Between waits it sheds what became
// sheddable (fragments stored since: Kick).
func (m *MediaMemory) awaitRoom(delta int64, c MediaClass, from *span) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	m.mu.Lock()
	for {
		if m.takeLocked(delta, c, from == nil) {
			m.mu.Unlock()
			return true
		}
		if from != nil && m.mu.assembling.head != from {
			m.mu.Unlock()
			return false
		}
		// Registered before shedding and waiting, so no wake-up is lost;
		// unregistered and retried under one lock, so a starving assembly
		// takes the room before the new fragments queued behind it.
		if m.mu.wake == nil {
			m.mu.wake = make(chan struct{})
		}
		wake := m.mu.wake
		m.mu.waiters++
		if from != nil {
			m.mu.starving++
		}
		short := m.mu.usedTotal + delta - m.limit(c)
		m.mu.Unlock()
		released := int64(0)
		if m.shed != nil && short > 0 {
			released = m.shed(short, true)
		}
		timedOut := false
		if released == 0 {
			if timer == nil {
				timer = time.NewTimer(m.growWait)
			}
			select {
			case <-wake:
			case <-timer.C:
				timedOut = true
			}
		}
		m.mu.Lock()
		m.mu.waiters--
		if from != nil {
			// The queued requests wait while it starves: they look again
			// once it has taken its room or given up (they need this lock
			// first, so it takes the room before them).
			m.mu.starving--
			m.wakeLocked()
		}
		if timedOut {
			m.mu.Unlock()
			return false
		}
	}
}

// Kick wakes whoever waits for room: something became sheddable (a
// fragment's Persist finished).
func (m *MediaMemory) Kick() {
	m.mu.Lock()
	m.wakeLocked()
	m.mu.Unlock()
}

func (m *MediaMemory) wakeLocked() {
	if m.mu.waiters > 0 && m.mu.wake != nil {
		close(m.mu.wake)
		m.mu.wake = nil
	}
}

func (m *MediaMemory) usedNow() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.usedTotal
}

// unreserveLocked gives back delta bytes of c's (assembling: of an
// assembly's) and wakes whoever waits for room.
func (m *MediaMemory) unreserveLocked(delta int64, c MediaClass, assembling bool) {
	m.mu.usedTotal -= delta
	m.mu.used[c] -= delta
	if assembling {
		m.mu.assemblingBytes -= delta
	}
	m.wakeLocked()
}

func (m *MediaMemory) refused(delta int64, c MediaClass) {
	m.refusals[c].Add(1)
	now := time.Now().UnixNano()
	m.lastRefusal.Store(now)
	if last := m.lastLog.Load(); now-last > int64(10*time.Second) && m.lastLog.CompareAndSwap(last, now) {
		st := m.Stats()
		m.log.Warn("media memory budget full: new media refused (logged at most every 10 s)", "class", c.String(), "asked_bytes", delta,
			"used_bytes", st.Used(), "budget_bytes", st.BudgetBytes, "assembling_bytes", st.AssemblingBytes)
	}
}

// seal marks an assembled buffer complete (its fragment arrived whole)
// and returns it, and whether it is one of this memory's buffers (else
// it is left to the garbage collector): a large one is cut to its
// content, the tail pages going back to the system. With Debug it becomes
// read-only.
func (m *MediaMemory) seal(buf []byte) ([]byte, bool) {
	if cap(buf) == 0 {
		return buf, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.mu.spans[unsafe.Pointer(unsafe.SliceData(buf))]
	switch {
	case s == nil:
		return buf, false
	case s.state == spanComplete:
		return buf, true
	case s.state != spanAssembling:
		m.bug("a freed media buffer handed on", s)
		return buf, false
	}
	m.mu.assembling.remove(s)
	m.mu.assemblingBytes -= int64(s.size)
	s.state = spanComplete
	if s.class < 0 && canRemap {
		if size := roundUp(max(len(buf), 1), pageSize); size < s.size {
			if p, err := remapMem(s.base, s.size, size); err == nil && p == s.base {
				m.unreserveLocked(int64(s.size-size), s.owner, false)
				s.size = size
			}
		}
	}
	if m.debug {
		protectMem(s.base, s.size, protRead)
	}
	return s.bytes()[:len(buf)], true
}

// readBuffers are lsm.Buffers for archive reads (MediaRead).
type readBuffers struct{ m *MediaMemory }

func (r *readBuffers) Alloc(n int) ([]byte, error) { return r.m.Alloc(n, MediaRead) }
func (r *readBuffers) Free(b []byte)               { r.m.Free(b) }

// Owns reports whether buf is one of this memory's buffers.
func (m *MediaMemory) Owns(buf []byte) bool {
	if cap(buf) == 0 {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.mu.spans[unsafe.Pointer(unsafe.SliceData(buf))]
	return s != nil && s.state != spanCached && s.state != spanQuarantined
}

// Free returns a buffer; buf must not be used afterwards. Buffers from
// elsewhere (the Go heap) are left to the garbage collector.
func (m *MediaMemory) Free(buf []byte) {
	if cap(buf) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.mu.spans[unsafe.Pointer(unsafe.SliceData(buf))]
	if s == nil {
		return
	}
	if s.state == spanCached || s.state == spanQuarantined {
		m.bug("a media buffer freed twice", s)
		return
	}
	assembling := s.state == spanAssembling
	if assembling {
		m.mu.assembling.remove(s)
	}
	m.unreserveLocked(int64(s.size), s.owner, assembling)
	switch {
	case m.debug:
		discardMem(s.base, s.size)
		protectMem(s.base, s.size, protNone)
		s.state = spanQuarantined
		m.mu.quarantine = append(m.mu.quarantine, s)
		m.mu.quarantineBytes += int64(s.size)
		for m.mu.quarantineBytes > quarantineMax && len(m.mu.quarantine) > 1 {
			q := m.mu.quarantine[0]
			m.mu.quarantine = m.mu.quarantine[1:]
			m.mu.quarantineBytes -= int64(q.size)
			m.unmapLocked(q)
		}
	case s.class < 0 || int64(s.size) > m.cacheMax:
		m.unmapLocked(s) // large: back to the system
	default:
		// A full cache gives up its least recently freed buffers: the
		// sizes in use now are the ones freed last (a stream's first
		// fragment, growing through the small classes, leaves buffers no
		// one asks for again; kept instead of these, every fragment and
		// live chunk after it would be mapped anew, page faults and all).
		for m.mu.cached+int64(s.size) > m.cacheMax && m.mu.cached > 0 {
			m.releaseStalestCachedLocked()
		}
		s.state, s.idle = spanCached, time.Now().UnixNano()
		m.mu.free[s.class] = append(m.mu.free[s.class], s)
		m.mu.cached += int64(s.size)
	}
	m.trimLocked()
}

// quarantineMax bounds the address space Debug keeps inaccessible.
const quarantineMax = int64(1) << (28 + 2*(unsafe.Sizeof(uintptr(0))/8)) // 256 MiB on 32-bit, 1 GiB on 64-bit

// bug reports a misuse of a buffer (a kvsedge bug, never input-driven):
// fatal with Debug, logged otherwise.
func (m *MediaMemory) bug(what string, s *span) {
	if m.debug {
		panic("engine: " + what)
	}
	m.log.Error("engine: "+what, "bytes", s.size, "state", s.state)
}

// MediaStats is a snapshot of the media memory.
type MediaStats struct {
	BudgetBytes int64
	// UsedBytes are the buffers held, by holder class; AssemblingBytes of
	// them belong to fragments still arriving.
	UsedBytes       [mediaClassCount]int64
	AssemblingBytes int64
	// CachedBytes are free buffers kept for reuse (within the budget).
	CachedBytes int64
	// Refusals count requests refused for lack of room, by class.
	Refusals [mediaClassCount]uint64
	// ShedBytes is ring media evicted early to make room.
	ShedBytes uint64
	// LastRefusal is when a request was last refused (zero: never).
	LastRefusal time.Time
}

// Used is the total held.
func (s MediaStats) Used() int64 {
	var n int64
	for _, u := range s.UsedBytes {
		n += u
	}
	return n
}

// Stats returns a snapshot.
func (m *MediaMemory) Stats() MediaStats {
	st := MediaStats{BudgetBytes: m.budget, ShedBytes: m.shedBytes.Load()}
	m.mu.Lock()
	st.UsedBytes = m.mu.used
	st.AssemblingBytes = m.mu.assemblingBytes
	st.CachedBytes = m.mu.cached
	m.mu.Unlock()
	for i := range st.Refusals {
		st.Refusals[i] = m.refusals[i].Load()
	}
	if ns := m.lastRefusal.Load(); ns != 0 {
		st.LastRefusal = time.Unix(0, ns)
	}
	return st
}

// RefusingSince reports whether a request was refused within the last
// window, and when the last one was.
func (m *MediaMemory) RefusingSince(window time.Duration) (bool, time.Time) {
	ns := m.lastRefusal.Load()
	if ns == 0 {
		return false, time.Time{}
	}
	t := time.Unix(0, ns)
	return time.Since(t) < window, t
}

// MemoryAlarmWindow is how long after a refusal Alarm still reports it.
const MemoryAlarmWindow = 30 * time.Second

// Alarm says why new media is being refused for lack of memory ("" when
// nothing was refused within MemoryAlarmWindow), for /readyz.
func (m *MediaMemory) Alarm() string {
	refusing, at := m.RefusingSince(MemoryAlarmWindow)
	if !refusing {
		return ""
	}
	st := m.Stats()
	return fmt.Sprintf("media memory budget full: new media refused %s ago (%d of %d MiB in use, %d MiB of fragments still arriving); producers re-send, cameras drop fragments",
		time.Since(at).Round(time.Second), st.Used()>>20, st.BudgetBytes>>20, st.AssemblingBytes>>20)
}

// release unmaps every cached buffer (Engine.Close) and reports the bytes
// still held by buffers nobody freed.
func (m *MediaMemory) release() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.mu.cached > 0 {
		m.releaseCachedLocked()
	}
	for _, q := range m.mu.quarantine {
		m.unmapLocked(q)
	}
	m.mu.quarantine, m.mu.quarantineBytes = nil, 0
	return m.mu.usedTotal
}
