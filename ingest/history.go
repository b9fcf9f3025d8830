package ingest

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/internal/atomicfile"
	"github.com/kvsedge/kvsedge/internal/status"
)

// maxChanges bounds the state changes kept per camera. Reconnect attempts
// do not add entries (see record), so this covers the real changes of
// days for a camera that fails now and then.
const maxChanges = 256

// stateHistory keeps the newest state changes of each camera configured
// on the box: where the console marks outages. Invariants: a camera's
// entries are in time order and at most maxChanges; cameras no longer
// configured are forgotten (Manager.reconcileLocked calls keep), so the
// whole is bounded by the configured cameras.
//
// With a file (persist), the history survives a restart: it is loaded
// from the file, and every change is written back to it by one goroutine,
// at most once per historyWriteEvery, as a whole new file renamed over the
// old one (never a half-written file), and once more at close. A change
// made in the last moment before a crash may be lost; a restart itself
// shows as the cameras' STOPPED state until they connect again. The
// file's format is in FORMAT.md:
//
//	{"version": 1, "cameras": {"<stream>": [{"state": "RECORDING",
//	  "at": "<RFC 3339, ns>", "error": "…"}, …], …}}
//
// A file that cannot be read or parsed is logged and ignored (the history
// starts empty): never a reason not to start. A write that fails is
// logged once per failure streak and tried again at the next change.
type stateHistory struct {
	mu       sync.Mutex
	byStream map[string][]status.CameraChange

	// seen: the cameras recorded since this history was made; loadedAt:
	// when it was loaded from the file (keep spares a loaded camera not
	// seen yet for historyGrace: the groups of cameras are configured one
	// after another at start).
	seen     map[string]bool
	loadedAt time.Time

	// persistence (persist); path "" keeps the history in memory only
	path    string
	log     *slog.Logger
	dirty   bool
	kick    chan struct{} // a change to write (buffered 1)
	quit    chan struct{}
	done    chan struct{}
	failing bool // the last write failed (logged)
	running bool // the last write marked the file running
}

// historyFileVersion is the version of the history file's format.
const historyFileVersion = 1

// historyWriteEvery spaces the history file's writes.
const historyWriteEvery = time.Second

// historyGrace is how long a camera loaded from the file is kept while no
// group configures it (then a keep forgets it).
const historyGrace = 10 * time.Minute

// historyHeartbeat spaces the touches of the history file's modification
// time while the box runs: after a crash or a power cut, the file's time
// says (within this) when the box was last alive.
const historyHeartbeat = 30 * time.Second

// errUncleanStop is the error of the STOPPED change a load adds to a
// camera the box was running when it stopped without a shutdown.
const errUncleanStop = "the box stopped without a shutdown (power loss or crash); it was last alive then"

type historyFile struct {
	Version int                              `json:"version"`
	Cameras map[string][]status.CameraChange `json:"cameras"`
	// Running: written while the box runs; the write at shutdown clears
	// it. Found set at a load, the box stopped unannounced.
	Running bool `json:"running,omitempty"`
}

func newStateHistory() *stateHistory {
	return &stateHistory{byStream: make(map[string][]status.CameraChange), seen: make(map[string]bool)}
}

// persist loads the history kept in path (the changes already recorded
// here, if any, come after the loaded ones) and keeps every later change
// there until close.
func (h *stateHistory) persist(path string, log *slog.Logger) {
	loaded := map[string][]status.CameraChange{}
	stopped := 0 // STOPPED changes added for an unannounced stop
	// A write cut off by a crash leaves its temporary file.
	if left, _ := filepath.Glob(atomicfile.TempPattern(path)); len(left) > 0 {
		for _, f := range left {
			_ = os.Remove(f)
		}
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		log.Warn("camera history not read: starting without it", "file", path, "err", err)
	default:
		var f historyFile
		if err := json.Unmarshal(b, &f); err != nil || f.Version != historyFileVersion {
			log.Warn("camera history file not understood: starting without it", "file", path, "version", f.Version, "err", err)
		} else {
			loaded = f.Cameras
			if f.Running {
				stopped = stopUnannounced(loaded, path, log)
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.path != "" {
		return
	}
	for stream, list := range loaded {
		list = append(list, h.byStream[stream]...)
		if len(list) > maxChanges {
			list = list[len(list)-maxChanges:]
		}
		h.byStream[stream] = list
	}
	h.path, h.log, h.loadedAt = path, log, time.Now()
	h.kick, h.quit, h.done = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go h.writer(h.kick, h.quit, h.done)
	if stopped > 0 {
		// Written at once: until then the file still says running, and
		// the heartbeat would move the stop it dates later.
		h.changed()
	}
}

// stopUnannounced ends, in a history loaded from a box that stopped
// without a shutdown (no STOPPED written for its cameras), every camera
// not stopped with a STOPPED change at the file's modification time: the
// box's last sign of life (historyHeartbeat), so the outage shows from
// then, not from the restart.
func stopUnannounced(cams map[string][]status.CameraChange, path string, log *slog.Logger) int {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	at, n := st.ModTime().UTC(), 0
	for stream, list := range cams {
		if len(list) == 0 || list[len(list)-1].State == StateStopped || !list[len(list)-1].At.Before(at) {
			continue
		}
		cams[stream] = append(list, status.CameraChange{State: StateStopped, At: at, Error: errUncleanStop})
		n++
	}
	if n > 0 {
		log.Warn("the box stopped without a shutdown: its cameras are shown stopped from its last sign of life", "at", at, "cameras", n)
	}
	return n
}

// changed marks the history to be written (h.mu held).
func (h *stateHistory) changed() {
	if h.path == "" {
		return
	}
	h.dirty = true
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// writer writes the history file after changes, at most once per
// historyWriteEvery, until close.
func (h *stateHistory) writer(kick, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	beat := time.NewTicker(historyHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-quit:
			h.writeFinal()
			return
		case <-beat.C:
			h.heartbeat()
			continue
		case <-kick:
		}
		h.write(true)
		select {
		case <-quit:
			h.writeFinal()
			return
		case <-time.After(historyWriteEvery):
		}
	}
}

// heartbeat sets the file's modification time to now (the box's last
// sign of life after a crash: stopUnannounced); a file not written yet
// is left so.
func (h *stateHistory) heartbeat() {
	now := time.Now()
	_ = os.Chtimes(h.path, now, now)
}

// writeFinal writes the history at shutdown, marked not running, if a
// write since the start marked it running.
func (h *stateHistory) writeFinal() {
	h.mu.Lock()
	h.dirty = h.dirty || h.running
	h.mu.Unlock()
	h.write(false)
}

// write writes the history file if it changed since the last write,
// marked running or not (the write at shutdown).
func (h *stateHistory) write(running bool) {
	h.mu.Lock()
	if !h.dirty {
		h.mu.Unlock()
		return
	}
	h.dirty = false
	h.running = running
	b, err := json.Marshal(historyFile{Version: historyFileVersion, Cameras: h.byStream, Running: running})
	h.mu.Unlock()
	if err == nil {
		err = atomicfile.Write(h.path, b, 0o600)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.dirty = true // tried again at the next change, or at close
		if !h.failing {
			h.log.Warn("camera history not written (tried again at the next change)", "file", h.path, "err", err)
		}
		h.failing = true
		return
	}
	if h.failing {
		h.log.Info("camera history written again", "file", h.path)
	}
	h.failing = false
}

// close writes what is left to the file and stops the writer.
func (h *stateHistory) close() {
	h.mu.Lock()
	quit, done := h.quit, h.done
	h.quit = nil
	h.mu.Unlock()
	if quit == nil {
		return
	}
	close(quit)
	<-done
}

// outage reports whether state is one of a camera that is not recording
// and is trying again by itself.
func outage(state string) bool { return state == StateRetrying || state == StatePaused }

// record adds a change of stream's camera to state at at (errText: why,
// if it failed). A reconnect attempt is not a change: CONNECTING after
// RETRYING or PAUSED, and the same state with the same error after that
// attempt, extend the outage already recorded.
func (h *stateHistory) record(stream, state string, at time.Time, errText string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.byStream[stream]
	if n := len(list); n > 0 {
		last := list[n-1]
		if last.State == state && (last.Error == errText || errText == "") {
			return
		}
		if state == StateConnecting && outage(last.State) {
			return
		}
	}
	if len(list) == maxChanges {
		list = append(list[:0], list[1:]...)
	}
	h.byStream[stream] = append(list, status.CameraChange{State: state, At: at, Error: errText})
	h.seen[stream] = true
	h.changed()
}

// changes returns a copy of stream's changes, oldest first.
func (h *stateHistory) changes(stream string) []status.CameraChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]status.CameraChange{}, h.byStream[stream]...)
}

// keep forgets the cameras not in streams (but a camera loaded from the
// file and not recorded since only after historyGrace).
func (h *stateHistory) keep(streams map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.byStream {
		if !streams[name] && (h.seen[name] || time.Since(h.loadedAt) > historyGrace) {
			delete(h.seen, name)
			delete(h.byStream, name)
			h.changed()
		}
	}
}
