//go:build linux

package lsm

import (
	"errors"

	"golang.org/x/sys/unix"
)

// openDirect opens a segment for O_DIRECT writes.
func openDirect(path string) (*directFile, error) {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &directFile{fd: fd, tail: make([]byte, 0, directAlign)}, nil
}

func (d *directFile) close() { _ = unix.Close(d.fd) }

func pwrite(fd int, b []byte, off int64) (int, error) {
	for {
		n, err := unix.Pwrite(fd, b, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

// directUnsupported reports an error saying the file system refuses direct
// writes (the store then writes through the page cache).
func directUnsupported(err error) bool { return errors.Is(err, unix.EINVAL) }
