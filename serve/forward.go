package serve

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/valyala/fasthttp"
)

// Reads of a stream this node does not hold (in a cluster, a stream lives
// on its home node and replicas) are forwarded to a node that does: the
// client's request is authenticated here, then its body goes to the
// holder's forward route, signed as this node, and the answer is relayed
// as it streams. A forwarded request is never forwarded again.

// peerPrefix and forwardPrefix mirror cluster.PeerPrefix and
// cluster.ForwardPrefix (serve does not import cluster).
const (
	peerPrefix    = "/kvsedge-peer/v1/"
	forwardPrefix = peerPrefix + "forward"
)

// forwardable are the read operations forwarded to a stream's holder.
var forwardable = map[string]bool{
	"/getMedia": true, "/getMediaForFragmentList": true, "/getClip": true,
	"/listFragments": true, "/getHLSStreamingSessionURL": true, "/getDASHStreamingSessionURL": true,
	"/getImages": true, "/listRecordedRanges": true, "/getClipURL": true,
}

// fromPeer marks a request that a peer forwarded (user value).
const fromPeer = "kvsedge.fromPeer"

func isFromPeer(ctx *fasthttp.RequestCtx) bool { return ctx.UserValue(fromPeer) != nil }

// servePeerPath handles every request under peerPrefix.
func (s *Server) servePeerPath(ctx *fasthttp.RequestCtx, path string) {
	if s.opts.Cluster == nil {
		writeError(ctx, newAPIError(http.StatusNotFound, errUnknownOperation, "No operation is served at %s.", path))
		return
	}
	if !strings.HasPrefix(path, forwardPrefix+"/") {
		s.opts.Cluster.ServePeer(ctx, s.life)
		return
	}
	body, aerr := s.readBody(ctx)
	if aerr != nil {
		writeError(ctx, aerr)
		ctx.SetConnectionClose()
		return
	}
	if err := s.opts.Cluster.VerifyPeer(string(ctx.Method()), string(ctx.RequestURI()), string(ctx.Request.Header.Peek(peerSignatureHeader)), body); err != nil {
		s.opts.Logger.Info("forwarded request refused", "remote", ctx.RemoteAddr().String(), "err", err)
		writeError(ctx, newAPIError(http.StatusForbidden, "AccessDeniedException", "The peer signature was not accepted."))
		return
	}
	op := strings.TrimPrefix(path, forwardPrefix)
	_, sessionGET := s.media[op]
	sessionGET = sessionGET && isSessionGET(op)
	if !forwardable[op] && !sessionGET && !strings.HasPrefix(op, whepStreamsPrefix) { // WHEP offers: whep.go
		writeError(ctx, newAPIError(http.StatusNotFound, errUnknownOperation, "%s is not forwarded between nodes.", op))
		return
	}
	ctx.SetUserValue(fromPeer, true)
	ctx.URI().SetPath(op)
	if sessionGET { // the client's GET: its query string came as the body
		ctx.URI().SetQueryStringBytes(body)
		ctx.Request.Header.SetMethod(fasthttp.MethodGet)
		ctx.Request.ResetBody()
	} else {
		ctx.Request.SetBody(body) // the operation reads it again
	}
	s.handle(ctx)
}

// peerSignatureHeader is the peer signature's header (cluster/FORMAT.md).
const peerSignatureHeader = "X-Kvsedge-Peer"

// forward relays the request to the stream's holder when this node does
// not hold it, and reports whether it did (the response is then set).
func (s *Server) forward(ctx *fasthttp.RequestCtx, path string, body []byte) bool {
	if s.opts.Cluster == nil || isFromPeer(ctx) || !forwardable[path] {
		return false
	}
	var in struct{ StreamName, StreamARN string }
	if json.Unmarshal(body, &in) != nil {
		return false // the handler answers the bad body
	}
	name := in.StreamName
	if name == "" && in.StreamARN != "" {
		p, err := engine.ParseARN(in.StreamARN)
		if err != nil {
			return false
		}
		name = p.Name
	}
	return s.forwardTo(ctx, name, path, body)
}

// forwardSessionGET relays a token-authorised GET (HLS, DASH, a clip
// download: isSessionGET) of stream arn to the stream's holder when this
// node has none of it, and reports whether it did. Session tokens open
// on every box of a cluster, so a URL handed out by one box plays from
// any (a site's one endpoint); the holder checks the token again. The
// forward route carries the query string as its body (servePeerPath), so
// the peer signature covers it.
func (s *Server) forwardSessionGET(ctx *fasthttp.RequestCtx, arn string) bool {
	if s.opts.Cluster == nil || isFromPeer(ctx) {
		return false
	}
	p, err := engine.ParseARN(arn)
	if err != nil {
		return false
	}
	// A box with any of the stream serves the session itself, as before
	// (a LIVE session's media sequence numbers are kept by the box that
	// serves it: relaying some playlists and not others would renumber
	// them); only one that has none of it relays.
	ref := engine.StreamRef{ARN: arn}
	if held, _, err := s.eng.ListFragments(ref, fragment.ByServerTime, math.MinInt64, math.MaxInt64, nil, 1); err != nil || len(held) > 0 {
		return false
	}
	return s.forwardTo(ctx, p.Name, string(ctx.Path()), ctx.QueryArgs().QueryString())
}

// isSessionGET reports whether path is a token-authorised GET route.
func isSessionGET(path string) bool {
	return path == clipDownloadPath || strings.HasPrefix(path, "/hls/v1/") || strings.HasPrefix(path, "/dash/v1/")
}

// forwardTo relays the request (path, body) to the holder of stream name
// when this node does not hold it, and reports whether it did.
func (s *Server) forwardTo(ctx *fasthttp.RequestCtx, name, path string, body []byte) bool {
	target := s.opts.Cluster.Locate(name)
	if name == "" || target == "" {
		return false
	}
	rctx, cancel := context.WithCancel(s.life)
	resp, err := s.opts.Cluster.Forward(rctx, target, path, body)
	if err != nil {
		cancel()
		s.opts.Logger.Warn("forwarding a read to the stream's holder failed; serving what this node has", "stream", name, "holder", target, "err", err)
		return false
	}
	s.opts.Logger.Debug("read forwarded", "op", path, "stream", name, "holder", target)
	ctx.SetStatusCode(resp.StatusCode)
	for k, vs := range resp.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Content-Length", "Transfer-Encoding", "Connection", "Date", "Server", "Keep-Alive":
			continue
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	if resp.ContentLength > maxBufferedAnswer && resp.ContentLength <= math.MaxInt32 {
		// Media of known length (an HLS or DASH fragment): relayed as it
		// comes with its length, never held here whole (megabytes outside
		// the media budget). fasthttp closes the stream once written, or
		// when the client is gone.
		ctx.Response.SetBodyStream(&relayBody{ReadCloser: resp.Body, cancel: cancel}, int(resp.ContentLength))
		return true
	}
	if resp.ContentLength >= 0 && resp.ContentLength <= maxBufferedAnswer {
		defer cancel()
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			writeError(ctx, newAPIError(http.StatusBadGateway, "ClientLimitExceededException", "The stream's holder did not answer completely."))
			return true
		}
		ctx.SetBody(b)
		return true
	}
	// A streamed answer (GetMedia, GetClip): relay it as it comes. The
	// holder cutting its transfer (an error part-way) cuts this one too
	// (streamedBody): Go's client reads that as io.ErrUnexpectedEOF.
	// A holder silent for longer than it ever is when well (a paused or
	// hung peer) is let go: the relay's transfer is cut instead of holding
	// the client and this goroutine until TCP gives up.
	idle := relayIdle
	if idle <= 0 {
		idle = s.opts.GetMediaIdleTimeout + 30*time.Second
	}
	ctx.Response.SetBodyStream(&streamedBody{write: func(w *bufio.Writer) error {
		var silent atomic.Bool
		timer := time.AfterFunc(idle, func() {
			silent.Store(true)
			_ = resp.Body.Close() // unblocks the Read below
			cancel()
		})
		defer timer.Stop()
		for {
			// Read into the writer's own free space (emptied by the flush
			// below): no buffer of the relay's own, no copy.
			buf := w.AvailableBuffer()[:w.Available()]
			n, err := resp.Body.Read(buf)
			if silent.Load() { // the body was closed under the Read
				return fmt.Errorf("relaying the holder's answer: it sent nothing for %v", idle)
			}
			if n > 0 {
				// A slow client is not the holder's silence (the server's
				// write timeout bounds it).
				timer.Stop()
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				if werr := w.Flush(); werr != nil {
					return werr
				}
				timer.Reset(idle)
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("relaying the holder's answer: %w", err)
			}
		}
	}, close: func() {
		_ = resp.Body.Close()
		cancel()
	}}, -1)
	return true
}

// relayIdle bounds a streamed relay's wait for the holder's next bytes
// (0: the GetMedia idle timeout, after which a holder's GetMedia ends,
// plus 30 s; a variable for tests).
var relayIdle time.Duration

// maxBufferedAnswer is the largest forwarded answer read whole before it
// is relayed (a JSON answer); longer ones stream through.
const maxBufferedAnswer = 64 << 10

// relayBody is a forwarded answer's body; closing it ends the forward.
type relayBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *relayBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
