package serve

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/serve/remux"
	"github.com/valyala/fasthttp"
)

// HLS sessions (shared/kvs-api.md §8): GetHLSStreamingSessionURL returns
// <DataEndpoint>/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=…; the
// session's resources are plain GETs authorised by the token alone, an
// HMAC-signed description of the session (stream, mode, range, options,
// expiry) under the store's session key (in a cluster, the cluster's:
// Options.SessionKey), so sessions need no server state, survive a
// restart and, in a cluster, open on any box.
//
// Playlists use relative URLs. The media playlist carries every track
// muxed in one rendition (KVS lists one playlist per track; hls.js,
// Safari and ffmpeg all play muxed segments): fragmented MP4 by default,
// MPEG-TS when asked. Fragments are remuxed on request, on the session's
// time base, so segments line up.

// hlsSession is the content of a session token.
type hlsSession struct {
	ARN      string `json:"a"`
	Mode     string `json:"m"`
	ByServer bool   `json:"s"`
	StartMs  int64  `json:"f"`
	EndMs    int64  `json:"t,omitempty"`
	Expires  int64  `json:"x"` // unix seconds
	Max      int    `json:"n"`
	Disc     string `json:"d"`
	ShowTime bool   `json:"p,omitempty"`
	// ShowNumber: DASH's DisplayFragmentNumber.
	ShowNumber bool `json:"q,omitempty"`
	// TS: HLS's MPEG_TS container (else fragmented MP4).
	TS        bool  `json:"k,omitempty"`
	BaseMs    int64 `json:"b"`
	CreatedMs int64 `json:"c"`
}

// sessionKey is the key session tokens are signed under: the cluster's
// (Options.SessionKey), else the store's.
func (s *Server) sessionKey() ([]byte, error) {
	if len(s.opts.SessionKey) > 0 {
		return s.opts.SessionKey, nil
	}
	return s.eng.SessionKey()
}

// tokenKey derives the key of one kind of token (label) from the session
// key: HMAC-SHA256(session key, label), so the kinds are never
// interchangeable.
func (s *Server) tokenKey(label string) ([]byte, error) {
	k, err := s.sessionKey()
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, k)
	m.Write([]byte(label))
	return m.Sum(nil), nil
}

func (s *Server) signSession(sess *hlsSession) (string, error) {
	key, err := s.sessionKey()
	if err != nil {
		return "", err
	}
	return signToken(key, sess), nil
}

var errBadSession = errors.New("the session token is not valid")

func (s *Server) openSession(tok string) (*hlsSession, error) {
	key, err := s.sessionKey()
	if err != nil {
		return nil, err
	}
	var sess hlsSession
	if err := openToken(tok, key, &sess); err != nil {
		return nil, err
	}
	return &sess, nil
}

// signToken encodes v as a session token: base64url(JSON) "."
// base64url(HMAC-SHA256(key, JSON)) (FORMAT.md; HLS and WHEP sessions,
// each with its own key).
func signToken(key []byte, v any) string {
	js, _ := json.Marshal(v)
	mac := hmac.New(sha256.New, key)
	mac.Write(js)
	return base64.RawURLEncoding.EncodeToString(js) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// openToken checks a signToken token's signature with key and decodes it
// into v; errBadSession for anything else.
func openToken(tok string, key []byte, v any) error {
	payload, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return errBadSession
	}
	js, err1 := base64.RawURLEncoding.DecodeString(payload)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return errBadSession
	}
	h := hmac.New(sha256.New, key)
	h.Write(js)
	if !hmac.Equal(mac, h.Sum(nil)) {
		return errBadSession
	}
	if json.Unmarshal(js, v) != nil {
		return errBadSession
	}
	return nil
}

type hlsSessionIn struct {
	streamRefIn
	PlaybackMode        *string
	HLSFragmentSelector *struct {
		FragmentSelectorType *string
		TimestampRange       *struct {
			StartTimestamp *epochSeconds
			EndTimestamp   *epochSeconds
		}
	}
	ContainerFormat                 *string
	DiscontinuityMode               *string
	DisplayFragmentTimestamp        *string
	Expires                         *int
	MaxMediaPlaylistFragmentResults *int
}

func (s *Server) getHLSStreamingSessionURL(body []byte) (any, *apiError) {
	in, aerr := decode[hlsSessionIn](body)
	if aerr != nil {
		return nil, aerr
	}
	tok, aerr := s.newSession(in, false)
	if aerr != nil {
		return nil, aerr
	}
	return struct{ HLSStreamingSessionURL string }{s.opts.DataEndpoint + "/hls/v1/getHLSMasterPlaylist.m3u8?SessionToken=" + tok}, nil
}

// newSession validates a session request (HLS's, or DASH's in HLS's
// terms), checks the stream can be played and returns the signed token.
func (s *Server) newSession(in *hlsSessionIn, showNumber bool) (string, *apiError) {
	v := &validator{}
	v.enum("PlaybackMode", in.PlaybackMode, "LIVE", "LIVE_REPLAY", "ON_DEMAND")
	v.enum("ContainerFormat", in.ContainerFormat, "FRAGMENTED_MP4", "MPEG_TS")
	v.enum("DiscontinuityMode", in.DiscontinuityMode, "ALWAYS", "NEVER", "ON_DISCONTINUITY")
	v.enum("DisplayFragmentTimestamp", in.DisplayFragmentTimestamp, "ALWAYS", "NEVER")
	v.intRange("Expires", in.Expires, 300, 43200)
	v.intRange("MaxMediaPlaylistFragmentResults", in.MaxMediaPlaylistFragmentResults, 1, 5000)
	now := time.Now()
	sess := &hlsSession{Mode: "LIVE", ByServer: true, Expires: now.Add(300 * time.Second).Unix(), Disc: "ALWAYS", CreatedMs: now.UnixMilli(), ShowNumber: showNumber}
	if in.PlaybackMode != nil {
		sess.Mode = *in.PlaybackMode
	}
	if in.Expires != nil {
		sess.Expires = now.Add(time.Duration(*in.Expires) * time.Second).Unix()
	}
	if sel := in.HLSFragmentSelector; sel != nil {
		v.enum("HLSFragmentSelector.FragmentSelectorType", sel.FragmentSelectorType, "PRODUCER_TIMESTAMP", "SERVER_TIMESTAMP")
		if sel.FragmentSelectorType != nil && *sel.FragmentSelectorType == "PRODUCER_TIMESTAMP" {
			sess.ByServer, sess.Disc = false, "NEVER"
		}
		if r := sel.TimestampRange; r != nil {
			if sess.Mode == "LIVE" {
				v.add("A TimestampRange is not allowed with the LIVE playback mode.")
			}
			if r.StartTimestamp != nil {
				sess.StartMs = r.StartTimestamp.ms()
			}
			if r.EndTimestamp != nil {
				sess.EndMs = r.EndTimestamp.ms()
			}
		}
	}
	switch sess.Mode {
	case "ON_DEMAND", "LIVE_REPLAY":
		if sess.StartMs == 0 {
			v.add("A StartTimestamp is required with the %s playback mode.", sess.Mode)
		}
		if sess.Mode == "ON_DEMAND" && sess.EndMs == 0 {
			v.add("An EndTimestamp is required with the ON_DEMAND playback mode.")
		}
		if sess.EndMs != 0 && sess.EndMs < sess.StartMs {
			v.add("The EndTimestamp must not be before the StartTimestamp.")
		}
		if sess.EndMs != 0 && sess.EndMs-sess.StartMs > (24*time.Hour).Milliseconds() { // in ms: no overflow
			v.add("The timestamp range must not exceed 24 hours.")
		}
		sess.Max = 1000
		if sess.Mode == "LIVE_REPLAY" {
			sess.Max = 5
		}
	default:
		sess.Max = 5
	}
	if in.MaxMediaPlaylistFragmentResults != nil {
		sess.Max = *in.MaxMediaPlaylistFragmentResults
	}
	if in.DiscontinuityMode != nil {
		sess.Disc = *in.DiscontinuityMode
	}
	sess.ShowTime = in.DisplayFragmentTimestamp != nil && *in.DisplayFragmentTimestamp == "ALWAYS"
	sess.TS = in.ContainerFormat != nil && *in.ContainerFormat == "MPEG_TS"
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return "", aerr
	}
	if info.DataRetentionInHours == 0 {
		return "", newAPIError(http.StatusBadRequest, errNoDataRetention, "The stream %s keeps no data.", info.Name)
	}
	sess.ARN = info.ARN
	frags, aerr := s.playlistFragments(sess, now)
	if aerr != nil {
		return "", aerr
	}
	if len(frags) == 0 {
		return "", newAPIError(http.StatusNotFound, errResourceNotFound, "No fragments found for the requested %s session of stream %s.", sess.Mode, info.Name)
	}
	hdr, aerr := s.tracksOf(info.ARN, frags[0].Number)
	if aerr != nil {
		return "", aerr
	}
	if aerr := checkPlayable(hdr); aerr != nil {
		return "", aerr
	}
	// The session's time base: segments carry producer times minus this.
	sess.BaseMs = frags[0].ProducerMs
	tok, err := s.signSession(sess)
	if err != nil {
		return "", engineError(err)
	}
	return tok, nil
}

// playlistFragments selects the session's fragments as of now.
func (s *Server) playlistFragments(sess *hlsSession, now time.Time) ([]fragment.Meta, *apiError) {
	ref := engine.StreamRef{ARN: sess.ARN}
	if sess.Mode == "LIVE" {
		out, err := s.eng.Recent(ref, sess.Max)
		if err != nil {
			return nil, engineError(err)
		}
		// KVS: nothing in the last 30 s is not a live stream.
		if len(out) > 0 && now.UnixMilli()-out[len(out)-1].ServerMs > 30_000 {
			return nil, nil
		}
		return out, nil
	}
	idx := fragment.ByServerTime
	if !sess.ByServer {
		idx = fragment.ByProducerTime
	}
	end := sess.EndMs
	if end == 0 {
		end = math.MaxInt64 / 2
	}
	if sess.Mode == "LIVE_REPLAY" {
		// Replay starts at the first fragment at or after the start, and
		// each fragment is added as its time elapses since the session began.
		first, _, err := s.eng.ListFragments(ref, idx, sess.StartMs, end, nil, 1)
		if err != nil {
			return nil, engineError(err)
		}
		if len(first) == 0 {
			return nil, nil
		}
		anchor := first[0].ServerMs
		if !sess.ByServer {
			anchor = first[0].ProducerMs
		}
		end = min(end, anchor+(now.UnixMilli()-sess.CreatedMs)+1)
	}
	var out []fragment.Meta
	var cursor *fragment.TimeCursor
	for {
		page, next, err := s.eng.ListFragments(ref, idx, sess.StartMs, end, cursor, 1000)
		if err != nil {
			return nil, engineError(err)
		}
		out = append(out, page...)
		if next == nil || (sess.Mode == "ON_DEMAND" && len(out) >= sess.Max) {
			break
		}
		cursor = next
	}
	if !sess.ByServer {
		// Equal producer timestamps: the highest fragment number wins.
		slices.Reverse(out)
		out = slices.CompactFunc(out, func(a, b fragment.Meta) bool { return a.ProducerMs == b.ProducerMs })
		slices.Reverse(out)
	}
	if sess.Mode == "ON_DEMAND" && len(out) > sess.Max {
		out = out[:sess.Max]
	}
	return out, nil
}

// playlistWindow is the part of the session's fragments a media playlist
// lists, and the media sequence number of its first. LIVE windows are
// all; their HLS numbers come from liveSeqs (hls_live.go).
func playlistWindow(sess *hlsSession, all []fragment.Meta) ([]fragment.Meta, uint64) {
	if sess.Mode == "LIVE_REPLAY" && len(all) > sess.Max {
		return all[len(all)-sess.Max:], uint64(len(all) - sess.Max)
	}
	return all, 0
}

// mfhdSequence is a fragment's fMP4 sequence number (mfhd): 1 + its
// producer start in ms after the session's base. It increases from
// fragment to fragment across ingest terms too (a fragment number's seq
// restarts at 0 in each term: when ingest moves between boxes), and needs
// no state (segment requests are independent).
func mfhdSequence(baseMs int64, m fragment.Meta) uint32 {
	return uint32(min(max(m.ProducerMs-baseMs, 0)+1, math.MaxUint32))
}

// hlsRoutes are the session resources (GET, token-authorised).
func hlsRoutes() map[string]func(*Server, *fasthttp.RequestCtx) {
	return map[string]func(*Server, *fasthttp.RequestCtx){
		"/hls/v1/getHLSMasterPlaylist.m3u8": (*Server).hlsMaster,
		"/hls/v1/getHLSMediaPlaylist.m3u8":  (*Server).hlsMedia,
		"/hls/v1/getMP4InitFragment.mp4":    (*Server).hlsInit,
		"/hls/v1/getMP4MediaFragment.mp4":   (*Server).hlsFragment,
		"/hls/v1/getTSFragment.ts":          (*Server).hlsTSFragment,
	}
}

// hlsRequest checks the method and the token; it has answered when ok is
// false.
func (s *Server) hlsRequest(ctx *fasthttp.RequestCtx) (*hlsSession, bool) {
	if !ctx.IsGet() && !ctx.IsHead() {
		writeError(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "%s accepts only GET.", ctx.Path()))
		return nil, false
	}
	sess, err := s.openSession(string(ctx.QueryArgs().Peek("SessionToken")))
	if err != nil {
		writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "%v", err))
		return nil, false
	}
	if time.Now().Unix() > sess.Expires {
		writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "The session token has expired."))
		return nil, false
	}
	if s.forwardSessionGET(ctx, sess.ARN) {
		return nil, false
	}
	ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
	return sess, true
}

func (s *Server) hlsMaster(ctx *fasthttp.RequestCtx) {
	sess, ok := s.hlsRequest(ctx)
	if !ok {
		return
	}
	frags, aerr := s.playlistFragments(sess, time.Now())
	if aerr == nil && len(frags) == 0 {
		aerr = newAPIError(http.StatusNotFound, errResourceNotFound, "No fragments found for this session.")
	}
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	hdr, ok := s.firstTracks(ctx, sess.ARN, frags[0].Number)
	if !ok {
		return
	}
	var bytes, ms int64
	for _, m := range frags {
		bytes += int64(m.MediaLen)
		ms += int64(m.DurationMs)
	}
	bandwidth := int64(1_000_000)
	if ms > 0 {
		bandwidth = bytes * 8 * 1000 / ms
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=\"%s\"", bandwidth, codecsAttr(hdr))
	for _, t := range hdr.Tracks {
		if t.Type == mkv.TrackVideo {
			if w, h := videoSize(t); w > 0 {
				fmt.Fprintf(&b, ",RESOLUTION=%dx%d", w, h)
			}
			break
		}
	}
	b.WriteString("\ngetHLSMediaPlaylist.m3u8?SessionToken=" + url.QueryEscape(string(ctx.QueryArgs().Peek("SessionToken"))) + "\n")
	ctx.SetContentType("application/vnd.apple.mpegurl")
	ctx.SetBodyString(b.String())
}

func (s *Server) hlsMedia(ctx *fasthttp.RequestCtx) {
	sess, ok := s.hlsRequest(ctx)
	if !ok {
		return
	}
	all, aerr := s.playlistFragments(sess, time.Now())
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	rawTok := string(ctx.QueryArgs().Peek("SessionToken"))
	frags, seq := playlistWindow(sess, all)
	if sess.Mode == "LIVE" {
		_, sig, _ := strings.Cut(rawTok, ".") // the session's id
		frags, seq = s.live.window(sig, sess.Expires, sess.BaseMs, all, time.Now())
	}
	tok := url.QueryEscape(rawTok)
	target := 1
	for _, m := range frags {
		target = max(target, int(math.Ceil(float64(m.DurationMs)/1000)))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:%d\n#EXT-X-INDEPENDENT-SEGMENTS\n", target, seq)
	if sess.Mode == "ON_DEMAND" {
		b.WriteString("#EXT-X-PLAYLIST-TYPE:VOD\n")
	}
	var header uint64
	var prevEnd int64
	for i, m := range frags {
		stamp := m.ServerMs
		if !sess.ByServer {
			stamp = m.ProducerMs
		}
		switch {
		case i == 0:
		case m.HeaderID != header:
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		case sess.Disc == "ALWAYS":
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		case sess.Disc == "ON_DISCONTINUITY" && (stamp-prevEnd > 50 || prevEnd-stamp > 50):
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if (i == 0 || m.HeaderID != header) && !sess.TS {
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"getMP4InitFragment.mp4?FragmentNumber=%s&SessionToken=%s\"\n", m.Number, tok)
		}
		header = m.HeaderID
		if sess.ShowTime {
			fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", time.UnixMilli(stamp).UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		seg := "getMP4MediaFragment.mp4"
		if sess.TS {
			seg = "getTSFragment.ts"
		}
		fmt.Fprintf(&b, "#EXTINF:%.3f,\n%s?FragmentNumber=%s&SessionToken=%s\n", float64(m.DurationMs)/1000, seg, m.Number, tok)
		prevEnd = stamp + int64(m.DurationMs)
	}
	if sess.Mode == "ON_DEMAND" || (sess.EndMs != 0 && len(all) > 0 && sess.Mode == "LIVE_REPLAY" && time.Now().UnixMilli()-sess.CreatedMs > sess.EndMs-sess.StartMs) {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	ctx.SetContentType("application/vnd.apple.mpegurl")
	ctx.SetBodyString(b.String())
}

// firstTracks returns the parsed track header of fragment n, answering
// the request itself when ok is false.
func (s *Server) firstTracks(ctx *fasthttp.RequestCtx, arn string, n fragment.Number) (*mkv.Header, bool) {
	hdr, aerr := s.tracksOf(arn, n)
	if aerr != nil {
		writeError(ctx, aerr)
		return nil, false
	}
	return hdr, true
}

// tracksOf is the parsed track header fragment n depends on.
func (s *Server) tracksOf(arn string, n fragment.Number) (*mkv.Header, *apiError) {
	f, err := s.eng.Fragment(engine.StreamRef{ARN: arn}, n)
	if err != nil {
		return nil, engineError(err)
	}
	defer f.Release()
	hdr, err := f.Header.Tracks()
	if err != nil {
		return nil, newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "The stream's track header does not parse: %v", err)
	}
	return hdr, nil
}

// sessionFragment loads the fragment a session resource names.
func (s *Server) sessionFragment(ctx *fasthttp.RequestCtx, sess *hlsSession) (*engine.Fragment, *mkv.Header, bool) {
	n, aerr := parseFragNum("FragmentNumber", string(ctx.QueryArgs().Peek("FragmentNumber")))
	if aerr != nil {
		writeError(ctx, aerr)
		return nil, nil, false
	}
	f, err := s.eng.Fragment(engine.StreamRef{ARN: sess.ARN}, n)
	if err != nil {
		if errors.Is(err, engine.ErrFragmentNotFound) {
			writeError(ctx, newAPIError(http.StatusNotFound, errResourceNotFound, "Fragment %s was not found.", n))
		} else {
			writeError(ctx, engineError(err))
		}
		return nil, nil, false
	}
	hdr, err := f.Header.Tracks()
	if err != nil {
		f.Release()
		writeError(ctx, newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "%v", err))
		return nil, nil, false
	}
	return f, hdr, true
}

func (s *Server) hlsInit(ctx *fasthttp.RequestCtx) {
	sess, ok := s.hlsRequest(ctx)
	if !ok {
		return
	}
	f, hdr, ok := s.sessionFragment(ctx, sess)
	if !ok {
		return
	}
	f.Release()
	m, err := remux.NewTrackMuxer(hdr, sess.BaseMs, trackParam(ctx))
	if err != nil {
		writeError(ctx, invalidArgument("%v", err))
		return
	}
	var b bytes.Buffer
	if err := m.WriteInit(&b); err != nil {
		writeError(ctx, engineError(err))
		return
	}
	ctx.SetContentType("video/mp4")
	ctx.SetBody(b.Bytes())
}

func (s *Server) hlsFragment(ctx *fasthttp.RequestCtx) {
	sess, ok := s.hlsRequest(ctx)
	if !ok {
		return
	}
	f, hdr, ok := s.sessionFragment(ctx, sess)
	if !ok {
		return
	}
	defer f.Release()
	m, err := remux.NewTrackMuxer(hdr, sess.BaseMs, trackParam(ctx))
	if err != nil {
		writeError(ctx, invalidArgument("%v", err))
		return
	}
	var b bytes.Buffer
	b.Grow(len(f.Media) + 4096)
	if err := m.WriteFragment(&b, hdr, f.Media[:f.Meta.ClusterLen], mfhdSequence(sess.BaseMs, f.Meta), f.Meta.ProducerMs); err != nil {
		writeError(ctx, newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "The fragment does not remux: %v", err))
		return
	}
	ctx.SetContentType("video/mp4")
	ctx.SetBody(b.Bytes())
}

// trackParam is the TrackNumber query parameter (0: every track, muxed).
func trackParam(ctx *fasthttp.RequestCtx) uint64 {
	n, _ := strconv.ParseUint(string(ctx.QueryArgs().Peek("TrackNumber")), 10, 64)
	return n
}

func (s *Server) hlsTSFragment(ctx *fasthttp.RequestCtx) {
	sess, ok := s.hlsRequest(ctx)
	if !ok {
		return
	}
	f, hdr, ok := s.sessionFragment(ctx, sess)
	if !ok {
		return
	}
	defer f.Release()
	var b bytes.Buffer
	b.Grow(len(f.Media) + len(f.Media)/8)
	if err := remux.WriteTS(&b, hdr, f.Media[:f.Meta.ClusterLen], f.Meta.ProducerMs, sess.BaseMs); err != nil {
		writeError(ctx, newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "The fragment does not remux: %v", err))
		return
	}
	ctx.SetContentType("video/mp2t")
	ctx.SetBody(b.Bytes())
}

// codecsAttr is the RFC 6381 CODECS value of a header's tracks.
func codecsAttr(h *mkv.Header) string { return codecsOf(h.Tracks) }

func codecsOf(tracks []mkv.Track) string {
	var out []string
	for _, t := range tracks {
		switch t.CodecID {
		case mkv.CodecH264:
			if len(t.CodecPrivate) >= 4 {
				out = append(out, fmt.Sprintf("avc1.%02x%02x%02x", t.CodecPrivate[1], t.CodecPrivate[2], t.CodecPrivate[3]))
			} else {
				out = append(out, "avc1")
			}
		case mkv.CodecH265:
			out = append(out, "hvc1")
		case mkv.CodecAAC:
			aot := 2
			if len(t.CodecPrivate) > 0 {
				aot = int(t.CodecPrivate[0] >> 3)
			}
			out = append(out, "mp4a.40."+strconv.Itoa(aot))
		case mkv.CodecOpus:
			out = append(out, "opus")
		}
	}
	return strings.Join(out, ",")
}

// videoSize reads the width and height from the track's SPS.
func videoSize(t mkv.Track) (int, int) {
	return t.Width, t.Height
}
