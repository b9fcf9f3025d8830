package serve

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
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

// clipRange is a validated ClipFragmentSelector.
type clipRange struct {
	idx            fragment.TimeIndex
	startMs, endMs int64
}

// clipSelector validates GetClip's ClipFragmentSelector into v.
func clipSelector(v *validator, sel *fragmentSelectorIn) clipRange {
	r := clipRange{idx: fragment.ByServerTime}
	if !v.required("ClipFragmentSelector", sel != nil) {
		return r
	}
	v.enum("ClipFragmentSelector.FragmentSelectorType", sel.FragmentSelectorType, "PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP")
	v.required("ClipFragmentSelector.FragmentSelectorType", sel.FragmentSelectorType != nil)
	if sel.FragmentSelectorType != nil && *sel.FragmentSelectorType == "PRODUCER_TIMESTAMP" {
		r.idx = fragment.ByProducerTime
	}
	if v.required("ClipFragmentSelector.TimestampRange", sel.TimestampRange != nil) {
		tr := sel.TimestampRange
		if v.required("ClipFragmentSelector.TimestampRange.StartTimestamp", tr.StartTimestamp != nil) &&
			v.required("ClipFragmentSelector.TimestampRange.EndTimestamp", tr.EndTimestamp != nil) {
			r.startMs, r.endMs = tr.StartTimestamp.ms(), tr.EndTimestamp.ms()
			switch {
			case r.endMs <= r.startMs:
				v.add("The EndTimestamp must be after the StartTimestamp.")
			case r.endMs-r.startMs > maxClipRange.Milliseconds(): // in ms: ±1e15 each, no overflow
				v.add("The timestamp range must not exceed 24 hours.")
			}
		}
	}
	return r
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
	r := clipSelector(v, in.ClipFragmentSelector)
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	s.writeClip(ctx, info, r, "")
}

// clipPages lists a clip's fragments a page at a time, so that a long
// clip (24 h of 1 s fragments: 86,400 metas, ~9 MB) is never listed whole
// while it streams. By producer time, fragments at the same producer time
// as the one before (a re-send stored twice before they were recognised)
// are left out, across pages too.
type clipPages struct {
	eng    *engine.Engine
	ref    engine.StreamRef
	r      clipRange
	cursor *fragment.TimeCursor
	done   bool
	last   int64 // the last listed fragment's producer time
	listed bool
}

// clipPageSize bounds the metas a clip holds at once (a variable for
// TestGetClip, whose clip spans pages with 2).
var clipPageSize = 500

// next returns the next fragments (nil when there are no more).
func (p *clipPages) next() ([]fragment.Meta, error) { return p.nextUpTo(clipPageSize) }

// nextUpTo is next with at most n fragments listed at a time.
func (p *clipPages) nextUpTo(n int) ([]fragment.Meta, error) {
	for !p.done {
		page, next, err := p.eng.ListFragments(p.ref, p.r.idx, p.r.startMs, p.r.endMs, p.cursor, n)
		if err != nil {
			return nil, err
		}
		p.cursor, p.done = next, next == nil
		if p.r.idx == fragment.ByProducerTime {
			page = slices.DeleteFunc(page, func(m fragment.Meta) bool {
				dup := p.listed && m.ProducerMs == p.last
				p.last, p.listed = m.ProducerMs, true
				return dup
			})
		}
		if len(page) > 0 {
			return page, nil
		}
	}
	return nil, nil
}

// clipFragments opens range r of the stream for a clip: its pages and the
// first of them (at most firstPage fragments), or the error to answer (no
// data kept, none in the range).
func (s *Server) clipFragments(info *engine.StreamInfo, r clipRange, firstPage int) (*clipPages, []fragment.Meta, *apiError) {
	if info.DataRetentionInHours == 0 {
		return nil, nil, newAPIError(http.StatusBadRequest, errNoDataRetention, "The stream %s keeps no data.", info.Name)
	}
	p := &clipPages{eng: s.eng, ref: engine.StreamRef{ARN: info.ARN}, r: r}
	first, err := p.nextUpTo(firstPage)
	if err != nil {
		return nil, nil, engineError(err)
	}
	if len(first) == 0 {
		return nil, nil, newAPIError(http.StatusNotFound, errResourceNotFound, "No fragments found in the requested range of stream %s.", info.Name)
	}
	if aerr := s.clipTracksHold(info, r, first[0]); aerr != nil {
		return nil, nil, aerr
	}
	return p, first, nil
}

// clipTracksHold checks, before a clip starts, that the stream's tracks
// stay the same over range r, whose first fragment is first: one MP4 has
// one set of tracks, so a change within the range (a camera reconfigured
// to another resolution or codec) is InvalidCodecPrivateData naming where
// it is (the console shows it: export up to or from there), instead of a
// 200 whose transfer is cut at the change. The range's metas are scanned
// a page at a time (their header ids); the session header (not a
// fragment) is read for each header id not seen before, for at most
// maxClipHeaders of them; past that (a producer changing its codec
// private data all the time) a change still cuts the transfer where it is
// (streamClip).
func (s *Server) clipTracksHold(info *engine.StreamInfo, r clipRange, first fragment.Meta) *apiError {
	ref := engine.StreamRef{ARN: info.ARN}
	var base *mkv.Header
	seen := map[uint64]bool{first.HeaderID: true}
	p := &clipPages{eng: s.eng, ref: ref, r: r}
	for {
		page, err := p.next()
		if err != nil {
			return engineError(err)
		}
		if len(page) == 0 {
			return nil
		}
		for _, m := range page {
			if seen[m.HeaderID] {
				continue
			}
			if len(seen) == maxClipHeaders {
				return nil // the bound holds within a page too
			}
			seen[m.HeaderID] = true
			if base == nil {
				if base = s.clipTracksOf(ref, first.HeaderID); base == nil {
					return nil // unreadable: the clip itself says so
				}
			}
			h := s.clipTracksOf(ref, m.HeaderID)
			if h != nil && !remux.SameTracks(base, h) {
				// The change's time on the range's own clock: the one its
				// caller can ask up to or from.
				at := m.ProducerMs
				if r.idx == fragment.ByServerTime {
					at = m.ServerMs
				}
				return newAPIError(http.StatusBadRequest, errInvalidCodecPrivate,
					"The tracks of stream %s change within the range, at %s (fragment %s): one MP4 cannot hold both; ask for the clip up to or from there.",
					info.Name, time.UnixMilli(at).UTC().Format("2006-01-02T15:04:05.000Z"), m.Number)
			}
		}
	}
}

// maxClipHeaders bounds the distinct track headers clipTracksHold reads
// (the first fragment's included).
const maxClipHeaders = 16

// clipTracksOf is the tracks of the stream's session header id (the
// header alone is read, no fragment), or nil when it cannot be read (the
// clip then ends where it is needed).
func (s *Server) clipTracksOf(ref engine.StreamRef, id uint64) *mkv.Header {
	hdr, err := s.eng.SessionHeader(ref, id)
	if err != nil {
		return nil
	}
	h, err := hdr.Tracks()
	if err != nil {
		return nil
	}
	return h
}

// writeClip answers with the clip of range r of the stream: an error, or
// 200 and the fragmented MP4, streamed as it is remuxed (attachment, when
// not "", names the file: Content-Disposition: attachment).
func (s *Server) writeClip(ctx *fasthttp.RequestCtx, info *engine.StreamInfo, r clipRange, attachment string) {
	pages, metas, aerr := s.clipFragments(info, r, clipPageSize)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	ref := engine.StreamRef{ARN: info.ARN}
	hdr, ok := s.firstTracks(ctx, info.ARN, metas[0].Number)
	if !ok {
		return
	}
	if aerr := checkPlayable(hdr); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	// The init segment is built once here, thrown away, so a header that
	// cannot start an MP4 (an SPS too short to parse) is an error answer,
	// not a connection closed before any status.
	if _, err := remux.NewFMP4(io.Discard, hdr); err != nil {
		writeError(ctx, newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "The stream's tracks cannot start an MP4: %v", err))
		return
	}
	log := s.opts.Logger.With("op", "GetClip", "stream", info.Name)
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("video/mp4")
	if attachment != "" {
		ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+attachment+`"`)
	}
	// An error part-way cuts the transfer (streamedBody): a clip short of
	// its range never ends as a whole-looking 200.
	ctx.Response.SetBodyStream(&streamedBody{write: func(w *bufio.Writer) error {
		err := s.streamClip(w, ref, hdr, metas, pages, log)
		switch {
		case errors.Is(err, errClientGone):
			log.Debug("GetClip: the client went away", "err", err)
		case err != nil:
			log.Warn("GetClip: the clip is cut short; its transfer ends without its last chunk", "err", err)
		}
		return err
	}}, -1)
}

// streamClip writes the clip: its init segment, then its fragments page by
// page. A fragment gone by retention while the clip is written is left out
// (the range's start moved); any other failure ends the clip with an
// error: a damaged fragment, a listing that fails, the stream's tracks
// changing within the range, or the client going away.
func (s *Server) streamClip(w *bufio.Writer, ref engine.StreamRef, hdr *mkv.Header, metas []fragment.Meta, pages *clipPages, log *slog.Logger) error {
	out, err := remux.NewFMP4(w, hdr)
	if err != nil {
		return fmt.Errorf("init segment: %w", err)
	}
	// The 200 and the init segment go out now: a clip cut before its
	// buffer first fills would otherwise end with no answer at all (the
	// connection closed before its status), not a cut transfer.
	if err := w.Flush(); err != nil {
		return err
	}
	for len(metas) > 0 {
		for _, m := range metas {
			f, err := s.eng.Fragment(ref, m.Number)
			if errors.Is(err, engine.ErrFragmentNotFound) {
				log.Info("GetClip: a fragment went away (retention) while the clip was written", "number", m.Number.String())
				continue
			}
			if err != nil {
				return fmt.Errorf("fragment %s: %w", m.Number, err)
			}
			fh, err := f.Header.Tracks()
			if err != nil {
				f.Release()
				return fmt.Errorf("fragment %s tracks: %w", m.Number, err)
			}
			err = out.Fragment(fh, f.Media[:f.Meta.ClusterLen], f.Meta.ProducerMs)
			f.Release()
			if err != nil {
				return fmt.Errorf("fragment %s: %w", m.Number, err)
			}
		}
		if metas, err = pages.next(); err != nil {
			return fmt.Errorf("listing the range's next fragments: %w", err)
		}
	}
	return nil
}

// Clip downloads (kvsedge's own): a browser cannot sign a GET it
// navigates to, so getClipURL (POST, SigV4-signed like every call, body
// as GetClip's plus Expires) returns
//
//	<DataEndpoint>/clip/v1/getClip.mp4?SessionToken=…
//
// a plain GET authorised by the token alone, answered as GetClip is
// (the MP4 streamed as it is remuxed) with Content-Disposition:
// attachment, so the browser saves it as a download instead of holding
// it in memory. The token (signToken, FORMAT.md) is an HMAC of {stream
// ARN, selector, range, expiry} under a key derived from the session key
// for clips only: HLS, WHEP and clip tokens are never interchangeable.
// It is short-lived (Expires 30…3600 s, default 60): checked when the
// download starts, which then runs to its end.

const (
	clipDownloadPath = "/clip/v1/getClip.mp4"
	clipTokenLabel   = "kvsedge clip download token v1" // tokenKey
)

// clipToken is the content of a clip download token.
type clipToken struct {
	ARN      string `json:"a"`
	ByServer bool   `json:"s"`
	StartMs  int64  `json:"f"`
	EndMs    int64  `json:"t"`
	Expires  int64  `json:"x"` // unix seconds
}

type getClipURLIn struct {
	getClipIn
	Expires *int
}

// getClipURL (POST /getClipURL): {StreamName | StreamARN,
// ClipFragmentSelector, Expires} → {ClipURL}. A range with no fragment is
// ResourceNotFound here, not at the download.
func (s *Server) getClipURL(body []byte) (any, *apiError) {
	in, aerr := decode[getClipURLIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	r := clipSelector(v, in.ClipFragmentSelector)
	v.intRange("Expires", in.Expires, 30, 3600)
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return nil, aerr
	}
	if _, _, aerr := s.clipFragments(info, r, 1); aerr != nil { // the range holds something
		return nil, aerr
	}
	exp := 60
	if in.Expires != nil {
		exp = *in.Expires
	}
	key, err := s.tokenKey(clipTokenLabel)
	if err != nil {
		return nil, engineError(err)
	}
	tok := signToken(key, clipToken{ARN: info.ARN, ByServer: r.idx == fragment.ByServerTime, StartMs: r.startMs, EndMs: r.endMs,
		Expires: time.Now().Add(time.Duration(exp) * time.Second).Unix()})
	return struct{ ClipURL string }{s.opts.DataEndpoint + clipDownloadPath + "?SessionToken=" + tok}, nil
}

// clipDownload serves GET clipDownloadPath.
func (s *Server) clipDownload(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() {
		writeError(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "%s accepts only GET.", ctx.Path()))
		return
	}
	key, err := s.tokenKey(clipTokenLabel)
	if err != nil {
		writeError(ctx, engineError(err))
		return
	}
	var t clipToken
	if err := openToken(string(ctx.QueryArgs().Peek("SessionToken")), key, &t); err != nil {
		writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "%v", err))
		return
	}
	if time.Now().Unix() > t.Expires {
		writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "The clip URL has expired: ask getClipURL for another."))
		return
	}
	if s.forwardSessionGET(ctx, t.ARN) {
		return
	}
	info, err := s.eng.Stream(engine.StreamRef{ARN: t.ARN})
	if err != nil {
		writeError(ctx, engineError(err))
		return
	}
	r := clipRange{idx: fragment.ByProducerTime, startMs: t.StartMs, endMs: t.EndMs}
	if t.ByServer {
		r.idx = fragment.ByServerTime
	}
	ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
	s.writeClip(ctx, info, r, clipFileName(info.Name, t.StartMs, t.EndMs))
}

// clipFileName names a downloaded clip: stream_<from>_<to>.mp4, times in
// UTC with '-' for ':' and '.' (a stream name is [a-zA-Z0-9_.-]+, so the
// name needs no quoting).
func clipFileName(stream string, fromMs, toMs int64) string {
	stamp := func(ms int64) string {
		return strings.Replace(time.UnixMilli(ms).UTC().Format("2006-01-02T15-04-05.000Z"), ".", "-", 1)
	}
	return stream + "_" + stamp(fromMs) + "_" + stamp(toMs) + ".mp4"
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
