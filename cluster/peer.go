package cluster

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/valyala/fasthttp"
)

// PeerPrefix is the path of the node-to-node routes (FORMAT.md) on each
// node's API listener, authenticated with a key derived from the gossip
// key. Serf carries membership only; media moves here.
const PeerPrefix = "/kvsedge-peer/v1/"

// peerHeader carries a request's peer signature: node:unix-seconds:hex.
const peerHeader = "X-Kvsedge-Peer"

// peerSkew is how far a signed request's time may be from ours.
const peerSkew = 5 * time.Minute

// PeerKey derives the node-to-node authentication key from the gossip key
// (the two are never the same bytes on the wire).
func PeerKey(gossipKey []byte) []byte {
	if len(gossipKey) == 0 {
		return nil
	}
	h := sha256.New()
	h.Write([]byte("kvsedge peer auth v1\x00"))
	h.Write(gossipKey)
	return h.Sum(nil)
}

// SessionKey derives the key that signs playback and WHEP session tokens
// (serve.Options.SessionKey) from the gossip key: the same on every box of
// the cluster, so a token one box hands out opens on all; never the
// gossip or peer key's bytes. Nil without a key.
func SessionKey(gossipKey []byte) []byte {
	if len(gossipKey) == 0 {
		return nil
	}
	h := sha256.New()
	h.Write([]byte("kvsedge session tokens v1\x00"))
	h.Write(gossipKey)
	return h.Sum(nil)
}

// peerMAC signs a request: who, when, the request line and the body.
func peerMAC(key []byte, node, ts, method, pathQuery string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\n%s\n%s\n%s\n%x", node, ts, method, pathQuery, sum)
	return hex.EncodeToString(m.Sum(nil))
}

// signPeer signs an outgoing peer request whose body is body.
func signPeer(req *http.Request, key []byte, node string, now time.Time, body []byte) {
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set(peerHeader, node+":"+ts+":"+peerMAC(key, node, ts, req.Method, req.URL.RequestURI(), body))
}

// maxPull bounds the fragments of one pull request (the asker's
// fragments the answering node fetches before it answers, within
// peerRequestTimeout).
const maxPull = 64

// maxPeerBody bounds a peer request's body (read before its signature is
// checked): a fetch of 1000 numbers, or a forwarded JSON request.
const maxPeerBody = 1 << 20

// verifyPeer checks a peer signature over the request and its body; it
// returns the peer's node name.
func verifyPeer(key []byte, method, requestURI, header string, body []byte, now time.Time) (string, error) {
	if len(key) == 0 {
		return "", errors.New("this node has no cluster key: the peer path is closed")
	}
	i := strings.LastIndexByte(header, ':')
	if i < 0 {
		return "", errors.New("no peer signature")
	}
	j := strings.LastIndexByte(header[:i], ':')
	if j < 0 {
		return "", errors.New("malformed peer signature")
	}
	node, ts, mac := header[:j], header[j+1:i], header[i+1:]
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", errors.New("malformed peer signature time")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > peerSkew || d < -peerSkew {
		return "", fmt.Errorf("peer signature time is %s away from ours", d.Round(time.Second))
	}
	if !hmac.Equal([]byte(mac), []byte(peerMAC(key, node, ts, method, requestURI, body))) {
		return "", errors.New("wrong peer signature")
	}
	return node, nil
}

// framesParam is the query parameter of tail and fetch that names the
// newest fragment frame version the asker reads (FORMAT.md, "Versions");
// without it, 1.
const framesParam = "frames"

// checkFramesParam validates a frames parameter. A node answers with
// frames of version min(asked, frameVersion); every valid ask is at least
// 1 = frameVersion, so this node always writes version 1.
func checkFramesParam(v []byte) error {
	if len(v) == 0 {
		return nil
	}
	if n, err := strconv.ParseUint(string(v), 10, 8); err != nil || n == 0 {
		return fmt.Errorf("bad %s %q: the newest fragment frame version the asker reads, 1 to 255", framesParam, v)
	}
	return nil
}

// ReadPeerBody reads a peer request's body, up to maxPeerBody, so that
// its signature can be checked over it.
func ReadPeerBody(ctx *fasthttp.RequestCtx) ([]byte, error) {
	if cl := ctx.Request.Header.ContentLength(); cl > maxPeerBody {
		return nil, fmt.Errorf("peer request body of %d bytes is over the limit", cl)
	}
	st := ctx.RequestBodyStream()
	if st == nil {
		return ctx.PostBody(), nil
	}
	b, err := io.ReadAll(io.LimitReader(st, maxPeerBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPeerBody {
		return nil, errors.New("peer request body is over the limit")
	}
	return b, nil
}

// Registry is a node's stream records and tombstones, as peers copy them.
type Registry struct {
	Streams    []*engine.StreamInfo `json:"streams"`
	Tombstones map[string]int64     `json:"tombstones"`
}

// PeerServer serves the node-to-node path for one engine.
type PeerServer struct {
	eng *engine.Engine
	key []byte
	log *slog.Logger
	// keepalive is how often an idle tail sends a keepalive frame.
	keepalive time.Duration
	// durable takes replicas' durable reports (durability.go; nil: ignored).
	durable func(node, arn string, nums []fragment.Number)
	// reach answers the reach route (Cluster.reachBack).
	reach func(ctx context.Context, node string) error
	// pull answers the pull route: fetch nums of stream from node and
	// import them (Replicator.pullFrom; nil: refused).
	pull func(ctx context.Context, node, stream string, nums []fragment.Number) error
}

// NewPeerServer serves eng to peers that sign with key (PeerKey).
func NewPeerServer(eng *engine.Engine, key []byte, log *slog.Logger) *PeerServer {
	if log == nil {
		log = slog.Default()
	}
	return &PeerServer{eng: eng, key: key, log: log, keepalive: 2 * time.Second}
}

// Serve handles one request under PeerPrefix; life ends long-running
// tails (server shutdown).
func (p *PeerServer) Serve(ctx *fasthttp.RequestCtx, life context.Context) {
	body, err := ReadPeerBody(ctx)
	if err != nil {
		ctx.Error(err.Error(), http.StatusRequestEntityTooLarge)
		ctx.SetConnectionClose()
		return
	}
	node, err := verifyPeer(p.key, string(ctx.Method()), string(ctx.RequestURI()), string(ctx.Request.Header.Peek(peerHeader)), body, time.Now())
	if err != nil {
		p.log.Info("peer request refused", "remote", ctx.RemoteAddr().String(), "path", string(ctx.Path()), "err", err)
		ctx.Error("peer authentication failed: "+err.Error(), http.StatusForbidden)
		return
	}
	op := strings.TrimPrefix(string(ctx.Path()), PeerPrefix)
	args := ctx.QueryArgs()
	if op == "durable" && ctx.IsPost() {
		p.serveDurable(ctx, node, body)
		return
	}
	if op == "registry" {
		js, err := json.Marshal(Registry{Streams: p.eng.Streams(), Tombstones: p.eng.Tombstones()})
		if err != nil {
			ctx.Error(err.Error(), http.StatusInternalServerError)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(js)
		return
	}
	switch op {
	case "ping":
		ctx.SetBodyString("ok")
		return
	case "reach":
		if p.reach == nil {
			ctx.Error("this node does not reach peers", http.StatusServiceUnavailable)
			return
		}
		if err := p.reach(life, string(args.Peek("node"))); err != nil {
			ctx.Error(reachRefused+string(args.Peek("node"))+": "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		ctx.SetBodyString("ok")
		return
	}
	ref := engine.StreamRef{Name: string(args.Peek("stream"))}
	info, err := p.eng.Stream(ref)
	if err != nil {
		ctx.Error(err.Error(), http.StatusNotFound)
		return
	}
	if arn := string(args.Peek("arn")); arn != "" && arn != info.ARN {
		ctx.Error("stream "+info.Name+" is "+info.ARN+" here, not "+arn, http.StatusNotFound)
		return
	}
	ref = engine.StreamRef{ARN: info.ARN}
	var after fragment.Number
	if a := args.Peek("after"); len(a) > 0 {
		if after, err = fragment.ParseNumber(string(a)); err != nil {
			ctx.Error("bad after: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	if op == "fetch" || op == "tail" {
		if err := checkFramesParam(args.Peek(framesParam)); err != nil {
			ctx.Error(err.Error(), http.StatusBadRequest)
			return
		}
	}
	switch op {
	case "numbers":
		limit, _ := strconv.Atoi(string(args.Peek("limit")))
		if limit <= 0 || limit > 100_000 {
			limit = 100_000
		}
		out := make([]byte, 0, 14*min(limit, 4096))
		n := 0
		err := p.eng.FragmentNumbers(ref, after, func(f fragment.Number) bool {
			if n == limit {
				ctx.Response.Header.Set("X-Kvsedge-More", "1")
				return false
			}
			out = append(out, f[:]...)
			n++
			return true
		})
		if err != nil {
			ctx.Error(err.Error(), http.StatusInternalServerError)
			return
		}
		ctx.SetContentType("application/octet-stream")
		ctx.SetBody(out)
	case "fetch":
		if len(body)%fragment.NumberLen != 0 || len(body) > 1000*fragment.NumberLen {
			ctx.Error("fetch takes up to 1000 fragment numbers of 14 bytes", http.StatusBadRequest)
			return
		}
		nums := make([]fragment.Number, len(body)/fragment.NumberLen)
		for i := range nums {
			copy(nums[i][:], body[i*fragment.NumberLen:])
		}
		ctx.SetContentType("application/octet-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			fw := &frameWriter{w: w}
			for _, n := range nums {
				f, err := p.eng.Fragment(ref, n)
				if err != nil {
					continue // gone meanwhile (retention): the asker finds out
				}
				err = fw.fragment(f)
				f.Release()
				if err != nil {
					return
				}
			}
			_ = fw.control(frameEnd)
		})
	case "pull":
		if !ctx.IsPost() || len(body)%fragment.NumberLen != 0 || len(body) == 0 || len(body) > maxPull*fragment.NumberLen {
			ctx.Error(fmt.Sprintf("pull is a POST of 1 to %d fragment numbers of 14 bytes", maxPull), http.StatusBadRequest)
			return
		}
		if p.pull == nil {
			ctx.Error("this node does not pull from peers", http.StatusServiceUnavailable)
			return
		}
		nums := make([]fragment.Number, len(body)/fragment.NumberLen)
		for i := range nums {
			copy(nums[i][:], body[i*fragment.NumberLen:])
		}
		pctx, cancel := context.WithTimeout(life, peerRequestTimeout)
		defer cancel()
		if err := p.pull(pctx, node, info.Name, nums); err != nil {
			ctx.Error(err.Error(), http.StatusConflict)
			return
		}
		ctx.SetBodyString("ok")
	case "tail":
		origin, err := strconv.ParseUint(string(args.Peek("origin")), 10, 16)
		if err != nil {
			ctx.Error("bad origin", http.StatusBadRequest)
			return
		}
		cur, err := p.eng.OpenCursor(ref, engine.Start{Kind: engine.StartAfter, Number: after})
		if err != nil {
			ctx.Error(err.Error(), http.StatusNotFound)
			return
		}
		ctx.SetContentType("application/octet-stream")
		p.log.Debug("peer tail", "peer", node, "stream", info.Name, "after", after.String())
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			p.tail(life, cur, uint16(origin), &frameWriter{w: w})
		})
	default:
		ctx.Error("no such peer operation", http.StatusNotFound)
	}
}

// tail sends, in number order, the stream's fragments numbered by origin
// after the cursor's start, then live ones as they arrive, until the peer
// goes away or life ends. Fragments of other origins are skipped: each
// node tails each peer for what that peer ingested, so nothing echoes
// back; gaps are anti-entropy's (replicator.go).
func (p *PeerServer) tail(life context.Context, cur *engine.Cursor, origin uint16, fw *frameWriter) {
	for {
		f, err := cur.Next(life, p.keepalive)
		switch {
		case errors.Is(err, engine.ErrIdle):
			if fw.control(frameKeepalive) != nil {
				return
			}
			continue
		case err != nil:
			_ = fw.control(frameEnd)
			return
		}
		if f.Meta.Number.Node() != origin {
			f.Release()
			continue
		}
		err = fw.fragment(f)
		f.Release()
		if err == nil {
			err = fw.w.Flush()
		}
		if err != nil {
			return
		}
	}
}
