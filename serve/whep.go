package serve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
)

// Live view over WebRTC: WHEP (RFC 9725), egress only.
//
//	POST   /whep/v1/streams/<StreamName>[?SessionToken=…]   SDP offer → 201, SDP answer, Location
//	DELETE /whep/v1/sessions/<id>                            ends the session → 200
//	PATCH  /whep/v1/sessions/<id>                            405 (no trickle ICE: the answer has every candidate)
//	OPTIONS on either                                        CORS preflight
//
// The POST is authorised by a SigV4 signature over its body (as every API
// call), or by a SessionToken from getWHEPSessionURL (a kvsedge
// operation, SigV4-signed): an HMAC of {stream ARN, expiry} under a key
// derived from the session key (the store's; in a cluster, the cluster's,
// so a token opens on every box), so WHEP tokens and HLS tokens are never
// interchangeable. The session resource's id is 128 random bits:
// knowing it is what allows DELETE (RFC 9725 §4.2 lets the resource URL
// be the capability).
//
// Media: the stream's live tap (engine.LiveSubscribe), frames sent as
// they arrive, starting at the newest key frame. H.264 is passed through:
// the stored AVCC NAL units are cut into RTP payloads once per frame for
// every viewer of the stream (whep_rtp.go), SPS and PPS from CodecPrivate
// before every key frame; Opus and G.711 audio likewise (AAC cannot
// travel over WebRTC: such streams send video only). Other video codecs are refused (415), so the console falls back
// to HLS. RTP timestamps are the frames' producer times (ms × clock
// rate / 1000, modulo 2³²), so a receiver can map a frame back to its
// producer time. ICE is lite (the box only answers checks), with host
// candidates (loopback included by default), on one UDP port through
// pion's UDP mux when WebRTCOptions.UDPPort is set, else an ephemeral
// port per session; WebRTCOptions.PublicIPs replaces the host addresses
// advertised (a box behind 1:1 NAT).
//
// In a cluster, an offer for a stream whose frames do not reach this box
// (none in the last 5 s) is forwarded, authorised here and signed as this
// node, to the stream's home (else the node serving its reads): that
// node answers, its candidates in the answer, so the media flows from the
// node that receives the stream; the answer's Location is made absolute,
// on that node (forward.go carries the offer).

const (
	whepPrefix        = "/whep/v1/"
	whepStreamsPrefix = whepPrefix + "streams/"
	whepSessionPrefix = whepPrefix + "sessions/"
)

// WebRTCOptions configures the WHEP live view.
type WebRTCOptions struct {
	// Disabled turns the WHEP routes off (404): viewers use HLS.
	Disabled bool
	// UDPPort, when not 0, carries every session's media on this one UDP
	// port (pion's UDP mux), for a firewall rule; 0 uses an ephemeral
	// port per session, within PortMin…PortMax when set.
	UDPPort          int
	PortMin, PortMax uint16
	// PublicIPs, when set, are the addresses advertised in place of the
	// box's own (a box behind 1:1 NAT).
	PublicIPs []string
	// NoLoopback leaves the loopback address out of the candidates
	// (included by default, so a viewer on the box itself connects).
	NoLoopback bool
	// MaxViewers caps WebRTC sessions at once (more are answered 503;
	// viewers fall back to HLS). Default 64.
	MaxViewers int
	// ConnectTimeout ends a session whose ICE/DTLS has not connected
	// within it. Default 15 s.
	ConnectTimeout time.Duration
}

func (o *WebRTCOptions) ensureDefaults() {
	if o.MaxViewers == 0 {
		o.MaxViewers = 64
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 15 * time.Second
	}
}

// whepState is the server's WHEP side: the shared setting engine and the
// sessions.
type whepState struct {
	opts WebRTCOptions
	se   webrtc.SettingEngine
	mux  ice.UDPMux // nil: ephemeral ports

	// problem says why WebRTC is off although configured on ("" if not).
	problem string

	mu       sync.Mutex
	sessions map[string]*whepSession
	// starting counts offers being answered: with sessions, what
	// MaxViewers bounds (a slot is taken before the first-frame wait and
	// negotiation, so parallel offers cannot pass the cap).
	starting int
	closed   bool

	// Counters since start (WebRTCStats).
	started, connected, refused atomic.Uint64
}

// WebRTCStats are the WHEP live view's figures.
type WebRTCStats struct {
	Viewers   int    // sessions open now (connecting or connected)
	Started   uint64 // offers answered
	Connected uint64 // sessions whose connection came up
	Refused   uint64 // offers refused (no live media, codec, limit, bad offer)
}

// WebRTCStats reports the WHEP live view.
func (s *Server) WebRTCStats() WebRTCStats {
	w := s.whep
	w.mu.Lock()
	n := len(w.sessions)
	w.mu.Unlock()
	return WebRTCStats{Viewers: n, Started: w.started.Load(), Connected: w.connected.Load(), Refused: w.refused.Load()}
}

// newWHEP builds the WHEP side; a UDP port that cannot be opened disables
// it (logged), never the server.
func newWHEP(o WebRTCOptions, log interface{ Warn(string, ...any) }) *whepState {
	o.ensureDefaults()
	w := &whepState{opts: o, sessions: make(map[string]*whepSession)}
	if o.Disabled {
		return w
	}
	se := webrtc.SettingEngine{}
	se.SetLite(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(!o.NoLoopback)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6})
	if len(o.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{External: o.PublicIPs, AsCandidateType: webrtc.ICECandidateTypeHost}); err != nil {
			log.Warn("webrtc.public_ips not used", "err", err)
		}
	}
	if o.PortMin != 0 || o.PortMax != 0 {
		if err := se.SetEphemeralUDPPortRange(o.PortMin, o.PortMax); err != nil {
			log.Warn("webrtc port range not used", "err", err)
		}
	}
	if o.UDPPort != 0 {
		opts := []ice.UDPMuxFromPortOption{ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6)}
		if !o.NoLoopback {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		mux, err := ice.NewMultiUDPMuxFromPort(o.UDPPort, opts...)
		if err != nil {
			log.Warn("WebRTC live view disabled: its UDP port cannot be opened", "port", o.UDPPort, "err", err)
			w.opts.Disabled = true
			w.problem = fmt.Sprintf("WebRTC live view is off: UDP port %d (webrtc.udp_port) cannot be opened: %v; viewers use HLS", o.UDPPort, err)
			return w
		}
		se.SetICEUDPMux(mux)
		w.mux = mux
	}
	w.se = se
	return w
}

// close ends every session and the UDP mux.
func (w *whepState) close() {
	w.mu.Lock()
	w.closed = true
	list := make([]*whepSession, 0, len(w.sessions))
	for _, s := range w.sessions {
		list = append(list, s)
	}
	w.mu.Unlock()
	for _, s := range list {
		s.stop()
	}
	if w.mux != nil {
		_ = w.mux.Close()
	}
}

// WebRTCSessions is the number of WebRTC viewers connected or connecting.
func (s *Server) WebRTCSessions() int {
	s.whep.mu.Lock()
	defer s.whep.mu.Unlock()
	return len(s.whep.sessions)
}

// whepToken is the content of a WHEP session token.
type whepToken struct {
	ARN     string `json:"a"`
	Expires int64  `json:"x"` // unix seconds
}

// whepKey derives the WHEP token key from the store's session key.
func (s *Server) whepKey() ([]byte, error) { return s.tokenKey("kvsedge whep session token v1") }

func (s *Server) signWHEP(t whepToken) (string, error) {
	key, err := s.whepKey()
	if err != nil {
		return "", err
	}
	return signToken(key, t), nil
}

func (s *Server) openWHEP(tok string) (*whepToken, error) {
	key, err := s.whepKey()
	if err != nil {
		return nil, err
	}
	var t whepToken
	if err := openToken(tok, key, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

type whepSessionIn struct {
	streamRefIn
	Expires *int
}

// getWHEPSessionURL (kvsedge's own operation, POST /getWHEPSessionURL):
// {StreamName | StreamARN, Expires (s, 30…43200, default 300)} →
// {WHEPSessionURL}: the stream's WHEP endpoint with a SessionToken, for
// a WHEP player that cannot sign (a browser's).
func (s *Server) getWHEPSessionURL(body []byte) (any, *apiError) {
	in, aerr := decode[whepSessionIn](body)
	if aerr != nil {
		return nil, aerr
	}
	if s.whep.opts.Disabled {
		return nil, newAPIError(http.StatusNotFound, errResourceNotFound, "WebRTC live view is disabled on this box (webrtc.enabled).")
	}
	v := &validator{}
	v.intRange("Expires", in.Expires, 30, 43200)
	info, aerr := s.resolve(in.streamRefIn, v)
	if aerr != nil {
		return nil, aerr
	}
	exp := 300
	if in.Expires != nil {
		exp = *in.Expires
	}
	tok, err := s.signWHEP(whepToken{ARN: info.ARN, Expires: time.Now().Add(time.Duration(exp) * time.Second).Unix()})
	if err != nil {
		return nil, engineError(err)
	}
	return struct{ WHEPSessionURL string }{s.opts.DataEndpoint + whepStreamsPrefix + url.PathEscape(info.Name) + "?SessionToken=" + tok}, nil
}

// listLiveStreams (kvsedge's own operation, POST /listLiveStreams): the
// streams receiving media now (a frame in the last 10 s: cameras and
// PutMedia producers alike), for the console's wall, with their WebRTC
// viewers.
func (s *Server) listLiveStreams([]byte) (any, *apiError) {
	type live struct {
		StreamName  string
		LastFrameMs int64
		Viewers     int
	}
	out := struct{ Streams []live }{Streams: []live{}}
	for _, st := range s.eng.LiveStreams(time.Now().Add(-10 * time.Second)) {
		out.Streams = append(out.Streams, live{StreamName: st.Stream, LastFrameMs: st.LastFrameNs / 1e6, Viewers: st.Subscribers})
	}
	slices.SortFunc(out.Streams, func(a, b live) int { return strings.Compare(a.StreamName, b.StreamName) })
	return out, nil
}

// serveWHEP handles every request under whepPrefix.
func (s *Server) serveWHEP(ctx *fasthttp.RequestCtx, path string) {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", "Location, Link")
	if ctx.IsOptions() {
		h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256")
		h.Set("Accept-Post", "application/sdp")
		ctx.SetStatusCode(http.StatusNoContent)
		return
	}
	if s.whep.opts.Disabled {
		writeError(ctx, newAPIError(http.StatusNotFound, errResourceNotFound, "WebRTC live view is disabled on this box (webrtc.enabled)."))
		return
	}
	switch {
	case strings.HasPrefix(path, whepStreamsPrefix) && ctx.IsPost():
		s.whepOffer(ctx, path[len(whepStreamsPrefix):])
	case strings.HasPrefix(path, whepSessionPrefix) && ctx.IsDelete():
		id := path[len(whepSessionPrefix):]
		s.whep.mu.Lock()
		sess := s.whep.sessions[id]
		s.whep.mu.Unlock()
		if sess == nil {
			writeError(ctx, newAPIError(http.StatusNotFound, errResourceNotFound, "No WHEP session %s.", id))
			return
		}
		sess.stop()
		ctx.SetStatusCode(http.StatusOK)
	case strings.HasPrefix(path, whepSessionPrefix) && string(ctx.Method()) == http.MethodPatch:
		h.Set("Allow", "DELETE")
		writeError(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "Trickle ICE is not supported: the answer carries every candidate."))
	default:
		writeError(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "%s %s is not a WHEP operation.", ctx.Method(), path))
	}
}

// whepOffer answers a WHEP offer for stream name.
func (s *Server) whepOffer(ctx *fasthttp.RequestCtx, name string) {
	name, err := url.PathUnescape(name)
	if err != nil || name == "" || strings.Contains(name, "/") {
		writeError(ctx, invalidArgument("The WHEP URL does not name a stream."))
		return
	}
	body, aerr := s.readBody(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		ctx.SetConnectionClose()
		return
	}
	// Authorised first, the stream looked up after: a caller without a
	// key or a token learns nothing of which streams exist (404 against
	// 403).
	tokenARN := ""
	if tok := ctx.QueryArgs().Peek("SessionToken"); len(tok) > 0 {
		t, err := s.openWHEP(string(tok))
		switch {
		case err != nil:
			writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "%v", err))
			return
		case time.Now().Unix() > t.Expires:
			writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "The session token has expired."))
			return
		}
		if p, err := engine.ParseARN(t.ARN); err != nil || p.Name != name {
			writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "The session token is for another stream."))
			return
		}
		tokenARN = t.ARN
	} else if aerr := s.authenticate(ctx, body); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	info, err := s.eng.Stream(engine.StreamRef{Name: name})
	if err != nil {
		writeError(ctx, engineError(err))
		return
	}
	if tokenARN != "" && tokenARN != info.ARN { // a stream of that name deleted and made again
		writeError(ctx, newAPIError(http.StatusForbidden, errNotAuthorized, "The session token is for another stream."))
		return
	}
	if ct := string(ctx.Request.Header.ContentType()); ct != "" && !strings.HasPrefix(ct, "application/sdp") && !isFromPeer(ctx) {
		writeError(ctx, newAPIError(http.StatusUnsupportedMediaType, errInvalidArgument, "A WHEP offer is application/sdp, not %s.", ct))
		return
	}
	if target := s.liveElsewhere(info.Name); target != "" && !isFromPeer(ctx) && s.forwardWHEP(ctx, target, info.Name, body) {
		return
	}
	sess, answer, aerr := s.startWHEP(info, string(body))
	if aerr != nil {
		s.whep.refused.Add(1)
		s.opts.Logger.Info("WHEP offer refused", "stream", name, "status", aerr.Status, "msg", aerr.Message)
		writeError(ctx, aerr)
		return
	}
	s.whep.started.Add(1)
	s.opts.Logger.Info("WebRTC viewer joined", "stream", name, "session", sess.id, "remote", ctx.RemoteAddr().String(), "video", sess.videoCodec, "audio", sess.audioCodec)
	ctx.Response.Header.Set("Location", whepSessionPrefix+sess.id)
	ctx.Response.Header.Set("ETag", `"`+sess.id+`"`)
	ctx.SetContentType("application/sdp")
	ctx.SetStatusCode(http.StatusCreated)
	ctx.SetBodyString(answer)
}

// liveElsewhere returns the API URL of the cluster node to forward a
// WHEP offer for stream to: none when this box is not in a cluster, the
// offer was forwarded already, or frames of the stream reach this box
// now; else the stream's home (where producers are sent), or the node
// that serves its reads.
func (s *Server) liveElsewhere(stream string) string {
	if s.opts.Cluster == nil {
		return ""
	}
	if st, err := s.eng.LiveStats(engine.StreamRef{Name: stream}); err == nil && time.Since(time.Unix(0, st.LastFrameNs)) < 5*time.Second {
		return ""
	}
	for _, t := range []string{s.opts.Cluster.Home(stream), s.opts.Cluster.Locate(stream)} {
		if t != "" && t != s.opts.DataEndpoint {
			return t
		}
	}
	return ""
}

// forwardWHEP sends a WHEP offer (authorised here) to the node that
// receives the stream, signed as this node, and relays its answer: the
// viewer's media then flows from that node (its candidates are in the
// answer), and the session URL (Location) is made absolute, on that
// node. It reports false, having answered nothing, when the node could
// not be asked (the offer is then served here).
func (s *Server) forwardWHEP(ctx *fasthttp.RequestCtx, target, stream string, offer []byte) bool {
	fctx, cancel := context.WithTimeout(s.life, 15*time.Second)
	defer cancel()
	resp, err := s.opts.Cluster.Forward(fctx, target, whepStreamsPrefix+url.PathEscape(stream), offer)
	if err != nil {
		s.opts.Logger.Warn("forwarding a WHEP offer to the stream's node failed; answering here", "stream", stream, "node", target, "err", err)
		return false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		s.opts.Logger.Warn("forwarding a WHEP offer: the answer was cut off; answering here", "stream", stream, "node", target, "err", err)
		return false
	}
	s.opts.Logger.Info("WHEP offer forwarded to the stream's node", "stream", stream, "node", target, "status", resp.StatusCode)
	for _, k := range []string{"Content-Type", "ETag", "x-amzn-ErrorType"} {
		if v := resp.Header.Get(k); v != "" {
			ctx.Response.Header.Set(k, v)
		}
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if strings.HasPrefix(loc, "/") {
			loc = target + loc
		}
		ctx.Response.Header.Set("Location", loc)
	}
	ctx.SetStatusCode(resp.StatusCode)
	ctx.SetBody(b)
	return true
}

// firstFrameWait bounds how long an offer waits for the stream's first
// live frame (a camera that just started) before it is refused.
const firstFrameWait = 4 * time.Second

// startWHEP subscribes to the stream's live tap, builds the peer
// connection for its codecs and answers the offer.
func (s *Server) startWHEP(info *engine.StreamInfo, offer string) (*whepSession, string, *apiError) {
	w := s.whep
	w.mu.Lock()
	full := len(w.sessions)+w.starting >= w.opts.MaxViewers
	closed := w.closed
	if !full && !closed {
		w.starting++
	}
	w.mu.Unlock()
	if closed {
		return nil, "", newAPIError(http.StatusServiceUnavailable, errClientLimitExceeded, "The box is shutting down.")
	}
	if full {
		return nil, "", newAPIError(http.StatusServiceUnavailable, errClientLimitExceeded, "%d WebRTC viewers are connected, the most this box serves (webrtc.max_viewers); use HLS.", w.opts.MaxViewers)
	}
	registered := false // the slot moved to sessions
	defer func() {
		if !registered {
			w.mu.Lock()
			w.starting--
			w.mu.Unlock()
		}
	}()
	sub, err := s.eng.LiveSubscribe(engine.StreamRef{ARN: info.ARN}, liveQueue)
	if err != nil {
		return nil, "", engineError(err)
	}
	// The first frame (the newest key frame, or the next one) tells the
	// codecs the answer offers.
	wctx, cancel := context.WithTimeout(s.life, firstFrameWait)
	first, err := sub.Next(wctx)
	cancel()
	if err != nil {
		sub.Close()
		return nil, "", newAPIError(http.StatusNotFound, errResourceNotFound, "The stream %s has no live media now (no frame within %v).", info.Name, firstFrameWait)
	}
	tracks, err := first.Header.Tracks()
	if err != nil {
		first.Release()
		sub.Close()
		return nil, "", newAPIError(http.StatusBadRequest, errInvalidCodecPrivate, "%v", err)
	}
	plan, aerr := planWHEP(tracks)
	if aerr != nil {
		first.Release()
		sub.Close()
		return nil, "", aerr
	}
	sess, answer, err := w.negotiate(s, plan, offer)
	if err != nil {
		first.Release()
		sub.Close()
		var ae *apiError
		if errors.As(err, &ae) {
			return nil, "", ae
		}
		return nil, "", newAPIError(http.StatusBadRequest, errInvalidArgument, "The SDP offer cannot be answered: %v", err)
	}
	sess.stream = info.Name
	w.mu.Lock()
	w.sessions[sess.id] = sess
	w.starting--
	registered = true
	w.mu.Unlock()
	s.sessions.Add(1)
	go func() {
		defer s.sessions.Done()
		defer s.recoverSession("WHEP session")
		sess.run(s.life, sub, first)
		w.mu.Lock()
		delete(w.sessions, sess.id)
		w.mu.Unlock()
		s.opts.Logger.Info("WebRTC viewer left", append([]any{"stream", sess.stream, "session", sess.id, "frames", sess.sent,
			"dropped", sub.Dropped(), "rewinds", sess.rewinds, "store_waits_cut", sess.storeWaitsCut, "why", sess.why}, sess.lag.attrs()...)...)
	}()
	return sess, answer, nil
}

// liveQueue is a viewer's live-tap queue in frames (a few seconds of
// video with audio); a viewer further behind skips to the next key frame.
const liveQueue = 256

// negotiate builds the peer connection for plan and answers offer.
func (w *whepState) negotiate(s *Server, plan *whepPlan, offer string) (*whepSession, string, error) {
	me := &webrtc.MediaEngine{}
	if err := plan.register(me); err != nil {
		return nil, "", err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, "", err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(w.se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	fail := func(err error) (*whepSession, string, error) {
		_ = pc.Close()
		return nil, "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(err)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	sess := &whepSession{id: hex.EncodeToString(id[:]), pc: pc, plan: plan, done: make(chan struct{}), log: s.opts.Logger,
		connectTimeout: w.opts.ConnectTimeout, connected: make(chan struct{}), pace: burstPackets, onConnected: func() { w.connected.Add(1) }}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "kvsedge")
	if err != nil {
		return fail(err)
	}
	vs, err := pc.AddTrack(video)
	if err != nil {
		return fail(err)
	}
	sess.video, sess.videoCodec = video, "H264"
	var as *webrtc.RTPSender
	if plan.audioMime != "" && offerHasKind(offer, "audio") {
		audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: plan.audioMime, ClockRate: plan.audioRate, Channels: plan.audioChannels}, "audio", "kvsedge")
		if err != nil {
			return fail(err)
		}
		if as, err = pc.AddTrack(audio); err != nil {
			return fail(err)
		}
		sess.audio, sess.audioCodec = audio, plan.audioMime
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-time.After(5 * time.Second):
		return fail(errors.New("ICE candidate gathering did not complete"))
	}
	if len(vs.GetParameters().Codecs) == 0 {
		_ = pc.Close()
		return nil, "", newAPIError(http.StatusNotAcceptable, errUnsupportedMediaType, "The offer accepts no H.264 video this box can send (profile %s, packetization-mode 1).", plan.profile)
	}
	if as != nil && len(as.GetParameters().Codecs) == 0 {
		sess.audio, sess.audioCodec = nil, ""
	}
	for _, sender := range []*webrtc.RTPSender{vs, as} {
		if sender == nil {
			continue
		}
		go func() { // RTCP in: NACKs and reports for the interceptors, PLI/FIR here
			for {
				pkts, _, err := sender.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					switch p.(type) {
					case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
						sess.pli.Store(true)
					}
				}
			}
		}()
	}
	pc.OnConnectionStateChange(sess.onState)
	return sess, pc.LocalDescription().SDP, nil
}

// offerHasKind reports whether an SDP offer has an m-line of kind.
func offerHasKind(sdp, kind string) bool {
	return strings.Contains(sdp, "\nm="+kind+" ") || strings.HasPrefix(sdp, "m="+kind+" ")
}
