package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
)

// TagReplicationFactor is the stream tag that sets how many nodes hold a
// stream (its home and replicas); without it, ReplicationOptions.Factor.
const TagReplicationFactor = "kvsedge:replication-factor"

// ReplicationOptions configures replication.
type ReplicationOptions struct {
	Engine *engine.Engine
	// Key authenticates node-to-node requests (PeerKey of the gossip
	// key); without it nothing is replicated.
	Key []byte
	// TLS is used to reach peers whose API is HTTPS (trust the site's CA).
	TLS *tls.Config
	// Factor is the default number of nodes holding a stream (default 2;
	// fewer when fewer nodes are alive).
	Factor int
	// AntiEntropy is how often each held stream is compared with each of
	// its other holders (default 10 s); every FullCompare (default 5 min),
	// and after a membership change, the comparison covers the whole
	// archive instead of what is newer than the last one.
	AntiEntropy, FullCompare time.Duration
	// Registry is how often peers' stream records are copied (default 2 s).
	Registry time.Duration
	// Settle is how long a node that recorded a camera for its home, and
	// does not hold the stream (so it cannot see the home's first
	// fragment), goes on recording after the home is back (default 10 s;
	// 3 s with fast failure detection): make before break without the
	// hand-over signal (view.go, Owns).
	Settle time.Duration
	// Durability is the default of streams without the kvsedge:durability
	// tag: DurabilityReplicated, DurabilityLocal, or "" (replicated when
	// the cluster has two boxes or more). AckTimeout bounds how long a
	// PERSISTED ack waits for a replica before the stream falls back to
	// local acks (default 3 s). durability.go.
	Durability string
	AckTimeout time.Duration
	// DropAfter is how long a node stays outside a stream's placement
	// before it deletes its copy (default 1 min; cleanup.go).
	DropAfter time.Duration
	// newerRetry is how long a peer that speaks a newer node-to-node
	// protocol is skipped before it is tried again (default
	// newerPeerRetry; tests shorten it).
	newerRetry time.Duration
	// dropRetry is how long a copy found not yet covered waits for its
	// next look (default dropRetry; tests shorten it; cleanup.go).
	dropRetry time.Duration
}

// newerPeerRetry is how long a peer whose frames this node cannot read
// (ErrFrameVersion) is left alone: neither tailed nor compared with.
// After it, the peer is tried again (it may have been rolled back, or
// answer this node's version now).
const newerPeerRetry = time.Minute

// Replicator copies what this node should hold from its peers: stream
// records and tombstones from every peer, and for each stream this node
// holds (its placement), the fragments each other holder ingested (a
// continuous tail, in order) plus whatever anti-entropy finds missing.
// Every node pulls; nothing is pushed, so a node that was away catches up
// by itself.
type Replicator struct {
	c      *Cluster
	eng    *engine.Engine
	opts   ReplicationOptions
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	tails   map[tailKey]context.CancelFunc
	streams map[string]*streamRepl
	fullDue bool
	// newer: peers that sent frames of a newer protocol, and until when
	// they are skipped; newerLogged: the refusal last logged per peer, so
	// that each is logged once, not at every retry.
	newer       map[string]time.Time
	newerLogged map[string]string
	// dur is the AckGate (durability.go); reporters send durable reports
	// to the peers whose fragments this node imports, by peer name.
	dur       *durability
	reporters map[string]*reporter
	// outside: since when this node has been outside each stream's
	// placement; dropped: the newest number of a copy it deleted
	// (cleanup.go).
	outside map[string]time.Time
	dropped map[string]fragment.Number
	// dropNext: when a copy found not yet covered is looked at again.
	dropNext map[string]time.Time
}

type tailKey struct{ stream, peer string }

// streamRepl is what this node knows of one stream's replication.
type streamRepl struct {
	// lags are the newest tail lags (ms from complete on the sender to
	// durable here).
	lags          []int64
	lagNext       int
	imported      uint64
	importedBytes uint64
	// missing: fragments the last comparison found on peers and not here
	// (before fetching them).
	missing int
	// under: fragments held here that another holder lacked at the last
	// comparison (under-replicated, or on their way).
	under int
	// synced: peers the last comparison with succeeded, and the number
	// up to which it went; synced2 the one before. Incremental comparisons
	// start from synced2: a peer may store fragments numbered below its
	// newest one for a moment after it copied them (a camera handing its
	// stream back stores the fragments it held, ingest/output.go).
	synced, synced2 map[string]fragment.Number
	lastSync        time.Time
}

const lagSamples = 512

// StartReplication starts copying from peers until Close.
func (c *Cluster) StartReplication(o ReplicationOptions) *Replicator {
	if o.Factor <= 0 {
		o.Factor = 2
	}
	if o.AntiEntropy <= 0 {
		o.AntiEntropy = 10 * time.Second
	}
	if o.FullCompare <= 0 {
		o.FullCompare = 5 * time.Minute
	}
	if o.Registry <= 0 {
		o.Registry = 2 * time.Second
	}
	if o.Settle <= 0 {
		o.Settle = 10 * time.Second
		if c.opts.FastFailureDetection {
			o.Settle = 3 * time.Second
		}
	}
	if o.DropAfter <= 0 {
		o.DropAfter = time.Minute
	}
	if o.dropRetry <= 0 {
		o.dropRetry = dropRetry
	}
	if o.newerRetry <= 0 {
		o.newerRetry = newerPeerRetry
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = o.TLS
	tr.ResponseHeaderTimeout = 10 * time.Second
	tr.MaxIdleConnsPerHost = 16
	r := &Replicator{c: c, eng: o.Engine, opts: o, client: &http.Client{Transport: tr},
		tails: map[tailKey]context.CancelFunc{}, streams: map[string]*streamRepl{}, fullDue: true,
		newer: map[string]time.Time{}, newerLogged: map[string]string{}, reporters: map[string]*reporter{},
		outside: map[string]time.Time{}, dropped: map[string]fragment.Number{}, dropNext: map[string]time.Time{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.dur = newDurability(r)
	c.repl = r
	c.peer = NewPeerServer(o.Engine, o.Key, c.opts.Logger)
	c.peer.durable = r.dur.confirm
	c.peer.reach = c.reachBack
	c.peer.pull = r.pullFrom
	r.wg.Add(3)
	go r.run()
	go r.antiEntropyLoop()
	go func() { defer r.wg.Done(); r.dur.run(r.ctx) }()
	return r
}

// Close stops replication and waits for its goroutines.
func (r *Replicator) Close() {
	r.cancel()
	r.wg.Wait()
}

// factor is the stream's replication factor.
func (r *Replicator) factor(info *engine.StreamInfo) int {
	if v, ok := info.Tags[TagReplicationFactor]; ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 && n <= 16 {
			return n
		}
	}
	return r.opts.Factor
}

// placement is the stream's holders, home first.
func (r *Replicator) placement(info *engine.StreamInfo) []status.Member {
	return r.c.Placement(info.Name, r.factor(info))
}

func (r *Replicator) run() {
	defer r.wg.Done()
	changes := r.c.Subscribe()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastRegistry time.Time
	for {
		if time.Since(lastRegistry) >= r.opts.Registry {
			r.syncRegistry()
			lastRegistry = time.Now()
		}
		r.reconcileTails()
		select {
		case <-r.ctx.Done():
			r.mu.Lock()
			for k, stop := range r.tails {
				stop()
				delete(r.tails, k)
			}
			r.mu.Unlock()
			return
		case <-changes:
			r.mu.Lock()
			r.fullDue = true
			for _, st := range r.streams {
				clear(st.synced)
				clear(st.synced2)
			}
			// A peer that restarted may speak this node's version again.
			clear(r.newer)
			r.mu.Unlock()
			lastRegistry = time.Time{}
		case <-tick.C:
		case <-r.eng.Changes():
		}
	}
}

// peers are the alive members other than this node.
func (r *Replicator) peers() []status.Member {
	var out []status.Member
	for _, m := range r.c.Members() {
		if !m.Self && m.Status == "alive" && m.APIURL != "" && !m.Witness && !m.KeptOut {
			out = append(out, m)
		}
	}
	return out
}

// syncRegistry copies every peer's stream records and tombstones.
func (r *Replicator) syncRegistry() {
	for _, p := range r.peers() {
		var reg Registry
		if err := r.getJSON(p, "registry", nil, &reg); err != nil {
			r.c.opts.Logger.Debug("copying a peer's streams", "peer", p.Name, "err", err)
			continue
		}
		for arn, ms := range reg.Tombstones {
			if err := r.eng.ImportTombstone(arn, ms); err != nil {
				r.c.opts.Logger.Warn("applying a peer's stream deletion", "peer", p.Name, "arn", arn, "err", err)
			}
		}
		for _, info := range reg.Streams {
			if _, err := r.eng.ImportStream(info); err != nil && !errors.Is(err, engine.ErrStreamExists) {
				r.c.opts.Logger.Warn("copying a peer's stream", "peer", p.Name, "stream", info.Name, "err", err)
			} else if err != nil {
				r.c.opts.Logger.Debug("stream name conflict", "peer", p.Name, "err", err)
			}
		}
	}
}

// held returns the streams this node holds (it is in their placement and
// they keep media), with their other holders.
func (r *Replicator) held() map[string][]status.Member {
	out := map[string][]status.Member{}
	for _, info := range r.eng.Streams() {
		if info.DataRetentionInHours == 0 {
			continue
		}
		pl := r.placement(info)
		if !slices.ContainsFunc(pl, func(m status.Member) bool { return m.Self }) {
			continue
		}
		others := []status.Member{}
		for _, m := range pl {
			if !m.Self {
				others = append(others, m)
			}
		}
		out[info.Name] = others
	}
	return out
}

// reconcileTails runs one tail per (held stream, other holder).
func (r *Replicator) reconcileTails() {
	want := map[tailKey]status.Member{}
	for name, others := range r.held() {
		for _, m := range others {
			want[tailKey{name, m.Name}] = m
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, stop := range r.tails {
		if _, ok := want[k]; !ok {
			stop()
			delete(r.tails, k)
		}
	}
	for k, m := range want {
		if _, ok := r.tails[k]; ok {
			continue
		}
		ctx, stop := context.WithCancel(r.ctx)
		r.tails[k] = stop
		r.wg.Add(1)
		go r.tail(ctx, k.stream, m)
	}
}

func (r *Replicator) state(stream string) *streamRepl {
	st := r.streams[stream]
	if st == nil {
		st = &streamRepl{synced: map[string]fragment.Number{}, synced2: map[string]fragment.Number{}}
		r.streams[stream] = st
	}
	return st
}

// noteNewer records that peer sent frames of a protocol newer than this
// node's (err wraps ErrFrameVersion): it is skipped, neither tailed nor
// compared with, for newerRetry. Each distinct refusal is logged once per
// peer, however often the retries meet it again; replication with the
// other peers goes on.
func (r *Replicator) noteNewer(peer status.Member, err error) {
	r.mu.Lock()
	r.newer[peer.Name] = time.Now().Add(r.opts.newerRetry)
	first := r.newerLogged[peer.Name] != err.Error()
	r.newerLogged[peer.Name] = err.Error()
	r.mu.Unlock()
	if first {
		r.c.opts.Logger.Warn("a peer speaks a newer node-to-node protocol: not replicating from it until this node is upgraded",
			"peer", peer.Name, "retry_in", r.opts.newerRetry.String(), "err", err)
	}
}

// skippedLocked reports whether peer is being skipped for speaking a
// newer protocol (noteNewer); r.mu is held.
func (r *Replicator) skippedLocked(peer string) bool {
	until, ok := r.newer[peer]
	if ok && !time.Now().Before(until) {
		delete(r.newer, peer)
		return false
	}
	return ok
}

// tailIdle ends a tail connection that sent nothing, not even a
// keepalive, for this long (a peer that vanished without a reset).
const tailIdle = 10 * time.Second

// tail follows what peer ingests into stream, importing each fragment as
// it arrives, and reconnects until ctx ends.
func (r *Replicator) tail(ctx context.Context, stream string, peer status.Member) {
	defer r.wg.Done()
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		n, err := r.tailOnce(ctx, stream, peer)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, ErrFrameVersion) {
			// The peer is skipped: try it again when that ends.
			r.noteNewer(peer, err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.opts.newerRetry):
			}
			continue
		}
		if n > 0 {
			backoff = 200 * time.Millisecond
		}
		r.c.opts.Logger.Debug("replication tail ended", "stream", stream, "peer", peer.Name, "fragments", n, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (r *Replicator) tailOnce(ctx context.Context, stream string, peer status.Member) (int, error) {
	ref, err := r.ref(stream)
	if err != nil {
		return 0, err
	}
	after, err := r.eng.LastFragmentNumber(ref)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := url.Values{"stream": {stream}, "arn": {ref.ARN}, "after": {after.String()}, "origin": {strconv.Itoa(int(peer.NodeID))},
		framesParam: {strconv.Itoa(frameVersion)}}
	resp, err := r.do(ctx, peer, http.MethodGet, "tail", q, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	idle := time.AfterFunc(tailIdle, cancel)
	defer idle.Stop()
	fr := &frameReader{r: bufio.NewReaderSize(&idleReader{r: resp.Body, t: idle}, 64<<10), mem: r.eng.Media()}
	n := 0
	for {
		m, hdr, media, err := fr.next()
		if err != nil {
			return n, err
		}
		stored, err := r.eng.ImportFragment(ref, m, hdr, media)
		if err != nil {
			return n, err
		}
		// Durable here (new or held before): tell its home, whose
		// PERSISTED may wait for it (durability.go).
		r.reportDurable(peer, ref.ARN, m.Number)
		n++
		if stored {
			// From complete on the sender to durable here (the two
			// clocks must agree, as for any NVR cluster: NTP).
			lag := max(0, time.Now().UnixMilli()-fr.receivedMs)
			r.mu.Lock()
			st := r.state(stream)
			if len(st.lags) < lagSamples {
				st.lags = append(st.lags, lag)
			} else {
				st.lags[st.lagNext] = lag
				st.lagNext = (st.lagNext + 1) % lagSamples
			}
			st.imported++
			st.importedBytes += uint64(len(media))
			r.mu.Unlock()
		}
	}
}

// idleReader resets an idle timer on every read that returns data.
type idleReader struct {
	r io.Reader
	t *time.Timer
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.t.Reset(tailIdle)
	}
	return n, err
}

func (r *Replicator) antiEntropyLoop() {
	defer r.wg.Done()
	lastFull := time.Time{}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastRound time.Time
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		full := r.fullDue || time.Since(lastFull) >= r.opts.FullCompare
		r.fullDue = false
		r.mu.Unlock()
		if !full && time.Since(lastRound) < r.opts.AntiEntropy {
			continue
		}
		r.antiEntropy(full)
		r.dropCopies()
		lastRound = time.Now()
		if full {
			lastFull = lastRound
		}
	}
}

// antiEntropy compares every held stream with each of its other holders
// and fetches what this node lacks. A full round compares whole archives;
// others only what is newer than the previous comparison.
func (r *Replicator) antiEntropy(full bool) {
	for stream, others := range r.held() {
		missing, ok := 0, true
		under := map[fragment.Number]struct{}{}
		for _, p := range others {
			r.mu.Lock()
			_, synced := r.state(stream).synced[p.Name]
			from := r.state(stream).synced2[p.Name]
			skipped := r.skippedLocked(p.Name)
			r.mu.Unlock()
			if skipped {
				ok = false
				continue
			}
			if full || !synced {
				from = fragment.Number{}
			}
			n, upTo, absent, err := r.compare(stream, p, from)
			missing += n
			for _, a := range absent {
				under[a] = struct{}{}
			}
			if errors.Is(err, ErrFrameVersion) {
				r.noteNewer(p, err)
			}
			if err != nil {
				ok = false
				if r.ctx.Err() == nil {
					r.c.opts.Logger.Debug("anti-entropy", "stream", stream, "peer", p.Name, "err", err)
				}
				continue
			}
			r.mu.Lock()
			st := r.state(stream)
			st.synced2[p.Name] = st.synced[p.Name]
			if full || !synced {
				st.synced2[p.Name] = fragment.Number{}
			}
			st.synced[p.Name] = upTo
			r.mu.Unlock()
			if len(absent) == 0 {
				r.dur.caughtUp(stream, p.Name) // p holds all this node does
			}
		}
		r.mu.Lock()
		st := r.state(stream)
		st.missing = missing
		st.under = len(under)
		if ok {
			st.lastSync = time.Now()
		}
		r.mu.Unlock()
		if missing > 0 {
			r.c.opts.Logger.Info("anti-entropy copied missing fragments", "stream", stream, "fragments", missing, "full", full)
		}
	}
}

// compare lists peer's fragments of stream after `from`, fetches those
// this node lacks, and returns how many were missing here, the last number
// compared, and the numbers after `from` that this node holds and the
// peer lacks (under-replicated, including those still on their way).
func (r *Replicator) compare(stream string, peer status.Member, from fragment.Number) (int, fragment.Number, []fragment.Number, error) {
	ref, err := r.ref(stream)
	if err != nil {
		return 0, from, nil, err
	}
	missing, upTo := 0, from
	var absent []fragment.Number
	// absentBetween adds the local numbers in (lo, hi] (hi zero: no bound)
	// that are not in theirs.
	absentBetween := func(lo, hi fragment.Number, theirs map[fragment.Number]struct{}) error {
		return r.eng.FragmentNumbers(ref, lo, func(n fragment.Number) bool {
			if !hi.IsZero() && n.Compare(hi) > 0 {
				return false
			}
			if _, ok := theirs[n]; !ok {
				absent = append(absent, n)
			}
			return true
		})
	}
	for {
		q := url.Values{"stream": {stream}, "arn": {ref.ARN}, "after": {upTo.String()}, "limit": {"10000"}}
		ctx, cancel := context.WithTimeout(r.ctx, peerRequestTimeout)
		resp, err := r.do(ctx, peer, http.MethodGet, "numbers", q, nil)
		if err != nil {
			cancel()
			return missing, from, nil, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 10000*fragment.NumberLen+1))
		more := resp.Header.Get("X-Kvsedge-More") != ""
		resp.Body.Close()
		cancel()
		if err != nil {
			return missing, from, nil, err
		}
		if len(body)%fragment.NumberLen != 0 {
			return missing, from, nil, fmt.Errorf("peer sent %d bytes of fragment numbers", len(body))
		}
		var want []fragment.Number
		theirs := make(map[fragment.Number]struct{}, len(body)/fragment.NumberLen)
		pageFrom := upTo
		for i := 0; i < len(body); i += fragment.NumberLen {
			var n fragment.Number
			copy(n[:], body[i:])
			upTo = n
			theirs[n] = struct{}{}
			if has, err := r.eng.HasFragment(ref, n); err != nil {
				return missing, from, nil, err
			} else if !has {
				want = append(want, n)
			}
		}
		if len(theirs) > 0 {
			if err := absentBetween(pageFrom, upTo, theirs); err != nil {
				return missing, from, nil, err
			}
		}
		missing += len(want)
		for len(want) > 0 {
			batch := want[:min(len(want), 64)]
			want = want[len(batch):]
			if err := r.fetch(stream, peer, batch, nil); err != nil {
				return missing, from, nil, err
			}
		}
		if !more {
			// What this node holds beyond the peer's newest.
			if err := absentBetween(upTo, fragment.Number{}, nil); err != nil {
				return missing, from, nil, err
			}
			return missing, upTo, absent, nil
		}
	}
}

// pullFrom answers a peer's pull (cleanup.go): the node named node,
// outside the placement of stream, holds nums, which this node, one of
// the stream's holders, does not list; it fetches and imports them. Nil:
// each is durable here, or a copy of its frames is (ImportFragment). One
// the asker did not send (the fetch route leaves out what it cannot read,
// or no longer holds) and this node does not hold is an error: the asker
// must keep its copy.
func (r *Replicator) pullFrom(ctx context.Context, node, stream string, nums []fragment.Number) error {
	info, err := r.eng.Stream(engine.StreamRef{Name: stream})
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(r.placement(info), func(m status.Member) bool { return m.Self }) {
		return fmt.Errorf("cluster: %s does not hold %s", r.c.Name(), stream)
	}
	peers := r.peers()
	i := slices.IndexFunc(peers, func(m status.Member) bool { return m.Name == node })
	if i < 0 {
		return fmt.Errorf("cluster: %s is not an alive peer of %s", node, r.c.Name())
	}
	peer := peers[i]
	got := make(map[fragment.Number]bool, len(nums))
	for rest := nums; len(rest) > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := rest[:min(len(rest), 16)]
		rest = rest[len(batch):]
		if err := r.fetch(stream, peer, batch, func(n fragment.Number) { got[n] = true }); err != nil {
			return err
		}
	}
	ref := engine.StreamRef{ARN: info.ARN}
	for _, n := range nums {
		if got[n] {
			continue
		}
		if has, err := r.eng.HasFragment(ref, n); err != nil || !has {
			return fmt.Errorf("cluster: %s did not send %s, which %s does not hold (%v)", node, n, r.c.Name(), err)
		}
	}
	return nil
}

// fetch copies the given fragments from peer; imported (nil: ignored) is
// told each one ImportFragment took (stored, or held here already, or a
// copy of its frames is).
func (r *Replicator) fetch(stream string, peer status.Member, nums []fragment.Number, imported func(fragment.Number)) error {
	body := make([]byte, 0, len(nums)*fragment.NumberLen)
	for _, n := range nums {
		body = append(body, n[:]...)
	}
	ref, err := r.ref(stream)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.ctx, peerRequestTimeout)
	defer cancel()
	resp, err := r.do(ctx, peer, http.MethodPost, "fetch", url.Values{"stream": {stream}, "arn": {ref.ARN}, framesParam: {strconv.Itoa(frameVersion)}}, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fr := &frameReader{r: bufio.NewReaderSize(resp.Body, 64<<10), mem: r.eng.Media()}
	for {
		m, hdr, media, err := fr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		n := len(media)
		stored, err := r.eng.ImportFragment(ref, m, hdr, media)
		if err != nil {
			return err
		}
		if imported != nil {
			imported(m.Number)
		}
		if m.Number.Node() == peer.NodeID {
			r.reportDurable(peer, ref.ARN, m.Number) // lets a home that fell back catch up
		}
		if stored {
			r.mu.Lock()
			st := r.state(stream)
			st.imported++
			st.importedBytes += uint64(n)
			r.mu.Unlock()
		}
	}
}

// peerRequestTimeout bounds a listing or a fetch of up to 64 fragments
// (a peer that stops answering must not stall anti-entropy for long).
const peerRequestTimeout = 2 * time.Minute

// ref names the local stream by its ARN: peers answer only for the same
// ARN, so two streams that share a name on different nodes (created during
// a partition) never mix.
func (r *Replicator) ref(stream string) (engine.StreamRef, error) {
	info, err := r.eng.Stream(engine.StreamRef{Name: stream})
	if err != nil {
		return engine.StreamRef{}, err
	}
	return engine.StreamRef{ARN: info.ARN}, nil
}

// do sends a signed request to a peer's node-to-node path; any answer
// other than 200 is an error.
func (r *Replicator) do(ctx context.Context, peer status.Member, method, op string, q url.Values, body []byte) (*http.Response, error) {
	u := peer.APIURL + PeerPrefix + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	signPeer(req, r.opts.Key, r.c.Name(), time.Now(), body)
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, &peerStatusError{peer: peer.Name, method: method, op: op, code: resp.StatusCode, msg: string(bytes.TrimSpace(msg))}
	}
	return resp, nil
}

// peerStatusError is a peer's answer other than 200: the peer is up and
// said no (view.go's heard tells it from no answer at all).
type peerStatusError struct {
	peer, method, op string
	code             int
	msg              string
}

func (e *peerStatusError) Error() string {
	return fmt.Sprintf("peer %s: %s %s: %d %s", e.peer, e.method, e.op, e.code, e.msg)
}

func (r *Replicator) getJSON(peer status.Member, op string, q url.Values, v any) error {
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	resp, err := r.do(ctx, peer, http.MethodGet, op, q, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v)
}

// holds reports whether this node holds the stream and has compared it
// with every other holder since the last membership change (so its
// archive is whole, up to the tails' lag).
func (r *Replicator) holds(info *engine.StreamInfo) (bool, []status.Member) {
	pl := r.placement(info)
	if !slices.ContainsFunc(pl, func(m status.Member) bool { return m.Self }) {
		return false, pl
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.streams[info.Name]
	for _, m := range pl {
		if m.Self {
			continue
		}
		if st == nil {
			return false, pl
		}
		if _, ok := st.synced[m.Name]; !ok {
			return false, pl
		}
	}
	return true, pl
}

// Status reports every stream's replication state.
func (r *Replicator) Status() []status.StreamReplication {
	var out []status.StreamReplication
	for _, info := range r.eng.Streams() {
		holds, pl := r.holds(info)
		sr := status.StreamReplication{Stream: info.Name, Holds: holds, Factor: r.factor(info), Replicas: []string{}}
		r.dur.status(info.ARN, &sr)
		for i, m := range pl {
			if i == 0 {
				sr.Home = m.Name
			} else {
				sr.Replicas = append(sr.Replicas, m.Name)
			}
		}
		r.mu.Lock()
		if st := r.streams[info.Name]; st != nil {
			sr.MissingHere, sr.UnderReplicated = st.missing, st.under
			sr.Imported, sr.ImportedBytes, sr.Samples = st.imported, st.importedBytes, len(st.lags)
			if !st.lastSync.IsZero() {
				sr.LastSync = st.lastSync.UTC().Format(time.RFC3339Nano)
			}
			if len(st.lags) > 0 {
				l := slices.Clone(st.lags)
				slices.Sort(l)
				sr.LagP50Ms, sr.LagP99Ms = l[len(l)/2], l[min(len(l)-1, len(l)*99/100)]
			}
		}
		r.mu.Unlock()
		out = append(out, sr)
	}
	return out
}
