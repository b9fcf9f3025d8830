package serve

import (
	"bufio"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/serve/remux"
	"github.com/valyala/fasthttp"
)

// GetClip (shared/kvs-api.md §9): a fragmented MP4 of a time range,
// streamed as it is remuxed, fragment by fragment, so a clip of any length
// is never held in memory (KVS truncates at 100 MB or 200 fragments;
// kvsedge's limit is the 24 h range).

const (
	errUnsupportedMediaType = "UnsupportedStreamMediaTypeException"
	errMissingCodecPrivate  = "MissingCodecPrivateDataException"
	errInvalidCodecPrivate  = "InvalidCodecPrivateDataException"
	maxClipRange            = 24 * time.Hour
)

type getClipIn struct {
	streamRefIn
	ClipFragmentSelector *fragmentSelectorIn
}

func (s *Server) getClip(ctx *fasthttp.RequestCtx) {
	body, ok := s.mediaRequest(ctx)
	if !ok {
		return
	}
	in, aerr := decode[getClipIn](body)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	v := &validator{}
	var idx fragment.TimeIndex
	var startMs, endMs int64
	if v.required("ClipFragmentSelector", in.ClipFragmentSelector != nil) {
		sel := in.ClipFragmentSelector
		v.enum("ClipFragmentSelector.FragmentSelectorType", sel.FragmentSelectorType, "PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP")
		v.required("ClipFragmentSelector.FragmentSelectorType", sel.FragmentSelectorType != nil)
		idx = fragment.ByServerTime
		if sel.FragmentSelectorType != nil && *sel.FragmentSelectorType == "PRODUCER_TIMESTAMP" {
			idx = fragment.ByProducerTime
		}
		if v.required("ClipFragmentSelector.TimestampRange", sel.TimestampRange != nil) {
			r := sel.TimestampRange
			if v.required("ClipFragmentSelector.TimestampRange.StartTimestamp", r.StartTimestamp != nil) &&
				v.required("ClipFragmentSelector.TimestampRange.EndTimestamp", r.EndTimestamp != nil) {
				startMs, endMs = r.StartTimestamp.ms(), r.EndTimestamp.ms()
				switch {
				case endMs <= startMs:
					v.add("The EndTimestamp must be after the StartTimestamp.")
				case time.Duration(endMs-startMs)*time.Millisecond > maxClipRange:
					v.add("The timestamp range must not exceed 24 hours.")
				}
			}
		}
	}
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if info.DataRetentionInHours == 0 {
		writeError(ctx, newAPIError(http.StatusBadRequest, errNoDataRetention, "The stream %s keeps no data.", info.Name))
		return
	}
	ref := engine.StreamRef{ARN: info.ARN}
	// The fragments starting in the range, in time order; for equal
	// producer timestamps the oldest ingested (lowest number) is kept.
	var metas []fragment.Meta
	var cursor *fragment.TimeCursor
	for {
		page, next, err := s.eng.ListFragments(ref, idx, startMs, endMs, cursor, 1000)
		if err != nil {
			writeError(ctx, engineError(err))
			return
		}
		metas = append(metas, page...)
		if next == nil {
			break
		}
		cursor = next
	}
	if idx == fragment.ByProducerTime {
		metas = slices.CompactFunc(metas, func(a, b fragment.Meta) bool { return a.ProducerMs == b.ProducerMs })
	}
	if len(metas) == 0 {
		writeError(ctx, newAPIError(http.StatusNotFound, errResourceNotFound, "No fragments found in the requested range of stream %s.", info.Name))
		return
	}
	hdr, ok := s.firstTracks(ctx, info.ARN, metas[0].Number)
	if !ok {
		return
	}
	if aerr := checkPlayable(hdr); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	log := s.opts.Logger.With("op", "GetClip", "stream", info.Name)
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("video/mp4")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		out, err := remux.NewFMP4(w, hdr)
		if err != nil {
			log.Warn("GetClip init segment", "err", err)
			return
		}
		for _, m := range metas {
			f, err := s.eng.Fragment(ref, m.Number)
			if err != nil {
				log.Info("GetClip: a fragment went away (retention) while the clip was written", "number", m.Number.String(), "err", err)
				continue
			}
			fh, err := f.Header.Tracks()
			if err != nil {
				f.Release()
				return
			}
			err = out.Fragment(fh, f.Media[:f.Meta.ClusterLen], f.Meta.ProducerMs)
			f.Release()
			if errors.Is(err, remux.ErrHeaderChanged) {
				log.Info("GetClip: the stream's tracks change within the range; the clip ends there", "at", m.Number.String())
				return
			}
			if err != nil {
				return // the client went away, or a damaged fragment
			}
		}
	})
}

// checkPlayable maps the track header to KVS's playback errors.
func checkPlayable(h *mkv.Header) *apiError {
	_, err := remux.Probe(h)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, remux.ErrMissingCodecData):
		return newAPIError(http.StatusBadRequest, errMissingCodecPrivate, "%v", err)
	case errors.Is(err, remux.ErrInvalidCodecData):
		return newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "%v", err)
	}
	return newAPIError(http.StatusBadRequest, errUnsupportedMediaType, "%v", err)
}
