package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/knadh/koanf/providers/file"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/spf13/pflag"
)

// cameraSource builds the feed a configured camera records.
func cameraSource(c CameraFileConfig) (ingest.Source, error) {
	switch {
	case c.URL != "" && c.Device != "":
		return nil, fmt.Errorf("give url or device, not both")
	case c.Device != "":
		if !strings.HasPrefix(c.Device, "/dev/") || c.Width < 0 || c.Height < 0 {
			return nil, fmt.Errorf("device %q is not a /dev path (with a non-negative width and height)", c.Device)
		}
		return ingest.NewUSBSource(c.Device, c.Width, c.Height), nil
	}
	src, err := ingest.NewRTSPSource(c.URL, c.Transport)
	if err != nil {
		return nil, err
	}
	src.InsecureTLS = c.InsecureTLS
	return src, nil
}

// fileCameras turns the configuration's cameras into what the manager
// runs. Key is the whole camera configuration, so any change restarts
// that camera and only that camera.
func fileCameras(cfg *Config) ([]ingest.CameraConfig, error) {
	out := make([]ingest.CameraConfig, 0, len(cfg.Cameras))
	for _, c := range cfg.Cameras {
		src, err := cameraSource(c)
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
func watchCameraFile(fs *pflag.FlagSet, path string, cams *ingest.Manager, bridge *edgeBridge, log *slog.Logger) (stop func(), err error) {
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
		cfg, err := loadConfig(fs, os.Environ())
		if err != nil {
			log.Warn("configuration file changed but does not load; cameras unchanged", "file", path, "err", err)
			return
		}
		bridge.setSecrets(cfg.Secrets)
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
