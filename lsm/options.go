package lsm

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configures a DB. The zero value plus a Dir is valid.
type Options struct {
	// Dir is the data directory holding the Pebble files. Required.
	Dir string
	// FS is the filesystem; it defaults to the operating system's. Tests use
	// vfs.NewMem() or vfs.NewStrictMem() to simulate crashes.
	FS vfs.FS
	// CacheBytes is the size of Pebble's block cache. It defaults to 32 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one memtable. It defaults to 16 MiB.
	MemTableBytes uint64
	// SyncWindow, when positive, groups the syncs of fragments stored
	// within the window (groupsync.go): fewer fsyncs for SD cards, and up
	// to one window more before PutFragment returns. Zero syncs each
	// fragment at once.
	SyncWindow time.Duration
	// IndexSyncInterval is how often the index's log is synced while
	// fragments are stored (replay.go): fragment commits are not synced
	// one by one (their segment records hold their entries), so this
	// bounds what Open replays after a crash. Default 1 s.
	IndexSyncInterval time.Duration
	// SegmentBytes is the size at which a media segment file is closed
	// and the next begun (each is preallocated to it). Default 64 MiB.
	SegmentBytes int64
	// InlineRolls turns off the background preparation of each actively
	// written stream's next segment (segments.go, prepareNext): every
	// roll then creates its segment on the write path. For measurements
	// (BenchmarkPersistLatency64Streams compares both); the default
	// prepares.
	InlineRolls bool
	// ReserveBytes is the reserve file kept in Dir and deleted when the
	// disk is found full, so Pebble always has room for its log (space.go).
	// Default 16 MiB on the operating system's filesystem, none on others;
	// negative: none.
	ReserveBytes int64
	// ReadOnly opens the store without writing anything (kvsedge check).
	ReadOnly bool
	// Logger receives Pebble's own log lines at debug level and lsm's events.
	// It defaults to slog.Default().
	Logger *slog.Logger
	// SameFrames, for Repair only: whether two fragments of one stream at
	// the same producer time hold the same frames, or one a prefix of the
	// other's (the engine's comparison of re-sent fragments; lsm does not
	// parse Matroska). Each copy is its session header and its Cluster.
	// nil: copies are recognised by equal digests only.
	SameFrames func(a, b FrameCopy) bool
}

// FrameCopy is one fragment as Options.SameFrames compares it.
type FrameCopy struct {
	Header  []byte // the session header (EBML header, Segment, Info, Tracks)
	Cluster []byte // the fragment's Cluster element
	Frames  uint32
}

// EnsureDefaults fills unset fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.FS == nil {
		o.FS = vfs.Default
	}
	if o.ReserveBytes == 0 && o.FS == vfs.Default {
		o.ReserveBytes = 16 << 20
	}
	if o.ReserveBytes < 0 {
		o.ReserveBytes = 0
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 32 << 20
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = 16 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = defaultSegmentBytes
	}
	if o.IndexSyncInterval == 0 {
		o.IndexSyncInterval = time.Second
	}
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("lsm: Dir is required"))
	}
	if o.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("lsm: CacheBytes %d is negative", o.CacheBytes))
	}
	if o.SegmentBytes < 0 || o.SegmentBytes != 0 && o.SegmentBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("lsm: SegmentBytes %d is below 1 MiB", o.SegmentBytes))
	}
	if o.SyncWindow < 0 || o.SyncWindow > 5*time.Second {
		errs = append(errs, fmt.Errorf("lsm: SyncWindow %v is outside 0…5s", o.SyncWindow))
	}
	if o.IndexSyncInterval < 0 || o.IndexSyncInterval > time.Minute {
		errs = append(errs, fmt.Errorf("lsm: IndexSyncInterval %v is outside 0…1m", o.IndexSyncInterval))
	}
	if o.MemTableBytes != 0 && o.MemTableBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("lsm: MemTableBytes %d is below 1 MiB", o.MemTableBytes))
	}
	return errors.Join(errs...)
}
