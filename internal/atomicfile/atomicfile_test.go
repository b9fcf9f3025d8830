package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteReplacesAndLeavesNoTemporary: Write creates, then replaces, a
// file with the given mode and leaves no temporary file, also when the
// rename fails.
func TestWriteReplacesAndLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Write(path, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "two" {
		t.Fatalf("content %q %v", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	if left, _ := filepath.Glob(TempPattern(path)); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	// A rename that fails (the target is a directory that is not empty)
	// fails the write and leaves no temporary file.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, []byte("three"), 0o644); err == nil {
		t.Fatal("a write over a directory succeeded")
	}
	if left, _ := filepath.Glob(TempPattern(sub)); len(left) > 0 {
		t.Fatalf("temporary files left after a failed write: %v", left)
	}
	if st, err := os.Stat(filepath.Join(sub, "x")); err != nil || !st.IsDir() {
		t.Fatalf("the directory written over: %v", err)
	}
}
