//go:build !linux

package lsm

import (
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// openStatDir: elsewhere the guard reads the free space by path
// (GetDiskUsage).
func openStatDir(vfs.FS, string) *os.File { return nil }

func statDirUsage(*os.File) (vfs.DiskUsage, error) {
	return vfs.DiskUsage{}, os.ErrInvalid
}
