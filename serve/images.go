package serve

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// GetImages (shared/kvs-api.md §9): images sampled over a range of at
// most 300 s. H.264/H.265 need a decoder: kvsedge runs ffmpeg (when
// installed) on the fragment's Matroska — its header and cluster — seeking
// to the sample's offset in it. MJPEG frames are JPEG already and are
// returned as stored when no other size or format is asked for. Per-image
// failures are entries with an Error, not HTTP errors.

const (
	maxImagesRange     = 300 * time.Second
	imagesPerPage      = 25
	minSamplingMs      = 200
	ffmpegImageTimeout = 20 * time.Second
)

type getImagesIn struct {
	streamRefIn
	ImageSelectorType *string
	StartTimestamp    *epochSeconds
	EndTimestamp      *epochSeconds
	SamplingInterval  *int
	Format            *string
	FormatConfig      map[string]string
	WidthPixels       *int
	HeightPixels      *int
	MaxResults        *int
	NextToken         *string
}

type imageOut struct {
	TimeStamp    float64
	Error        string `json:",omitempty"`
	ImageContent string `json:",omitempty"`
}

func (s *Server) getImages(body []byte) (any, *apiError) {
	in, aerr := decode[getImagesIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	v.required("ImageSelectorType", in.ImageSelectorType != nil)
	v.enum("ImageSelectorType", in.ImageSelectorType, "PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP")
	v.required("StartTimestamp", in.StartTimestamp != nil)
	v.required("EndTimestamp", in.EndTimestamp != nil)
	v.required("Format", in.Format != nil)
	v.enum("Format", in.Format, "JPEG", "PNG")
	v.intRange("WidthPixels", in.WidthPixels, 1, 3840)
	v.intRange("HeightPixels", in.HeightPixels, 1, 2160)
	v.intRange("MaxResults", in.MaxResults, 1, 100)
	quality := 80
	for k, val := range in.FormatConfig {
		q, err := strconv.Atoi(val)
		if k != "JPEGQuality" || err != nil || q < 1 || q > 100 {
			v.add("FormatConfig must be {\"JPEGQuality\": \"1\"…\"100\"}.")
		}
		quality = q
	}
	interval := 3000
	if in.SamplingInterval != nil {
		interval = *in.SamplingInterval
		if interval < minSamplingMs {
			v.add("SamplingInterval must be at least %d ms.", minSamplingMs)
		}
	}
	var startMs, endMs int64
	if in.StartTimestamp != nil && in.EndTimestamp != nil {
		startMs, endMs = in.StartTimestamp.ms(), in.EndTimestamp.ms()
		switch {
		case endMs < startMs:
			v.add("The EndTimestamp must not be before the StartTimestamp.")
		case endMs-startMs > maxImagesRange.Milliseconds(): // in ms: ±1e15 each, no overflow
			v.add("The timestamp range must not exceed 300 seconds.")
		}
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return nil, aerr
	}
	if info.DataRetentionInHours == 0 {
		return nil, newAPIError(http.StatusBadRequest, errNoDataRetention, "The stream %s keeps no data.", info.Name)
	}
	next := startMs
	if in.NextToken != nil {
		b, err := base64.StdEncoding.DecodeString(*in.NextToken)
		t, err2 := strconv.ParseInt(string(b), 10, 64)
		if err != nil || err2 != nil || t < startMs || t > endMs {
			return nil, invalidArgument("The NextToken is not valid for this request.")
		}
		next = t
	}
	limit := 100
	if in.MaxResults != nil {
		limit = *in.MaxResults
	}
	limit = min(limit, imagesPerPage)
	byServer := *in.ImageSelectorType == "SERVER_TIMESTAMP"
	idx := fragment.ByProducerTime
	if byServer {
		idx = fragment.ByServerTime
	}
	ref := engine.StreamRef{ARN: info.ARN}
	opts := imageOpts{format: *in.Format, quality: quality}
	if in.WidthPixels != nil {
		opts.width = *in.WidthPixels
	}
	if in.HeightPixels != nil {
		opts.height = *in.HeightPixels
	}
	out := struct {
		Images    []imageOut
		NextToken *string `json:",omitempty"`
	}{Images: []imageOut{}}
	// Fragments overlapping the range (one earlier start may cover it).
	var frags []fragment.Meta
	err := s.eng.ScanFragments(ref, idx, next-20_000, endMs, func(m fragment.Meta) bool {
		frags = append(frags, m)
		return true
	})
	if err != nil {
		return nil, engineError(err)
	}
	stamp := func(m *fragment.Meta) int64 {
		if byServer {
			return m.ServerMs
		}
		return m.ProducerMs
	}
	for t := next; t <= endMs; t += int64(interval) {
		if len(out.Images) == limit {
			tok := base64.StdEncoding.EncodeToString([]byte(strconv.FormatInt(t, 10)))
			out.NextToken = &tok
			break
		}
		img := imageOut{TimeStamp: float64(t) / 1000}
		var hit *fragment.Meta
		for i := range frags {
			st := stamp(&frags[i])
			if st <= t && t < st+int64(frags[i].DurationMs) {
				hit = &frags[i]
			}
		}
		if hit == nil {
			img.Error = "NO_MEDIA"
		} else {
			content, err := s.imageAt(ref, hit, t-stamp(hit), opts)
			switch {
			case errors.Is(err, errNoDecoder):
				return nil, newAPIError(http.StatusNotImplemented, errNotImplemented, "%v", err)
			case err != nil:
				s.opts.Logger.Info("GetImages: no image", "stream", info.Name, "at", t, "err", err)
				img.Error = "MEDIA_ERROR"
			default:
				img.ImageContent = base64.StdEncoding.EncodeToString(content)
			}
		}
		out.Images = append(out.Images, img)
	}
	return out, nil
}

type imageOpts struct {
	format        string
	quality       int
	width, height int
}

// ffmpegSlots bounds the decoders running at once: a burst of GetImages
// requests waits instead of starting a process per image.
var ffmpegSlots = make(chan struct{}, 2)

var errNoDecoder = errors.New("GetImages needs ffmpeg to decode this stream's video on the box, and ffmpeg is not installed (Debian: apt-get install ffmpeg); MJPEG streams need no decoder")

// imageAt renders the frame offsetMs into fragment m.
func (s *Server) imageAt(ref engine.StreamRef, m *fragment.Meta, offsetMs int64, o imageOpts) ([]byte, error) {
	f, err := s.eng.Fragment(ref, m.Number)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	hdr, err := f.Header.Tracks()
	if err != nil {
		return nil, err
	}
	var video *mkv.Track
	for i := range hdr.Tracks {
		if hdr.Tracks[i].Type == mkv.TrackVideo {
			video = &hdr.Tracks[i]
			break
		}
	}
	if video == nil {
		return nil, errors.New("no video track")
	}
	if video.CodecID == mkv.CodecMJPG && o.format == "JPEG" && o.width == 0 && o.height == 0 {
		// The stored frame nearest before the time is the image.
		var best []byte
		_ = mkv.ForEachBlock(hdr, f.Media[:f.Meta.ClusterLen], func(b mkv.Block) error {
			if b.Track == video.Number && (best == nil || b.TimeMs-b.ClusterMs <= offsetMs) {
				best = b.Payload
			}
			return nil
		})
		if best == nil {
			return nil, errors.New("no frame")
		}
		return append([]byte(nil), best...), nil
	}
	// A time after the fragment's last frame (its duration runs on to the
	// next fragment's start) is that last frame: ffmpeg would find no frame
	// past it and answer nothing.
	last := int64(-1)
	_ = mkv.ForEachBlock(hdr, f.Media[:f.Meta.ClusterLen], func(b mkv.Block) error {
		if b.Track == video.Number {
			last = max(last, b.TimeMs-b.ClusterMs)
		}
		return nil
	})
	if last >= 0 && offsetMs > last {
		offsetMs = last
	}
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		return nil, errNoDecoder
	}
	ctx, cancel := context.WithTimeout(context.Background(), ffmpegImageTimeout)
	defer cancel()
	select {
	case ffmpegSlots <- struct{}{}:
		defer func() { <-ffmpegSlots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	args := []string{"-v", "error", "-f", "matroska", "-i", "pipe:0", "-ss", fmt.Sprintf("%.3f", float64(offsetMs)/1000), "-frames:v", "1", "-an"}
	var filters []string
	switch {
	case o.width > 0 && o.height > 0:
		filters = append(filters, fmt.Sprintf("scale=%d:%d", o.width, o.height))
	case o.height > 0:
		filters = append(filters, fmt.Sprintf("scale=-2:%d", o.height))
	case o.width > 0:
		filters = append(filters, fmt.Sprintf("scale=%d:-2", o.width))
	}
	if len(filters) > 0 {
		args = append(args, "-vf", strings.Join(filters, ","))
	}
	if o.format == "PNG" {
		args = append(args, "-c:v", "png", "-f", "image2", "pipe:1")
	} else {
		// JPEGQuality 1–100 → ffmpeg's qscale 31–2.
		q := 2 + (100-o.quality)*29/99
		args = append(args, "-c:v", "mjpeg", "-q:v", strconv.Itoa(q), "-f", "image2", "pipe:1")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var in bytes.Buffer
	in.Grow(len(f.Header.Raw) + int(f.Meta.ClusterLen))
	in.Write(f.Header.Raw)
	in.Write(f.Media[:f.Meta.ClusterLen])
	cmd.Stdin = &in
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.Len() == 0 {
		return nil, fmt.Errorf("ffmpeg: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
