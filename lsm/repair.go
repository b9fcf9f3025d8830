package lsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"sort"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// Repair rebuilds the index (FORMAT.md, "Repair"). It runs with the box
// stopped and never deletes media:
//
//  1. What the old index still reads is salvaged, if it opens: meta
//     entries, stream records, terms, session headers, and fragment records
//     whose media reads back matching its digest.
//  2. Every segment file is scanned for intact records (segrecord.go):
//     fragments (with the numbers each one replaced), session headers, and
//     the stream record each segment began with.
//  3. A new index is written in index.rebuild/ from both: each stream's
//     record (the old index's, else its newest segment's), and every
//     fragment found in either, except those a later record replaced
//     and those whose session header is nowhere (named in the report).
//     It is synced, marked complete (REPAIRED), and swapped in: the old
//     index moves to index.damaged-<time>/ (kept, never read again),
//     index.rebuild/ becomes index/. Open finishes a swap a crash
//     interrupted.
//  4. Segment bytes in no intact record (a flipped byte, a torn tail),
//     and intact fragments that cannot be indexed, are copied to
//     lost+found/ and named in the report; the segments stay as they are.
//
// A segment written before segments had records (kvsedge before schema
// notes of FORMAT.md) cannot be scanned: its fragments survive only
// through the old index.

// RepairReport says what Repair did.
type RepairReport struct {
	// OldIndex is where the replaced index went ("" when there was none).
	OldIndex string
	// OldIndexError is why the old index could not be opened ("" if it
	// opened, or there was none).
	OldIndexError string
	Streams       int
	// Fragments are indexed now: FromOldIndex of them the old index still
	// had, FromSegments found only in segment records.
	Fragments, FromOldIndex, FromSegments int
	// Replaced counts partial copies left out because a whole re-send
	// replaced them.
	Replaced int
	// Copies counts fragments left out as a second copy of another
	// (leaveOutCopies); they stay in their segments.
	Copies int
	// SegmentFiles scanned, Unframed of them without records.
	SegmentFiles, Unframed int
	// Aside lists what went to lost+found.
	Aside []AsideFile
	// Notes are other findings, in plain words.
	Notes []string
}

// AsideFile is one file Repair wrote to lost+found.
type AsideFile struct {
	Path  string
	Bytes int64
	Why   string
}

type repairFragment struct {
	meta      fragment.Meta
	ref       segmentRef
	fromIndex bool
	// afterCheckpoint: a record at or after the old index's replay
	// checkpoint, not voided: indexed there, or to be by Open's replay,
	// so leaveOutCopies treats it as the old index's.
	afterCheckpoint bool
}

// known reports whether the old index had the fragment, or would have had
// it after Open's replay.
func (f repairFragment) known() bool { return f.fromIndex || f.afterCheckpoint }

type repairStream struct {
	record    []byte
	recordSeq uint64 // segment whose start record gave record (0: the old index)
	term      []byte
	headers   map[uint64][]byte
	frags     map[fragment.Number]repairFragment
	replaced  map[fragment.Number]bool
	// copies: the replaced ones that are a second copy (leaveOutCopies),
	// not a partial copy a record named.
	copies map[fragment.Number]bool
	// checkpoint (nil: none) and voids are the old index's replay
	// checkpoint and voided records (replay.go): a record at or after
	// the checkpoint and not voided counts as the old index's (it may
	// have been acknowledged, its commit lost in a crash).
	checkpoint *segmentRef
	voids      map[string]bool // fragnum | seq | offset (0x05 key after the sid)
}

// Repair rebuilds the index of the store in opts.Dir from what the old
// index still reads and from the segment files. The caller makes sure no
// process has the store open.
func Repair(opts Options) (RepairReport, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return RepairReport{}, err
	}
	fs := opts.FS
	var rep RepairReport
	streams := map[StreamID]*repairStream{}
	get := func(id StreamID) *repairStream {
		rs := streams[id]
		if rs == nil {
			rs = &repairStream{headers: map[uint64][]byte{}, frags: map[fragment.Number]repairFragment{},
				replaced: map[fragment.Number]bool{}, copies: map[fragment.Number]bool{}, voids: map[string]bool{}}
			streams[id] = rs
		}
		return rs
	}
	meta := map[string][]byte{}

	// 1. Salvage the old index.
	hadIndex := false
	if names, err := fs.List(opts.Dir); err == nil {
		for _, n := range names {
			if n == indexDirName || isPebbleFile(n) {
				hadIndex = true
			}
		}
	}
	if hadIndex {
		ro := opts
		ro.ReadOnly = true
		old, err := Open(ro)
		if err != nil {
			rep.OldIndexError = err.Error()
		} else {
			salvage(old, meta, get, &rep)
			_ = old.Close()
		}
	}

	// 2. Scan the segments.
	mediaDir := fs.PathJoin(opts.Dir, mediaDirName)
	dirs, err := fs.List(mediaDir)
	if err != nil && !errors.Is(err, iofs.ErrNotExist) {
		return rep, fmt.Errorf("lsm: listing %s: %w", mediaDir, err)
	}
	sort.Strings(dirs)
	segs := &segmentStore{fs: fs, dir: mediaDir}
	for _, d := range dirs {
		v, perr := strconv.ParseUint(d, 16, 32)
		if len(d) != 8 || perr != nil {
			continue
		}
		id := StreamID(v)
		if _, deleted := meta[deletedPrefix+d]; deleted {
			rep.Notes = append(rep.Notes, fmt.Sprintf("media/%s belongs to a deleted stream: left as it is (the next start removes it)", d))
			continue
		}
		seqs, err := segs.list(fs.PathJoin(mediaDir, d))
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("media/%s cannot be listed: %v", d, err))
			continue
		}
		// The newest segment written to: a segment after it holding only
		// its start record (prepared, never used), or no intact record at
		// all (a preparation a crash cut short, while the segment before
		// still took appends), does not make its torn tail "damage".
		last := len(seqs) - 1
		for last > 0 && (segs.holdsOnlyStart(id, fs.PathJoin(mediaDir, d), seqs[last]) || holdsNoRecord(fs, fs.PathJoin(mediaDir, d), seqs[last])) {
			last--
		}
		for i, seq := range seqs {
			if err := scanInto(fs, opts.Dir, mediaDir, d, id, seq, i == last, get(id), &rep); err != nil {
				rep.Notes = append(rep.Notes, err.Error())
			}
		}
	}

	// 3. Leave out second copies of one fragment, then write the new index.
	for id, rs := range streams {
		leaveOutCopies(fs, mediaDir, id, rs, opts.SameFrames, &rep)
	}
	rebuild := fs.PathJoin(opts.Dir, rebuildDirName)
	if err := fs.RemoveAll(rebuild); err != nil {
		return rep, fmt.Errorf("lsm: clearing %s: %w", rebuild, err)
	}
	if err := writeRebuilt(opts, rebuild, meta, streams, &rep); err != nil {
		return rep, err
	}
	// Swap it in.
	stamp := time.Now().UTC().Format("20060102T150405Z")
	damaged := fs.PathJoin(opts.Dir, "index.damaged-"+stamp)
	for i := 2; exists(fs, damaged); i++ {
		damaged = fs.PathJoin(opts.Dir, fmt.Sprintf("index.damaged-%s-%d", stamp, i))
	}
	index := fs.PathJoin(opts.Dir, indexDirName)
	if exists(fs, index) {
		if err := fs.Rename(index, damaged); err != nil {
			return rep, fmt.Errorf("lsm: moving the old index aside: %w", err)
		}
		rep.OldIndex = damaged
	} else if names, _ := fs.List(opts.Dir); len(names) > 0 {
		moved := false
		for _, n := range names {
			if !isPebbleFile(n) {
				continue
			}
			if !moved {
				if err := fs.MkdirAll(damaged, 0o700); err != nil {
					return rep, fmt.Errorf("lsm: %w", err)
				}
				moved = true
			}
			if err := fs.Rename(fs.PathJoin(opts.Dir, n), fs.PathJoin(damaged, n)); err != nil {
				return rep, fmt.Errorf("lsm: moving the old index aside: %w", err)
			}
		}
		if moved {
			rep.OldIndex = damaged
		}
	}
	if err := syncDir(fs, opts.Dir); err != nil {
		return rep, err
	}
	if err := fs.Rename(rebuild, index); err != nil {
		return rep, fmt.Errorf("lsm: moving the new index in: %w", err)
	}
	if err := syncDir(fs, opts.Dir); err != nil {
		return rep, err
	}
	_ = fs.Remove(fs.PathJoin(index, repairedMarker))
	_ = fs.Remove(fs.PathJoin(opts.Dir, fatalFile))
	return rep, nil
}

// salvage reads what it can of an old index, table by table and stream by
// stream, so damage in one place costs only the keys behind it.
func salvage(old *DB, meta map[string][]byte, get func(StreamID) *repairStream, rep *RepairReport) {
	scan := func(lower, upper []byte, fn func(k, v []byte)) error {
		it, err := old.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			v, err := it.ValueAndErr()
			if err != nil {
				_ = it.Close()
				return err
			}
			fn(append([]byte(nil), it.Key()...), append([]byte(nil), v...))
		}
		return it.Close()
	}
	note := func(what string, err error) {
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("the old index's %s could not all be read: %v", what, err))
		}
	}
	note("meta entries", scan([]byte{prefixMeta}, []byte{prefixMeta + 1}, func(k, v []byte) {
		if name := string(k[1:]); name != metaSchemaVersion {
			meta[name] = v
		}
	}))
	var ids []StreamID
	note("stream records", scan([]byte{prefixStream}, []byte{prefixStream + 1}, func(k, v []byte) {
		if id, err := parseStreamKey(k); err == nil {
			get(id).record = v
			ids = append(ids, id)
		}
	}))
	note("terms", scan([]byte{prefixTerm}, []byte{prefixTerm + 1}, func(k, v []byte) {
		if len(k) == 1+StreamIDLen {
			get(StreamID(binary.BigEndian.Uint32(k[1:]))).term = v
		}
	}))
	note("replay checkpoints", scan([]byte{prefixReplay}, []byte{prefixReplay + 1}, func(k, v []byte) {
		if len(k) == 1+StreamIDLen {
			if cp, err := decodeCheckpoint(k, v); err == nil {
				get(StreamID(binary.BigEndian.Uint32(k[1:]))).checkpoint = &cp
			}
		}
	}))
	note("voided records", scan([]byte{prefixVoid}, []byte{prefixVoid + 1}, func(k, _ []byte) {
		if len(k) == voidKeyLen {
			get(StreamID(binary.BigEndian.Uint32(k[1:]))).voids[string(k[1+StreamIDLen:])] = true
		}
	}))
	note("session headers", scan([]byte{prefixHeader}, []byte{prefixHeader + 1}, func(k, v []byte) {
		if len(k) == 1+StreamIDLen+8 && len(v) > 0 && v[0] == 1 {
			get(StreamID(binary.BigEndian.Uint32(k[1:]))).headers[binary.BigEndian.Uint64(k[1+StreamIDLen:])] = v[1:]
		}
	}))
	// Fragment records of every stream with any (not only those whose
	// record survived).
	seen := map[StreamID]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	_ = scan([]byte{prefixFragment}, []byte{prefixFragment + 1}, func(k, _ []byte) {
		if len(k) > StreamIDLen {
			seen[StreamID(binary.BigEndian.Uint32(k[1:]))] = true
		}
	})
	var buf []byte
	for id := range seen {
		lower, upper := streamSpan(prefixFragment, id)
		rs := get(id)
		bad := 0
		note(fmt.Sprintf("fragment records of stream #%d", id), scan(lower, upper, func(k, v []byte) {
			m, ref, err := decodeFragment(k, v)
			if err != nil {
				bad++
				return
			}
			media, err := old.readMedia(id, k, &m, ref, buf[:0])
			if err != nil {
				bad++
				return
			}
			buf = media
			rs.frags[m.Number] = repairFragment{meta: m, ref: ref, fromIndex: true}
		}))
		if bad > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("stream #%d: %d fragment records of the old index were damaged or their media did not read back (segment records are used where they exist)", id, bad))
		}
	}
}

// leaveOutCopies marks as replaced the fragments of rs that are a second
// copy of another one: a producer re-sends every fragment it did not see
// PERSISTED, so a fragment whose record was synced but whose put failed
// (or, before replay checkpoints, whose index batch a crash took) is in a
// segment record, never acknowledged, and stored again under a new number
// when the producer re-sent it. The live index never had the first copy;
// a rebuilt one must not either, or readers would see its frames twice.
// Copies are fragments of the stream at the same producer time with equal
// digests, or (with same) the same frames, or one's frames a prefix of the
// other's. A record after the old index's replay checkpoint, not voided,
// counts as held by the old index (Open's replay would have indexed it:
// it may have been acknowledged). Two the old index both held are not copies (the
// engine kept a peer's equal copy under its own number beside the local
// one before it kept the lower number only, engine/resend.go; it still
// stores a partial copy still in the ring beside its whole re-send): the
// rebuilt index keeps what the live one had. Of a set
// of copies one is kept: one the old index had (the copy readers and the
// producer knew), else the one with the most frames, else the newest
// number (the re-send, acknowledged).
func leaveOutCopies(fs vfs.FS, mediaDir string, id StreamID, rs *repairStream, same func(a, b FrameCopy) bool, rep *RepairReport) {
	byTime := map[int64][]fragment.Number{}
	for n, fr := range rs.frags {
		if !rs.replaced[n] {
			byTime[fr.meta.ProducerMs] = append(byTime[fr.meta.ProducerMs], n)
		}
	}
	dir := fs.PathJoin(mediaDir, fmt.Sprintf("%08x", uint32(id)))
	load := func(fr repairFragment) (FrameCopy, bool) {
		h, ok := rs.headers[fr.meta.HeaderID]
		if !ok || fr.meta.ClusterLen > fr.meta.MediaLen {
			return FrameCopy{}, false
		}
		f, err := fs.Open(fs.PathJoin(dir, segmentName(fr.ref.Seq)))
		if err != nil {
			return FrameCopy{}, false
		}
		defer f.Close()
		c := make([]byte, fr.meta.ClusterLen)
		if _, err := f.ReadAt(c, int64(fr.ref.Offset)); err != nil {
			return FrameCopy{}, false
		}
		return FrameCopy{Header: h, Cluster: c, Frames: fr.meta.Frames}, true
	}
	better := func(a, b repairFragment) bool { // a is kept rather than b
		if a.known() != b.known() {
			return a.known()
		}
		if a.meta.Frames != b.meta.Frames {
			return a.meta.Frames > b.meta.Frames
		}
		return a.meta.Number.Compare(b.meta.Number) > 0
	}
	for _, nums := range byTime {
		if len(nums) < 2 {
			continue
		}
		sort.Slice(nums, func(i, j int) bool { return nums[i].Compare(nums[j]) < 0 })
		copies := map[fragment.Number]FrameCopy{}
		for i, a := range nums {
			for _, b := range nums[i+1:] {
				if rs.replaced[a] || rs.replaced[b] {
					continue
				}
				fa, fb := rs.frags[a], rs.frags[b]
				if fa.known() && fb.known() {
					continue // the live index held both (a peer's copy keeps its number): not a crash's leftover
				}
				dup := fa.meta.Digest == fb.meta.Digest
				if !dup && same != nil {
					ca, okA := copies[a]
					if !okA {
						if ca, okA = load(fa); okA {
							copies[a] = ca
						}
					}
					cb, okB := copies[b]
					if !okB {
						if cb, okB = load(fb); okB {
							copies[b] = cb
						}
					}
					dup = okA && okB && same(ca, cb)
				}
				if !dup {
					continue
				}
				kept, drop := a, b
				if better(fb, fa) {
					kept, drop = b, a
				}
				rs.replaced[drop] = true
				rs.copies[drop] = true
				rep.Copies++
				rep.Notes = append(rep.Notes, fmt.Sprintf("stream #%d: fragment %s left out: a second copy of %s (a re-send of a fragment whose index write a crash interrupted)",
					id, drop, kept))
			}
		}
	}
}

// holdsNoRecord reports whether segment seq in dir is small (a start
// record's size at most) and holds no intact record: empty, zeros, or a
// torn start record.
func holdsNoRecord(fs vfs.FS, dir string, seq uint64) bool {
	path := fs.PathJoin(dir, segmentName(seq))
	st, err := fs.Stat(path)
	if err != nil || st.Size() > maxStartOnlyBytes {
		return false
	}
	b, err := readWhole(fs, path)
	return err == nil && len(scanSegment(b).records) == 0
}

// scanInto scans one segment's records into rs.
func scanInto(fs vfs.FS, dataDir, mediaDir, dirName string, id StreamID, seq uint64, last bool, rs *repairStream, rep *RepairReport) error {
	path := fs.PathJoin(mediaDir, dirName, segmentName(seq))
	b, err := readWhole(fs, path)
	if err != nil {
		return fmt.Errorf("segment %s cannot be read: %w", path, err)
	}
	rep.SegmentFiles++
	sc := scanSegment(b)
	if !sc.framed && len(b) > 0 {
		rep.Unframed++
		if len(sc.records) == 0 {
			return nil // an older segment without records: nothing to learn
		}
	}
	for _, r := range sc.records {
		switch r.kind {
		case kindSegmentStart:
			if len(r.payload) >= 12 && StreamID(binary.BigEndian.Uint32(r.payload)) == id && len(r.payload) > 12 && seq >= rs.recordSeq {
				if rs.record == nil || rs.recordSeq > 0 {
					rs.record, rs.recordSeq = r.payload[12:], seq
				}
			}
		case kindHeader:
			if len(r.payload) >= 8 {
				hid := binary.BigEndian.Uint64(r.payload)
				if _, ok := rs.headers[hid]; !ok {
					rs.headers[hid] = r.payload[8:]
				}
			}
		case kindFragment:
			m, replaced, off, err := decodeFragmentRecord(r.payload)
			if err != nil {
				continue
			}
			for _, n := range replaced {
				rs.replaced[n] = true
			}
			if _, ok := rs.frags[m.Number]; !ok {
				start := segmentRef{Seq: seq, Offset: uint64(r.offset)}
				voided := rs.voids[string(voidKey(nil, id, m.Number, start)[1+StreamIDLen:])]
				after := rs.checkpoint != nil && !voided && !start.before(*rs.checkpoint)
				rs.frags[m.Number] = repairFragment{meta: m, ref: segmentRef{Seq: seq, Offset: uint64(r.offset) + recordHdrLen + uint64(off)}, afterCheckpoint: after}
			}
		}
	}
	for i, bad := range sc.bad {
		why := "bytes in no intact record (damaged)"
		if last && i == len(sc.bad)-1 && bad[1] == int64(len(b)) {
			why = "bytes at the end of the stream's newest segment in no intact record (written as the box stopped, or damaged)"
		}
		if err := putAside(fs, dataDir, fmt.Sprintf("%s-%s-%d.bin", dirName, segmentName(seq), bad[0]), b[bad[0]:bad[1]], why, rep); err != nil {
			return err
		}
	}
	return nil
}

func putAside(fs vfs.FS, dataDir, name string, data []byte, why string, rep *RepairReport) error {
	dir := fs.PathJoin(dataDir, lostFoundDir)
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	path := fs.PathJoin(dir, name)
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("lsm: writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("lsm: syncing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	rep.Aside = append(rep.Aside, AsideFile{Path: path, Bytes: int64(len(data)), Why: why})
	return syncDir(fs, dir)
}

// writeRebuilt writes the new index into dir, synced and marked complete.
func writeRebuilt(opts Options, dir string, meta map[string][]byte, streams map[StreamID]*repairStream, rep *RepairReport) error {
	fs := opts.FS
	if err := fs.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	db, err := pebble.Open(dir, &pebble.Options{FS: fs, Cache: cache, MemTableSize: opts.MemTableBytes,
		FormatMajorVersion: pebble.FormatValueSeparation, Logger: pebbleLogger{l: opts.Logger}})
	if err != nil {
		return fmt.Errorf("lsm: creating the new index: %w", err)
	}
	open := true
	defer func() {
		if open {
			_ = db.Close()
		}
	}()
	b := db.NewBatch()
	flush := func(force bool) error {
		if !force && b.Len() < 4<<20 {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("lsm: writing the new index: %w", err)
		}
		b = db.NewBatch()
		return nil
	}
	var v4 [4]byte
	binary.BigEndian.PutUint32(v4[:], SchemaVersion)
	_ = b.Set(metaKey(metaSchemaVersion), v4[:], nil)
	var maxID StreamID
	for name, v := range meta {
		_ = b.Set(metaKey(name), v, nil)
	}
	ids := make([]StreamID, 0, len(streams))
	for id := range streams {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		rs := streams[id]
		maxID = max(maxID, id)
		if rs.record == nil {
			if len(rs.frags) > 0 {
				rep.Notes = append(rep.Notes, fmt.Sprintf("stream #%d: %d fragments were found but no stream record (neither in the old index nor in a segment): its media stays unindexed in media/%08x",
					id, len(rs.frags), uint32(id)))
			}
			continue
		}
		rep.Streams++
		_ = b.Set(streamKey(id), rs.record, nil)
		if rs.term != nil {
			_ = b.Set(termKey(id), rs.term, nil)
		}
		for hid, h := range rs.headers {
			_ = b.Set(headerKey(id, hid), append([]byte{1}, h...), nil)
		}
		nums := make([]fragment.Number, 0, len(rs.frags))
		for n := range rs.frags {
			nums = append(nums, n)
		}
		sort.Slice(nums, func(i, j int) bool { return nums[i].Compare(nums[j]) < 0 })
		noHeader := 0
		for _, n := range nums {
			fr := rs.frags[n]
			if rs.replaced[n] {
				if !rs.copies[n] {
					rep.Replaced++
				}
				continue
			}
			if _, ok := rs.headers[fr.meta.HeaderID]; !ok {
				noHeader++
				continue
			}
			m := fr.meta
			mv := appendMeta(make([]byte, 0, metaLen+refLen), &m)
			_ = b.Set(fragmentKey(nil, id, n), appendRef(mv, fr.ref), nil)
			_ = b.Set(timeKey(nil, prefixProducerIdx, id, m.ProducerMs, n), mv, nil)
			_ = b.Set(timeKey(nil, prefixServerIdx, id, m.ServerMs, n), mv, nil)
			rep.Fragments++
			if fr.fromIndex {
				rep.FromOldIndex++
			} else {
				rep.FromSegments++
			}
			if err := flush(false); err != nil {
				return err
			}
		}
		if noHeader > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("stream #%d: %d intact fragments have no session header anywhere and are not indexed (they stay in their segments)", id, noHeader))
		}
	}
	next := maxID + 1
	if v, ok := meta[metaNextStreamID]; ok && len(v) == 4 && StreamID(binary.BigEndian.Uint32(v)) > next {
		next = StreamID(binary.BigEndian.Uint32(v))
	}
	binary.BigEndian.PutUint32(v4[:], uint32(next))
	_ = b.Set(metaKey(metaNextStreamID), v4[:], nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("lsm: writing the new index: %w", err)
	}
	if err := db.Flush(); err != nil {
		return fmt.Errorf("lsm: flushing the new index: %w", err)
	}
	open = false
	if err := db.Close(); err != nil {
		return fmt.Errorf("lsm: closing the new index: %w", err)
	}
	f, err := fs.Create(fs.PathJoin(dir, repairedMarker), vfs.WriteCategoryUnspecified)
	if err != nil {
		return fmt.Errorf("lsm: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("lsm: %w", err)
	}
	_ = f.Close()
	return syncDir(fs, dir)
}
