package lsm

import (
	"errors"
	"fmt"
	"unsafe"
)

// Direct segment writes. On Linux the active segment is also opened with
// O_DIRECT and every append goes through it: the media goes from its
// buffer to a block-aligned stage buffer and from there to the disk
// without a copy into the page cache (whose fresh pages cost more CPU
// than the copy, and which a box recording all day would fill with media
// nobody reads back soon: live readers take fragments from the hot ring).
// fdatasync still follows (through the segment's other handle: it is one
// inode), so the durability order is unchanged (FORMAT.md).
//
// An O_DIRECT write covers whole blocks (directAlign) at block offsets.
// The segment's last partial block is kept in memory (directFile.tail) and
// written again, with the new bytes after it, by the next append; the rest
// of that block is written as zeros. So a segment may end with fewer than
// directAlign zero bytes after its last record (FORMAT.md, "Segment
// files"); the scan treats them as padding (segrecord.go). Rewriting the
// tail block rewrites already-synced bytes with themselves: a torn write
// of it leaves each sector old or new, the same bytes either way.
//
// A file system without O_DIRECT (open fails, or the segment's first
// write returns EINVAL) gets ordinary writes, for the rest of the process.

// directAlign is the block size of direct writes: a multiple of every
// logical block size in use (512 or 4096).
const directAlign = 4096

// stageBytes is the size of a stage buffer; an append larger than it is
// written in several pieces. Each piece is one device request the append
// waits for, so the piece size sets a large upload's speed: on this
// project's VM (BenchmarkPutMediaVsDD, 3 runs of 5 uploads each, the
// size switched between runs by a throwaway edit) PutMedia reached 0.56-0.62x dd with 512 KiB pieces,
// 0.62-0.71x with 1 MiB (dd's own block size there) and 0.64-0.74x with
// 2 MiB. The pool below keeps at most 8 stages (8 MiB); a camera's
// fragment (~0.5 MB at 2 Mbit/s) fills about half of one.
const stageBytes = 1 << 20

// stages keeps up to cap(stages) block-aligned stage buffers for good:
// buffers the garbage collector took back (as from a sync.Pool) would come
// back as fresh pages that fault on every use. More appends at once than
// it holds allocate one each, left to the collector.
var stages = make(chan []byte, 8)

func getStage() []byte {
	select {
	case b := <-stages:
		return b
	default:
	}
	b := make([]byte, stageBytes+directAlign)
	off := (directAlign - int(uintptr(unsafe.Pointer(&b[0]))&(directAlign-1))) & (directAlign - 1)
	return b[off : off+stageBytes]
}

func putStage(b []byte) {
	select {
	case stages <- b:
	default:
	}
}

// directFile is a segment's O_DIRECT handle.
type directFile struct {
	fd   int
	tail []byte // the bytes of the segment's last partial block
}

// errShortDirect: a direct write wrote less than asked.
var errShortDirect = errors.New("lsm: short direct write")

// append writes parts at off, the segment's size (off-len(tail) is block
// aligned), and keeps the new last partial block.
func (d *directFile) append(off int64, parts ...[]byte) error {
	if int(off%directAlign) != len(d.tail) {
		return fmt.Errorf("lsm: direct write at %d with a tail of %d bytes", off, len(d.tail))
	}
	stage := getStage()
	defer putStage(stage)
	pos := off - int64(len(d.tail))
	n := copy(stage, d.tail)
	for _, p := range parts {
		for len(p) > 0 {
			c := copy(stage[n:], p)
			n, p = n+c, p[c:]
			if n == len(stage) {
				if err := d.pwrite(stage, pos); err != nil {
					return err
				}
				pos, n = pos+int64(n), 0
			}
		}
	}
	full := n &^ (directAlign - 1)
	if n > 0 {
		w := (n + directAlign - 1) &^ (directAlign - 1)
		clear(stage[n:w])
		if err := d.pwrite(stage[:w], pos); err != nil {
			return err
		}
	}
	d.tail = append(d.tail[:0], stage[full:n]...)
	return nil
}

func (d *directFile) pwrite(b []byte, off int64) error {
	n, err := pwrite(d.fd, b, off)
	if err != nil {
		return err
	}
	if n != len(b) {
		return errShortDirect
	}
	return nil
}
