package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile in the data directory holds the PID of the process serving it,
// under an exclusive flock for the process's life.
const lockFile = "kvsedge.lock"

// ClaimDataDir creates the data directory private to its owner (0700; an
// older one is tightened), makes what the process creates private too
// (umask 077: the video, the index, the HLS session key and the generated
// credentials are nobody else's, whoever starts the binary), and takes the
// directory for this process: a second server on it is refused with the
// PID of the first. release gives the directory back (the umask stays).
func ClaimDataDir(dir string) (release func() error, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
				return nil, fmt.Errorf("data directory %s is in use by process %d (another kvsedge serving it)", dir, pid)
			}
			return nil, fmt.Errorf("data directory %s is in use by another process", dir)
		}
		return nil, fmt.Errorf("data directory %s: locking: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	// Process-wide and never put back: two apps in one process (tests)
	// must not restore each other's umask.
	syscall.Umask(0o077)
	return func() error {
		return f.Close() // closing the descriptor releases the lock
	}, nil
}
