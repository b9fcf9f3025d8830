package lsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Disk full from any cause. Pebble treats a failed WAL or MANIFEST write as
// fatal (its Logger.Fatalf ends the process), and something other than
// kvsedge may fill the filesystem (the capacity controller only sees it at
// its next sweep). So every write checks the free space first and is
// refused with ErrNoSpace — never reaching Pebble — when it is short, and a
// reserve file held in the data directory gives Pebble room the moment the
// disk is found full:
//
//	free ≥ lowWater                    media and metadata writes go ahead
//	free < lowWater (4 MiB)            the reserve is deleted (its space
//	                                   returns to the filesystem); media is
//	                                   refused until the reserve is back
//	free < metaFloor (1 MiB, after it) metadata writes are refused too
//	free ≥ lowWater + reserve + 4 MiB  the reserve is made again (and at
//	                                   Open) and media is accepted: writing
//	                                   resumes by itself
//
// A store opened on a disk too full for Pebble to flush its log opens
// read-only (reads served, every write refused); its owner reopens it
// read-write once there is room (ReadOnlyCanWrite).
//
// Deletions (retention, capacity, DeleteStream) are always let through:
// they free space, and their WAL records are small enough for the reserve's
// room. At Open an existing reserve file is deleted before Pebble opens, so
// a box restarted on a full disk opens (and serves reads), then makes its
// reserve again once there is room.

// ErrNoSpace: the filesystem is (nearly) full; nothing was written.
var ErrNoSpace = fmt.Errorf("lsm: the disk is full: %w", syscall.ENOSPC)

const (
	reserveFile = "reserve"
	// lowWater is the free space under which media is refused and the
	// reserve released; metaFloor the free space under which every write
	// but a deletion is refused. (The capacity controller keeps far more
	// free, storage.min_free_mib: these act only when something else
	// filled the disk.)
	lowWater  = 4 << 20
	metaFloor = 1 << 20
	// restoreSlack: the reserve is made again when this much is free
	// beyond lowWater and the reserve itself.
	restoreSlack = 4 << 20
	// restoreRetry: after a failed restore, the next try waits this long.
	restoreRetry = 30 * time.Second
)

// spaceGuard implements the rules above.
type spaceGuard struct {
	fs  vfs.FS
	dir string
	// statDir is dir, open for fstatfs (space_linux.go), or nil (then,
	// and after close, the free space is read by path). Guarded by
	// statMu; closed by DB.Close, and by an Open that fails.
	statMu  sync.RWMutex
	statDir *os.File
	reserve int64 // bytes; 0 disables the reserve (in-memory stores)

	// readOnly: the store was opened read-only on a full disk; every
	// write, deletions included, is refused.
	readOnly bool
	// refuse is what a read-only store answers a write with: ErrNoSpace
	// (opened on a full disk) unless set (ErrIndexFailed, health.go).
	refuse error

	mu        sync.Mutex
	held      bool
	lastAvail uint64
	released  time.Time // when the reserve was last released
	// failedAt: the last restore failed (a quota, a read-only remount):
	// the next try waits restoreRetry, not the next write.
	failedAt time.Time
	// preparing: bytes roomFor granted to preallocations not yet made.
	preparing int64
}

func newSpaceGuard(fs vfs.FS, dir string, reserve int64) *spaceGuard {
	g := &spaceGuard{fs: fs, dir: dir, reserve: reserve, statDir: openStatDir(fs, dir)}
	if reserve > 0 {
		// Room for Pebble to open: a reserve left by the last run goes first.
		_ = fs.Remove(g.path())
	}
	return g
}

func (g *spaceGuard) path() string { return filepath.Join(g.dir, reserveFile) }

// usage reads the filesystem's figures now.
func (g *spaceGuard) usage() (vfs.DiskUsage, error) {
	g.statMu.RLock()
	defer g.statMu.RUnlock()
	if g.statDir != nil {
		return statDirUsage(g.statDir)
	}
	return g.fs.GetDiskUsage(g.dir)
}

// close closes statDir; the free space is read by path from then on.
func (g *spaceGuard) close() {
	g.statMu.Lock()
	defer g.statMu.Unlock()
	if g.statDir != nil {
		_ = g.statDir.Close()
		g.statDir = nil
	}
}

// startFull reports a disk too full for Pebble to open read-write (after
// the reserve was deleted).
func (g *spaceGuard) startFull() bool {
	du, err := g.usage()
	return err == nil && du.AvailBytes < lowWater
}

// availLocked reads the free space (one statfs: about a microsecond,
// cheap beside the fsync every write waits for, and never stale: another
// writer can fill the disk between two fragments). REQUIRES: g.mu.
func (g *spaceGuard) availLocked() (uint64, error) {
	du, err := g.usage()
	if err != nil {
		return 0, err
	}
	g.lastAvail = du.AvailBytes
	return du.AvailBytes, nil
}

// roomFor reports whether n more bytes (a prepared segment's
// preallocation, segments.go) leave the free space above the point where
// the reserve would be released, with restoreSlack to spare, and if so
// holds n of it until release is called (after the preallocation, when
// the free space shows it): a segment is prepared in the background only
// then, so a preparation never pushes the disk into refusing media by
// itself (the roll then happens inline, as the guard allows), nor do
// several at once (streams rolling together each saw the same free
// space). No figure (an in-memory filesystem): room.
func (g *spaceGuard) roomFor(n int64) (release func(), ok bool) {
	if g.readOnly {
		return nil, false
	}
	n = max(n, 0)
	g.mu.Lock()
	defer g.mu.Unlock()
	avail, err := g.availLocked()
	if err == nil && avail < lowWater+restoreSlack+uint64(g.preparing+n) {
		return nil, false
	}
	g.preparing += n
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.preparing -= n
			g.mu.Unlock()
		})
	}, true
}

// check reports whether a write may go ahead (media: fragment media and
// its index; otherwise a metadata write), releasing or restoring the
// reserve as the free space says.
func (g *spaceGuard) check(media bool) error {
	if g.readOnly {
		if g.refuse != nil {
			return g.refuse
		}
		return ErrNoSpace
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	avail, err := g.availLocked()
	if err != nil {
		return nil // no figure (an in-memory filesystem): let the write try
	}
	if avail < lowWater {
		g.releaseLocked()
		if avail, err = g.availLocked(); err != nil {
			return nil
		}
	} else if !g.held && g.reserve > 0 && avail >= lowWater+uint64(g.reserve)+restoreSlack && time.Since(g.failedAt) > restoreRetry {
		g.restoreLocked()
	}
	switch {
	case avail < metaFloor:
		return ErrNoSpace
	case media && avail < lowWater:
		return ErrNoSpace
	case media && !g.released.IsZero() && !g.held && avail < lowWater+uint64(g.reserve)+restoreSlack:
		// Released for a full disk and not yet back: media waits for
		// room for both (no flapping at the edge).
		return ErrNoSpace
	}
	return nil
}

// releaseLocked deletes the reserve file. REQUIRES: g.mu.
func (g *spaceGuard) releaseLocked() {
	if !g.held {
		return
	}
	if err := g.fs.Remove(g.path()); err == nil || errors.Is(err, syscall.ENOENT) {
		g.held, g.released = false, time.Now()
	}
}

// restoreLocked makes the reserve file: written and synced, so its blocks
// are really taken. REQUIRES: g.mu.
func (g *spaceGuard) restoreLocked() {
	f, err := g.fs.Create(g.path(), vfs.WriteCategoryUnspecified)
	if err != nil {
		g.failedAt = time.Now()
		return
	}
	// fallocate takes the blocks for real (Linux, FALLOC_FL_KEEP_SIZE);
	// where it is not supported, the bytes are written.
	ok := f.Preallocate(0, g.reserve) == nil
	if !ok {
		ok = true
		buf := make([]byte, 1<<20)
		for off := int64(0); off < g.reserve && ok; off += int64(len(buf)) {
			_, err := f.Write(buf[:min(int64(len(buf)), g.reserve-off)])
			ok = err == nil
		}
	}
	ok = ok && f.Sync() == nil
	_ = f.Close()
	if !ok {
		_ = g.fs.Remove(g.path())
		g.failedAt = time.Now()
		return
	}
	g.held, g.released = true, time.Time{}
}

// SpaceStatus is the guard's state, for alarms.
type SpaceStatus struct {
	// Refusing: media writes are refused for lack of space.
	Refusing bool
	// AvailBytes is the free space at the last reading.
	AvailBytes uint64
	// ReserveHeld: the reserve file is in place.
	ReserveHeld bool
}

// ReadOnly reports a store opened read-only because the disk was full.
func (d *DB) ReadOnly() bool { return d.space.readOnly }

// ReadOnlyCanWrite reports, for a store opened read-only on a full disk,
// that there is room again to reopen it read-write.
func (d *DB) ReadOnlyCanWrite() bool {
	if !d.space.readOnly {
		return false
	}
	if d.fatal.readOnly && time.Since(d.fatal.lastAt) < fatalWindow {
		return false
	}
	du, err := d.space.usage()
	return err == nil && du.AvailBytes >= lowWater+uint64(d.space.reserve)+restoreSlack
}

// MediaSpace reports whether fragment media may be written now
// (ErrNoSpace when not).
func (d *DB) MediaSpace() error { return d.space.check(true) }

// Space reports the disk-full guard's state (reading the free space now).
func (d *DB) Space() SpaceStatus {
	if d.space.readOnly {
		du, _ := d.space.usage()
		return SpaceStatus{Refusing: true, AvailBytes: du.AvailBytes}
	}
	err := d.space.check(true)
	d.space.mu.Lock()
	defer d.space.mu.Unlock()
	return SpaceStatus{Refusing: errors.Is(err, ErrNoSpace), AvailBytes: d.space.lastAvail, ReserveHeld: d.space.held}
}
