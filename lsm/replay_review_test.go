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
// fragment (009cd2a): each test but the last failed on it; each comment
// says what it checks and what that version did.

// replayPrepOpts is prepOptions with the checkpointer kept out of the way
// (the crash comes before its first tick, as it may within a second).
func replayPrepOpts(fs vfs.FS) Options {
	o := prepOptions(fs)
	o.IndexSyncInterval = time.Minute
	return o
}

// TestWritingResumesAtTheCheckpointAfterClose: a fragment stored after a
// clean restart whose Close removed a prepared segment, and whose commit a
// crash then takes before the checkpointer's first run, is replayed: the
// new segment is not numbered before the stream's checkpoint. (The first
// version wrote (nextSeq, 0) at Close, counting the prepared segment Close
// removed; the next process wrote before that checkpoint and the fragment
// was lost.)
func TestWritingResumesAtTheCheckpointAfterClose(t *testing.T) {
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

// TestWritingResumesAtTheCheckpointAfterRetentionEmptiedStream: after a
// restart, retention that deletes all of a stream's fragments unlinks
// every segment; the stream's next segment is still numbered at or after
// its checkpoint (seqFloor), so a fragment stored then is replayed after a
// crash. (In the first version numbering restarted at 1, before the
// checkpoint, and the fragment was lost.)
func TestWritingResumesAtTheCheckpointAfterRetentionEmptiedStream(t *testing.T) {
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

// TestReplayKeepsWholeResendThatReplacedPartial: a whole re-send
// (engine/resend.go: more frames, the stored partial copy its prefix),
// stored with Replaces = the partial copy and acknowledged, whose commit a
// crash takes, is indexed by replay and the partial copy deleted. (The
// first version guessed copies from content, as Repair does, and left the
// acknowledged whole fragment out.)
func TestReplayKeepsWholeResendThatReplacedPartial(t *testing.T) {
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

// crashAfterEqualCopy stores a fragment (its entries made durable), then
// a peer's equal copy under the peer's number (node 2), acknowledged, and
// returns a crash image taken then (the copy's commit not synced).
func crashAfterEqualCopy(t *testing.T) (crashed *vfs.MemFS, own, peer FragmentWrite) {
	t.Helper()
	live := vfs.NewCrashableMem()
	d := openStream1(t, replayOpts(live, 0))
	own = replayWrite(0, 5000)
	if err := d.PutFragment(1, &own); err != nil {
		t.Fatal(err)
	}
	if err := d.db.LogData(nil, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	peer = own
	peer.Header = nil
	peer.Meta.Number = fragment.MakeNumber(77, 2, 0)
	if err := d.PutFragment(1, &peer); err != nil {
		t.Fatal(err)
	}
	crashed = crashNow(live)
	_ = d.Close()
	return crashed, own, peer
}

// TestReplayKeepsAcknowledgedEqualCopy: the index may hold two fragments
// of a stream at one producer time with equal digests (a store written
// before engine ImportFragment kept one of two equal copies under
// different numbers). When the second one's commit is
// lost in a crash, replay indexes it: it was acknowledged. (The first
// version left it out as a second copy.)
func TestReplayKeepsAcknowledgedEqualCopy(t *testing.T) {
	crashed, _, peer := crashAfterEqualCopy(t)

	d, err := Open(replayOpts(crashed, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if ok, err := d.HasFragment(1, peer.Meta.Number); err != nil || !ok {
		t.Fatalf("acknowledged fragment %s missing after the crash (replayed %+v): %v", peer.Meta.Number, d.Replayed(), err)
	}
}

// TestRepairAfterCrashKeepsAcknowledgedEqualCopy: the same through
// Repair, run on the crash image before any read-write Open replays: a
// record after the old index's checkpoint, not voided, counts as the old
// index's, so leaveOutCopies keeps both copies. (Before, Repair assumed a
// record the index lacked was never acknowledged and dropped one.)
func TestRepairAfterCrashKeepsAcknowledgedEqualCopy(t *testing.T) {
	crashed, own, peer := crashAfterEqualCopy(t)

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
