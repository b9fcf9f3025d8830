package ingest

import (
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/internal/status"
)

// maxChanges bounds the state changes kept per camera. Reconnect attempts
// do not add entries (see record), so this covers the real changes of
// days for a camera that fails now and then.
const maxChanges = 256

// stateHistory keeps, in memory, the newest state changes of each camera
// configured on the box (from its start; it is not persisted): where the
// console marks outages. Invariants: a camera's entries are in time order
// and at most maxChanges; cameras no longer configured are forgotten
// (Manager.reconcileLocked calls keep), so the whole is bounded by the
// configured cameras.
type stateHistory struct {
	mu       sync.Mutex
	byStream map[string][]status.CameraChange
}

func newStateHistory() *stateHistory {
	return &stateHistory{byStream: make(map[string][]status.CameraChange)}
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
}

// changes returns a copy of stream's changes, oldest first.
func (h *stateHistory) changes(stream string) []status.CameraChange {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]status.CameraChange{}, h.byStream[stream]...)
}

// keep forgets the cameras not in streams.
func (h *stateHistory) keep(streams map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range h.byStream {
		if !streams[name] {
			delete(h.byStream, name)
		}
	}
}
