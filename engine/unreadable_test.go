package engine

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// TestCursorSkipsADamagedFragment: a byte flipped in one stored fragment's
// media makes that fragment unreadable; a reader gets an UnreadableError
// naming it, then goes on with the next fragments.
func TestCursorSkipsADamagedFragment(t *testing.T) {
	clock := &movingClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	fs := vfs.NewMem()
	db, e := openMedia(t, fs, clock, 1)
	defer db.Close()
	if _, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	frags := captureFragments(t)
	damaged := append([]byte(nil), frags[1].Buf[:frags[1].ClusterLen]...)
	stored := ingest(t, e, "cam", frags[:4], 0)

	// Flip a byte in the middle of the second fragment's cluster, in its
	// segment file.
	flipped := false
	dirs, err := fs.List("/d/media")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		files, _ := fs.List("/d/media/" + d)
		for _, name := range files {
			path := "/d/media/" + d + "/" + name
			f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			b := make([]byte, st.Size())
			if _, err := f.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			if i := bytes.Index(b, damaged); i >= 0 {
				at := int64(i + len(damaged)/2)
				if _, err := f.WriteAt([]byte{b[at] ^ 0xFF}, at); err != nil {
					t.Fatal(err)
				}
				flipped = true
			}
			f.Close()
		}
	}
	if !flipped {
		t.Fatal("the second fragment's media was not found in a segment")
	}

	cur, err := e.OpenCursor(StreamRef{Name: "cam"}, Start{Kind: StartEarliest})
	if err != nil {
		t.Fatal(err)
	}
	var got []fragment.Number
	for range 4 {
		f, err := cur.Next(context.Background(), time.Second)
		var ue *UnreadableError
		switch {
		case errors.As(err, &ue):
			if ue.Number != stored[1] {
				t.Fatalf("unreadable %s, the damaged one is %s", ue.Number, stored[1])
			}
			got = append(got, ue.Number)
		case err != nil:
			t.Fatal(err)
		default:
			got = append(got, f.Meta.Number)
			f.Release()
		}
	}
	for i := range stored {
		if got[i] != stored[i] {
			t.Fatalf("read %v, stored %v", got, stored)
		}
	}
	if n := e.Stats().UnreadableFragments; n != 1 {
		t.Fatalf("%d unreadable fragments counted", n)
	}
}
