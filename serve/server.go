package serve

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/kvsedge/kvsedge/serve/console"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

// Options configures a Server.
type Options struct {
	// DataEndpoint is the URL GetDataEndpoint returns: scheme and authority,
	// no path, no trailing slash. Required.
	DataEndpoint string
	// Auth verifies request signatures. Nil disables authentication (local
	// development only); New's caller is expected to say so loudly.
	Auth Authenticator
	// TLS, when set, makes Serve speak HTTPS. It should offer only
	// "http/1.1" in NextProtos: the streaming routes are not proven over
	// HTTP/2 and fasthttp does not speak it.
	TLS *tls.Config
	// MaxJSONBodyBytes caps a JSON request body. It defaults to 1 MiB (the
	// largest legitimate control-plane request, 50 tags at their maximum
	// sizes, is under 30 KiB).
	MaxJSONBodyBytes int
	// IdleTimeout closes keep-alive connections idle this long. It defaults
	// to 2 minutes.
	IdleTimeout time.Duration
	// HeaderTimeout closes idle and slow-loris clients: a new connection
	// that sends nothing within it, and one whose request head (and, for
	// the JSON routes, body) has not arrived within it of the request's
	// first byte — so a new connection is closed at most 2×HeaderTimeout
	// after it is accepted. The media routes clear it once their headers
	// are in. Default 10 s.
	HeaderTimeout time.Duration
	// WriteTimeout bounds writing one response that fasthttp writes (JSON,
	// playlists, HLS/DASH segments, clips): a client that stops reading
	// (a zero TCP window) is closed, not held for ever. GetMedia and
	// PutMedia bound their own writes by progress. Default 10 min.
	WriteTimeout time.Duration
	// MaxConns caps the connections served at once (more are answered 503
	// and closed); MaxConnsPerIP caps those of one client address (more
	// are closed at once). Defaults 4096 and 512.
	MaxConns, MaxConnsPerIP int
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// Cameras, when set, reports the camera states that /listCameras
	// returns.
	Cameras func() []status.Camera
	// CameraChanges, when set, reports the state changes of a stream's
	// camera that /listCameraChanges returns.
	CameraChanges func(stream string) []status.CameraChange
	// Uploads, when set, reports the uploads to an upstream KVS that
	// /describeUploads returns.
	Uploads func() []status.Upload
	// Metrics, when set, is served at GET /metrics (Prometheus text
	// format, unauthenticated); Readiness are /readyz's checks besides
	// storage.
	Metrics   prometheus.Gatherer
	Readiness map[string]ReadinessCheck
	// Alarms are /readyz's warnings: shown under "alarms" when not "",
	// without making the box unready (it still takes media).
	Alarms map[string]ReadinessCheck
	// Cluster, when set, is this node's peer cluster: /listClusterMembers
	// lists it and GetDataEndpoint(PUT_MEDIA) answers a stream's home node.
	Cluster ClusterView
	// SessionKey, when set, signs the session tokens (HLS, DASH, WHEP,
	// clip downloads) in place of the store's own session key: in a
	// cluster, one derived from the cluster key (cluster.SessionKey), so a
	// token one box hands out opens on every box.
	SessionKey []byte

	// PutMediaIdleAck is how often IDLE acks go out on an upload with no
	// data. Default 2 s.
	PutMediaIdleAck time.Duration
	// PutMediaIdleClose ends an upload with no data for this long (KVS: 30 s)
	// as if its body had ended there: a fragment whose last element is
	// complete is stored (a producer without the end-of-fragment tag
	// waits for its last PERSISTED). A pause shorter than this never cuts
	// a fragment (serve/FORMAT.md, "Fragment boundaries").
	PutMediaIdleClose time.Duration
	// PutMediaMaxDuration ends an upload this old with ERROR 4003 (KVS: 45
	// min); producers rotate their connection before that.
	PutMediaMaxDuration time.Duration
	// GetMediaIdleTimeout ends a GetMedia session cleanly, at a chunk
	// boundary, when no new fragment arrived for this long at the live
	// edge. Default 50 s: below the aws CLI's 60 s read timeout, so the
	// CLI finishes instead of failing; clients resume with the
	// continuation token.
	GetMediaIdleTimeout time.Duration
	// WebRTC configures the WHEP live view (whep.go).
	WebRTC WebRTCOptions
}

func (o *Options) ensureDefaults() {
	if o.MaxJSONBodyBytes == 0 {
		o.MaxJSONBodyBytes = 1 << 20
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.HeaderTimeout == 0 {
		o.HeaderTimeout = 10 * time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 10 * time.Minute
	}
	if o.MaxConns == 0 {
		o.MaxConns = 4096
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = 512
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PutMediaIdleAck == 0 {
		o.PutMediaIdleAck = 2 * time.Second
	}
	if o.PutMediaIdleClose == 0 {
		o.PutMediaIdleClose = 30 * time.Second
	}
	if o.PutMediaMaxDuration == 0 {
		o.PutMediaMaxDuration = 45 * time.Minute
	}
	if o.GetMediaIdleTimeout == 0 {
		o.GetMediaIdleTimeout = 50 * time.Second
	}
}

// Validate reports every invalid option (after defaults are applied).
func (o *Options) Validate() error {
	var errs []error
	if u, err := url.Parse(o.DataEndpoint); o.DataEndpoint == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") ||
		u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		errs = append(errs, fmt.Errorf("serve: DataEndpoint %q is not scheme://host[:port] with scheme http or https and no path", o.DataEndpoint))
	}
	within := func(name string, d, lo, hi time.Duration) {
		if d < lo || d > hi {
			errs = append(errs, fmt.Errorf("serve: %s %v is outside %v…%v", name, d, lo, hi))
		}
	}
	within("IdleTimeout", o.IdleTimeout, time.Second, 24*time.Hour)
	within("HeaderTimeout", o.HeaderTimeout, 100*time.Millisecond, time.Hour)
	if o.MaxConns < 1 || o.MaxConnsPerIP < 1 || o.MaxConnsPerIP > o.MaxConns {
		errs = append(errs, fmt.Errorf("serve: MaxConns %d and MaxConnsPerIP %d must be positive, per IP at most the total", o.MaxConns, o.MaxConnsPerIP))
	}
	within("PutMediaIdleAck", o.PutMediaIdleAck, 100*time.Millisecond, time.Hour)
	within("PutMediaIdleClose", o.PutMediaIdleClose, time.Second, time.Hour)
	within("PutMediaMaxDuration", o.PutMediaMaxDuration, time.Second, 24*time.Hour)
	within("GetMediaIdleTimeout", o.GetMediaIdleTimeout, 100*time.Millisecond, time.Hour)
	if o.MaxJSONBodyBytes < 1<<10 || o.MaxJSONBodyBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("serve: MaxJSONBodyBytes %d is outside 1 KiB…64 MiB", o.MaxJSONBodyBytes))
	}
	return errors.Join(errs...)
}

// ClusterView is what serve needs of the peer cluster (cluster.Cluster).
type ClusterView interface {
	Home(stream string) string
	Members() []status.Member
	// Replication is every stream's replication state here.
	Replication() []status.StreamReplication
	// Locate returns "" when this node serves reads of stream, else the
	// API URL of the node to forward them to.
	Locate(stream string) string
	// Forward sends a read's body to the holder's forward route, signed
	// as this node.
	Forward(ctx context.Context, base, path string, body []byte) (*http.Response, error)
	// VerifyPeer checks a forwarded request's peer signature over its
	// body.
	VerifyPeer(method, requestURI, header string, body []byte) error
	// ServePeer serves the node-to-node routes (replication).
	ServePeer(ctx *fasthttp.RequestCtx, life context.Context)
}

// Server serves the KVS API for one engine.
type Server struct {
	opts   Options
	eng    *engine.Engine
	srv    *fasthttp.Server
	routes map[string]jsonHandler
	// media are the streaming routes, which manage their own bodies and
	// responses.
	media map[string]func(*Server, *fasthttp.RequestCtx)
	// life ends when Shutdown starts, ending long-lived media sessions;
	// sessions counts those running on hijacked connections, which
	// Shutdown waits for (fasthttp does not track them).
	life     context.Context
	stopLife context.CancelFunc
	sessions sessionCount
	metrics  fasthttp.RequestHandler
	// ln is the listener Serve accepts on (ConnStats).
	ln atomic.Pointer[acceptLoop]
	// whep is the WebRTC live view (whep.go).
	whep *whepState
	// live numbers the segments of LIVE HLS playlists (hls_live.go).
	live liveSeqs
	// lingerUnsigned and lingerSigned are the slots of refused PutMedias
	// lingering (conns.go lingerClose).
	lingerUnsigned, lingerSigned lingerSlots
}

// sessionCount counts running media sessions; wait returns when none is
// left (new ones may still start: Shutdown has already ended life).
type sessionCount struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed while n == 0
}

func (c *sessionCount) Add(d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zero == nil {
		c.zero = make(chan struct{})
		close(c.zero)
	}
	if c.n == 0 && d > 0 {
		c.zero = make(chan struct{})
	}
	c.n += d
	if c.n == 0 {
		close(c.zero)
	}
}

func (c *sessionCount) Done() { c.Add(-1) }

func (c *sessionCount) idle() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.zero == nil {
		c.zero = make(chan struct{})
		close(c.zero)
	}
	return c.zero
}

// recoverSession keeps a bug in a media session from taking the box down.
func (s *Server) recoverSession(what string) {
	if p := recover(); p != nil {
		s.opts.Logger.Error(what+" panic", "panic", p, "stack", string(debug.Stack()))
	}
}

// jsonHandler handles one JSON operation: body is the raw request body, the
// result is marshalled as the response.
type jsonHandler func(s *Server, body []byte) (any, *apiError)

// New builds a server over eng.
func New(eng *engine.Engine, opts Options) (*Server, error) {
	opts.ensureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, eng: eng, routes: controlPlaneRoutes(), media: mediaRoutes()}
	for path, h := range archivedMediaRoutes() {
		s.routes[path] = h
	}
	s.routes["/getWHEPSessionURL"] = (*Server).getWHEPSessionURL
	s.routes["/listLiveStreams"] = (*Server).listLiveStreams
	s.whep = newWHEP(opts.WebRTC, opts.Logger)
	if why := s.whep.problem; why != "" {
		s.opts.Alarms = maps.Clone(s.opts.Alarms)
		if s.opts.Alarms == nil {
			s.opts.Alarms = map[string]ReadinessCheck{}
		}
		s.opts.Alarms["webrtc"] = func() string { return why }
	}
	s.life, s.stopLife = context.WithCancel(context.Background())
	s.lingerUnsigned.max, s.lingerSigned.max = maxLingeringUnsigned, maxLingeringSigned
	if opts.Metrics != nil {
		s.metrics = metricsHandler(opts.Metrics)
	}
	s.srv = &fasthttp.Server{
		Handler:       s.handle,
		Name:          "kvsedge",
		IdleTimeout:   opts.IdleTimeout,
		ReadTimeout:   opts.HeaderTimeout,
		WriteTimeout:  opts.WriteTimeout,
		Concurrency:   opts.MaxConns,
		MaxConnsPerIP: opts.MaxConnsPerIP,
		// Bodies are read by the handlers through RequestBodyStream with
		// their own per-route limits: fasthttp does not enforce
		// MaxRequestBodySize on streamed bodies, and PutMedia bodies are
		// endless.
		StreamRequestBody:    true,
		ReadBufferSize:       16 << 10,
		NoDefaultContentType: true,
		// A connection holds no read buffer or request context until its
		// first byte arrives, nor between keep-alive requests: an idle
		// flood costs ~4.5 KiB a connection (goroutine stack, descriptor),
		// not ~23 KiB (BenchmarkIdleConnections). fasthttp then restarts
		// the read deadline at the first byte (see HeaderTimeout).
		ReduceMemoryUsage: true,
		ErrorHandler:      transportError,
		Logger:            fasthttpLogger{opts.Logger},
	}
	return s, nil
}

// transportError answers a request fasthttp could not read, as its default
// does, except that a head cut off by the header timeout is answered 408,
// not 400: fasthttp's default does not see the timeout through its own
// error wrapping.
func transportError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		ctx.Error("Too big request header", fasthttp.StatusRequestHeaderFieldsTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		ctx.Error("Request timeout", fasthttp.StatusRequestTimeout)
	default:
		ctx.Error("Error when parsing request", fasthttp.StatusBadRequest)
	}
}

// Serve accepts connections on ln until Shutdown. With Options.TLS set, ln
// is wrapped in TLS.
func (s *Server) Serve(ln net.Listener) error {
	al := &acceptLoop{Listener: ln, log: s.opts.Logger}
	s.ln.Store(al)
	ln = al
	if s.opts.TLS != nil {
		ln = tls.NewListener(ln, s.opts.TLS)
	}
	return s.srv.Serve(ln)
}

// Shutdown stops accepting connections and waits for open requests until
// ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopLife()
	s.whep.close()
	err := s.srv.ShutdownWithContext(ctx)
	select {
	case <-s.sessions.idle():
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	setRequestID(ctx)
	path := string(ctx.Path())
	if ctx.IsGet() || ctx.IsHead() {
		// The web console: static files, no credentials needed to load
		// it (its API calls are signed like any other).
		if s.opsRoute(ctx, path) {
			return
		}
		if b, typ, ok := console.File(path); ok {
			ctx.SetContentType(typ)
			ctx.Response.Header.Set("Cache-Control", "no-cache")
			ctx.SetBody(b)
			return
		}
	}
	if strings.HasPrefix(path, peerPrefix) && !isFromPeer(ctx) {
		s.servePeerPath(ctx, path)
		return
	}
	if m, ok := s.media[path]; ok {
		m(s, ctx)
		return
	}
	if strings.HasPrefix(path, whepPrefix) {
		s.serveWHEP(ctx, path)
		return
	}
	h, ok := s.routes[path]
	if !ok {
		if _, ok := unsupportedRoutes[path]; ok {
			writeError(ctx, newAPIError(http.StatusNotImplemented, errNotImplemented,
				"%s is not supported by kvsedge: it stores and serves media streams; signaling channels, WebRTC and mapped resources are not implemented.", path[1:]))
			return
		}
		writeError(ctx, newAPIError(http.StatusNotFound, errUnknownOperation, "No operation is served at %s.", path))
		return
	}
	if !ctx.IsPost() {
		writeError(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "%s accepts only POST.", path))
		return
	}
	body, aerr := s.readBody(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		ctx.SetConnectionClose()
		return
	}
	if aerr := s.authenticate(ctx, body); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	if s.forward(ctx, path, body) {
		return
	}
	out, aerr := h(s, body)
	if aerr != nil {
		s.opts.Logger.Debug("request failed", "op", path, "type", aerr.Type, "msg", aerr.Message)
		writeError(ctx, aerr)
		return
	}
	js, err := json.Marshal(out)
	if err != nil {
		writeError(ctx, engineError(err))
		return
	}
	ctx.SetStatusCode(http.StatusOK)
	ctx.SetContentType("application/json")
	ctx.SetBody(js)
}

// maxDrainBytes is the largest oversized JSON body read and discarded
// before answering InvalidArgumentException; larger ones are cut off.
const maxDrainBytes = 16 << 20

// readBody reads a JSON body up to MaxJSONBodyBytes. An empty body reads as
// "{}": botocore omits it for operations called without parameters.
func (s *Server) readBody(ctx *fasthttp.RequestCtx) ([]byte, *apiError) {
	limit := s.opts.MaxJSONBodyBytes
	if cl := ctx.Request.Header.ContentLength(); cl > limit {
		// Read and drop a moderately oversized body so the client, still
		// writing it, gets to read the error instead of a reset; the
		// connection is closed after the answer either way.
		if st := ctx.RequestBodyStream(); st != nil && cl <= maxDrainBytes {
			_, _ = io.Copy(io.Discard, io.LimitReader(st, int64(cl)))
		}
		return nil, invalidArgument("The request body of %d bytes exceeds the limit of %d bytes.", cl, limit)
	}
	var body []byte
	if st := ctx.RequestBodyStream(); st != nil {
		b, err := io.ReadAll(io.LimitReader(st, int64(limit)+1))
		if err != nil {
			return nil, invalidArgument("Reading the request body failed: %v", err)
		}
		body = b
	} else {
		body = ctx.PostBody()
	}
	if len(body) > limit {
		return nil, invalidArgument("The request body exceeds the limit of %d bytes.", limit)
	}
	return body, nil
}

func (s *Server) authenticate(ctx *fasthttp.RequestCtx, body []byte) *apiError {
	if s.opts.Auth == nil || isFromPeer(ctx) {
		return nil // a forwarded request: the peer signature was checked
	}
	sum := sha256.Sum256(body)
	if err := s.opts.Auth.Authenticate(ctx, hex.EncodeToString(sum[:])); err != nil {
		s.opts.Logger.Info("request refused", "path", string(ctx.Path()), "remote", ctx.RemoteAddr().String(), "err", err)
		return authError(err)
	}
	return nil
}

// setRequestID sets x-amzn-RequestId, which botocore exposes and the C
// producer logs, to a fresh UUIDv4.
func setRequestID(ctx *fasthttp.RequestCtx) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	ctx.Response.Header.Set("x-amzn-RequestId", fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]))
}

// decode unmarshals a JSON request body into T. Unknown members are ignored,
// as AWS does; wrong types and malformed JSON are InvalidArgumentException.
func decode[T any](body []byte) (*T, *apiError) {
	var v T
	if len(body) == 0 {
		return &v, nil
	}
	if err := json.Unmarshal(body, &v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, invalidArgument("Value at '%s' has the wrong type: expected %s.", te.Field, te.Type)
		}
		return nil, invalidArgument("The request body is not valid JSON: %v", err)
	}
	return &v, nil
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}
