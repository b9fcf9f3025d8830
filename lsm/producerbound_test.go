package lsm

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// mayHold is MayHoldProducerTime that fails the test on an error.
func mayHold(t *testing.T, d *DB, id StreamID, ms int64) bool {
	t.Helper()
	ok, err := d.MayHoldProducerTime(id, ms)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// The bound answers "nothing stored at or after this producer time" only
// when it is so: before any fragment, after puts (in and out of order),
// after a reopen (read from the index), for a stream staged before its
// first question, and after DeleteStream.
func TestMayHoldProducerTime(t *testing.T) {
	fs := vfs.NewMem()
	d, err := Open(memOpts(fs))
	if err != nil {
		t.Fatal(err)
	}
	id := createTestStream(t, d)
	if mayHold(t, d, id, -5) || mayHold(t, d, id, 1000) {
		t.Fatal("an empty stream may hold nothing")
	}
	putTestFragment(t, d, id, 0, 1000, []byte("a"))
	putTestFragment(t, d, id, 1, 3000, []byte("b"))
	putTestFragment(t, d, id, 2, 2000, []byte("c")) // older producer time, later number
	for ms, want := range map[int64]bool{-1: true, 1000: true, 2999: true, 3000: true, 3001: false, 1 << 40: false} {
		if got := mayHold(t, d, id, ms); got != want {
			t.Errorf("ms %d: may hold %v, want %v", ms, got, want)
		}
	}

	// A second stream written before anyone asked about it: staging
	// raised its entry before the index read.
	other := createTestStream(t, d)
	putTestFragment(t, d, other, 0, 7000, []byte("x"))
	if !mayHold(t, d, other, 7000) || mayHold(t, d, other, 7001) {
		t.Error("a stream staged before its first question: wrong bound")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: the bound comes from the index.
	d, err = Open(memOpts(fs))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !mayHold(t, d, id, 3000) || mayHold(t, d, id, 3001) {
		t.Error("after reopen: the bound is not the index's newest producer time")
	}
	if !mayHold(t, d, other, 6000) || mayHold(t, d, other, 7001) {
		t.Error("after reopen: wrong bound for the second stream")
	}
	putTestFragment(t, d, id, 3, 9000, []byte("d"))
	if !mayHold(t, d, id, 9000) || mayHold(t, d, id, 9001) {
		t.Error("a put after the index read did not raise the bound")
	}
	if err := d.DeleteStream(id); err != nil {
		t.Fatal(err)
	}
	if mayHold(t, d, id, 1000) {
		t.Error("a deleted stream may still hold fragments")
	}
}
