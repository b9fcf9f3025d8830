package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A reader whose SERVER_TIMESTAMP / PRODUCER_TIMESTAMP start lies after
// every fragment held starts live, also when the unread ring dropped its
// newest (dropUnread): after the archive's newest, not at its oldest
// (found by review: it started at the oldest).
func TestTimeStartAfterNewestStartsLiveOnUnreadRing(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openCam(t, vfs.NewMem(), clock)
	defer db.Close()
	s, _, _ := e.lookup(StreamRef{Name: "cam"})
	frags := captureFragments(t)
	stored := ingest(t, e, "cam", frags[:3], 0)
	if len(s.ring.frags) != 0 {
		t.Fatalf("precondition: unread ring holds %d", len(s.ring.frags))
	}
	future := clock.Now().Add(time.Hour).UnixMilli()
	for _, kind := range []StartKind{StartServerTime, StartProducerTime} {
		cur, err := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: kind, Ms: future})
		if err != nil {
			t.Fatal(err)
		}
		f, err := cur.Next(context.Background(), 200*time.Millisecond)
		if err == nil {
			n := f.Meta.Number
			f.Release()
			t.Errorf("kind %d: a start after every fragment got stored fragment %s (oldest is %s); want the next live one (ErrIdle here)", kind, n, stored[0])
			continue
		}
		if !errors.Is(err, ErrIdle) {
			t.Fatalf("kind %d: %v", kind, err)
		}
	}
}

// A reader woken at the live edge by fragment Y, whose ring was unread
// (the clock moved on by more than ringIdleAfter), may look in the
// archive while Y's Persist settles and dropUnread empties the ring: it
// must see the ring moved and find Y in the archive, not sleep until the
// next fragment (found by review: 3–4 of 400 rounds did). Stress.
func TestReaderGetsAFragmentDroppedWhileItLooksInTheArchive(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	db, e := openCam(t, vfs.NewMem(), clock)
	defer db.Close()
	frags := captureFragments(t)
	first := ingest(t, e, "cam", frags[:1], 0)
	cur, err := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartAfter, Number: first[0]})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := e.BeginIngest(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	missed := 0
	rounds := 400
	for i := 0; i < rounds; i++ {
		type res struct {
			n   string
			err error
		}
		got := make(chan res, 1)
		go func() {
			f, err := cur.Next(context.Background(), 300*time.Millisecond)
			if err != nil {
				got <- res{err: err}
				return
			}
			got <- res{n: f.Meta.Number.String()}
			f.Release()
		}()
		time.Sleep(200 * time.Microsecond)
		clock.add(2 * time.Minute) // the reader has waited in Next over a minute
		src := frags[1+i%(len(frags)-1)]
		c := *src
		c.Buf = mediaCopy(t, e, src.Buf)
		n, serverMs, err := sess.StartFragment()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := sess.Receive(n, serverMs, int64(i+1)*1_000_000+int64(src.Timecode), &c)
		if err != nil || rec.Duplicate {
			t.Fatal(err, rec.Duplicate)
		}
		if err := sess.Persist(rec.Fragment); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.err != nil {
			if !errors.Is(r.err, ErrIdle) {
				t.Fatal(r.err)
			}
			missed++
			// It is in the archive: the next Next finds it.
			f, err := cur.Next(context.Background(), time.Second)
			if err != nil {
				t.Fatalf("round %d: %v", i, err)
			}
			if f.Meta.Number != n {
				t.Fatalf("round %d: got %s want %s", i, f.Meta.Number, n)
			}
			f.Release()
		} else if r.n != n.String() {
			t.Fatalf("round %d: got %s want %s", i, r.n, n)
		}
	}
	if missed > 0 {
		t.Errorf("%d of %d rounds: the woken reader missed a fragment stored and dropped from the ring while it looked in the archive (idle timeout instead)", missed, rounds)
	}
}
