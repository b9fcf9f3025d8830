package app

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/knadh/koanf/providers/file"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/config"
)

// fileCameras turns the configuration's cameras into what the manager
// runs. Key is the whole camera configuration, so any change restarts
// that camera and only that camera.
func fileCameras(cfg *config.Config) ([]ingest.CameraConfig, error) {
	out := make([]ingest.CameraConfig, 0, len(cfg.Cameras))
	for _, c := range cfg.Cameras {
		src, err := config.CameraSource(c)
		if err != nil {
			return nil, fmt.Errorf("camera %s: %w", c.Stream, err)
		}
		out = append(out, ingest.CameraConfig{
			Stream:           c.Stream,
			Source:           src,
			Key:              cameraKey(c),
			RetentionHours:   cfg.CameraRetentionHours(c),
			Tags:             c.Tags,
			FragmentDuration: c.FragmentDuration,
		})
	}
	return out, nil
}

// cameraKey is the camera's whole configuration as text (RetentionHours
// by value: a pointer would make every reload look like a change).
func cameraKey(c config.CameraFileConfig) string {
	r := "default"
	if c.RetentionHours != nil {
		r = fmt.Sprint(*c.RetentionHours)
	}
	c.RetentionHours = nil
	return fmt.Sprintf("%+v retention:%s", c, r)
}

// configWatch applies the configuration file's cameras and secrets when
// the file changes, so that an edit never stops a camera by accident:
//
//   - events are debounced (reloadDelay after the last one), so an editor's
//     truncate-then-write or write-then-rename is read once, whole;
//   - an empty file (a save in progress) or one that does not load and
//     validate whole keeps the running set; the log and /readyz say so
//     until a valid file replaces it;
//   - the same bytes again change nothing; a camera whose settings did not
//     change is not restarted (its Key is unchanged); cameras configured
//     through the edge configuration API are never touched.
type configWatch struct {
	path string
	load func() (*config.Config, error)
	cams *ingest.Manager
	edge *ingest.EdgeAgent
	log  *slog.Logger

	mu      sync.Mutex
	timer   *time.Timer
	applied []byte // the file's bytes last applied (or loaded at start)
	problem atomic.Pointer[string]
	stopped bool
	// onApply is called with each configuration applied after a reload.
	onApply func(*config.Config)
}

// reloadDelay is how long the file must stay unchanged before it is read.
const reloadDelay = 500 * time.Millisecond

// Problem is what is wrong with the file on disk ("" when it is applied).
func (w *configWatch) Problem() string {
	if p := w.problem.Load(); p != nil {
		return *p
	}
	return ""
}

func (w *configWatch) changed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.AfterFunc(reloadDelay, w.reload)
}

func (w *configWatch) setProblem(p string) {
	if p == "" {
		w.problem.Store(nil)
		return
	}
	w.problem.Store(&p)
}

func (w *configWatch) reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	b, err := os.ReadFile(w.path)
	switch {
	case err != nil:
		w.setProblem(fmt.Sprintf("configuration file %s cannot be read (%v); running with the last valid one", w.path, err))
		w.log.Warn("configuration file cannot be read; cameras unchanged", "file", w.path, "err", err)
		return
	case len(bytes.TrimSpace(b)) == 0:
		w.setProblem(fmt.Sprintf("configuration file %s is empty; running with the last valid one", w.path))
		w.log.Warn("configuration file is empty (a save in progress?); cameras unchanged", "file", w.path)
		return
	case bytes.Equal(b, w.applied):
		w.setProblem("")
		return
	}
	cfg, err := w.load()
	if err != nil {
		w.setProblem(fmt.Sprintf("configuration file %s is invalid; running with the last valid one: %v", w.path, err))
		w.log.Warn("configuration file changed but is invalid; cameras unchanged", "file", w.path, "err", err)
		return
	}
	cc, err := fileCameras(cfg)
	if err == nil {
		err = w.cams.Apply(ingest.GroupFile, cc)
	}
	if err != nil {
		w.setProblem(fmt.Sprintf("cameras of configuration file %s could not all be applied: %v", w.path, err))
		w.log.Warn("applying cameras from the configuration file", "err", err)
		return
	}
	w.edge.SetSecrets(cfg.Secrets)
	if w.onApply != nil {
		w.onApply(cfg)
	}
	w.applied = b
	w.setProblem("")
	w.log.Info("configuration file reloaded; changed cameras restarted, others untouched", "file", w.path, "cameras", len(cc))
}

// watchCameraFile starts a configWatch on path (whose current content
// was applied at start).
func watchCameraFile(path string, load func() (*config.Config, error), cams *ingest.Manager, edge *ingest.EdgeAgent, log *slog.Logger) (*configWatch, func(), error) {
	w := &configWatch{path: path, load: load, cams: cams, edge: edge, log: log}
	w.applied, _ = os.ReadFile(path)
	fp := file.Provider(path)
	if err := fp.Watch(func(_ any, err error) {
		if err != nil {
			log.Warn("watching the configuration file", "err", err)
			return
		}
		w.changed()
	}); err != nil {
		return nil, nil, err
	}
	stop := func() {
		_ = fp.Unwatch()
		w.mu.Lock()
		w.stopped = true
		if w.timer != nil {
			w.timer.Stop()
		}
		w.mu.Unlock()
	}
	return w, stop, nil
}
