package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/blackjack/webcam"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// USB (UVC) cameras through V4L2, without cgo: github.com/blackjack/webcam
// issues the ioctls and maps the driver's buffers. kvsedge stores what the
// camera encodes — MJPEG or H.264 — and refuses raw formats (YUYV, NV12 …)
// that would need an encoder on the box.

// v4l2Device is the part of a V4L2 device the source uses (a
// *webcam.Webcam, or a fake in tests).
type v4l2Device interface {
	GetSupportedFormats() map[webcam.PixelFormat]string
	GetSupportedFrameSizes(webcam.PixelFormat) []webcam.FrameSize
	SetImageFormat(f webcam.PixelFormat, width, height uint32) (webcam.PixelFormat, uint32, uint32, error)
	StartStreaming() error
	WaitForFrame(timeout uint32) error
	GetFrame() ([]byte, uint32, error)
	ReleaseFrame(index uint32) error
	StopStreaming() error
	Close() error
}

// fourcc builds a V4L2 pixel format code.
func fourcc(s string) webcam.PixelFormat {
	return webcam.PixelFormat(uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24)
}

var (
	fmtMJPEG = fourcc("MJPG")
	fmtJPEG  = fourcc("JPEG")
	fmtH264  = fourcc("H264")
)

// USBSource records a V4L2 device.
type USBSource struct {
	Device        string
	Width, Height int // 0: the largest the device offers
	open          func(string) (v4l2Device, error)
}

// NewUSBSource records device (for example /dev/video0).
func NewUSBSource(device string, width, height int) *USBSource {
	return &USBSource{Device: device, Width: width, Height: height, open: func(p string) (v4l2Device, error) {
		cam, err := webcam.Open(p)
		if err != nil {
			return nil, err
		}
		return cam, nil
	}}
}

// Describe implements Source.
func (s *USBSource) Describe() string { return "usb " + s.Device }

// pickFormat chooses H.264, else MJPEG, and explains a device that offers
// neither.
func pickFormat(offered map[webcam.PixelFormat]string) (webcam.PixelFormat, error) {
	for _, f := range []webcam.PixelFormat{fmtH264, fmtMJPEG, fmtJPEG} {
		if _, ok := offered[f]; ok {
			return f, nil
		}
	}
	var names []string
	for f, name := range offered {
		names = append(names, fmt.Sprintf("%s (%s)", fourccString(f), name))
	}
	sort.Strings(names)
	return 0, fmt.Errorf("the device offers %s; kvsedge stores MJPEG or H.264 as the camera encodes it and has no encoder for raw formats",
		strings.Join(names, ", "))
}

func fourccString(f webcam.PixelFormat) string {
	return string([]byte{byte(f), byte(f >> 8), byte(f >> 16), byte(f >> 24)})
}

// largest returns the biggest discrete size a device offers.
func largest(sizes []webcam.FrameSize) (uint32, uint32) {
	var w, h uint32
	for _, s := range sizes {
		if s.MaxWidth*s.MaxHeight > w*h {
			w, h = s.MaxWidth, s.MaxHeight
		}
	}
	return w, h
}

// Run implements Source.
func (s *USBSource) Run(ctx context.Context, fr *Fragmenter, tl *timeline, st *feedStats) error {
	dev, err := s.open(s.Device)
	if err != nil {
		return fmt.Errorf("usb %s: %w", s.Device, err)
	}
	defer dev.Close()
	pf, err := pickFormat(dev.GetSupportedFormats())
	if err != nil {
		return fmt.Errorf("usb %s: %w", s.Device, err)
	}
	w, h := uint32(s.Width), uint32(s.Height)
	if w == 0 || h == 0 {
		w, h = largest(dev.GetSupportedFrameSizes(pf))
	}
	pf, w, h, err = dev.SetImageFormat(pf, w, h)
	if err != nil {
		return fmt.Errorf("usb %s: setting the format: %w", s.Device, err)
	}
	if err := dev.StartStreaming(); err != nil {
		return fmt.Errorf("usb %s: %w", s.Device, err)
	}
	defer dev.StopStreaming()
	spec := mkv.TrackSpec{Number: 1, Type: mkv.TrackVideo, Name: "usb", Width: int(w), Height: int(h)}
	var sps, pps []byte
	if pf != fmtH264 {
		spec.CodecID = mkv.CodecMJPG
		if err := fr.SetTracks([]mkv.TrackSpec{spec}); err != nil {
			return err
		}
	}
	start := time.Now()
	for ctx.Err() == nil {
		err := dev.WaitForFrame(1000)
		var timeout *webcam.Timeout
		if errors.As(err, &timeout) {
			continue // the stall detector decides when silence is too long
		}
		if err != nil {
			return fmt.Errorf("usb %s: %w", s.Device, err)
		}
		frame, idx, err := dev.GetFrame()
		if err != nil {
			return fmt.Errorf("usb %s: %w", s.Device, err)
		}
		ms := tl.ms(time.Since(start), time.Time{}, false, true)
		// The frame is the driver's mapped buffer: the fragmenter copies it
		// into the fragment before the buffer goes back to the driver.
		if len(frame) > 0 {
			if pf == fmtH264 {
				err = s.h264Frame(fr, &spec, &sps, &pps, ms, frame)
			} else {
				err = fr.WriteVideo1(ms, frame, true)
			}
			st.frame(true, len(frame))
		}
		if rerr := dev.ReleaseFrame(idx); rerr != nil && err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("usb %s: %w", s.Device, err)
		}
	}
	return ctx.Err()
}

// h264Frame handles one Annex-B buffer from a UVC H.264 camera.
func (s *USBSource) h264Frame(fr *Fragmenter, spec *mkv.TrackSpec, sps, pps *[]byte, ms int64, frame []byte) error {
	var au h264.AnnexB
	if err := au.Unmarshal(frame); err != nil {
		fr.DroppedUnits++
		return nil // a damaged buffer
	}
	changed := false
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1F) {
		case h264.NALUTypeSPS:
			if !bytes.Equal(n, *sps) {
				*sps, changed = append([]byte(nil), n...), true
			}
		case h264.NALUTypePPS:
			if !bytes.Equal(n, *pps) {
				*pps, changed = append([]byte(nil), n...), true
			}
		}
	}
	if changed && *sps != nil && *pps != nil {
		cp, err := h264CodecPrivate(*sps, *pps)
		if err != nil {
			fr.DroppedUnits++
			return nil
		}
		spec.CodecID, spec.CodecPrivate = mkv.CodecH264, cp
		if err := fr.SetTracks([]mkv.TrackSpec{*spec}); err != nil {
			return err
		}
	}
	if spec.CodecPrivate == nil {
		fr.DroppedUnits++ // wait for SPS and PPS
		return nil
	}
	return fr.WriteVideo(ms, au, h264.IsRandomAccess(au))
}
