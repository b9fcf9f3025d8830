package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

func testMemory(t testing.TB, budget int64, debug bool) *MediaMemory {
	t.Helper()
	m := newMediaMemory(MediaOptions{BudgetBytes: budget, Debug: debug, GrowWait: 2 * time.Second}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { m.release() })
	return m
}

func base(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestMediaAllocFreeReuse(t *testing.T) {
	m := testMemory(t, 64<<20, false)
	a, err := m.Alloc(300<<10, MediaUpload)
	if err != nil {
		t.Fatal(err)
	}
	if cap(a) != 320<<10 || len(a) != 0 {
		t.Fatalf("300 KiB got len %d cap %d, want the 320 KiB class", len(a), cap(a))
	}
	a = append(a, bytes.Repeat([]byte{7}, 300<<10)...)
	if st := m.Stats(); st.UsedBytes[MediaUpload] != 320<<10 || st.Used() != 320<<10 {
		t.Fatalf("used %v", st.UsedBytes)
	}
	if !m.Owns(a) || m.Owns(make([]byte, 10)) {
		t.Fatal("Owns is wrong")
	}
	where := base(a)
	m.Free(a)
	if st := m.Stats(); st.Used() != 0 || st.CachedBytes != 320<<10 {
		t.Fatalf("after Free: used %d cached %d", st.Used(), st.CachedBytes)
	}
	b, err := m.Alloc(310<<10, MediaCamera)
	if err != nil {
		t.Fatal(err)
	}
	if base(b) != where {
		t.Fatal("a freed buffer of the same class was not reused")
	}
	if st := m.Stats(); st.UsedBytes[MediaCamera] != 320<<10 || st.CachedBytes != 0 {
		t.Fatalf("after reuse: %+v", st)
	}
	m.Free(b)
	m.Free(make([]byte, 5)) // not ours: ignored
}

// TestMediaCacheKeepsTheRecentlyFreed checks that a full cache gives up
// its stalest buffers, not the one just freed: a stream's first fragment
// grows through the small classes and leaves their buffers cached, and
// the fragments after it must still find theirs there (mapped anew, each
// would cost a page fault per page).
func TestMediaCacheKeepsTheRecentlyFreed(t *testing.T) {
	m := testMemory(t, 64<<20, false) // cacheMax: 4 MiB
	var small [][]byte
	for range m.cacheMax / (64 << 10) {
		b, err := m.Alloc(60<<10, MediaCamera)
		if err != nil {
			t.Fatal(err)
		}
		small = append(small, b)
	}
	for _, b := range small {
		m.Free(b)
	}
	if st := m.Stats(); st.CachedBytes != m.cacheMax {
		t.Fatalf("cached %d, want the cache full (%d)", st.CachedBytes, m.cacheMax)
	}
	for i := 0; i < 3; i++ {
		f, err := m.Alloc(600<<10, MediaCamera)
		if err != nil {
			t.Fatal(err)
		}
		st := m.Stats()
		if i > 0 && st.CachedBytes != m.cacheMax-640<<10 {
			t.Fatalf("fragment %d: cached %d after Alloc: the 640 KiB buffer freed before was not reused", i, st.CachedBytes)
		}
		m.Free(f)
		if st := m.Stats(); st.CachedBytes > m.cacheMax || st.CachedBytes < m.cacheMax-64<<10 {
			t.Fatalf("fragment %d: cached %d after Free, want within one small buffer of %d", i, st.CachedBytes, m.cacheMax)
		}
	}
}

// TestMediaGrowRemapsClassBuffers checks that a buffer of a size class
// grows by mremap to a bigger class, its bytes not copied: no second
// buffer is taken (none is left in the cache), the content stays, and the
// grown buffer goes to its new class's cache when freed.
func TestMediaGrowRemapsClassBuffers(t *testing.T) {
	if !canRemap {
		t.Skip("no mremap here: growing copies")
	}
	m := testMemory(t, 64<<20, false)
	buf, err := m.Grow(nil, 300<<10, MediaCamera)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300<<10; i++ {
		buf = append(buf, byte(i*7))
	}
	want := bytes.Clone(buf)
	if buf, err = m.Grow(buf, 100<<10, MediaCamera); err != nil {
		t.Fatal(err)
	}
	if cap(buf) != 448<<10 || !bytes.Equal(buf, want) {
		t.Fatalf("grown: cap %d (want the 448 KiB class), content kept %v", cap(buf), bytes.Equal(buf, want))
	}
	if st := m.Stats(); st.CachedBytes != 0 || st.Used() != 448<<10 || st.AssemblingBytes != 448<<10 {
		t.Fatalf("after growing: %+v (a copy would have left the 320 KiB buffer cached)", st)
	}
	m.Free(buf)
	if st := m.Stats(); st.CachedBytes != 448<<10 || st.Used() != 0 {
		t.Fatalf("after Free: %+v", st)
	}
	again, err := m.Alloc(440<<10, MediaCamera)
	if err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.CachedBytes != 0 || cap(again) != 448<<10 {
		t.Fatalf("the grown buffer was not reused for its class: %+v, cap %d", st, cap(again))
	}
	m.Free(again)
}

func TestMediaSizeClassesWasteAtMostAQuarter(t *testing.T) {
	for n := 1; n <= maxClassSize; n = n*9/8 + 1 {
		size, class := sizeFor(n)
		if class < 0 || size < n {
			t.Fatalf("%d bytes: size %d class %d", n, size, class)
		}
		if n >= 64<<10 && size-n > n/4+pageSize {
			t.Fatalf("%d bytes get %d: more than a quarter wasted", n, size)
		}
	}
	if size, class := sizeFor(maxClassSize + 1); class != -1 || size != roundUp(maxClassSize+1, pageSize) {
		t.Fatalf("large: %d %d", size, class)
	}
}

func TestMediaBudgetRefusesByClass(t *testing.T) {
	m := testMemory(t, 8<<20, false) // reserve 1 MiB: uploads 6 MiB, cameras 7 MiB, reads 8 MiB
	up, err := m.Alloc(5<<20, MediaUpload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Alloc(2<<20, MediaUpload); !errors.Is(err, ErrMemoryFull) {
		t.Fatalf("an upload beyond its share: %v", err)
	}
	cam, err := m.Alloc(2<<20, MediaCamera)
	if err != nil {
		t.Fatalf("a camera within its share: %v", err)
	}
	if _, err := m.Alloc(1<<20, MediaCamera); !errors.Is(err, ErrMemoryFull) {
		t.Fatalf("a camera beyond its share: %v", err)
	}
	rd, err := m.Alloc(1<<20, MediaRead)
	if err != nil {
		t.Fatalf("a read within the budget: %v", err)
	}
	st := m.Stats()
	if st.Refusals[MediaUpload] != 1 || st.Refusals[MediaCamera] != 1 || st.Refusals[MediaRead] != 0 || st.Used() != 8<<20 {
		t.Fatalf("stats %+v", st)
	}
	if refusing, at := m.RefusingSince(time.Minute); !refusing || at.IsZero() {
		t.Fatal("RefusingSince does not report the refusal")
	}
	for _, b := range [][]byte{up, cam, rd} {
		m.Free(b)
	}
	if _, err := m.Alloc(6<<20, MediaUpload); err != nil {
		t.Fatalf("after the frees: %v", err)
	}
}

func TestMediaGrowKeepsContentAndSealCutsLargeBuffers(t *testing.T) {
	m := testMemory(t, 128<<20, false)
	var buf []byte
	want := make([]byte, 0, 20<<20)
	chunk := make([]byte, 100_000)
	for i := 0; len(want) < 20<<20-len(chunk); i++ {
		for j := range chunk {
			chunk[j] = byte(i + j)
		}
		var err error
		if buf, err = m.Grow(buf, len(chunk), MediaUpload); err != nil {
			t.Fatal(err)
		}
		buf = append(buf, chunk...)
		want = append(want, chunk...)
	}
	if !bytes.Equal(buf, want) {
		t.Fatal("content changed while the buffer grew")
	}
	st := m.Stats()
	if st.AssemblingBytes != int64(cap(buf)) || st.Used() != int64(cap(buf)) {
		t.Fatalf("assembling %d used %d cap %d", st.AssemblingBytes, st.Used(), cap(buf))
	}
	sealed, owned := m.seal(buf)
	if !owned || !bytes.Equal(sealed, want) {
		t.Fatal("seal lost the content")
	}
	if runtime.GOOS == "linux" && cap(sealed) != roundUp(len(want), pageSize) {
		t.Fatalf("a sealed large buffer keeps %d bytes for %d", cap(sealed), len(want))
	}
	if st := m.Stats(); st.AssemblingBytes != 0 || st.Used() != int64(cap(sealed)) {
		t.Fatalf("after seal: %+v", st)
	}
	cached := m.Stats().CachedBytes // the smaller buffers it outgrew
	m.Free(sealed)
	if st := m.Stats(); st.Used() != 0 || st.CachedBytes != cached {
		t.Fatalf("a large buffer is not unmapped at once: %+v", st)
	}
}

// rssBytes is the process's resident memory (Linux).
func rssBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func TestMediaMemoryReturnedAfterASpike(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mappings: Linux")
	}
	m := testMemory(t, 512<<20, false)
	before := rssBytes(t)
	var held [][]byte
	// A spike: 4 fragments of 48 MB and 64 of 1 MB, all touched.
	fill := func(b []byte, n int) []byte {
		b = b[:n]
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	for i := 0; i < 4; i++ {
		b, err := m.Grow(nil, 48_000_000, MediaUpload)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, fill(b, 48_000_000))
	}
	for i := 0; i < 64; i++ {
		b, err := m.Alloc(1_000_000, MediaRead)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, fill(b, 1_000_000))
	}
	peak := rssBytes(t)
	if peak-before < 200<<20 {
		t.Fatalf("the spike did not show: RSS %d → %d", before, peak)
	}
	for _, b := range held {
		m.Free(b)
	}
	held = nil
	after := rssBytes(t)
	st := m.Stats()
	// Large buffers are unmapped at once; the small ones' cache is bounded.
	if st.CachedBytes > m.cacheMax || after-before > m.cacheMax+16<<20 {
		t.Fatalf("memory not returned: RSS %d MiB → %d MiB → %d MiB, cached %d MiB", before>>20, peak>>20, after>>20, st.CachedBytes>>20)
	}
	t.Logf("RSS %d MiB → spike %d MiB → %d MiB after free (cache %d MiB, at most %d)", before>>20, peak>>20, after>>20, st.CachedBytes>>20, m.cacheMax>>20)
}

func TestMediaConcurrentRetainRelease(t *testing.T) {
	m := testMemory(t, 256<<20, true)
	const frags, holders = 64, 8
	var wg sync.WaitGroup
	for i := 0; i < frags; i++ {
		buf, err := m.Grow(nil, 100_000+i, MediaUpload)
		if err != nil {
			t.Fatal(err)
		}
		buf = append(buf, bytes.Repeat([]byte{byte(i)}, 100_000+i)...)
		media, _ := m.seal(buf)
		f := &Fragment{Media: media, mem: m}
		f.refs.Store(holders)
		for h := 0; h < holders; h++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; k < 50; k++ {
					f.Retain()
					if f.Media[len(f.Media)-1] != byte(i) {
						t.Error("media changed under a reader")
					}
					f.Release()
				}
				f.Release()
			}()
		}
	}
	wg.Wait()
	if st := m.Stats(); st.Used() != 0 {
		t.Fatalf("%d bytes still held after every last Release", st.Used())
	}
}

// TestMediaUseAfterFreeFaults checks that Debug makes a use after free,
// and a write after Seal, impossible to miss: the process faults at once.
// The faulting code runs in a child process (this test binary again).
func TestMediaUseAfterFreeFaults(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("guard pages: Linux")
	}
	switch os.Getenv("KVSEDGE_MEDIA_FAULT") {
	case "read-after-free":
		m := newMediaMemory(MediaOptions{Debug: true}, slog.New(slog.DiscardHandler))
		b, _ := m.Alloc(1000, MediaRead)
		b = append(b, 42)
		m.Free(b)
		fmt.Println("read after free:", b[0]) // must fault
		os.Exit(0)
	case "write-after-seal":
		m := newMediaMemory(MediaOptions{Debug: true}, slog.New(slog.DiscardHandler))
		b, _ := m.Grow(nil, 1000, MediaUpload)
		b = append(b, 42)
		b, _ = m.seal(b)
		b[0] = 7 // must fault
		os.Exit(0)
	case "double-free":
		m := newMediaMemory(MediaOptions{Debug: true}, slog.New(slog.DiscardHandler))
		b, _ := m.Alloc(1000, MediaRead)
		m.Free(b)
		m.Free(b) // must panic
		os.Exit(0)
	}
	for fault, want := range map[string]string{
		"read-after-free":  "unexpected fault address",
		"write-after-seal": "unexpected fault address",
		"double-free":      "freed twice",
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMediaUseAfterFreeFaults$")
		cmd.Env = append(os.Environ(), "KVSEDGE_MEDIA_FAULT="+fault)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("%s: exit %v, want a crash with %q; output:\n%s", fault, err, want, out)
		}
	}
}

func TestMediaOldestAssemblyWaitsOthersAreRefused(t *testing.T) {
	m := testMemory(t, 16<<20, false) // uploads: 12 MiB
	old, err := m.Grow(nil, 1<<20, MediaUpload)
	if err != nil {
		t.Fatal(err)
	}
	old = append(old, make([]byte, 1<<20)...)
	young, err := m.Grow(nil, 1<<20, MediaUpload)
	if err != nil {
		t.Fatal(err)
	}
	young = append(young, make([]byte, 1<<20)...)
	// The younger one grows into most of the share, then is refused.
	if young, err = m.Grow(young, 8<<20, MediaUpload); err != nil {
		t.Fatal(err)
	}
	young = append(young, make([]byte, 8<<20)...)
	start := time.Now()
	if _, err := m.Grow(young, 4<<20, MediaUpload); !errors.Is(err, ErrMemoryFull) || time.Since(start) > time.Second {
		t.Fatalf("the younger assembly: %v after %v, want refused at once", err, time.Since(start))
	}
	// The oldest waits for room, which the younger one's end gives back.
	got := make(chan error, 1)
	go func() {
		b, err := m.Grow(old, 6<<20, MediaUpload)
		if err == nil {
			old = b
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("the oldest did not wait: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	m.Free(young)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the oldest, after room was made: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("the oldest was not woken when room was made")
	}
	m.Free(old)
	if st := m.Stats(); st.Used() != 0 || st.AssemblingBytes != 0 {
		t.Fatalf("after all: %+v", st)
	}
}

func settledFragment(m *MediaMemory, n uint32, durMs uint32, size int) *Fragment {
	buf, _ := m.Grow(nil, size, MediaCamera)
	buf = buf[:size]
	media, _ := m.seal(buf)
	f := &Fragment{Meta: fragment.Meta{Number: fragment.MakeNumber(1, 1, n), DurationMs: durMs}, Media: media, mem: m,
		persisted: make(chan struct{})}
	close(f.persisted)
	f.refs.Store(1)
	return f
}

func TestRingKeepsSecondsOfVideo(t *testing.T) {
	m := testMemory(t, 64<<20, true)
	clock := &movingClock{t: time.Now()}
	r := newRing(5*time.Second, 0, clock)
	r.read() // a reader: the ring keeps its seconds
	for i := uint32(1); i <= 10; i++ {
		r.push(settledFragment(m, i, 2000, 100_000), true)
	}
	// 5 s of 2 s fragments: the newest three (the two after the oldest
	// cover only 4 s).
	if len(r.frags) != 3 || r.frags[0].Meta.Number != fragment.MakeNumber(1, 1, 8) || r.ms != 6000 {
		t.Fatalf("ring holds %d fragments from %v (%d ms)", len(r.frags), r.frags[0].Meta.Number, r.ms)
	}
	// A fragment still being persisted is never evicted, nor any after it.
	pending := settledFragment(m, 11, 2000, 100_000)
	pending.persisted = make(chan struct{})
	r.push(pending, true)
	for i := uint32(12); i <= 15; i++ {
		r.push(settledFragment(m, i, 2000, 100_000), true)
	}
	if r.frags[0].Meta.Number.Compare(fragment.MakeNumber(1, 1, 11)) > 0 || len(r.frags) < 5 {
		t.Fatalf("the unsettled fragment left the ring: oldest %v", r.frags[0].Meta.Number)
	}
	close(pending.persisted)
	// Shedding: beyond the newest first; with hard, the newest too.
	if n := r.shed(1<<30, false); n == 0 || len(r.frags) != 1 {
		t.Fatalf("shed released %d, %d left", n, len(r.frags))
	}
	if n := r.shed(1<<30, true); n == 0 || len(r.frags) != 0 {
		t.Fatalf("hard shed released %d, %d left", n, len(r.frags))
	}
	// Emptied, the ring still refuses what is older than what left it.
	if r.push(settledFragment(m, 14, 2000, 1000), true) || len(r.frags) != 0 {
		t.Fatal("an old fragment entered an emptied ring")
	}
	if !r.push(settledFragment(m, 16, 2000, 1000), true) {
		t.Fatal("the next fragment did not enter the emptied ring")
	}
	// A byte cap evicts too.
	capped := newRing(time.Hour, 250_000, clock)
	capped.read()
	for i := uint32(1); i <= 5; i++ {
		capped.push(settledFragment(m, i, 2000, 100_000), true)
	}
	if len(capped.frags) != 2 {
		t.Fatalf("a 250 kB cap holds %d fragments of 100 kB", len(capped.frags))
	}
	r.close()
	capped.close()
	if st := m.Stats(); st.Used() != 0 {
		t.Fatalf("%d bytes held after the rings closed", st.Used())
	}
}

// TestRingUnreadKeepsNothingStored: a ring nobody has read for
// ringIdleAfter keeps only its newest fragment until that is stored, then
// none; read again, it keeps its seconds from the next fragment on.
func TestRingUnreadKeepsNothingStored(t *testing.T) {
	m := testMemory(t, 64<<20, true)
	clock := &movingClock{t: time.Now()}
	r := newRing(5*time.Second, 0, clock)
	defer r.close()
	push := func(from, to uint32) {
		for i := from; i <= to; i++ {
			if !r.push(settledFragment(m, i, 2000, 100_000), true) {
				t.Fatalf("fragment %d refused", i)
			}
			clock.add(2 * time.Second)
		}
	}
	push(1, 4) // never read
	if len(r.frags) != 1 || r.frags[0].Meta.Number != fragment.MakeNumber(1, 1, 4) {
		t.Fatalf("an unread ring holds %d fragments", len(r.frags))
	}
	// Stored (its Persist settled): the newest goes too, and the ring
	// stays contiguous: nothing at or before it comes back.
	r.dropUnread()
	if len(r.frags) != 0 || r.bytes != 0 {
		t.Fatalf("an unread ring holds %d fragments once stored", len(r.frags))
	}
	if r.push(settledFragment(m, 3, 2000, 100_000), true) {
		t.Fatal("a fragment before the dropped newest went back in")
	}
	r.read()
	r.dropUnread()
	push(5, 5)
	r.dropUnread()
	if len(r.frags) != 1 {
		t.Fatalf("a ring being read drops its fragments (%d left)", len(r.frags))
	}
	push(6, 10)
	if len(r.frags) != 3 {
		t.Fatalf("a ring read %v ago holds %d fragments, want its 5 s (3)", ringIdleAfter/2, len(r.frags))
	}
	clock.add(ringIdleAfter)
	push(11, 11)
	if len(r.frags) != 1 || r.frags[0].Meta.Number != fragment.MakeNumber(1, 1, 11) {
		t.Fatalf("a ring unread for %v holds %d fragments", ringIdleAfter, len(r.frags))
	}
}

func TestShedRingsBiggestFirstBeforeRefusing(t *testing.T) {
	fs := vfs.NewMem()
	db, e := openMedia(t, fs, &movingClock{t: time.Now()}, 0)
	defer db.Close()
	e.mem = newMediaMemory(MediaOptions{BudgetBytes: 16 << 20, Debug: true}, slog.New(slog.DiscardHandler))
	e.mem.shed = e.shedRings
	e.opts.RingDuration = time.Hour
	for _, name := range []string{"big", "small"} {
		if _, err := e.CreateStream(CreateStreamInput{Name: name, DataRetentionInHours: 1}); err != nil {
			t.Fatal(err)
		}
	}
	big, _, _ := e.lookup(StreamRef{Name: "big"})
	small, _, _ := e.lookup(StreamRef{Name: "small"})
	big.ring.read() // read: they keep their seconds
	small.ring.read()
	for i := uint32(1); i <= 6; i++ {
		big.ring.push(settledFragment(e.mem, i, 2000, 1<<20), true)
	}
	for i := uint32(1); i <= 3; i++ {
		small.ring.push(settledFragment(e.mem, i, 2000, 1<<20), true)
	}
	// 9 MiB held (the 1 MiB class): a camera needs 6 MiB of its 14.
	b, err := e.mem.Alloc(6<<20, MediaCamera)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(big.ring.frags); got >= 6 || len(small.ring.frags) != 3 {
		t.Fatalf("big ring %d fragments, small %d: the biggest should shed first", got, len(small.ring.frags))
	}
	if e.mem.Stats().ShedBytes == 0 {
		t.Fatal("shed bytes not counted")
	}
	// More than shedding beyond the newest fragments gives: the newest go too.
	b2, err := e.mem.Alloc(8<<20, MediaCamera)
	if err != nil {
		t.Fatal(err)
	}
	if len(big.ring.frags)+len(small.ring.frags) > 1 {
		t.Fatalf("rings still hold %d and %d fragments", len(big.ring.frags), len(small.ring.frags))
	}
	// Nothing left to shed: refused.
	if _, err := e.mem.Alloc(2<<20, MediaCamera); !errors.Is(err, ErrMemoryFull) {
		t.Fatalf("over the budget: %v", err)
	}
	e.mem.Free(b)
	e.mem.Free(b2)
	big.ring.close()
	small.ring.close()
	if st := e.mem.Stats(); st.Used() != 0 {
		t.Fatalf("%d bytes held", st.Used())
	}
}

// BenchmarkMediaBufferSteadyState is a camera's media buffer cycle: a
// fragment of ~500 kB (a 2 Mbit/s camera's 2 s) assembled from 64 kB
// pieces into a buffer sized from the previous one, grown once in four,
// sealed, held by a ring with three others, freed. In steady state it maps
// nothing and allocates nothing on the Go heap (-benchmem: 0 B/op).
func BenchmarkMediaBufferSteadyState(b *testing.B) {
	m := newMediaMemory(MediaOptions{BudgetBytes: 64 << 20}, slog.New(slog.DiscardHandler))
	defer m.release()
	piece := make([]byte, 64<<10)
	var ring [4][]byte
	b.SetBytes(500_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		size := 450_000 + (i%4)*40_000
		buf, err := m.Grow(nil, 480_000, MediaCamera)
		if err != nil {
			b.Fatal(err)
		}
		for len(buf) < size {
			n := min(len(piece), size-len(buf))
			if buf, err = m.Grow(buf, n, MediaCamera); err != nil {
				b.Fatal(err)
			}
			buf = append(buf, piece[:n]...)
		}
		buf, _ = m.seal(buf)
		m.Free(ring[i%4])
		ring[i%4] = buf
	}
	b.StopTimer()
	for _, r := range ring {
		m.Free(r)
	}
}

func TestMediaNewUploadsQueueBehindTheStarvingOldest(t *testing.T) {
	m := testMemory(t, 16<<20, false) // uploads: 12 MiB
	old, _ := m.Grow(nil, 1<<20, MediaUpload)
	old = old[:1<<20]
	young, _ := m.Grow(nil, 10<<20, MediaUpload)
	young = young[:10<<20]
	grown := make(chan error, 1)
	go func() {
		b, err := m.Grow(old, 6<<20, MediaUpload) // waits: 11 of 12 MiB used
		if err == nil {
			old = b
		}
		grown <- err
	}()
	for m.saturatedForTest() == 0 {
		time.Sleep(time.Millisecond)
	}
	// A new upload fragment would fit (1 MiB), but queues behind the
	// starving oldest instead of taking its room.
	started := make(chan error, 1)
	var fresh []byte
	go func() {
		b, err := m.Grow(nil, 512<<10, MediaUpload)
		fresh = b
		started <- err
	}()
	select {
	case err := <-started:
		t.Fatalf("a new upload fragment took room while an older one starved: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// A camera does not queue: its own share has room.
	cam, err := m.Alloc(512<<10, MediaCamera)
	if err != nil {
		t.Fatalf("camera: %v", err)
	}
	m.Free(cam)
	m.Free(young)
	if err := <-grown; err != nil {
		t.Fatalf("the oldest: %v", err)
	}
	if err := <-started; err != nil {
		t.Fatalf("the queued new fragment: %v", err)
	}
	m.Free(old)
	m.Free(fresh)
	if st := m.Stats(); st.Used() != 0 || st.Refusals[MediaUpload] != 0 {
		t.Fatalf("after all: %+v", st)
	}
}

func (m *MediaMemory) saturatedForTest() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.starving
}
