//go:build linux

package lsm

import (
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/sys/unix"
)

// openStatDir opens the data directory for fstatfs when it is on the
// operating system's filesystem: statfs by path converts the path to a C
// string at every call (an allocation; the guard reads the free space
// twice per fragment), fstatfs on an open descriptor allocates nothing.
// nil: use the FS's GetDiskUsage.
func openStatDir(fs vfs.FS, dir string) *os.File {
	if fs != vfs.Default {
		return nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return nil
	}
	return f
}

// statDirUsage is vfs's GetDiskUsage (the same figures: Frsize units, as
// df) for the filesystem holding f.
func statDirUsage(f *os.File) (vfs.DiskUsage, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return vfs.DiskUsage{}, err
	}
	free := uint64(st.Frsize) * st.Bfree
	total := uint64(st.Frsize) * st.Blocks
	return vfs.DiskUsage{AvailBytes: uint64(st.Frsize) * st.Bavail, TotalBytes: total, UsedBytes: total - free}, nil
}
