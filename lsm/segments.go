package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Media segments: fragment media lives outside Pebble, appended to
// per-stream segment files; Pebble holds only the index (FORMAT.md,
// "Media segments"). Each media byte is written to disk once, and
// retention unlinks whole files.
//
//	<data>/media/<sid as 8 hex digits>/<seq as 16 hex digits>.seg
//
// Crash ordering: the media is appended and fdatasync'ed before the Pebble
// batch that points into it is committed, so an index entry never points
// at bytes that are not durable. A crash between the two leaves a record
// the index lacks at the end of a segment, which Open indexes (replay.go);
// a crash before the sync, at most unreferenced bytes: harmless, and gone
// when the segment is.

const (
	mediaDirName  = "media"
	segmentSuffix = ".seg"
	// defaultSegmentBytes is where a segment is closed and the next one
	// begun (Options.SegmentBytes).
	defaultSegmentBytes = 64 << 20
)

// segmentRef locates a fragment's media.
type segmentRef struct {
	Seq    uint64
	Offset uint64
}

type segmentStore struct {
	fs  vfs.FS
	dir string
	// size is where a segment is closed and the next one begun.
	size int64
	// written counts media bytes appended since Open.
	written atomic.Int64
	// header and streamRecord look up what a segment's records repeat
	// (the session header, the stream record); set by the DB.
	header       func(StreamID, uint64) ([]byte, error)
	streamRecord func(StreamID) []byte
	// copyWrites: vfs.File.Write may modify the slice it is given, and
	// Pebble's in-memory filesystem does so in race and invariants builds,
	// while the media being written is shared with live readers. The
	// operating system's files never modify it, so only other filesystems
	// (tests) get a copy.
	copyWrites bool
	// direct: segments are written with O_DIRECT (segdirect.go); the
	// operating system's files only, until a file system refuses it.
	direct atomic.Bool

	// prepare: each actively written stream's next segment is made in
	// the background (prepareSegment) once its active one is
	// prepareAtNum/prepareAtDen full, so a roll on the write path is a
	// swap; false (Options.InlineRolls) rolls inline, as measurements
	// compare. roomFor (the space guard's) says whether the disk has room
	// for one more preallocated segment; nil: always. bg counts
	// preparations in flight (close waits for them).
	prepare bool
	roomFor func(int64) (release func(), ok bool)
	bg      sync.WaitGroup
	// rolls counts rolls since Open: prepared ones (a swap) and inline
	// ones (the first segment of a stream in a process, a failed or
	// disabled preparation).
	rollsPrepared, rollsInline atomic.Int64

	mu      sync.Mutex
	streams map[StreamID]*streamSegments
}

// A stream's next segment is prepared once its active segment is this
// share of Options.SegmentBytes full, or when another append the size of
// the last would not fit (fragments large beside the segment): early enough that the preparation
// (a file, its directory sync, a preallocation, a synced start record:
// milliseconds to tens of them on a loaded disk) is over before the
// segment fills, late enough that streams written now and then never get
// one.
const prepareAtNum, prepareAtDen = 3, 4

// preparedSegment is a stream's next segment, made in the background
// (prepareSegment): created, preallocated, its start record written and
// synced, its directory entry synced. done is closed when the preparation
// ended; the fields are set before, and read only after it. err: the
// preparation failed (the file, if any was made, was removed) and the
// next roll happens inline.
type preparedSegment struct {
	done chan struct{}
	seq  uint64
	f    vfs.File
	dio  *directFile
	size int64 // the start record's length: where appends begin
	err  error
}

// errNoRoomToPrepare: the disk has no room for another preallocated
// segment beside the guard's margins; the roll will happen inline (if the
// space guard lets the write through at all).
var errNoRoomToPrepare = errors.New("lsm: no room to prepare a segment")

// streamSegments is one stream's segment files. mu serialises appends.
type streamSegments struct {
	mu         sync.Mutex
	dir        string
	active     vfs.File
	dio        *directFile // active's O_DIRECT handle, or nil
	activeSeq  uint64
	activeSize int64
	nextSeq    uint64 // 0: not yet scanned
	dead       bool   // the stream was deleted: nothing is written again
	// next is the segment after the active one, prepared in the
	// background (its seq is below nextSeq), or nil.
	next *preparedSegment
	// written counts appends (of any segment of the stream); synced is
	// the count every append up to which is durable: an append numbered
	// g is durable once synced >= g (or its segment failed). Appends are
	// never synced as they are written: PutFragments and the sync window
	// sync what they appended (syncDirty) before committing the index.
	// failed: segments whose sync failed (their unsynced appends are
	// lost); every commit that appended to one gets the error.
	written, synced uint64
	failed          map[uint64]error
	// lastAppend is when the stream last appended (unix ns): a prepared
	// segment of a stream idle for long is dropped (dropIdlePrepared).
	lastAppend int64
	// pins counts, per segment, the puts that appended to it and are not
	// yet committed (or failed): retention never unlinks a pinned segment,
	// even when no indexed fragment is left in it (removeBefore).
	pins map[uint64]int
	// syncing counts SyncData calls running without mu (direct segments
	// only, syncDirty); a handle closed meanwhile waits in closing for
	// the last of them to return, so no sync ever meets a closed (or
	// reused) descriptor.
	syncing int
	closing []vfs.File
	// headers are the session headers the active segment holds a record
	// of; scratch is reused for each fragment's record prefix.
	headers map[uint64]struct{}
	scratch []byte
	// appended: the stream appended in this process; lastStart is where
	// the last append's records (its header record, if any, then its
	// fragment record) began. inflight holds the first record position
	// of each put whose appends are not yet resolved (committed, or
	// failed), in position order (appends are serialised by mu and only
	// move forward): replayFrom, the stream's replay checkpoint.
	appended  bool
	lastStart segmentRef
	inflight  []segmentRef
	// seqFloor: the stream's first segment in this process is numbered
	// at least this (Open sets it from the replay checkpoint, which must
	// not lie after what this process writes: replay.go).
	seqFloor uint64
}

// replayFrom returns the stream's replay checkpoint (replay.go): a
// position such that every record of the stream before it belongs to a
// put that has resolved, so its index batch, if it committed, precedes
// in Pebble's log any batch written after this call. false: the stream
// appended nothing in this process. The caller holds mu.
func (ss *streamSegments) replayFrom() (segmentRef, bool) {
	switch {
	case !ss.appended:
		return segmentRef{}, false
	case len(ss.inflight) > 0:
		return ss.inflight[0], true
	}
	return segmentRef{Seq: ss.activeSeq, Offset: uint64(ss.activeSize)}, true
}

// resolved removes a put's first record position from inflight. The
// caller holds mu.
func (ss *streamSegments) resolved(first segmentRef) {
	for i, r := range ss.inflight {
		if r == first {
			ss.inflight = append(ss.inflight[:i], ss.inflight[i+1:]...)
			return
		}
	}
}

func newSegmentStore(fs vfs.FS, dataDir string, size int64) (*segmentStore, error) {
	dir := fs.PathJoin(dataDir, mediaDirName)
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lsm: creating %s: %w", dir, err)
	}
	// The media directory's own entry must be durable before a segment in
	// it is relied on (found by TestCrashKeepsEverySyncedFragment).
	if err := syncDir(fs, dataDir); err != nil {
		return nil, err
	}
	s := &segmentStore{fs: fs, dir: dir, size: size, streams: make(map[StreamID]*streamSegments), copyWrites: fs != vfs.Default}
	s.direct.Store(fs == vfs.Default)
	return s, nil
}

func (s *segmentStore) stream(id StreamID) *streamSegments {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.streams[id]
	if ss == nil {
		ss = &streamSegments{dir: s.fs.PathJoin(s.dir, fmt.Sprintf("%08x", uint32(id)))}
		s.streams[id] = ss
	}
	return ss
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, segmentSuffix) }

// list returns a stream's segment sequence numbers, ascending.
func (s *segmentStore) list(dir string) ([]uint64, error) {
	names, err := s.fs.List(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var seqs []uint64
	for _, n := range names {
		if !strings.HasSuffix(n, segmentSuffix) {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSuffix(n, segmentSuffix), 16, 64)
		if err == nil {
			seqs = append(seqs, v)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// appendLocked appends a fragment's record (segrecord.go: preceded by its
// session header's record when the segment does not hold it yet) to the
// stream's active segment without a sync, and returns its append count
// (streamSegments.written) for PutFragments or the group syncer
// (groupsync.go) to sync up to (syncDirty) before the index is
// committed. It rolls to
// the next segment (whose directory entry is synced too, and whose first
// record names the stream: prepared in the background, else made here)
// when the active one is full, and starts the preparation of the next one
// when the active one is nearly full (prepareNext). After a process
// start, writing begins in a new segment, never after a torn tail. The
// returned reference points at the media inside the record. The caller
// holds ss.mu.
func (s *segmentStore) appendLocked(id StreamID, ss *streamSegments, w *FragmentWrite) (segmentRef, uint64, error) {
	if ss.dead {
		return segmentRef{}, 0, fmt.Errorf("lsm: stream %d was deleted", id)
	}
	media := w.Media
	framing := recordHdrLen + metaLen + 2 + fragment.NumberLen*len(w.Replaces)
	if ss.active == nil || ss.activeSize+int64(framing+len(media)) > s.size {
		if err := s.roll(id, ss); err != nil {
			return segmentRef{}, 0, err
		}
	}
	start := segmentRef{Seq: ss.activeSeq, Offset: uint64(ss.activeSize)}
	pre := ss.scratch[:0]
	if _, ok := ss.headers[w.Meta.HeaderID]; !ok {
		h := w.Header
		if h == nil && s.header != nil {
			h, _ = s.header(id, w.Meta.HeaderID) // absent: repair reports the fragment's header missing
		}
		if h != nil {
			pre = append(pre, headerRecord(w.Meta.HeaderID, h)...)
			ss.headers[w.Meta.HeaderID] = struct{}{}
		}
	}
	pre = fragmentRecordPrefix(pre, &w.Meta, w.Replaces, media)
	ss.scratch = pre[:0]
	ref := segmentRef{Seq: ss.activeSeq, Offset: uint64(ss.activeSize) + uint64(len(pre))}
	if s.copyWrites {
		media = append([]byte(nil), media...)
		pre = append([]byte(nil), pre...)
	}
	if ss.dio != nil {
		if err := ss.dio.append(ss.activeSize, pre, media); err != nil {
			// The segment's end is now unknown: continue in a new one.
			ss.closeActive()
			return segmentRef{}, 0, fmt.Errorf("lsm: writing media: %w", err)
		}
	} else {
		if _, err := ss.active.Write(pre); err != nil {
			ss.closeActive()
			return segmentRef{}, 0, fmt.Errorf("lsm: writing media: %w", err)
		}
		if _, err := ss.active.Write(media); err != nil {
			// The segment's end is now unknown: continue in a new one.
			ss.closeActive()
			return segmentRef{}, 0, fmt.Errorf("lsm: writing media: %w", err)
		}
	}
	ss.activeSize += int64(len(pre) + len(media))
	s.written.Add(int64(len(pre) + len(media)))
	ss.written++
	ss.appended, ss.lastStart = true, start
	ss.lastAppend = time.Now().UnixNano()
	if n := int64(len(pre) + len(media)); s.prepare && ss.next == nil &&
		(ss.activeSize >= s.size/prepareAtDen*prepareAtNum || ss.activeSize+n > s.size) {
		s.prepareNext(id, ss)
	}
	return ref, ss.written, nil
}

// prepareNext starts the preparation of the stream's next segment in the
// background. The seq is taken now, so an inline roll never collides with
// it (a failed preparation leaves a gap in the seqs: harmless, only their
// order counts). The caller holds ss.mu; the preparation takes no lsm lock.
func (s *segmentStore) prepareNext(id StreamID, ss *streamSegments) {
	p := &preparedSegment{done: make(chan struct{}), seq: ss.nextSeq}
	ss.nextSeq++
	ss.next = p
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer close(p.done)
		if s.roomFor != nil {
			release, ok := s.roomFor(s.size)
			if !ok {
				p.err = errNoRoomToPrepare
				return
			}
			defer release() // the preallocation shows in the free space now
		}
		p.f, p.dio, p.size, p.err = s.create(id, ss.dir, p.seq, true)
	}()
}

// dropNext discards the stream's prepared segment (waiting for a
// preparation in flight): its handles are closed and, with unlink, its
// file (which holds nothing but its start record) is removed. The caller
// holds ss.mu.
func (s *segmentStore) dropNext(ss *streamSegments, unlink bool) {
	p := ss.next
	if p == nil {
		return
	}
	<-p.done
	ss.next = nil
	if p.err != nil {
		return
	}
	if p.dio != nil {
		p.dio.close()
	}
	_ = p.f.Close()
	if unlink {
		_ = s.fs.Remove(s.fs.PathJoin(ss.dir, segmentName(p.seq)))
	}
}

// syncDirty makes the stream's appends up to gen (appendLocked's count)
// durable, unless segment seq (where the caller's media went) failed a
// sync, whose error it returns. One sync covers every append made before
// it began, so concurrent callers mostly find their appends synced
// already. A direct segment (O_DIRECT: a write error is returned by the
// write itself, not left for the sync to find) is synced without holding
// mu, so the stream's next appends proceed meanwhile (a PutMedia upload
// writes its next fragments while the previous ones sync:
// PutFragmentsAsync); a page-cache segment is synced under mu, so that no
// two syncs of one file run at once (the kernel reports a write-back
// error to one sync only).
func (ss *streamSegments) syncDirty(seq, gen uint64) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for ss.synced < gen && ss.failed[seq] == nil && ss.active != nil && ss.activeSeq == seq {
		f, target := ss.active, ss.written
		var err error
		if ss.dio != nil {
			ss.syncing++
			ss.mu.Unlock()
			err = f.SyncData()
			ss.mu.Lock()
			ss.syncing--
			if ss.syncing == 0 {
				for _, c := range ss.closing {
					_ = c.Close()
				}
				ss.closing = ss.closing[:0]
			}
		} else {
			err = f.SyncData()
		}
		if err != nil {
			ss.markFailed(seq, err)
			if ss.active == f {
				ss.closeActive()
			}
			break
		}
		ss.synced = max(ss.synced, target)
	}
	return ss.failed[seq]
}

// checkSynced reports the error of a failed sync of segment seq (nil if
// none failed).
func (ss *streamSegments) checkSynced(seq uint64) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.failed[seq]
}

// pin notes one more put with uncommitted media in segment seq; unpin
// one fewer. The caller holds mu.
func (ss *streamSegments) pin(seq uint64) {
	if ss.pins == nil {
		ss.pins = map[uint64]int{}
	}
	ss.pins[seq]++
}

func (ss *streamSegments) unpin(seq uint64) {
	if ss.pins[seq]--; ss.pins[seq] <= 0 {
		delete(ss.pins, seq)
	}
}

func (ss *streamSegments) markFailed(seq uint64, err error) {
	if ss.failed == nil {
		ss.failed = map[uint64]error{}
	}
	ss.failed[seq] = fmt.Errorf("lsm: syncing media: %w", err)
}

func (ss *streamSegments) closeActive() {
	if ss.active != nil {
		if ss.synced < ss.written && ss.failed[ss.activeSeq] == nil {
			// Appended without a sync: make it durable before the handle
			// goes; a failure fails every commit that appended to this
			// segment.
			if err := ss.active.SyncData(); err != nil {
				ss.markFailed(ss.activeSeq, err)
			}
		}
		// Every append so far is durable now, or its segment failed.
		ss.synced = ss.written
		if ss.dio != nil {
			ss.dio.close()
			ss.dio = nil
		}
		if ss.syncing > 0 {
			ss.closing = append(ss.closing, ss.active)
		} else {
			_ = ss.active.Close()
		}
		ss.active = nil
	}
}

// roll closes the active segment and makes the next one active: the
// prepared one when there is one (waiting for its preparation if it is
// still running: it began earlier than an inline roll would), else a new
// one made here. The caller holds ss.mu.
func (s *segmentStore) roll(id StreamID, ss *streamSegments) error {
	ss.closeActive()
	if ss.nextSeq == 0 {
		if err := s.fs.MkdirAll(ss.dir, 0o700); err != nil {
			return fmt.Errorf("lsm: %w", err)
		}
		seqs, err := s.list(ss.dir)
		if err != nil {
			return fmt.Errorf("lsm: listing %s: %w", ss.dir, err)
		}
		ss.nextSeq = 1
		if len(seqs) > 0 {
			last := seqs[len(seqs)-1]
			ss.nextSeq = last + 1
			s.removeUnused(id, ss.dir, last)
		}
		ss.nextSeq = max(ss.nextSeq, ss.seqFloor)
		if err := syncDir(s.fs, s.dir); err != nil { // the stream's directory entry
			return err
		}
	}
	if p := ss.next; p != nil {
		<-p.done
		ss.next = nil
		if p.err == nil {
			ss.active, ss.dio, ss.activeSeq, ss.activeSize = p.f, p.dio, p.seq, p.size
			ss.headers = map[uint64]struct{}{}
			s.rollsPrepared.Add(1)
			return nil
		}
		// The preparation failed (a full disk, an I/O error): roll
		// inline, which may fail the same way and then fails this write.
	}
	seq := ss.nextSeq
	ss.nextSeq++ // never reused, even if creating it fails (never append after a torn start)
	f, dio, size, err := s.create(id, ss.dir, seq, false)
	if err != nil {
		return err
	}
	ss.active, ss.dio, ss.activeSeq, ss.activeSize = f, dio, seq, size
	ss.headers = map[uint64]struct{}{}
	s.rollsInline.Add(1)
	return nil
}

// create makes segment seq of the stream in dir: the file, its directory
// entry synced, its preallocation (best effort), its start record
// (segrecord.go) written, and with synced (a prepared segment) the record
// fdatasync'ed too; an inline roll leaves that to the first fragment's
// sync, which covers it. It returns the file, its direct handle (nil:
// page-cache writes) and the start record's length. On failure the file
// is closed, and a prepared one is removed (it holds no media).
func (s *segmentStore) create(id StreamID, dir string, seq uint64, synced bool) (vfs.File, *directFile, int64, error) {
	path := s.fs.PathJoin(dir, segmentName(seq))
	f, err := s.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("lsm: creating a segment: %w", err)
	}
	fail := func(err error) (vfs.File, *directFile, int64, error) {
		_ = f.Close()
		if synced {
			_ = s.fs.Remove(path)
		}
		return nil, nil, 0, err
	}
	if err := syncDir(s.fs, dir); err != nil {
		return fail(err)
	}
	_ = f.Preallocate(0, s.size)
	var rec []byte
	if s.streamRecord != nil {
		rec = s.streamRecord(id)
	}
	start := segmentStartRecord(id, seq, rec)
	var dio *directFile
	if s.direct.Load() {
		if dio, err = openDirect(path); err != nil {
			dio = nil
			if directUnsupported(err) {
				s.direct.Store(false)
			}
		} else if err = dio.append(0, start); err != nil {
			dio.close()
			dio = nil
			if !directUnsupported(err) {
				return fail(fmt.Errorf("lsm: writing a segment: %w", err))
			}
			// The file system takes no direct writes: the page cache then
			// (nothing was written).
			s.direct.Store(false)
		}
	}
	if dio == nil {
		if _, err := f.Write(start); err != nil {
			return fail(fmt.Errorf("lsm: writing a segment: %w", err))
		}
	}
	if synced {
		if err := f.SyncData(); err != nil {
			if dio != nil {
				dio.close()
			}
			return fail(fmt.Errorf("lsm: syncing a segment: %w", err))
		}
	}
	return f, dio, int64(len(start)), nil
}

// removeUnused unlinks segment seq, the newest of a stream at the first
// roll in a process, when it holds nothing but an intact start record of
// this stream and seq (and a direct write's zero padding): a segment
// prepared and never used (a crash, or a close that could not remove it),
// or one a crash left right after an inline roll. It holds no media, so
// nothing the index accounts for, or could, goes with it; anything else
// is kept. Not synced, like every unlink: if it comes back after a crash,
// the next start removes it again.
func (s *segmentStore) removeUnused(id StreamID, dir string, seq uint64) {
	if s.holdsOnlyStart(id, dir, seq) {
		_ = s.fs.Remove(s.fs.PathJoin(dir, segmentName(seq)))
	}
}

// holdsOnlyStart reports whether segment seq of stream id in dir holds
// nothing but its intact start record (startOnly).
func (s *segmentStore) holdsOnlyStart(id StreamID, dir string, seq uint64) bool {
	path := s.fs.PathJoin(dir, segmentName(seq))
	st, err := s.fs.Stat(path)
	if err != nil || st.Size() > maxStartOnlyBytes {
		return false
	}
	b, err := readWhole(s.fs, path)
	return err == nil && startOnly(b, id, seq)
}

// maxStartOnlyBytes bounds the size of a segment holding only its start
// record (the stream record is a small JSON object; a direct write pads
// to a block).
const maxStartOnlyBytes = 1 << 20

// startOnly reports whether segment b holds exactly one intact record,
// the start record of stream id's segment seq, and nothing else but a
// direct write's padding.
func startOnly(b []byte, id StreamID, seq uint64) bool {
	sc := scanSegment(b)
	if !sc.framed || len(sc.records) != 1 || len(sc.bad) != 0 {
		return false
	}
	r := sc.records[0]
	return r.kind == kindSegmentStart && len(r.payload) >= 12 &&
		StreamID(binary.BigEndian.Uint32(r.payload)) == id && binary.BigEndian.Uint64(r.payload[4:]) == seq
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("lsm: opening %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("lsm: syncing %s: %w", dir, err)
	}
	return nil
}

// read reads n bytes at ref into dst (grown if needed) and returns them.
func (s *segmentStore) read(id StreamID, ref segmentRef, n int, dst []byte) ([]byte, error) {
	ss := s.stream(id)
	f, err := s.fs.Open(s.fs.PathJoin(ss.dir, segmentName(ref.Seq)))
	if err != nil {
		return nil, fmt.Errorf("lsm: opening segment %d of stream %d: %w", ref.Seq, id, err)
	}
	defer f.Close()
	buf := dst[:0]
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, int64(ref.Offset)); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
		return nil, fmt.Errorf("lsm: reading segment %d of stream %d: %w", ref.Seq, id, err)
	}
	return buf, nil
}

// removeBefore unlinks the stream's segments numbered below seq (never the
// active one, nor one a put in flight appended to: pins) and returns how
// many went.
func (s *segmentStore) removeBefore(id StreamID, seq uint64) (int, error) {
	ss := s.stream(id)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	seqs, err := s.list(ss.dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, q := range seqs {
		if q >= seq || (ss.active != nil && q == ss.activeSeq) || ss.pins[q] > 0 {
			continue // a pinned one holds media a put is about to index
		}
		if ss.next != nil && q == ss.next.seq {
			// The prepared segment (only when every fragment of the
			// stream went): dropped, the next roll makes a new one.
			s.dropNext(ss, false)
		}
		if err := s.fs.Remove(s.fs.PathJoin(ss.dir, segmentName(q))); err != nil {
			return n, fmt.Errorf("lsm: removing a segment: %w", err)
		}
		n++
	}
	return n, nil
}

// dropIdlePrepared removes the prepared segments of the streams that
// appended nothing for idle, and returns how many went: a camera gone
// offline keeps no preallocated segment (64 MiB by default) the capacity
// controller would otherwise make room for by deleting video. A
// preparation still in flight is left for the next call. Should a removal
// not reach the disk, the stream's next first roll removes the file
// (removeUnused); its seq is not reused.
func (s *segmentStore) dropIdlePrepared(idle time.Duration) int {
	cutoff := time.Now().Add(-idle).UnixNano()
	s.mu.Lock()
	streams := make([]*streamSegments, 0, len(s.streams))
	for _, ss := range s.streams {
		streams = append(streams, ss)
	}
	s.mu.Unlock()
	n := 0
	for _, ss := range streams {
		ss.mu.Lock()
		if p := ss.next; p != nil && ss.lastAppend < cutoff {
			select {
			case <-p.done:
				s.dropNext(ss, true)
				n++
			default:
			}
		}
		ss.mu.Unlock()
	}
	return n
}

// removeStream deletes all of a stream's media.
func (s *segmentStore) removeStream(id StreamID) error {
	ss := s.stream(id)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.closeActive()
	s.dropNext(ss, false) // its file goes with the directory
	ss.dead = true        // kept in the map: stream ids are never reused
	if err := s.fs.RemoveAll(ss.dir); err != nil {
		return fmt.Errorf("lsm: removing the media of stream %d: %w", id, err)
	}
	return nil
}

// close closes every stream's segments. An unused prepared segment is
// removed (it holds only its start record); should the removal not reach
// the disk, the next first roll of the stream removes it (removeUnused).
func (s *segmentStore) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.streams {
		ss.mu.Lock()
		ss.closeActive()
		s.dropNext(ss, true)
		ss.mu.Unlock()
	}
	s.bg.Wait()
}

// refLen is the encoded length of a segmentRef.
const refLen = 16

func appendRef(dst []byte, r segmentRef) []byte {
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	return binary.BigEndian.AppendUint64(dst, r.Offset)
}

func decodeRef(b []byte) segmentRef {
	return segmentRef{Seq: binary.BigEndian.Uint64(b), Offset: binary.BigEndian.Uint64(b[8:])}
}

// diskBytes is the size of every segment file of every stream (what the
// media takes on disk, whether or not the index knows it).
func (s *segmentStore) diskBytes() (int64, error) {
	dirs, err := s.fs.List(s.dir)
	if err != nil {
		return 0, fmt.Errorf("lsm: listing %s: %w", s.dir, err)
	}
	var total int64
	for _, d := range dirs {
		names, err := s.fs.List(s.fs.PathJoin(s.dir, d))
		if err != nil {
			continue // not a directory
		}
		for _, n := range names {
			if st, err := s.fs.Stat(s.fs.PathJoin(s.dir, d, n)); err == nil {
				total += st.Size()
			}
		}
	}
	return total, nil
}
