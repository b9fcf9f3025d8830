// Package atomicfile writes small files so that a crash leaves either the
// old content or the new, never a torn or empty file: the bytes go to a
// temporary file beside the target (name "<base>.<random>.tmp"), which is
// synced, renamed over the target, and the directory synced, so the
// rename itself survives a power cut. A leaf: the standard library only.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// TempPattern is the glob of the temporary files Write leaves behind only
// when the process dies between their creation and the rename; a caller
// may remove them at start.
func TempPattern(path string) string { return path + ".*.tmp" }

// Write replaces path with data (mode perm for a new file), durably.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	if perm != 0o600 { // CreateTemp made it 0600; a filesystem without modes (vfat) may refuse Chmod
		err = f.Chmod(perm)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		// EINVAL, ENOTSUP: a filesystem that cannot sync a directory (some
		// FUSE mounts); the rename is as durable as it makes it.
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
