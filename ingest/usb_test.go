package ingest

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blackjack/webcam"
)

// fakeV4L2 is a V4L2 device that hands out prepared frames at a rate,
// through buffers it reuses (as the driver's mapped buffers are), so a
// source that kept a frame after releasing it would record garbage.
type fakeV4L2 struct {
	formats  map[webcam.PixelFormat]string
	frames   [][]byte
	interval time.Duration

	mu       sync.Mutex
	buf      []byte
	next     int
	held     bool
	released int
	set      [2]uint32
	closed   bool
}

func (f *fakeV4L2) GetSupportedFormats() map[webcam.PixelFormat]string { return f.formats }
func (f *fakeV4L2) GetSupportedFrameSizes(webcam.PixelFormat) []webcam.FrameSize {
	return []webcam.FrameSize{{MinWidth: 160, MaxWidth: 160, MinHeight: 120, MaxHeight: 120},
		{MinWidth: 320, MaxWidth: 320, MinHeight: 240, MaxHeight: 240}}
}
func (f *fakeV4L2) SetImageFormat(p webcam.PixelFormat, w, h uint32) (webcam.PixelFormat, uint32, uint32, error) {
	f.set = [2]uint32{w, h}
	return p, w, h, nil
}
func (f *fakeV4L2) StartStreaming() error { return nil }
func (f *fakeV4L2) StopStreaming() error  { return nil }
func (f *fakeV4L2) Close() error          { f.closed = true; return nil }
func (f *fakeV4L2) WaitForFrame(uint32) error {
	time.Sleep(f.interval)
	return nil
}
func (f *fakeV4L2) GetFrame() ([]byte, uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held {
		return nil, 0, errors.New("fake: frame dequeued twice without release")
	}
	src := f.frames[f.next%len(f.frames)]
	f.next++
	f.buf = append(f.buf[:0], src...)
	f.held = true
	return f.buf, 0, nil
}
func (f *fakeV4L2) ReleaseFrame(uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held = false
	f.released++
	for i := range f.buf { // the driver reuses the buffer
		f.buf[i] = 0xEE
	}
	return nil
}

func jpegFrame(t *testing.T, shade uint8) []byte {
	img := image.NewGray(image.Rect(0, 0, 320, 240))
	for i := range img.Pix {
		img.Pix[i] = shade + uint8(i%32)
	}
	img.Set(0, 0, color.Gray{Y: 255})
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 70}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestUSBCaptureMJPEG(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	t.Parallel()
	dev := &fakeV4L2{formats: map[webcam.PixelFormat]string{fourcc("YUYV"): "YUYV 4:2:2", fmtMJPEG: "Motion-JPEG"},
		frames: [][]byte{jpegFrame(t, 10), jpegFrame(t, 100)}, interval: 50 * time.Millisecond}
	src := NewUSBSource("/dev/video-fake", 0, 0)
	src.open = func(string) (v4l2Device, error) { return dev, nil }
	rec := newRecorder(t)
	if err := rec.cams.Apply("usb", []CameraConfig{{Stream: "usb", Source: src, Key: "usb", RetentionHours: 1, FragmentDuration: time.Second}}); err != nil {
		t.Fatal(err)
	}
	waitFragments(t, rec, "usb", 3, 15*time.Second)
	rec.cams.Close()
	if dev.set != [2]uint32{320, 240} || !dev.closed || dev.released < 40 {
		t.Fatalf("device: set %v, closed %v, %d frames released", dev.set, dev.closed, dev.released)
	}
	streams, _ := ffprobe(t, rec.dump(t, "usb"))
	if len(streams) != 1 || streams[0].CodecName != "mjpeg" || streams[0].Width != 320 {
		t.Fatalf("ffprobe: %+v", streams)
	}
	frames := 0
	for _, f := range rec.fragments(t, "usb") {
		frames += int(f.Frames)
	}
	if n, _ := strconv.Atoi(streams[0].NbReadFrames); n != frames || n < 40 {
		t.Fatalf("ffprobe decoded %s frames of %d recorded", streams[0].NbReadFrames, frames)
	}
}

func TestUSBRefusesRawFormats(t *testing.T) {
	dev := &fakeV4L2{formats: map[webcam.PixelFormat]string{fourcc("YUYV"): "YUYV 4:2:2", fourcc("NV12"): "Y/CbCr 4:2:0"}}
	src := NewUSBSource("/dev/video-raw", 0, 0)
	src.open = func(string) (v4l2Device, error) { return dev, nil }
	err := src.Run(context.Background(), NewFragmenter(&collect{}, 0), &timeline{now: time.Now}, &feedStats{})
	if err == nil || !strings.Contains(err.Error(), "YUYV (YUYV 4:2:2)") || !strings.Contains(err.Error(), "NV12") || !strings.Contains(err.Error(), "MJPEG or H.264") {
		t.Fatalf("raw-only device: %v", err)
	}
}
