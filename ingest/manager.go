package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/status"
)

// Manager runs the configured cameras and applies configuration changes
// without a restart: new cameras start, changed ones restart, removed ones
// stop (their recordings stay).
type Manager struct {
	eng *engine.Engine
	log *slog.Logger

	// reconcileMu serialises reconciles (Apply, Reevaluate,
	// SetMaxCameras, Close); mu guards the state below. A reconcile asks
	// the gate without mu: in a cluster the gate may ask peers over the
	// network for seconds (cluster.Owns), and States must not wait for
	// that. Lock order: reconcileMu, then mu.
	reconcileMu sync.Mutex
	mu          sync.Mutex
	cams        map[string]*camera // by stream name
	groups      map[string][]CameraConfig
	// ignored lists, per group, the streams whose camera lost to another
	// group's.
	ignored map[string][]string
	// gate decides whether this node records a stream's camera now;
	// standby holds the configured cameras it holds back, with why.
	gate Gate
	// onCameras is told the configured cameras' streams before each
	// reconcile (the cluster places cameras by them).
	onCameras func(streams []string)
	standby   map[string]status.Camera
	// maxCameras bounds the cameras recorded at once (0: no bound).
	maxCameras int
	// hist: the cameras' state changes (history.go).
	hist *stateHistory
	ctx  context.Context
	stop context.CancelFunc
}

// NewManager returns a Manager with no cameras.
func NewManager(eng *engine.Engine, log *slog.Logger) *Manager {
	ctx, stop := context.WithCancel(context.Background())
	return &Manager{eng: eng, log: log, cams: make(map[string]*camera), groups: make(map[string][]CameraConfig), ignored: make(map[string][]string),
		standby: make(map[string]status.Camera), hist: newStateHistory(), ctx: ctx, stop: stop}
}

// Gate decides whether this node records a stream's camera now. recording
// says whether it does (and has not handed the stream over). record false:
// the camera waits in STANDBY, why says why. handBack (with record): the
// stream's home took the camera back while this node records it (make
// before break): this node goes on recording, cutting at every key frame
// and holding its fragments back, until the home's first fragment is
// copied here; then it drops what the home recorded too and stops
// (output.go).
type Gate func(stream string, recording bool) (record, handBack bool, why string)

// SetGate makes the manager record a configured camera only while gate
// says so (in a cluster: on the stream's home node, with quorum); the
// others wait in STANDBY. Call Reevaluate when the gate's answers may have
// changed (membership changes).
func (m *Manager) SetGate(gate Gate) {
	m.mu.Lock()
	m.gate = gate
	m.mu.Unlock()
}

// OnCameras makes the manager tell fn the streams of every configured
// camera (recorded here or not) before it applies the gate: the cluster's
// camera placement needs them. fn must not call the manager.
func (m *Manager) OnCameras(fn func(streams []string)) {
	m.mu.Lock()
	m.onCameras = fn
	m.mu.Unlock()
}

// SetMaxCameras bounds how many cameras record at once (the hardware
// profile's budget; 0: no bound). Cameras over it wait in STANDBY;
// running ones keep running.
func (m *Manager) SetMaxCameras(n int) error {
	m.reconcileMu.Lock()
	defer m.reconcileMu.Unlock()
	m.mu.Lock()
	m.maxCameras = n
	m.mu.Unlock()
	return m.reconcile()
}

// Reevaluate applies the gate again: cameras start or stop here.
func (m *Manager) Reevaluate() error {
	m.reconcileMu.Lock()
	defer m.reconcileMu.Unlock()
	return m.reconcile()
}

// Camera groups, in precedence order: when two groups configure a camera
// for the same stream, the earlier one records it.
const (
	GroupFile = "1-file" // the configuration file
	GroupDemo = "2-demo" // the built-in demo camera
	GroupAPI  = "3-api"  // the edge configuration API
)

// Apply replaces the cameras of one configuration source (a group) and
// makes the running cameras match the union of all groups. A stream may
// have one camera only: within a group that is an error; across groups
// the group that sorts first keeps it (see Ignored).
func (m *Manager) Apply(group string, cfgs []CameraConfig) error {
	seen := make(map[string]bool, len(cfgs))
	for _, c := range cfgs {
		if c.Stream == "" || c.Source == nil {
			return errors.New("ingest: a camera needs a stream and a source")
		}
		if seen[c.Stream] {
			return fmt.Errorf("ingest: stream %q has two cameras", c.Stream)
		}
		seen[c.Stream] = true
	}
	m.reconcileMu.Lock()
	defer m.reconcileMu.Unlock()
	m.mu.Lock()
	m.groups[group] = cfgs
	m.mu.Unlock()
	return m.reconcile()
}

// gateAnswer is the gate's answer for one stream.
type gateAnswer struct {
	record, handBack bool
	why              string
}

// reconcile makes the running cameras match the union of the groups, as
// the gate allows. The gate is asked without m.mu (it may take seconds in
// a cluster); only reconciles change m.cams, and they are serialised, so
// the cameras it was asked about are still those running when its
// answers are applied. REQUIRES: m.reconcileMu, not m.mu.
func (m *Manager) reconcile() error {
	if m.ctx.Err() != nil {
		return nil // closed: a late Reevaluate (a membership change) starts nothing
	}
	m.mu.Lock()
	gate := m.gate
	asks := make(map[string]bool) // every configured stream → recording here
	for _, g := range m.groups {
		for _, c := range g {
			cam := m.cams[c.Stream]
			asks[c.Stream] = cam != nil && !cam.handedOver.Load()
		}
	}
	if m.onCameras != nil { // before the gate: the cluster places cameras by them
		streams := make([]string, 0, len(asks))
		for name := range asks {
			streams = append(streams, name)
		}
		sort.Strings(streams)
		m.onCameras(streams)
	}
	m.mu.Unlock()
	if gate == nil {
		clear(asks)
	}
	answers := make(map[string]gateAnswer, len(asks))
	for name, recording := range asks {
		var a gateAnswer
		a.record, a.handBack, a.why = gate(name, recording)
		answers[name] = a
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reconcileLocked(gate, answers)
}

// reconcileLocked is reconcile's second half, with the gate's answers.
// REQUIRES: m.reconcileMu, m.mu.
func (m *Manager) reconcileLocked(gate Gate, answers map[string]gateAnswer) error {
	names := make([]string, 0, len(m.groups))
	for g := range m.groups {
		names = append(names, g)
	}
	sort.Strings(names)
	want := make(map[string]CameraConfig)
	var errs []error
	clear(m.ignored)
	for _, g := range names {
		for _, c := range m.groups[g] {
			if _, taken := want[c.Stream]; taken {
				m.ignored[g] = append(m.ignored[g], c.Stream)
				continue
			}
			want[c.Stream] = c
		}
	}
	before := m.standby
	m.standby = make(map[string]status.Camera)
	configured := make(map[string]bool, len(want))
	for name := range want {
		configured[name] = true
	}
	m.hist.keep(configured)
	defer func() { // after the cameras that go to standby have stopped
		now := time.Now()
		for name, st := range m.standby {
			m.hist.record(name, st.State, now, st.LastError)
		}
	}()
	if gate != nil {
		for name, c := range want {
			cam := m.cams[name]
			a := answers[name] // every configured stream was asked
			ok, handBack, why := a.record, a.handBack, a.why
			if cam != nil {
				if handBack && ok && !cam.handBack.Load() {
					cam.log.Info("the stream's home took the camera back: recording until its first fragment arrives", "why", why)
				}
				cam.handBack.Store(ok && handBack)
			}
			if !ok {
				st := status.Camera{Stream: name, Source: c.Source.Describe(), State: StateStandby, LastError: why, Since: time.Now()}
				if old, was := before[name]; was && old.LastError == why {
					st.Since = old.Since
				}
				m.standby[name] = st
				delete(want, name)
			}
		}
	}
	if m.maxCameras > 0 && len(want) > m.maxCameras {
		// Running cameras keep their places, then by name.
		names := make([]string, 0, len(want))
		for name := range want {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool {
			_, ri := m.cams[names[i]]
			_, rj := m.cams[names[j]]
			if ri != rj {
				return ri
			}
			return names[i] < names[j]
		})
		for _, name := range names[m.maxCameras:] {
			why := fmt.Sprintf("over this box's limit of %d cameras (media.max_cameras, from its hardware profile)", m.maxCameras)
			st := status.Camera{Stream: name, Source: want[name].Source.Describe(), State: StateStandby, LastError: why, Since: time.Now()}
			if old, was := before[name]; was && old.LastError == why {
				st.Since = old.Since
			}
			m.standby[name] = st
			delete(want, name)
		}
	}
	for name, cam := range m.cams {
		if c, ok := want[name]; !ok || c.Key != cam.cfg.Key {
			m.stopLocked(name, cam)
		}
	}
	for name, c := range want {
		if _, running := m.cams[name]; running {
			continue
		}
		if err := m.ensureStream(c); err != nil {
			errs = append(errs, err)
			continue
		}
		m.startLocked(c)
	}
	return errors.Join(errs...)
}

func (m *Manager) ensureStream(c CameraConfig) error {
	_, err := m.eng.Stream(engine.StreamRef{Name: c.Stream})
	if errors.Is(err, engine.ErrStreamNotFound) {
		_, err = m.eng.CreateStream(engine.CreateStreamInput{Name: c.Stream, DataRetentionInHours: c.RetentionHours,
			Tags: c.Tags, MediaType: "video/h264"})
		if errors.Is(err, engine.ErrStreamExists) {
			err = nil
		}
		if err == nil {
			m.log.Info("created the stream for a camera", "stream", c.Stream)
		}
	}
	if err != nil {
		return fmt.Errorf("ingest: camera %s: %w", c.Stream, err)
	}
	return nil
}

func (m *Manager) startLocked(c CameraConfig) {
	if c.StallTimeout == 0 {
		c.StallTimeout = 10 * time.Second
	}
	ctx, cancel := context.WithCancel(m.ctx)
	cam := &camera{cfg: c, eng: m.eng, hist: m.hist, cancel: cancel, done: make(chan struct{}),
		log:   m.log.With("camera", c.Stream, "source", c.Source.Describe()),
		state: status.Camera{Stream: c.Stream, Source: c.Source.Describe(), State: StateConnecting, Since: time.Now()}}
	m.cams[c.Stream] = cam
	m.hist.record(c.Stream, StateConnecting, cam.state.Since, "")
	if h := m.retentionHours(c.Stream); h == 0 {
		cam.log.Warn("camera started, but its stream keeps nothing: "+status.LiveOnly+
			" (its retention is 0 hours; give the camera retention_hours, or raise the stream's with update-data-retention)", "retention_hours", 0)
	} else {
		cam.log.Info("camera started", "retention_hours", h)
	}
	go cam.run(ctx)
}

func (m *Manager) stopLocked(name string, cam *camera) {
	cam.cancel()
	<-cam.done
	delete(m.cams, name)
	cam.log.Info("camera stopped")
}

// Ignored returns the streams of group whose camera is not running
// because an earlier group configures one for the same stream.
func (m *Manager) Ignored(group string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.ignored[group]...)
}

// States returns every camera's state, by stream name, with its stream's
// retention (status.LiveOnly for a stream that keeps nothing).
func (m *Manager) States() []status.Camera {
	m.mu.Lock()
	out := make([]status.Camera, 0, len(m.cams)+len(m.standby))
	for _, c := range m.cams {
		out = append(out, c.snapshot())
	}
	for _, st := range m.standby {
		out = append(out, st)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	for i := range out {
		h := m.retentionHours(out[i].Stream)
		out[i].RetentionHours = h
		switch {
		case h == 0:
			out[i].Retention = status.LiveOnly
		case h > 0:
			out[i].Retention = fmt.Sprintf("%d h", h)
		}
	}
	return out
}

// StateChanges returns the state changes of stream's camera (since the
// box started, or across restarts with KeepHistory; the newest
// maxChanges; reconnect attempts within an outage are not changes),
// oldest first; none for a stream without a configured camera.
func (m *Manager) StateChanges(stream string) []status.CameraChange {
	return m.hist.changes(stream)
}

// retentionHours is the stream's DataRetentionInHours, -1 when it cannot
// be read (not created yet, or deleted).
func (m *Manager) retentionHours(stream string) int {
	info, err := m.eng.Stream(engine.StreamRef{Name: stream})
	if err != nil {
		return -1
	}
	return info.DataRetentionInHours
}

// Close stops every camera.
func (m *Manager) Close() {
	m.stop()
	m.reconcileMu.Lock()
	defer m.reconcileMu.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, cam := range m.cams {
		m.stopLocked(name, cam)
	}
	m.hist.close() // after the cameras' STOPPED
}

// KeepHistory keeps the cameras' state changes (StateChanges) in the file
// path, so that they survive a restart (history.go); call it before
// configuring cameras. Close writes the last changes.
func (m *Manager) KeepHistory(path string) { m.hist.persist(path, m.log) }
