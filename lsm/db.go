package lsm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// SchemaVersion is the version of the key schema and value envelopes this code
// writes. A store with a higher version is refused; a lower one is migrated
// forward at Open (none exist yet).
//
//	1: meta, stream records, ingest terms, fragments, time indexes, headers.
const SchemaVersion uint32 = 1

// ErrNotFound is returned when a key does not exist.
var ErrNotFound = errors.New("lsm: not found")

// ErrDamaged wraps an Open error caused by damage to the index (a checksum
// mismatch, an undecodable entry): kvsedge repair rebuilds it.
var ErrDamaged = errors.New("lsm: the index is damaged")

// damaged marks err as ErrDamaged when it is corruption.
func damaged(err error) error {
	var ce *CorruptionError
	if pebble.IsCorruptionError(err) || errors.As(err, &ce) || errors.Is(err, errNoSchema) {
		return fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return err
}

// errNoSchema: the index holds keys but no schema version.
var errNoSchema = errors.New("lsm: the index has data but no schema version")

// ErrNewerSchema is returned by Open for a store written by a newer kvsedge.
var ErrNewerSchema = errors.New("lsm: store was written by a newer kvsedge")

// DB is kvsedge's Pebble store.
type DB struct {
	opts Options
	db   *pebble.DB
	segs *segmentStore
	// group syncs fragments in windows (Options.SyncWindow), else nil.
	group *syncGroup
	// space refuses writes on a (nearly) full disk before Pebble sees
	// them (space.go).
	space *spaceGuard
	// unknownMedia lists media directories the index has no stream for
	// (set at Open: the index was lost or replaced; kvsedge repair).
	unknownMedia []string
	// corruption records damage Pebble found at run time, fatal the
	// fatal errors that made Open choose read-only (health.go).
	corruption *corruptionLog
	fatal      fatalState
	// pending counts PutFragmentsAsync halves running in the background;
	// Close waits for them.
	pending sync.WaitGroup
	// bounds: each stream's newest producer time, as an upper bound
	// (producerbound.go).
	bounds producerBounds
	// phases times each step of storing fragments (Stats).
	phases writePhases
	// ckpt writes the replay checkpoints and syncs the index's log
	// (replay.go); nil when read-only. replayed: what Open replayed.
	ckpt     *checkpointer
	replayed ReplayReport
	// unreplayed: streams whose tail Open could not read, with their
	// checkpoint (kept until a repair).
	unreplayed map[StreamID]segmentRef

	// mu serialises stream id allocation.
	mu struct {
		sync.Mutex
		nextStreamID StreamID
	}
}

// Open opens (creating if needed) the store in opts.Dir and checks its schema
// version.
func Open(opts Options) (*DB, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	po := &pebble.Options{
		FS:           opts.FS,
		Cache:        cache,
		MemTableSize: opts.MemTableBytes,
		// The newest format this Pebble writes. Fragment media is not in
		// Pebble (segments.go), so value separation is not used.
		FormatMajorVersion: pebble.FormatValueSeparation,
	}
	// Pebble's default scheduler wakes the idle box ten times a second
	// (compactsched.go).
	sched := newCompactionScheduler()
	po.Experimental.CompactionScheduler = sched
	if testSchedulerHook != nil {
		testSchedulerHook(sched)
	}
	var fatalPath string
	if opts.FS == vfs.Default {
		fatalPath = filepath.Join(opts.Dir, fatalFile)
	}
	po.Logger = pebbleLogger{l: opts.Logger, fatalPath: fatalPath}
	corruption := &corruptionLog{}
	po.EventListener = eventListener(opts.Logger, corruption)
	if err := opts.FS.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lsm: creating data directory: %w", err)
	}
	if !opts.ReadOnly {
		// The data directory's own entry (best effort: its parent may not
		// be ours to open).
		_ = syncDir(opts.FS, opts.FS.PathDir(opts.Dir))
	}
	if opts.ReadOnly {
		opts.ReserveBytes = 0 // the reserve file is left as it is
	}
	space := newSpaceGuard(opts.FS, opts.Dir, opts.ReserveBytes)
	opened := false
	defer func() {
		if !opened {
			space.close() // its directory descriptor
		}
	}()
	var fatal fatalState
	if fatalPath != "" {
		fatal = readFatal(fatalPath, time.Now())
	}
	if opts.ReadOnly {
		po.ReadOnly = true
		space.readOnly = true
	} else if fatal.readOnly {
		po.ReadOnly = true
		space.readOnly, space.refuse = true, ErrIndexFailed
		opts.Logger.Error("the index failed fatally more than once in 10 minutes: it is opened read-only (reads are served, writes refused); "+
			"run kvsedge check with the box stopped", "last_error", fatal.last, "at", fatal.lastAt, "retry_read_write_after", fatal.lastAt.Add(fatalWindow))
	} else if space.startFull() {
		// No room even for Pebble to flush its log at open (it would retry
		// for ever): open read-only, serve reads, refuse every write; the
		// owner reopens once ReadOnlyCanWrite says there is room.
		po.ReadOnly = true
		space.readOnly = true
		opts.Logger.Error("the disk is full: the store is opened read-only (reads are served, writes refused until space returns)",
			"dir", opts.Dir)
	}
	indexDir, err := prepareIndexDir(opts.FS, opts.Dir, po.ReadOnly)
	if err != nil {
		return nil, err
	}
	pdb, err := pebble.Open(indexDir, po)
	if err != nil {
		sched.Unregister() // Pebble registers it before failing late, and does not unregister
		return nil, damaged(fmt.Errorf("lsm: opening the index in %s: %w", indexDir, err))
	}
	segs, err := newSegmentStore(opts.FS, opts.Dir, opts.SegmentBytes)
	if err != nil {
		_ = pdb.Close()
		return nil, err
	}
	d := &DB{opts: opts, db: pdb, segs: segs, space: space, corruption: corruption}
	if fatal.readOnly {
		d.fatal = fatal
	}
	segs.header = d.Header
	segs.streamRecord = d.streamRecord
	segs.prepare = !opts.InlineRolls
	segs.roomFor = space.roomFor
	if opts.SyncWindow > 0 {
		d.group = newSyncGroup(pdb, opts.SyncWindow, &d.phases)
	}
	if err := d.checkSchema(); err != nil {
		_ = pdb.Close()
		return nil, damaged(err)
	}
	if space.readOnly {
		next, err := d.getUint32(metaKey(metaNextStreamID))
		if errors.Is(err, ErrNotFound) {
			next, err = 1, nil
		}
		if err != nil {
			_ = pdb.Close()
			return nil, err
		}
		d.mu.nextStreamID = StreamID(next)
		opened = true
		return d, nil // no orphan cleanup, no reserve: nothing is written
	}
	next, err := d.getUint32(metaKey(metaNextStreamID))
	switch {
	case errors.Is(err, ErrNotFound):
		next = 1
	case err != nil:
		_ = pdb.Close()
		return nil, err
	}
	d.mu.nextStreamID = StreamID(next)
	if err := d.removeOrphanMedia(); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	if err := d.replayTails(); err != nil {
		_ = pdb.Close()
		return nil, damaged(err)
	}
	d.ckpt = newCheckpointer(d, opts.IndexSyncInterval)
	_ = space.check(false) // makes the reserve when there is room
	opened = true
	return d, nil
}

// Close waits for the puts in flight, deletes the replay checkpoints and
// voids (a synced batch: every index commit before it becomes durable, and
// the store is wholly indexed: replay.go) and closes Pebble.
func (d *DB) Close() error {
	d.pending.Wait()
	if d.group != nil {
		d.group.close()
	}
	if d.ckpt != nil {
		if err := d.ckpt.close(); err != nil {
			d.opts.Logger.Warn("the replay checkpoints could not be deleted at close: the next start scans the last fragments' records again", "error", err)
		}
	}
	d.segs.close()
	d.space.close()
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("lsm: closing pebble: %w", err)
	}
	return nil
}

func (d *DB) checkSchema() error {
	v, err := d.getUint32(metaKey(metaSchemaVersion))
	switch {
	case errors.Is(err, ErrNotFound) && d.space.readOnly:
		return fmt.Errorf("lsm: %w: a new store cannot be created on a full disk", ErrNoSpace)
	case errors.Is(err, ErrNotFound):
		if !d.isEmpty() {
			// A store with data but no version is damaged, not new: never
			// treat it as empty.
			return fmt.Errorf("%w (%s)", errNoSchema, d.opts.Dir)
		}
		return d.putUint32(metaKey(metaSchemaVersion), SchemaVersion)
	case err != nil:
		return err
	case v > SchemaVersion:
		return fmt.Errorf("%w: schema %d, this binary knows up to %d", ErrNewerSchema, v, SchemaVersion)
	case v < SchemaVersion:
		return fmt.Errorf("lsm: schema %d has no migration to %d", v, SchemaVersion)
	}
	return nil
}

func (d *DB) isEmpty() bool {
	it, err := d.db.NewIter(nil)
	if err != nil {
		return false
	}
	defer it.Close()
	return !it.First()
}

func (d *DB) getUint32(key []byte) (uint32, error) {
	v, closer, err := d.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("lsm: reading %q: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 4 {
		return 0, &CorruptionError{Key: append([]byte(nil), key...), Reason: fmt.Sprintf("want 4-byte value, have %d", len(v))}
	}
	return binary.BigEndian.Uint32(v), nil
}

func (d *DB) putUint32(key []byte, v uint32) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	if err := d.db.Set(key, b[:], pebble.Sync); err != nil {
		return fmt.Errorf("lsm: writing %q: %w", key, err)
	}
	return nil
}

// CorruptionError reports a key or value that does not follow FORMAT.md.
type CorruptionError struct {
	Key    []byte
	Reason string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("lsm: corrupt entry at key %x: %s", e.Key, e.Reason)
}

// removeOrphanMedia deletes the segment directories of streams that were
// deleted (their record gone and a deletion marker written in the same
// batch: a crash during DeleteStream leaves one). Media without a record
// and without a marker is kept and reported: kvsedge never deletes media
// it cannot account for, so a store whose index was lost is not mistaken
// for an empty one.
func (d *DB) removeOrphanMedia() error {
	recs, err := d.Streams()
	if err != nil {
		return err
	}
	live := make(map[string]bool, len(recs))
	for _, r := range recs {
		live[fmt.Sprintf("%08x", uint32(r.ID))] = true
	}
	names, err := d.opts.FS.List(d.segs.dir)
	if err != nil {
		return fmt.Errorf("lsm: listing %s: %w", d.segs.dir, err)
	}
	for _, n := range names {
		sid, perr := strconv.ParseUint(n, 16, 32)
		if len(n) != 8 || perr != nil {
			continue
		}
		// A new stream never takes the id of media already on disk (an
		// index lost and started afresh must not mix streams).
		if StreamID(sid) >= d.mu.nextStreamID {
			d.mu.nextStreamID = StreamID(sid) + 1
		}
		if live[n] {
			continue
		}
		marker := metaKey(deletedPrefix + n)
		if _, closer, err := d.db.Get(marker); err != nil {
			d.opts.Logger.Error("media of a stream the index does not know: kept; run kvsedge repair to index it again",
				"dir", d.opts.FS.PathJoin(d.segs.dir, n), "streams_in_index", len(recs))
			d.unknownMedia = append(d.unknownMedia, n)
			continue
		} else {
			closer.Close()
		}
		d.opts.Logger.Info("removing the media of a deleted stream", "dir", n)
		if err := d.opts.FS.RemoveAll(d.opts.FS.PathJoin(d.segs.dir, n)); err != nil {
			return fmt.Errorf("lsm: removing orphan media %s: %w", n, err)
		}
		if err := d.db.Delete(marker, pebble.Sync); err != nil {
			return fmt.Errorf("lsm: %w", err)
		}
	}
	return nil
}

// deletedPrefix (after prefixMeta) marks a deleted stream whose media
// directory may still exist: "deleted/<sid as 8 hex digits>".
const deletedPrefix = "deleted/"

// SessionKey returns the store's 32-byte secret for signing playback
// session tokens, created (and synced) on first use, so tokens outlive a
// restart.
func (d *DB) SessionKey() ([]byte, error) {
	key := metaKey(metaSessionKey)
	v, closer, err := d.db.Get(key)
	if err == nil {
		defer closer.Close()
		if len(v) != 32 {
			return nil, &CorruptionError{Key: key, Reason: "session key of the wrong length"}
		}
		return append([]byte(nil), v...), nil
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("lsm: reading the session key: %w", err)
	}
	if err := d.space.check(false); err != nil {
		return nil, err
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("lsm: %w", err)
	}
	if err := d.db.Set(key, k, pebble.Sync); err != nil {
		return nil, fmt.Errorf("lsm: writing the session key: %w", err)
	}
	return k, nil
}

// streamRecord returns the stream's stored record (nil if none), which each
// new segment repeats (segrecord.go).
func (d *DB) streamRecord(id StreamID) []byte {
	v, closer, err := d.db.Get(streamKey(id))
	if err != nil {
		return nil
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}
