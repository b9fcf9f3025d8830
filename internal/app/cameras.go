package app

import (
	"fmt"
	"log/slog"
	"os"
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
			Key:              fmt.Sprintf("%+v", c),
			RetentionHours:   c.RetentionHours,
			Tags:             c.Tags,
			FragmentDuration: c.FragmentDuration,
		})
	}
	return out, nil
}

// watchCameraFile re-reads the configuration when its file changes and
// applies the new camera list. Other settings need a restart; a file that
// no longer validates is reported and ignored.
func watchCameraFile(path string, load func() (*config.Config, error), cams *ingest.Manager, edge *ingest.EdgeAgent, log *slog.Logger) (stop func(), err error) {
	fp := file.Provider(path)
	var last time.Time
	reload := func() {
		st, err := os.Stat(path)
		if err == nil && st.ModTime().Equal(last) {
			return
		}
		if err == nil {
			last = st.ModTime()
		}
		cfg, err := load()
		if err != nil {
			log.Warn("configuration file changed but does not load; cameras unchanged", "file", path, "err", err)
			return
		}
		edge.SetSecrets(cfg.Secrets)
		cc, err := fileCameras(cfg)
		if err == nil {
			err = cams.Apply(ingest.GroupFile, cc)
		}
		if err != nil {
			log.Warn("applying cameras from the configuration file", "err", err)
			return
		}
		log.Info("cameras reloaded from the configuration file", "cameras", len(cc))
	}
	if st, err := os.Stat(path); err == nil {
		last = st.ModTime()
	}
	if err := fp.Watch(func(_ any, err error) {
		if err != nil {
			log.Warn("watching the configuration file", "err", err)
			return
		}
		reload()
	}); err != nil {
		return nil, err
	}
	return func() { _ = fp.Unwatch() }, nil
}
