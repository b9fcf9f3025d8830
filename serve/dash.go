package serve

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/valyala/fasthttp"
)

// DASH sessions share HLS's tokens, fragment selection and fMP4 segments
// (hls.go); the manifest is an MPD with an AdaptationSet per track whose
// SegmentList names each fragment's segment of that track, timed by a
// SegmentTimeline in milliseconds on the session's time base. DASH needs one track layout
// per Period: the manifest ends where the layout changes.

type dashSessionIn struct {
	streamRefIn
	PlaybackMode         *string
	DASHFragmentSelector *struct {
		FragmentSelectorType *string
		TimestampRange       *struct {
			StartTimestamp *epochSeconds
			EndTimestamp   *epochSeconds
		}
	}
	DisplayFragmentTimestamp   *string
	DisplayFragmentNumber      *string
	Expires                    *int
	MaxManifestFragmentResults *int
}

func (s *Server) getDASHStreamingSessionURL(body []byte) (any, *apiError) {
	in, aerr := decode[dashSessionIn](body)
	if aerr != nil {
		return nil, aerr
	}
	v := &validator{}
	v.enum("DisplayFragmentNumber", in.DisplayFragmentNumber, "ALWAYS", "NEVER")
	if aerr := v.err(); aerr != nil {
		return nil, aerr
	}
	// The same request, in HLS's words: the selector types are identical.
	hin := hlsSessionIn{
		streamRefIn:                     in.streamRefIn,
		PlaybackMode:                    in.PlaybackMode,
		HLSFragmentSelector:             in.DASHFragmentSelector,
		DisplayFragmentTimestamp:        in.DisplayFragmentTimestamp,
		Expires:                         in.Expires,
		MaxMediaPlaylistFragmentResults: in.MaxManifestFragmentResults,
	}
	showNumber := in.DisplayFragmentNumber != nil && *in.DisplayFragmentNumber == "ALWAYS"
	tok, aerr := s.newSession(&hin, showNumber)
	if aerr != nil {
		return nil, aerr
	}
	return struct{ DASHStreamingSessionURL string }{s.opts.DataEndpoint + "/dash/v1/getDASHManifest.mpd?SessionToken=" + tok}, nil
}

func dashRoutes() map[string]func(*Server, *fasthttp.RequestCtx) {
	return map[string]func(*Server, *fasthttp.RequestCtx){
		"/dash/v1/getDASHManifest.mpd":     (*Server).dashManifest,
		"/dash/v1/getMP4InitFragment.mp4":  (*Server).hlsInit,
		"/dash/v1/getMP4MediaFragment.mp4": (*Server).hlsFragment,
	}
}

func isoDuration(ms int64) string { return fmt.Sprintf("PT%.3fS", float64(ms)/1000) }

func (s *Server) dashManifest(ctx *fasthttp.RequestCtx) {
	sess, ok := s.hlsRequest(ctx)
	if !ok {
		return
	}
	now := time.Now()
	all, aerr := s.playlistFragments(sess, now)
	if aerr == nil && len(all) == 0 {
		aerr = newAPIError(http.StatusNotFound, errResourceNotFound, "No fragments found for this session.")
	}
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	frags, _ := playlistWindow(sess, all)
	// One track layout per manifest.
	for i := range frags {
		if frags[i].HeaderID != frags[0].HeaderID {
			frags = frags[:i]
			break
		}
	}
	hdr, ok := s.firstTracks(ctx, sess.ARN, frags[0].Number)
	if !ok {
		return
	}
	if aerr := checkPlayable(hdr); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	tok := url.QueryEscape(string(ctx.QueryArgs().Peek("SessionToken")))
	// Segment times are producer times on the session's base (remux);
	// kvs:ts shows the selector's timestamp.
	stamp := func(i int) int64 {
		if sess.ByServer {
			return frags[i].ServerMs
		}
		return frags[i].ProducerMs
	}
	segT := func(i int) int64 { return frags[i].ProducerMs - sess.BaseMs }
	var total, bytes int64
	for _, m := range frags {
		total += int64(m.DurationMs)
		bytes += int64(m.MediaLen)
	}
	bandwidth := int64(1_000_000)
	if total > 0 {
		bandwidth = bytes * 8 * 1000 / total
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	if sess.Mode == "ON_DEMAND" {
		fmt.Fprintf(&b, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="static" minBufferTime="PT2S" mediaPresentationDuration="%s">`+"\n", isoDuration(total))
	} else {
		fmt.Fprintf(&b, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011" type="dynamic" minBufferTime="PT2S" minimumUpdatePeriod="PT1S" availabilityStartTime="%s" publishTime="%s" timeShiftBufferDepth="%s">`+"\n",
			time.UnixMilli(sess.BaseMs).UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), isoDuration(max(total, 10_000)))
	}
	b.WriteString(` <Period id="0" start="PT0S">` + "\n")
	// One AdaptationSet per track (players want audio and video apart),
	// each segment remuxed for that track alone (TrackNumber).
	for _, t := range hdr.Tracks {
		mime := "video/mp4"
		if t.Type == mkv.TrackAudio {
			mime = "audio/mp4"
		}
		fmt.Fprintf(&b, `  <AdaptationSet mimeType="%s" segmentAlignment="true" startWithSAP="1">`+"\n", mime)
		fmt.Fprintf(&b, `   <Representation id="%d" codecs="%s" bandwidth="%d"`, t.Number, html.EscapeString(codecsOf([]mkv.Track{t})), bandwidth)
		if t.Type == mkv.TrackVideo && t.Width > 0 {
			fmt.Fprintf(&b, ` width="%d" height="%d"`, t.Width, t.Height)
		}
		b.WriteString(">\n")
		b.WriteString(`    <SegmentList timescale="1000">` + "\n")
		fmt.Fprintf(&b, `     <Initialization sourceURL="getMP4InitFragment.mp4?FragmentNumber=%s&amp;TrackNumber=%d&amp;SessionToken=%s"/>`+"\n", frags[0].Number, t.Number, tok)
		b.WriteString("     <SegmentTimeline>\n")
		for i, m := range frags {
			fmt.Fprintf(&b, `      <S t="%d" d="%d"`, segT(i), m.DurationMs)
			if sess.ShowTime {
				fmt.Fprintf(&b, ` kvs:ts="%.3f"`, float64(stamp(i))/1000)
			}
			if sess.ShowNumber {
				fmt.Fprintf(&b, ` kvs:fn="%s"`, m.Number)
			}
			b.WriteString("/>\n")
		}
		b.WriteString("     </SegmentTimeline>\n")
		for _, m := range frags {
			fmt.Fprintf(&b, `     <SegmentURL media="getMP4MediaFragment.mp4?FragmentNumber=%s&amp;TrackNumber=%d&amp;SessionToken=%s"/>`+"\n", m.Number, t.Number, tok)
		}
		b.WriteString("    </SegmentList>\n   </Representation>\n  </AdaptationSet>\n")
	}
	b.WriteString(" </Period>\n</MPD>\n")
	out := b.String()
	if sess.ShowTime || sess.ShowNumber {
		out = strings.Replace(out, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011"`, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:kvs="https://kvsedge.dev/dash"`, 1)
	}
	ctx.SetContentType("application/dash+xml")
	ctx.SetBodyString(out)
}
