package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
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

// Owns is the camera gate (ingest.Gate): whether this node records the
// stream's camera now. recording says whether it does.
//
//   - Without quorum, or kept out, it does not (a box cut off from the
//     majority stops at once).
//   - The stream's home records while the other boxes hear it (heard):
//     each is asked to reach this box's API back, so a box that can send
//     but not receive (a one-way cut, whose gossip flaps) neither keeps
//     nor takes back its cameras while its peers cannot see what it
//     records.
//   - Make before break: a box that records a camera whose home is back
//     (it covered for it) goes on recording, handBack true, until the
//     home's first fragment is copied here (it holds the stream, so it
//     tails the home; ingest/output.go drops its own fragments from that
//     fragment's producer time on, then stops). A box that does not hold
//     the stream cannot see that fragment: it goes on for the settle time
//     after the home's return, then stops.
func (c *Cluster) Owns(stream string, recording bool) (record, handBack bool, why string) {
	if why := c.KeptOut(); why != "" {
		c.logKeptOut(why)
		return false, false, why
	}
	if !c.HasQuorum() {
		if !c.joined.Load() {
			return false, false, "this node has not reached any of its seeds yet"
		}
		return false, false, "this node does not see half of the cluster"
	}
	factor := 1
	if c.repl != nil {
		if info, err := c.repl.eng.Stream(engine.StreamRef{Name: stream}); err == nil {
			factor = c.repl.factor(info)
		}
	}
	pl := c.Placement(stream, factor)
	home := ""
	if len(pl) > 0 {
		home = pl[0].Name
	}
	c.quorumMu.Lock()
	since, covering := c.handBackSince[stream]
	if len(pl) > 0 && pl[0].Self || !recording {
		delete(c.handBackSince, stream)
	} else if !covering {
		since = time.Now()
		c.handBackSince[stream] = since
	}
	c.quorumMu.Unlock()
	if len(pl) == 0 || !pl[0].Self {
		if !recording {
			return false, false, "recorded by its home node " + home
		}
		if slices.ContainsFunc(pl, func(m status.Member) bool { return m.Self }) {
			return true, true, "handing the camera back to its home node " + home + ": recording until its first fragment arrives here"
		}
		if c.repl != nil && time.Since(since) < c.repl.opts.Settle {
			return true, false, "handing the camera back to its home node " + home + " (this node does not hold the stream: stopping after the settle time)"
		}
		return false, false, "recorded by its home node " + home
	}
	// Recording or not, the home records only while the other boxes hear
	// it. Quorum alone is not enough for one already recording: cut off
	// one way, its gossip flaps (push-pull it starts still gets answers),
	// and with three boxes it may see one peer or the other alive at every
	// look, so it would record beside the majority for the whole cut.
	if ok, why := c.heard(recording); !ok {
		return false, false, why
	}
	return true, false, ""
}

// heardFor is how long heard's answer is reused.
const heardFor = time.Second

// reachRefused begins the reach route's answer when the peer cannot
// reach the asker (peer.go).
const reachRefused = "cannot reach "

// reachTimeout bounds one reach-back (peer route reach).
const reachTimeout = 1500 * time.Millisecond

// heardAnswer is what the other alive boxes said when asked to reach this
// box back: yes (they did), no (they answered that they cannot: 503) and
// silent (no answer: the peer is down or unreachable from here).
type heardAnswer struct {
	yes        int
	no, silent []string
}

// heard reports whether the other alive boxes hear this one (peer route
// reach: each calls this box's ping route): a box that only sends — a
// one-way cut — is not heard, however its gossip flaps.
//
// Before it records (recording false), at least half of them must reach
// it back; a silent peer counts against. Once it records, it stops only
// when at least half of those that answered say they cannot reach it: a
// silent peer is most likely dead and not yet declared so (a two-box
// site whose peer lost power must not stop recording too), and a cut-off
// box still gets answers, since its own requests go out. Answers are
// reused for heardFor.
func (c *Cluster) heard(recording bool) (bool, string) {
	r := c.repl
	if r == nil {
		return true, ""
	}
	c.heardMu.Lock()
	defer c.heardMu.Unlock()
	if time.Since(c.heardAt) >= heardFor {
		c.heardLast = c.askReach(r)
		c.heardAt = time.Now()
	}
	a := c.heardLast
	if recording {
		if answered := a.yes + len(a.no); answered > 0 && a.yes*2 < answered {
			return false, "the other boxes do not reach this one (" + strings.Join(a.no, ", ") + "): not recording until they do"
		}
		return true, ""
	}
	if total := a.yes + len(a.no) + len(a.silent); a.yes*2 < total {
		return false, "the other boxes do not reach this one (" + strings.Join(append(slices.Clone(a.no), a.silent...), ", ") + "): not recording until they do"
	}
	return true, ""
}

// askReach asks every other alive box to reach this one back.
func (c *Cluster) askReach(r *Replicator) heardAnswer {
	peers := r.peers()
	var wg sync.WaitGroup
	errs := make([]error, len(peers))
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.ctx, 2*reachTimeout)
			defer cancel()
			resp, err := r.do(ctx, p, http.MethodGet, "reach", url.Values{"node": {c.Name()}}, nil)
			if err == nil {
				resp.Body.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	var a heardAnswer
	for i, err := range errs {
		var se *peerStatusError
		switch {
		case err == nil:
			a.yes++
		case errors.As(err, &se) && se.code == http.StatusServiceUnavailable && strings.HasPrefix(se.msg, reachRefused):
			// The peer route's own answer, not any 503 (a peer whose
			// connection cap is full answers 503 too).
			a.no = append(a.no, peers[i].Name)
			c.opts.Logger.Debug("a peer does not reach this box", "peer", peers[i].Name, "err", err)
		default:
			a.silent = append(a.silent, peers[i].Name)
			c.opts.Logger.Debug("a peer did not answer whether it reaches this box", "peer", peers[i].Name, "err", err)
		}
	}
	return a
}

// reachBack checks that this node reaches node's API (its ping route),
// for node's heard.
func (c *Cluster) reachBack(ctx context.Context, node string) error {
	r := c.repl
	for _, m := range c.Members() {
		if m.Name != node {
			continue
		}
		if m.Status != "alive" || m.APIURL == "" {
			return fmt.Errorf("%s is %s here", node, m.Status)
		}
		ctx, cancel := context.WithTimeout(ctx, reachTimeout)
		defer cancel()
		resp, err := r.do(ctx, m, http.MethodGet, "ping", nil, nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	return fmt.Errorf("%s is not a member here", node)
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
