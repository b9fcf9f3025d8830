package lsm

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Found by an adversarial review of the first version of one sync per
// fragment (009cd2a): each test but the last failed on it; the comment of
// each says what it showed.

// replayPrepOpts is prepOptions with the checkpointer kept out of the way
// (the crash comes before its first tick, as it may within a second).
func replayPrepOpts(fs vfs.FS) Options {
	o := prepOptions(fs)
	o.IndexSyncInterval = time.Minute
	return o
}

// TestCloseCheckpointPastDroppedPreparedSegment: Close writes each
// stream's checkpoint as (nextSeq, 0), and nextSeq counts the prepared
// segment, which Close then removes. The next process resumes at (newest
// seq on disk + 1) = the prepared seq, i.e. BEFORE the checkpoint; Open's
// replay skips a stream whose checkpoint is not before its end (and does
// not pull the checkpoint back). So an acknowledged fragment stored after
// the restart, whose unsynced commit a crash takes before the
// checkpointer's first run, is never replayed: lost.
func TestCloseCheckpointPastDroppedPreparedSegment(t *testing.T) {
	live := vfs.NewCrashableMem()
	d, err := Open(replayPrepOpts(live))
	if err != nil {
		t.Fatal(err)
	}
	id := createTestStream(t, d)
	i := 0
	prepared, err := waitPrepared(t, d, id, &i)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil { // checkpoint = prepared+1; the prepared file goes
		t.Fatal(err)
	}

	d, err = Open(replayPrepOpts(live))
	if err != nil {
		t.Fatal(err)
	}
	w := prepFragment(i)
	if err := d.PutFragment(id, &w); err != nil { // acknowledged
		t.Fatal(err)
	}
	seg := d.ActiveSegment(id)
	cp, _, _ := d.checkpoint(id)
	crashed := crashNow(live)
	_ = d.Close()
	t.Logf("prepared seq %d; after restart written to seq %d; durable checkpoint %+v", prepared, seg, cp)

	d, err = Open(replayPrepOpts(crashed))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, b, err := d.Fragment(id, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
		t.Fatalf("acknowledged fragment %d lost after a crash (replayed %+v): %v", i, d.Replayed(), err)
	}
}

// TestCheckpointAheadAfterRetentionEmptiedStream: after a restart a
// stream's checkpoint is (newest seq + 1, 0). Retention that deletes all
// of its fragments unlinks every segment (none is active in this
// process), so the stream's next roll starts again at seq 1: before the
// checkpoint, which DeleteBefore did not move (the stream appended nothing
// in this process). An acknowledged fragment there is lost in a crash
// before the checkpointer's next run.
func TestCheckpointAheadAfterRetentionEmptiedStream(t *testing.T) {
	live := vfs.NewCrashableMem()
	d := openStream1(t, replayOpts(live, 0))
	putReplayWrites(t, d, 0, 3)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d, err := Open(replayOpts(live, 0))
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := d.DeleteBefore(1, 1<<40); err != nil || n != 3 {
		t.Fatalf("retention deleted %d: %v", n, err)
	}
	w := replayWrite(3, 3000)
	if err := d.PutFragment(1, &w); err != nil { // acknowledged
		t.Fatal(err)
	}
	seg := d.ActiveSegment(1)
	cp, _, _ := d.checkpoint(1)
	crashed := crashNow(live)
	_ = d.Close()
	t.Logf("written to seq %d; durable checkpoint %+v", seg, cp)

	d, err = Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, b, err := d.Fragment(1, w.Meta.Number, nil); err != nil || !bytes.Equal(b, w.Media) {
		t.Fatalf("acknowledged fragment lost after a crash (replayed %+v): %v", d.Replayed(), err)
	}
}

// prefixFrames is a SameFrames for tests: the clusters are equal, or one
// is a prefix of the other (engine's sameFrames on frames).
func prefixFrames(a, b FrameCopy) bool {
	return bytes.HasPrefix(a.Cluster, b.Cluster) || bytes.HasPrefix(b.Cluster, a.Cluster)
}

func replayWriteOf(num fragment.Number, producerMs int64, cluster []byte, frames uint32, hdr []byte) FragmentWrite {
	meta := fragment.Meta{Number: num, ProducerMs: producerMs, ServerMs: producerMs, DurationMs: 1000, HeaderID: 9,
		ClusterLen: uint32(len(cluster)), MediaLen: uint32(len(cluster)), Frames: frames}
	binary.BigEndian.PutUint64(meta.Digest[:], xxhash.Sum64(cluster))
	return FragmentWrite{Meta: meta, Header: hdr, Media: cluster}
}

// TestReplayDropsWholeResendThatReplacedPartial: a whole re-send
// (engine/resend.go: more frames, the stored partial copy its prefix) is
// stored with Replaces = the partial copy and acknowledged. Its commit is
// lost in a crash; replay's copyOfIndexed finds the partial copy indexed at
// the same producer time with SameFrames true (a prefix) and leaves the
// whole one out as a "second copy" before looking at what it replaced:
// the acknowledged whole fragment is gone and the partial one stays.
func TestReplayDropsWholeResendThatReplacedPartial(t *testing.T) {
	live := vfs.NewCrashableMem()
	opts := replayOpts(live, 0)
	opts.SameFrames = prefixFrames
	d := openStream1(t, opts)
	full := bytes.Repeat([]byte("frame-"), 4000)
	partial := replayWriteOf(fragment.MakeNumber(5, 1, 0), 5000, full[:6000], 10, []byte("session header"))
	if err := d.PutFragment(1, &partial); err != nil {
		t.Fatal(err)
	}
	if err := d.db.LogData(nil, pebble.Sync); err != nil { // the partial copy's entries durable
		t.Fatal(err)
	}
	whole := replayWriteOf(fragment.MakeNumber(5, 1, 1), 5000, full, 40, nil)
	whole.Replaces = []fragment.Meta{partial.Meta}
	if err := d.PutFragment(1, &whole); err != nil { // acknowledged
		t.Fatal(err)
	}
	crashed := crashNow(live)
	_ = d.Close()

	opts.FS = crashed
	d, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	okWhole, _ := d.HasFragment(1, whole.Meta.Number)
	okPartial, _ := d.HasFragment(1, partial.Meta.Number)
	if !okWhole || okPartial {
		t.Fatalf("after the crash: whole (acknowledged) present %v, replaced partial present %v; replayed %+v", okWhole, okPartial, d.Replayed())
	}
}

// TestReplayDropsAcknowledgedEqualCopy: the index may legitimately
// hold two fragments of a stream at one producer time with equal digests
// (engine ImportFragment keeps a peer's equal copy under its own number:
// findPartialCopies, equalIsCopy=false; Repair keeps both when the old
// index held both). When the second one's PutFragment returned nil and a
// crash takes its commit, replay leaves it out as a second copy: an
// acknowledged fragment is missing.
func TestReplayDropsAcknowledgedEqualCopy(t *testing.T) {
	live := vfs.NewCrashableMem()
	d := openStream1(t, replayOpts(live, 0))
	own := replayWrite(0, 5000)
	if err := d.PutFragment(1, &own); err != nil {
		t.Fatal(err)
	}
	if err := d.db.LogData(nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	peer := own // a peer's copy under the peer's number (node 2)
	peer.Header = nil
	peer.Meta.Number = fragment.MakeNumber(77, 2, 0)
	if err := d.PutFragment(1, &peer); err != nil { // acknowledged (to the replicating peer)
		t.Fatal(err)
	}
	crashed := crashNow(live)
	_ = d.Close()

	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ok, err := d.HasFragment(1, peer.Meta.Number); err != nil || !ok {
		t.Fatalf("acknowledged fragment %s missing after the crash (replayed %+v): %v", peer.Meta.Number, d.Replayed(), err)
	}
}

// TestRepairAfterCrashDropsAcknowledgedEqualCopy: the same through
// Repair. leaveOutCopies keeps two copies the old index both held ("the
// live index held both") and otherwise drops one, on the premise that a
// record the index lacks was never acknowledged. With unsynced commits
// that premise is gone: Repair run on a crash image (before any
// read-write Open replays) drops the acknowledged peer copy, which
// before 009cd2a was in the synced index and kept.
func TestRepairAfterCrashDropsAcknowledgedEqualCopy(t *testing.T) {
	live := vfs.NewCrashableMem()
	d := openStream1(t, replayOpts(live, 0))
	own := replayWrite(0, 5000)
	if err := d.PutFragment(1, &own); err != nil {
		t.Fatal(err)
	}
	if err := d.db.LogData(nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	peer := own
	peer.Header = nil
	peer.Meta.Number = fragment.MakeNumber(77, 2, 0)
	if err := d.PutFragment(1, &peer); err != nil {
		t.Fatal(err)
	}
	crashed := crashNow(live)
	_ = d.Close()

	if _, err := Repair(replayOpts(crashed, 0)); err != nil {
		t.Fatal(err)
	}
	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, n := range []fragment.Number{own.Meta.Number, peer.Meta.Number} {
		if ok, err := d.HasFragment(1, n); err != nil || !ok {
			t.Fatalf("acknowledged fragment %s missing after a crash and Repair: %v", n, err)
		}
	}
}

// TestCleanCloseLeavesNoCheckpoint: a clean Close deletes every replay
// checkpoint and void (none means wholly indexed), so a kvsedge that
// predates them, run after it, leaves no stale checkpoint behind: an
// upgrade again replays nothing and brings back nothing retention
// deleted. The older kvsedge's run is emulated by writing to the index
// directly (synced, no checkpoint), deleting fragments as its retention
// would.
func TestCleanCloseLeavesNoCheckpoint(t *testing.T) {
	fs := vfs.NewMem()
	d := openStream1(t, replayOpts(fs, 0))
	putReplayWrites(t, d, 0, 6)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	o := replayOpts(fs, 0)
	db, err := pebble.Open(o.Dir+"/"+indexDirName, &pebble.Options{FS: fs, FormatMajorVersion: pebble.FormatValueSeparation, Logger: pebbleLogger{l: o.Logger}})
	if err != nil {
		t.Fatal(err)
	}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixReplay}, UpperBound: []byte{prefixVoid + 1}})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		t.Errorf("after a clean Close the index holds %x", it.Key())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	// The older kvsedge's retention: fragments 0-3 go.
	b := db.NewBatch()
	for i := range 4 {
		m := replayWrite(i, int64(i)*1000).Meta
		for _, k := range [][]byte{fragmentKey(nil, 1, m.Number), timeKey(nil, prefixProducerIdx, 1, m.ProducerMs, m.Number), timeKey(nil, prefixServerIdx, 1, m.ServerMs, m.Number)} {
			if err := b.Delete(k, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	d, err = Open(replayOpts(fs, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if r := d.Replayed(); r != (ReplayReport{}) {
		t.Fatalf("Open after a clean close replayed %+v", r)
	}
	for i := range 6 {
		ok, err := d.HasFragment(1, replayWrite(i, 0).Meta.Number)
		if err != nil || ok != (i >= 4) {
			t.Fatalf("fragment %d: present %v (%v)", i, ok, err)
		}
	}
}
