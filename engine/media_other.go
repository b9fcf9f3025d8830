//go:build !linux

package engine

import "unsafe"

// Off Linux media buffers are Go slices with the same accounting
// (media.go): no mapping, no remapping, no guard pages. The span's base
// pointer keeps the slice alive.

const (
	canRemap = false
	canGuard = false
)

type memProt int

const (
	protNone memProt = 0
	protRead memProt = 1
)

func mapMem(size int) (unsafe.Pointer, error) {
	b := make([]byte, size)
	return unsafe.Pointer(unsafe.SliceData(b)), nil
}

func unmapMem(unsafe.Pointer, int) error { return nil }

func remapMem(p unsafe.Pointer, old, size int) (unsafe.Pointer, error) {
	panic("engine: remapMem without canRemap")
}

func discardMem(unsafe.Pointer, int)          {}
func protectMem(unsafe.Pointer, int, memProt) {}
