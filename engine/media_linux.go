//go:build linux

package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Media buffers on Linux are anonymous private mappings, outside the Go
// heap (media.go). The raw *Ptr calls keep x/sys's mapping table (a Go
// map per mapping) out of the way.

const (
	// canRemap: large buffers grow and shrink with mremap.
	canRemap = true
	// canGuard: Debug can make buffers inaccessible (mprotect).
	canGuard = true
)

type memProt int

const (
	protNone memProt = unix.PROT_NONE
	protRead memProt = unix.PROT_READ
)

func mapMem(size int) (unsafe.Pointer, error) {
	return unix.MmapPtr(-1, 0, nil, uintptr(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
}

func unmapMem(p unsafe.Pointer, size int) error { return unix.MunmapPtr(p, uintptr(size)) }

// remapMem resizes a mapping; growing may move it (its contents move
// with it), shrinking never does.
func remapMem(p unsafe.Pointer, old, size int) (unsafe.Pointer, error) {
	return unix.MremapPtr(p, uintptr(old), nil, uintptr(size), unix.MREMAP_MAYMOVE)
}

// discardMem gives a mapping's pages back to the system (they read as
// zeros if touched again).
func discardMem(p unsafe.Pointer, size int) {
	_ = unix.Madvise(unsafe.Slice((*byte)(p), size), unix.MADV_DONTNEED)
}

// protectMem sets a mapping's access (Debug only).
func protectMem(p unsafe.Pointer, size int, prot memProt) {
	_ = unix.Mprotect(unsafe.Slice((*byte)(p), size), int(prot))
}
