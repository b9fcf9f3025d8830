package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

// What the API server (serve.ClusterView) and the camera manager ask of
// the cluster.

// ForwardPrefix is the node-to-node route a node forwards a client's read
// to when it does not hold the stream: PeerPrefix + "forward" + the
// original path. The receiving node serves it as the original operation,
// authenticated as the peer instead of by SigV4 (the forwarding node
// checked the client's signature), and never forwards it again.
const ForwardPrefix = PeerPrefix + "forward"

// Locate returns "" when reads of stream are served here (this node is
// its home, or holds it and has compared it with the other holders, or no
// other holder is alive), else the API URL of the holder to forward them
// to (its home first).
func (c *Cluster) Locate(stream string) string {
	r := c.repl
	if r == nil {
		return ""
	}
	info, err := r.eng.Stream(engine.StreamRef{Name: stream})
	if err != nil {
		return ""
	}
	holds, pl := r.holds(info)
	if holds || len(pl) > 0 && pl[0].Self {
		// The home serves its own reads even before its comparison after
		// a change ends: it recorded or copied the stream all along,
		// while the other holder may be a new, still empty replica.
		return ""
	}
	for _, m := range pl {
		if !m.Self && m.APIURL != "" {
			return m.APIURL
		}
	}
	return ""
}

// Owns reports whether this node should record the stream's camera now:
// it is the stream's home, has quorum, and has been up long enough for
// the node that recorded it before to have stopped. why says otherwise.
func (c *Cluster) Owns(stream string) (bool, string) {
	ms := c.Members()
	c.quorumMu.Lock()
	q := c.joined.Load() && hasQuorum(ms)
	switch {
	case !q:
		c.quorumSince = time.Time{}
	case c.quorumSince.IsZero():
		c.quorumSince = time.Now()
	}
	since := c.quorumSince
	c.quorumMu.Unlock()
	if c.repl != nil && time.Since(c.started) < c.repl.opts.Settle {
		return false, "waiting for the cluster to settle after start"
	}
	if why := c.KeptOut(); why != "" {
		c.logKeptOut(why)
		return false, why
	}
	if !q {
		if !c.joined.Load() {
			return false, "this node has not reached any of its seeds yet"
		}
		return false, "this node does not see half of the cluster"
	}
	// Back from a partition, wait as after a start: the node that
	// recorded meanwhile must first see this one alive and stop.
	if c.repl != nil && time.Since(since) < c.repl.opts.Settle {
		return false, "waiting for the cluster to settle after regaining a majority"
	}
	factor := 1
	if c.repl != nil {
		if info, err := c.repl.eng.Stream(engine.StreamRef{Name: stream}); err == nil {
			factor = c.repl.factor(info)
		}
	}
	pl := c.Placement(stream, factor)
	if len(pl) == 0 || !pl[0].Self {
		home := ""
		if len(pl) > 0 {
			home = pl[0].Name
		}
		return false, "recorded by its home node " + home
	}
	return true, ""
}

// Replication is the replication state of every stream here.
func (c *Cluster) Replication() []status.StreamReplication {
	if c.repl == nil {
		return []status.StreamReplication{}
	}
	return c.repl.Status()
}

// ServePeer serves a request under PeerPrefix (other than forwards).
func (c *Cluster) ServePeer(ctx *fasthttp.RequestCtx, life context.Context) {
	if c.peer == nil {
		ctx.Error("replication is off on this node", http.StatusForbidden)
		return
	}
	c.peer.Serve(ctx, life)
}

// VerifyPeer checks a forwarded request's peer signature over its body.
func (c *Cluster) VerifyPeer(method, requestURI, header string, body []byte) error {
	if c.repl == nil {
		return errors.New("replication is off on this node")
	}
	_, err := verifyPeer(c.repl.opts.Key, method, requestURI, header, body, time.Now())
	return err
}

// Forward sends a client's request body to another node's ForwardPrefix
// route for path; the caller relays the response.
func (c *Cluster) Forward(ctx context.Context, base, path string, body []byte) (*http.Response, error) {
	r := c.repl
	if r == nil {
		return nil, errors.New("replication is off on this node")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+ForwardPrefix+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	signPeer(req, r.opts.Key, c.Name(), time.Now(), body)
	return r.client.Do(req)
}

// logKeptOut logs why the box is kept out, at most once a minute.
func (c *Cluster) logKeptOut(why string) {
	now := time.Now().UnixNano()
	if last := c.keptOutLogged.Load(); now-last < int64(time.Minute) || !c.keptOutLogged.CompareAndSwap(last, now) {
		return
	}
	c.opts.Logger.Error("kept out of the cluster", "why", why)
}
