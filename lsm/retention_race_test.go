package lsm

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// openHookFS runs hook (once) when a media segment is opened.
type openHookFS struct {
	vfs.FS
	hook func()
}

func (fs *openHookFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if h := fs.hook; h != nil && strings.HasSuffix(name, segmentSuffix) {
		fs.hook = nil
		h()
	}
	return fs.FS.Open(name, opts...)
}

// retentionRace opens a store whose stream holds 8 fragments of 300 KiB
// (three 1 MiB segments; fragment i at producer time 1000+i, with its
// digest) and arms the next open of a segment to run retention first,
// deleting fragments 0-3 (the first segment goes); *deleted is how many
// it deleted.
func retentionRace(t *testing.T) (d *DB, id StreamID, media []byte, deleted *int) {
	t.Helper()
	fs := &openHookFS{FS: vfs.NewMem()}
	opts := memOpts(fs)
	opts.SegmentBytes = 1 << 20
	opts.InlineRolls = true
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	id = createTestStream(t, d)
	media = putDigestedFragments(t, d, id)
	deleted = new(int)
	fs.hook = func() {
		n, _, err := d.DeleteBefore(id, 1004)
		if err != nil {
			t.Errorf("retention: %v", err)
		}
		*deleted = n
	}
	return d, id, media, deleted
}

// TestFragmentGoneByRetentionWhileReadIsNotFound: a fragment that
// retention deletes while it is read (its record found, then its segment
// unlinked before the read opens it) is not found, as it would be a
// moment later, never a read error: readers skip a fragment gone by
// retention (GetClip leaves it out) but end on a damaged one.
func TestFragmentGoneByRetentionWhileReadIsNotFound(t *testing.T) {
	d, id, _, deleted := retentionRace(t)
	_, _, err := d.Fragment(id, fragment.MakeNumber(1, 1, 0), nil)
	if *deleted != 4 {
		t.Fatalf("retention deleted %d fragments while the read ran, want 4", *deleted)
	}
	if ok, herr := d.HasFragment(id, fragment.MakeNumber(1, 1, 0)); herr != nil || ok {
		t.Fatalf("the fragment is still held after retention (%v, %v): the test did not race the read", ok, herr)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("reading a fragment retention deleted meanwhile: %v, want ErrNotFound", err)
	}
}

// TestNextFragmentPassesOverOneGoneByRetentionWhileRead: a reader going
// through a stream (GetMedia from the earliest fragment) whose next
// fragment retention deletes while it is read gets the first fragment
// retention kept, not a read error.
func TestNextFragmentPassesOverOneGoneByRetentionWhileRead(t *testing.T) {
	d, id, media, deleted := retentionRace(t)
	m, got, ok, err := d.NextFragment(id, fragment.Number{}, fragment.Number{}, nil)
	if *deleted != 4 {
		t.Fatalf("retention deleted %d fragments while the read ran, want 4", *deleted)
	}
	if err != nil || !ok {
		t.Fatalf("the next fragment after retention took the first ones while it was read: ok %v, %v", ok, err)
	}
	if m.Number != fragment.MakeNumber(1, 1, 4) || len(got) != len(media) {
		t.Fatalf("next fragment %s (%d bytes), want the first one retention kept, %s", m.Number, len(got), fragment.MakeNumber(1, 1, 4))
	}
}

// removeOnOpenFS unlinks the first media segment opened just before it is
// opened: a segment lost while its fragments' records stay.
type removeOnOpenFS struct {
	vfs.FS
	armed bool
}

func (fs *removeOnOpenFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	if fs.armed && strings.HasSuffix(name, segmentSuffix) {
		fs.armed = false
		_ = fs.FS.Remove(name)
	}
	return fs.FS.Open(name, opts...)
}

// TestNextFragmentEndsOnASegmentLostWhileItsRecordStays: a missing
// segment whose fragment's record is still there is damage, not
// retention: NextFragment returns the read error (the reader ends on it)
// rather than passing over the fragment, or looping on it.
func TestNextFragmentEndsOnASegmentLostWhileItsRecordStays(t *testing.T) {
	fs := &removeOnOpenFS{FS: vfs.NewMem()}
	opts := memOpts(fs)
	opts.SegmentBytes = 1 << 20
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	id := createTestStream(t, d)
	putDigestedFragments(t, d, id)
	fs.armed = true
	m, _, ok, err := d.NextFragment(id, fragment.Number{}, fragment.Number{}, nil)
	if fs.armed {
		t.Fatal("no segment was opened: the test did not lose one")
	}
	if ok || !errors.Is(err, os.ErrNotExist) || m.Number != fragment.MakeNumber(1, 1, 0) {
		t.Fatalf("NextFragment over a lost segment: %s, ok %v, %v; want fragment 0 and its read error (the segment does not exist)", m.Number, ok, err)
	}
	if has, herr := d.HasFragment(id, m.Number); herr != nil || !has {
		t.Fatalf("fragment %s's record is gone (%v, %v): the test lost a segment, not a record", m.Number, has, herr)
	}
}

// putDigestedFragments stores 8 fragments of 300 KiB (three 1 MiB
// segments), fragment i at producer and server time 1000+i, each with its
// digest (so a read checks it whole), and returns their media.
func putDigestedFragments(t *testing.T, d *DB, id StreamID) []byte {
	t.Helper()
	media := make([]byte, 300<<10)
	for i := 0; i < 8; i++ {
		w := FragmentWrite{Meta: fragment.Meta{Number: fragment.MakeNumber(1, 1, uint32(i)), ProducerMs: int64(1000 + i), ServerMs: int64(1000 + i),
			DurationMs: 1, MediaLen: uint32(len(media)), ClusterLen: uint32(len(media))}, Media: media}
		binary.BigEndian.PutUint64(w.Meta.Digest[:8], xxhash.Sum64(media))
		if err := d.PutFragment(id, &w); err != nil {
			t.Fatal(err)
		}
	}
	return media
}
