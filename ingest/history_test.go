package ingest

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/status"
)

// TestStateHistoryPersists: a history kept in a file is there again in a
// new history loading the file (a restart), later changes after it;
// cameras no longer configured leave the file too (a loaded one after a
// grace); a damaged file is
// ignored (an empty history) and written anew; a file that cannot be
// written costs nothing but the persistence.
func TestStateHistoryPersists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "camera-history.json")
	log := slog.New(slog.DiscardHandler)
	t0 := time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)
	same := func(what string, got, want []status.CameraChange) {
		t.Helper()
		ok := len(got) == len(want)
		for i := 0; ok && i < len(got); i++ {
			ok = got[i].State == want[i].State && got[i].At.Equal(want[i].At) && got[i].Error == want[i].Error
		}
		if !ok {
			t.Fatalf("%s: %+v, want %+v", what, got, want)
		}
	}

	// A write a crash cut off left its temporary file: removed.
	if err := os.WriteFile(path+".123.tmp", []byte(`{"vers`), 0o644); err != nil {
		t.Fatal(err)
	}
	h := newStateHistory()
	h.persist(path, log)
	if _, err := os.Stat(path + ".123.tmp"); !os.IsNotExist(err) {
		t.Fatalf("a temporary file left by a crash: %v", err)
	}
	h.record("door", StateConnecting, t0, "")
	h.record("door", StateRecording, t0.Add(time.Second), "")
	h.record("door", StateRetrying, t0.Add(time.Minute), "dial tcp: connection refused")
	h.record("yard", StateConnecting, t0, "")
	h.record("door", StateStopped, t0.Add(2*time.Minute), "")
	door := h.changes("door")
	h.close()

	h = newStateHistory()
	h.persist(path, log)
	same("door after a restart", h.changes("door"), door)
	same("yard after a restart", h.changes("yard"), []status.CameraChange{{State: StateConnecting, At: t0}})
	h.record("door", StateConnecting, t0.Add(3*time.Minute), "")
	// yard, loaded but not configured (yet): kept for a while (the groups
	// of cameras are configured one after another at start), then
	// forgotten.
	h.keep(map[string]bool{"door": true})
	same("yard right after loading", h.changes("yard"), []status.CameraChange{{State: StateConnecting, At: t0}})
	h.mu.Lock()
	h.loadedAt = h.loadedAt.Add(-historyGrace - time.Second)
	h.mu.Unlock()
	h.keep(map[string]bool{"door": true})
	same("yard after the grace", h.changes("yard"), nil)
	door = h.changes("door")
	if len(door) != 5 {
		t.Fatalf("door: %+v", door)
	}
	h.close()

	h = newStateHistory()
	h.persist(path, log)
	same("door after a second restart", h.changes("door"), door)
	same("yard, no longer configured", h.changes("yard"), nil)
	h.close()

	// A damaged file: an empty history, written anew at the next change.
	if err := os.WriteFile(path, []byte(`{"version":1,"cameras":{"door":[{"state":`), 0o644); err != nil {
		t.Fatal(err)
	}
	h = newStateHistory()
	h.persist(path, log)
	same("door from a damaged file", h.changes("door"), nil)
	h.record("door", StateConnecting, t0, "")
	h.close()
	h = newStateHistory()
	h.persist(path, log)
	same("door after the damaged file", h.changes("door"), []status.CameraChange{{State: StateConnecting, At: t0}})
	h.close()

	// A file that cannot be written: the history works in memory.
	h = newStateHistory()
	h.persist(filepath.Join(dir, "missing", "camera-history.json"), log)
	h.record("door", StateConnecting, t0, "")
	h.record("door", StateRecording, t0.Add(time.Second), "")
	h.close()
	if len(h.changes("door")) != 2 {
		t.Fatalf("in memory: %+v", h.changes("door"))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestStateHistoryAfterCrash: a box that stopped without a shutdown (its
// file still marked running) shows each camera it was running as STOPPED
// from the file's modification time (its last sign of life: the
// heartbeat) on; a camera already stopped gets nothing more; and the
// heartbeat moves the file's time forward.
func TestStateHistoryAfterCrash(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "camera-history.json")
	log := slog.New(slog.DiscardHandler)
	t0 := time.Date(2026, 12, 5, 14, 0, 0, 0, time.UTC)
	h := newStateHistory()
	h.persist(path, log)
	h.record("door", StateConnecting, t0, "")
	h.record("door", StateRecording, t0.Add(time.Second), "")
	h.record("yard", StateConnecting, t0, "")
	h.record("yard", StateStopped, t0.Add(time.Minute), "")
	h.mu.Lock()
	h.dirty = true
	h.mu.Unlock()
	h.write(true)
	// The file as a power cut leaves it: written while running.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(dir, "crashed.json")
	if err := os.WriteFile(crashed, b, 0o644); err != nil {
		t.Fatal(err)
	}
	alive := t0.Add(time.Hour)
	if err := os.Chtimes(crashed, alive, alive); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	h.heartbeat()
	if st, err := os.Stat(path); err != nil || !st.ModTime().After(old.Add(30*time.Minute)) {
		t.Fatalf("the heartbeat left the file's time at %v (%v)", st.ModTime(), err)
	}
	h.close()

	h = newStateHistory()
	h.persist(crashed, log)
	defer h.close()
	door := h.changes("door")
	if len(door) != 3 || door[2].State != StateStopped || !door[2].At.Equal(alive) || door[2].Error != errUncleanStop {
		t.Fatalf("door after a crash: %+v, want its RECORDING ended by STOPPED at %v", door, alive)
	}
	if yard := h.changes("yard"); len(yard) != 2 || yard[1].State != StateStopped || !yard[1].At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("yard, stopped before the crash: %+v", yard)
	}

	// The added stops are written at once (the file no longer says
	// running): a load after the next run's heartbeats moved the file's
	// time keeps them where they were and adds nothing.
	h.close()
	later := alive.Add(time.Hour)
	if err := os.Chtimes(crashed, later, later); err != nil {
		t.Fatal(err)
	}
	h = newStateHistory()
	h.persist(crashed, log)
	defer h.close()
	if again := h.changes("door"); len(again) != 3 || !again[2].At.Equal(alive) {
		t.Fatalf("door after the recovered history was loaded again: %+v, want the one STOPPED at %v", again, alive)
	}

	// After a shutdown (close), nothing is added.
	h2 := newStateHistory()
	h2.persist(path, log)
	defer h2.close()
	if door := h2.changes("door"); len(door) != 2 || door[1].State != StateRecording {
		t.Fatalf("door after a shutdown: %+v, want its changes as recorded", door)
	}
}
