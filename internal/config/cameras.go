package config

import (
	"fmt"
	"strings"

	"github.com/kvsedge/kvsedge/ingest"
)

// CameraSource builds the feed a configured camera records.
func CameraSource(c CameraFileConfig) (ingest.Source, error) {
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
