package lsm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// repairFixture is a store on the real filesystem with two streams: a
// camera with 40 fragments over several segments (one of them a partial
// copy a whole re-send replaced) and a second stream with 5.
type repairFixture struct {
	dir   string
	opts  Options
	media map[StreamID]map[fragment.Number][]byte
	// replaced is the partial copy that must never come back.
	replaced fragment.Number
}

func fixtureMedia(id StreamID, i int) []byte {
	b := bytes.Repeat([]byte(fmt.Sprintf("stream %d fragment %d;", id, i)), 2000+i*37)
	return b
}

func newRepairFixture(t *testing.T) *repairFixture {
	t.Helper()
	dir := t.TempDir()
	f := &repairFixture{dir: dir, media: map[StreamID]map[fragment.Number][]byte{},
		opts: Options{Dir: dir, Logger: slog.New(slog.DiscardHandler), CacheBytes: 1 << 20, MemTableBytes: 1 << 20, SegmentBytes: 1 << 20, ReserveBytes: -1}}
	db, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(id StreamID, i int, seq uint32, media []byte, replaces []fragment.Meta) fragment.Meta {
		m := fragment.Meta{Number: fragment.MakeNumber(100, 1, seq), ProducerMs: 1_000_000 + int64(i)*2000, ServerMs: 2_000_000 + int64(i)*2000,
			DurationMs: 2000, HeaderID: uint64(id) * 7, ClusterLen: uint32(len(media)), MediaLen: uint32(len(media)), Frames: uint32(i + 1)}
		binary.BigEndian.PutUint64(m.Digest[:], xxhash.Sum64(media))
		w := FragmentWrite{Meta: m, Media: media, Replaces: replaces}
		if i == 0 {
			w.Header = []byte(fmt.Sprintf("session header of stream %d", id))
		}
		if err := db.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
		if f.media[id] == nil {
			f.media[id] = map[fragment.Number][]byte{}
		}
		f.media[id][m.Number] = media
		return m
	}
	for _, sn := range []struct {
		id StreamID
		n  int
	}{{1, 40}, {2, 5}} {
		id, n := sn.id, sn.n
		got, _ := db.AllocStreamID()
		if got != id {
			t.Fatalf("stream id %d, want %d", got, id)
		}
		if err := db.PutStream(id, []byte(fmt.Sprintf(`{"name":"cam-%d"}`, id))); err != nil {
			t.Fatal(err)
		}
		if err := db.PutTerm(id, 100, 1); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			put(id, i, uint32(i), fixtureMedia(id, i), nil)
		}
	}
	// A partial copy (fragment 40 of stream 1), then its whole re-send
	// (41) replacing it.
	partial := put(1, 40, 40, fixtureMedia(1, 40)[:5000], nil)
	put(1, 41, 41, fixtureMedia(1, 40), []fragment.Meta{partial})
	delete(f.media[1], partial.Number)
	f.replaced = partial.Number
	return f
}

// verify opens the store and checks that want (stream → fragments) is
// exactly what the index lists and that each reads back.
func (f *repairFixture) verify(t *testing.T, want map[StreamID]map[fragment.Number][]byte) {
	t.Helper()
	db, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := db.Streams()
	if err != nil || len(recs) != len(want) {
		t.Fatalf("streams after repair: %v %d, want %d", err, len(recs), len(want))
	}
	for _, r := range recs {
		if !strings.Contains(string(r.Value), fmt.Sprintf("cam-%d", r.ID)) {
			t.Fatalf("stream %d record %q", r.ID, r.Value)
		}
		if h, err := db.Header(r.ID, uint64(r.ID)*7); err != nil || !strings.Contains(string(h), "session header") {
			t.Fatalf("stream %d header: %q %v", r.ID, h, err)
		}
	}
	for id, frags := range want {
		listed := 0
		err := db.ScanTime(id, fragment.ByServerTime, 0, 1<<62, nil, func(m fragment.Meta) bool {
			listed++
			media, ok := frags[m.Number]
			if !ok {
				t.Errorf("stream %d lists fragment %s, which must not be there", id, m.Number)
				return true
			}
			_, b, err := db.Fragment(id, m.Number, nil)
			if err != nil || !bytes.Equal(b, media) {
				t.Errorf("stream %d fragment %s: %v", id, m.Number, err)
			}
			return true
		})
		if err != nil || listed != len(frags) {
			t.Fatalf("stream %d: listed %d fragments (%v), want %d", id, listed, err, len(frags))
		}
	}
	// New streams never reuse an id whose media is on disk.
	if id, _ := db.AllocStreamID(); id <= 2 {
		t.Fatalf("next stream id %d", id)
	}
}

func TestRepairRebuildsALostIndex(t *testing.T) {
	f := newRepairFixture(t)
	// A sound store: check finds nothing wrong, and the only segment bytes
	// no fragment uses are the replaced partial copy's record.
	db0, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	cr, err := db0.Check()
	db0.Close()
	if err != nil || len(cr.Problems) != 0 || cr.Fragments != 46 || cr.UnreferencedBytes != int64(recordHdrLen+metaLen+2+5000) {
		t.Fatalf("check of a sound store: %v %+v", err, cr)
	}
	if err := os.RemoveAll(filepath.Join(f.dir, indexDirName)); err != nil {
		t.Fatal(err)
	}
	// Started without its index, the store says so and lists nothing.
	db, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if h := db.Health(); len(h.UnknownMedia) != 2 {
		t.Fatalf("unknown media after the index was lost: %+v", h)
	}
	if id, _ := db.AllocStreamID(); id != 3 {
		t.Fatalf("a new index hands out stream id %d while media 1 and 2 exist", id)
	}
	db.Close()
	rep, err := Repair(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Streams != 2 || rep.Fragments != 46 || rep.FromSegments != 46 || rep.Replaced != 1 || len(rep.Aside) != 0 {
		t.Fatalf("report: %+v", rep)
	}
	f.verify(t, f.media)
}

func TestRepairSalvagesAndSetsDamagedMediaAside(t *testing.T) {
	f := newRepairFixture(t)
	// Flip a byte in the middle of fragment 7's media.
	victim := fixtureMedia(1, 7)
	segs, _ := filepath.Glob(filepath.Join(f.dir, "media", "00000001", "*.seg"))
	flipped := false
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		if i := bytes.Index(b, victim); i >= 0 {
			b[i+len(victim)/2] ^= 0xff
			if err := os.WriteFile(s, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("fragment 7 not found in a segment")
	}
	rep, err := Repair(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OldIndex == "" || rep.FromOldIndex != 45 || rep.Fragments != 45 || len(rep.Aside) != 1 || rep.Aside[0].Bytes < int64(len(victim)) {
		t.Fatalf("report: %+v", rep)
	}
	aside, err := os.ReadFile(rep.Aside[0].Path)
	if err != nil || !bytes.Contains(aside, victim[:len(victim)/2]) {
		t.Fatalf("the damaged fragment's bytes are not in lost+found: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rep.OldIndex, "index")); err == nil {
		t.Fatal("the old index was nested")
	}
	want := f.media
	delete(want[1], fragment.MakeNumber(100, 1, 7))
	f.verify(t, want)
}

func TestRepairAfterAPebbleTableIsDamaged(t *testing.T) {
	f := newRepairFixture(t)
	// Make the index's data live in tables, then damage each one.
	db, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.db.Flush(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	tables, _ := filepath.Glob(filepath.Join(f.dir, indexDirName, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table to damage")
	}
	for _, p := range tables {
		b, _ := os.ReadFile(p)
		for i := 100; i < len(b)/2; i += 97 {
			b[i] ^= 0x5a
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Opening and reading a damaged index fails reads; it does not end the
	// process, and the damage is counted.
	if db, err := Open(f.opts); err != nil {
		t.Logf("the damaged index does not open: %v", err)
	} else {
		_, _ = db.Streams()
		_, _, _ = db.Fragment(1, fragment.MakeNumber(100, 1, 3), nil)
		if rep, err := db.Check(); err != nil || len(rep.Problems) == 0 {
			t.Errorf("check of a damaged index: %v, %+v", err, rep)
		}
		if h := db.Health(); h.Corruptions == 0 {
			t.Errorf("damage not counted: %+v", h)
		}
		db.Close()
	}
	rep, err := Repair(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("repair: %+v", rep)
	if rep.Fragments != 46 || rep.Replaced != 1 {
		t.Fatalf("report: %+v", rep)
	}
	f.verify(t, f.media)
}

func TestOpenMovesAnOldLayoutIntoIndex(t *testing.T) {
	f := newRepairFixture(t)
	names, _ := os.ReadDir(filepath.Join(f.dir, indexDirName))
	for _, n := range names {
		if err := os.Rename(filepath.Join(f.dir, indexDirName, n.Name()), filepath.Join(f.dir, n.Name())); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(f.dir, indexDirName)); err != nil {
		t.Fatal(err)
	}
	f.verify(t, f.media)
	if _, err := os.Stat(filepath.Join(f.dir, indexDirName)); err != nil {
		t.Fatal("the old layout was not moved into index/")
	}
}

func TestRepeatedFatalErrorsOpenReadOnly(t *testing.T) {
	f := newRepairFixture(t)
	path := filepath.Join(f.dir, fatalFile)
	now := time.Now()
	old := fmt.Sprintf("%d long ago\n", now.Add(-time.Hour).UnixMilli())
	if err := os.WriteFile(path, []byte(old+fmt.Sprintf("%d once\n", now.UnixMilli())), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if db.ReadOnly() || db.Health().FatalReadOnly != "" {
		t.Fatal("one recent fatal error made the store read-only")
	}
	db.Close()
	recordFatal(path, "pebble: MANIFEST sync failed: input/output error")
	db, err = Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if !db.ReadOnly() || !strings.Contains(db.Health().FatalReadOnly, "MANIFEST sync failed") {
		t.Fatalf("after two fatal errors in 10 minutes: read-only %v, %+v", db.ReadOnly(), db.Health())
	}
	if err := db.PutStream(9, []byte("x")); err != ErrIndexFailed {
		t.Fatalf("a write to the read-only index: %v", err)
	}
	if _, b, err := db.Fragment(1, fragment.MakeNumber(100, 1, 3), nil); err != nil || !bytes.Equal(b, f.media[1][fragment.MakeNumber(100, 1, 3)]) {
		t.Fatalf("a read from the read-only index: %v", err)
	}
	if db.ReadOnlyCanWrite() {
		t.Fatal("reopening read-write is allowed before the window has passed")
	}
}

// TestRepairLeavesOutSecondCopiesOfAFragment: a crash between a fragment's
// segment sync and its index batch leaves its record in a segment,
// unacknowledged; the producer re-sends it and it is stored again under a
// new number. Repair, from the old index or from the segments alone,
// indexes it once: equal digests, or SameFrames (the engine's frame
// comparison: here, equal bytes after the first 10, as a re-send with
// another cluster timecode differs), make two fragments at one producer
// time one. A different fragment at the same producer time stays.
func TestRepairLeavesOutSecondCopiesOfAFragment(t *testing.T) {
	for _, lostIndex := range []bool{false, true} {
		t.Run(fmt.Sprintf("lostIndex=%v", lostIndex), func(t *testing.T) {
			f := newRepairFixture(t)
			db, err := Open(f.opts)
			if err != nil {
				t.Fatal(err)
			}
			const id = StreamID(2)
			put := func(seq uint32, producerMs int64, media []byte, indexed bool) fragment.Number {
				m := fragment.Meta{Number: fragment.MakeNumber(100, 1, seq), ProducerMs: producerMs, ServerMs: producerMs + 1_000_000,
					DurationMs: 2000, HeaderID: uint64(id) * 7, ClusterLen: uint32(len(media)), MediaLen: uint32(len(media)), Frames: 3}
				binary.BigEndian.PutUint64(m.Digest[:], xxhash.Sum64(media))
				if err := db.PutFragment(id, &FragmentWrite{Meta: m, Media: media}); err != nil {
					t.Fatal(err)
				}
				if !indexed { // the crash: the segment record is synced, the index batch lost
					for _, k := range [][]byte{fragmentKey(nil, id, m.Number), timeKey(nil, prefixProducerIdx, id, m.ProducerMs, m.Number),
						timeKey(nil, prefixServerIdx, id, m.ServerMs, m.Number)} {
						if err := db.db.Delete(k, nil); err != nil {
							t.Fatal(err)
						}
					}
				} else {
					f.media[id][m.Number] = media
				}
				return m.Number
			}
			same := func(a, b FrameCopy) bool { return len(a.Cluster) > 10 && bytes.Equal(a.Cluster[10:], b.Cluster[10:]) }
			body := bytes.Repeat([]byte("frames of fragment 5;"), 500)
			put(5, 5_000_000, body, false) // lost, then re-sent whole: equal digests
			resent := put(6, 5_000_000, body, true)
			other := append([]byte("timecode 1"), body[:4000]...)
			put(7, 6_000_000, other, false) // lost, re-sent with another timecode
			resent2 := put(8, 6_000_000, append([]byte("timecode 2"), body[:4000]...), true)
			distinct := put(9, 6_000_000, append([]byte("timecode 1"), body[:3000]...), false) // another fragment at that time
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if lostIndex {
				if err := os.RemoveAll(filepath.Join(f.dir, indexDirName)); err != nil {
					t.Fatal(err)
				}
			}
			opts := f.opts
			opts.SameFrames = same
			rep, err := Repair(opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Copies != 2 || rep.Fragments != 46+3 {
				t.Fatalf("report: %+v", rep)
			}
			// distinct was never indexed either; it is a fragment of its own,
			// and comes back.
			f.media[id][distinct] = append([]byte("timecode 1"), body[:3000]...)
			f.verify(t, f.media)
			for _, n := range []fragment.Number{resent, resent2} {
				if _, ok := f.media[id][n]; !ok {
					t.Fatalf("the acknowledged copy %s is not expected", n)
				}
			}
		})
	}
}

// TestRepairKeepsCopiesTheOldIndexHeld: two fragments at one producer time
// with the same frames that the live index held both of (a store written
// before the engine kept one of two equal copies under different
// numbers) are not a crash's leftover; Repair keeps both, as the live
// index had them.
func TestRepairKeepsCopiesTheOldIndexHeld(t *testing.T) {
	f := newRepairFixture(t)
	db, err := Open(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	const id = StreamID(2)
	body := bytes.Repeat([]byte("frames copied from a peer;"), 400)
	for _, n := range []fragment.Number{fragment.MakeNumber(100, 1, 5), fragment.MakeNumber(200, 1, 0)} {
		m := fragment.Meta{Number: n, ProducerMs: 5_000_000, ServerMs: 6_000_000,
			DurationMs: 2000, HeaderID: uint64(id) * 7, ClusterLen: uint32(len(body)), MediaLen: uint32(len(body)), Frames: 3}
		binary.BigEndian.PutUint64(m.Digest[:], xxhash.Sum64(body))
		if err := db.PutFragment(id, &FragmentWrite{Meta: m, Media: body}); err != nil {
			t.Fatal(err)
		}
		f.media[id][n] = body
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := Repair(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Copies != 0 {
		t.Fatalf("report: %+v", rep)
	}
	f.verify(t, f.media)
}
