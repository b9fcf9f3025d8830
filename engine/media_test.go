package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// movingClock is a settable clock.
type movingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *movingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *movingClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openMedia(t *testing.T, fs vfs.FS, clock Clock, ring int) (*lsm.DB, *Engine) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := lsm.Open(lsm.Options{Dir: "/d", FS: fs, Logger: log, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e, err := openOn(db, Options{Logger: log, Clock: clock, RingBytesPerStream: ring, NodeID: 7, Media: MediaOptions{Debug: true}})
	if err != nil {
		t.Fatal(err)
	}
	checkMediaFreed(t, e)
	return db, e
}

// openCam is openMedia with a 1 GiB ring and the stream "cam" (1 h of
// retention) created.
func openCam(t *testing.T, fs vfs.FS, clock Clock) (*lsm.DB, *Engine) {
	t.Helper()
	db, e := openMedia(t, fs, clock, 1<<30)
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	return db, e
}

// checkMediaFreed fails the test if, once the engine's rings are closed
// at its end, a media buffer is still held (a missing Release or Free).
func checkMediaFreed(t *testing.T, e *Engine) {
	t.Cleanup(func() {
		for _, s := range e.allStreams() {
			s.ring.close()
			s.live.close()
		}
		if st := e.mem.Stats(); st.Used() != 0 {
			t.Errorf("media buffers leaked: %d bytes still held (%v by class)", st.Used(), st.UsedBytes)
		}
	})
}

// mediaCopy copies b into a buffer of e's media memory, as a PutMedia
// upload assembles one.
func mediaCopy(t testing.TB, e *Engine, b []byte) []byte {
	t.Helper()
	buf, err := e.mem.Grow(nil, len(b), MediaUpload)
	if err != nil {
		t.Fatal(err)
	}
	return append(buf, b...)
}

// captureFragments parses a captured producer upload into fragments.
func captureFragments(t testing.TB) []*mkv.Fragment {
	t.Helper()
	data, err := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	rd := mkv.NewReader(bytes.NewReader(data), mkv.Options{})
	var out []*mkv.Fragment
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev == mkv.EventFragmentEnd {
			out = append(out, rd.TakeFragment())
		}
	}
}

// ingest feeds fragments (copies: the engine owns what it receives) with
// producer timestamps base + timecode, persisting each.
func ingest(t *testing.T, e *Engine, name string, frags []*mkv.Fragment, base int64) []fragment.Number {
	t.Helper()
	sess, err := e.BeginIngest(StreamRef{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var nums []fragment.Number
	for _, f := range frags {
		c := *f
		c.Buf = mediaCopy(t, e, f.Buf)
		n, serverMs, err := sess.StartFragment()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := sess.Receive(n, serverMs, base+int64(f.Timecode), &c)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Duplicate {
			if err := rec.AwaitDurable(); err != nil {
				t.Fatal(err)
			}
			nums = append(nums, rec.Meta.Number)
			continue
		}
		if err := sess.Persist(rec.Fragment); err != nil {
			t.Fatal(err)
		}
		nums = append(nums, n)
	}
	return nums
}

func TestNumbersIncreaseAcrossRestartsEvenWhenTheClockGoesBack(t *testing.T) {
	fs := vfs.NewMem()
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openCam(t, fs, clock)
	frags := captureFragments(t)
	first := ingest(t, e, "cam", frags[:2], 1_000)
	db.Close()

	clock.add(-time.Hour) // a board without RTC that booted with an old clock
	db, e = openMedia(t, fs, clock, 1<<30)
	defer db.Close()
	second := ingest(t, e, "cam", frags[2:4], 1_000)
	all := append(first, second...)
	for i := 1; i < len(all); i++ {
		if all[i].Compare(all[i-1]) <= 0 || all[i].String() <= all[i-1].String() {
			t.Fatalf("number %d (%s) not after %s", i, all[i], all[i-1])
		}
	}
	if all[0].Node() != 7 || second[0].Term() <= first[0].Term() {
		t.Fatalf("terms %d then %d, node %d", first[0].Term(), second[0].Term(), all[0].Node())
	}
}

// TestCursorSeamsArchiveRingLive reads with a ring so small it holds one
// fragment: the cursor must move from archive to ring to live with no gap
// and no duplicate.
func TestCursorSeamsArchiveRingLive(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openMedia(t, vfs.NewMem(), clock, 1)
	defer db.Close()
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	frags := captureFragments(t)
	stored := ingest(t, e, "cam", frags[:4], 0)
	cur, err := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var got []fragment.Number
	for range 4 {
		f, err := cur.Next(ctx, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Media) < 4 || !bytes.Equal(f.Media[:4], []byte{0x1F, 0x43, 0xB6, 0x75}) || len(f.Header.Raw) == 0 {
			t.Fatalf("fragment without cluster or header: media %d bytes % x, header %d, refs %d owned %v", len(f.Media), f.Media[:min(8, len(f.Media))], len(f.Header.Raw), f.refs.Load(), f.mem != nil)
		}
		got = append(got, f.Meta.Number)
		f.Release()
	}
	// Live: two more fragments arrive while the reader waits.
	done := make(chan []fragment.Number)
	go func() { done <- ingest(t, e, "cam", frags[4:6], 0) }()
	for range 2 {
		f, err := cur.Next(ctx, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f.Meta.Number)
		f.Release()
	}
	stored = append(stored, <-done...)
	if len(got) != len(stored) {
		t.Fatalf("read %d, stored %d", len(got), len(stored))
	}
	for i := range got {
		if got[i] != stored[i] {
			t.Fatalf("read #%d %s, stored %s", i, got[i], stored[i])
		}
	}
	if _, err := cur.Next(ctx, 50*time.Millisecond); !errors.Is(err, ErrIdle) {
		t.Fatalf("at the live edge: %v, want ErrIdle", err)
	}
}

func TestRetentionZeroServesFromRingOnly(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openMedia(t, vfs.NewMem(), clock, 1<<30)
	defer db.Close()
	if _, err := e.CreateStream(CreateStreamInput{Name: "live", DataRetentionInHours: 0}); err != nil {
		t.Fatal(err)
	}
	cur, err := e.OpenCursor(StreamRef{Name: "live"}, Start{Kind: StartNow})
	if err != nil {
		t.Fatal(err)
	}
	ingest(t, e, "live", captureFragments(t)[:3], 0)
	for range 3 {
		f, err := cur.Next(context.Background(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		f.Release()
	}
	list, _, err := e.ListFragments(StreamRef{Name: "live"}, fragment.ByServerTime, 0, 1<<50, nil, 100)
	if err != nil || len(list) != 0 {
		t.Fatalf("ListFragments of a retention-0 stream: %v, %d fragments", err, len(list))
	}
}

func TestRetentionDeletesExpiredFragments(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openMedia(t, vfs.NewMem(), clock, 1<<30)
	defer db.Close()
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 2}); err != nil {
		t.Fatal(err)
	}
	frags := captureFragments(t)
	old := ingest(t, e, "cam", frags[:3], 0)
	clock.add(90 * time.Minute)
	recent := ingest(t, e, "cam", frags[3:], 0)
	clock.add(45 * time.Minute) // the first batch is now 2 h 15 min old
	e.SweepRetention()
	list, _, err := e.ListFragments(StreamRef{Name: "cam"}, fragment.ByServerTime, 0, 1<<50, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(recent) || list[0].Number != recent[0] {
		t.Fatalf("after retention: %d fragments, want the %d recent ones", len(list), len(recent))
	}
	if _, err := e.Fragment(StreamRef{Name: "cam"}, old[0]); !errors.Is(err, ErrFragmentNotFound) {
		// The ring still holds it (budget 1 GiB): reads by number from the
		// ring are allowed, but the archive must not.
		if _, _, err := db.Fragment(1, old[0], nil); !errors.Is(err, lsm.ErrNotFound) {
			t.Fatalf("expired fragment still in the archive: %v", err)
		}
	}
	// Decreasing retention deletes what it makes expired.
	clock.add(20 * time.Minute) // the recent batch is now 65 min old
	e.SweepRetention()
	if list, _, _ = e.ListFragments(StreamRef{Name: "cam"}, fragment.ByServerTime, 0, 1<<50, nil, 100); len(list) != len(recent) {
		t.Fatalf("2 h retention deleted fragments 65 min old: %d left", len(list))
	}
	info, _ := e.Stream(StreamRef{Name: "cam"})
	if err := e.UpdateDataRetention(StreamRef{Name: "cam"}, info.Version, false, 1); err != nil {
		t.Fatal(err)
	}
	e.SweepRetention()
	list, _, _ = e.ListFragments(StreamRef{Name: "cam"}, fragment.ByProducerTime, -1<<50, 1<<50, nil, 100)
	if len(list) != 0 {
		t.Fatalf("%d fragments older than the new 1 h retention remain (producer index)", len(list))
	}
}

func TestDeleteStreamEndsIngestAndReaders(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openMedia(t, vfs.NewMem(), clock, 1<<30)
	defer db.Close()
	info, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1})
	if err != nil {
		t.Fatal(err)
	}
	ingest(t, e, "cam", captureFragments(t)[:2], 0)
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartNow})
	errc := make(chan error, 1)
	go func() {
		_, err := cur.Next(context.Background(), 10*time.Second)
		errc <- err
	}()
	if err := e.DeleteStream(info.ARN, ""); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrStreamDeleted) {
		t.Fatalf("reader after delete: %v", err)
	}
	select {
	case <-sess.Done():
	default:
		t.Fatal("ingest session still open after delete")
	}
	if _, _, err := sess.StartFragment(); !errors.Is(err, ErrStreamDeleted) {
		t.Fatalf("StartFragment after delete: %v", err)
	}
	if _, _, ok, _ := db.NextFragment(info.ID, fragment.Number{}, fragment.Number{}, nil); ok {
		t.Fatal("media of a deleted stream is still stored")
	}
}

func TestNewerIngestSupersedesOlder(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openCam(t, vfs.NewMem(), clock)
	defer db.Close()
	a, _ := e.BeginIngest(StreamRef{Name: "cam"})
	b, _ := e.BeginIngest(StreamRef{Name: "cam"})
	defer b.Close()
	if _, _, err := a.StartFragment(); !errors.Is(err, ErrSuperseded) {
		t.Fatalf("old session: %v", err)
	}
	if _, _, err := b.StartFragment(); err != nil {
		t.Fatalf("new session: %v", err)
	}
}

// A stream nobody reads holds none of its stored fragments in memory; a
// reader starting at "now" then starts after the archive's newest and
// gets the next fragment live, and one from the start reads every
// fragment once.
func TestUnreadRingEmptiesOnceStored(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openCam(t, vfs.NewMem(), clock)
	defer db.Close()
	s, _, _ := e.lookup(StreamRef{Name: "cam"})
	frags := captureFragments(t)
	stored := ingest(t, e, "cam", frags[:3], 0)
	if n, b := len(s.ring.frags), e.RingBytes(); n != 0 || b != 0 {
		t.Fatalf("an unread ring holds %d fragments (%d bytes) once they are stored", n, b)
	}
	cur, err := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartNow})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []fragment.Number)
	go func() { done <- ingest(t, e, "cam", frags[3:4], 0) }()
	f, err := cur.Next(context.Background(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stored = append(stored, <-done...)
	if f.Meta.Number != stored[3] {
		t.Fatalf("a reader starting now got %s, want the next fragment %s", f.Meta.Number, stored[3])
	}
	f.Release()
	// Read: the ring keeps its seconds again.
	stored = append(stored, ingest(t, e, "cam", frags[4:6], 0)...)
	if len(s.ring.frags) == 0 {
		t.Fatal("a ring being read keeps nothing")
	}
	all, err := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range stored {
		f, err := all.Next(context.Background(), time.Second)
		if err != nil {
			t.Fatalf("fragment %d: %v", i, err)
		}
		if f.Meta.Number != want {
			t.Fatalf("fragment %d is %s, want %s", i, f.Meta.Number, want)
		}
		f.Release()
	}
}

// TestResendRecognisedAcrossRestart: the re-send check skips the archive
// only for a producer time after everything stored (lsm's bound); after a
// restart, re-sends of the newest stored fragment and of older ones are
// still recognised (the bound is read from the index), and a new fragment
// after them is stored.
func TestResendRecognisedAcrossRestart(t *testing.T) {
	fs := vfs.NewMem()
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openCam(t, fs, clock)
	frags := captureFragments(t)
	stored := ingest(t, e, "cam", frags[:3], 1_000)
	db.Close()

	db, e = openMedia(t, fs, clock, 1<<30)
	defer db.Close()
	// The newest first (its producer time is the bound), then an older one.
	again := ingest(t, e, "cam", []*mkv.Fragment{frags[2], frags[0]}, 1_000)
	if again[0] != stored[2] || again[1] != stored[0] {
		t.Fatalf("re-sends got %v, want the stored %v and %v", again, stored[2], stored[0])
	}
	next := ingest(t, e, "cam", frags[3:4], 1_000)
	if next[0].Compare(stored[2]) <= 0 {
		t.Fatalf("a new fragment got %s, not after %s", next[0], stored[2])
	}
	all, _, err := e.ListFragments(StreamRef{Name: "cam"}, fragment.ByProducerTime, -1<<62, 1<<62, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 {
		t.Fatalf("%d fragments stored, want 4", len(all))
	}
}
