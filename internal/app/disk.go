package app

import "syscall"

// freeBytes is the space left for unprivileged writers on dir's filesystem.
func freeBytes(dir string) uint64 {
	free, _, _ := diskSpace(dir)
	return free
}

// diskSpace is dir's filesystem's free space (for unprivileged writers) and
// size.
func diskSpace(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// fileLimit is the process's soft limit on open files.
func fileLimit() (uint64, bool) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 {
		return 0, false
	}
	return r.Cur, true
}
