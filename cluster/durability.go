package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

// Replicated durability: PERSISTED means durable on two boxes.
//
// The home (the node that ingested a fragment) acknowledges a fragment
// PERSISTED only once it is durable here and a replica reported it durable
// there. Replication stays pull-based: a replica imports the fragment from
// its tail of the home (replicator.go), and right after ImportFragment
// returned (segment synced, index batch synced) it POSTs the fragment's
// number to the home's durable route (FORMAT.md "Durable reports"). The
// engine's AckGate (engine/ackgate.go) is this file's durability: Persist
// calls Durable, the PutMedia ack path waits on Ready.
//
// Order of syncs for one fragment, and what a crash at each step leaves:
//
//  1. Home: the fragment is in the ring; the tail may send it to the
//     replica before the home's own sync. Crash (or disk death) of the
//     home: no PERSISTED was sent; the producer re-sends the fragment to
//     the new home.
//  2. Replica: ImportFragment syncs the segment, then the index batch.
//     Crash before: the replica has nothing; the home's PERSISTED waits.
//  3. Replica: POST durable to the home. Lost (crash, network): the
//     home's wait ends at its bound and the stream falls back to local
//     acks (said in /readyz, /metrics, the log, kvsedge replication); the
//     fragment is on both boxes anyway.
//  4. Home: Persist syncs the segment and the index batch (steps 2-3 may
//     come before or after: a report that arrives first is kept and
//     matched when Persist ends).
//  5. Home: PERSISTED once 3 and 4 are done. From here the fragment is on
//     two disks: losing either box loses nothing acknowledged. Crash of
//     the home after 4 but before the ack: the producer re-sends; the
//     copy is recognised (on the home, or on the replica that took over).
//
// Fallback: a stream whose replica does not confirm within AckTimeout
// (default 3 s), or that has no replica alive, acknowledges on local
// durability alone until a replica caught up: it reports the newest
// fragment the home made durable, or reports fragments within half the
// bound of their being durable here (a replica lagging more than one
// fragment's duration never holds the newest while the stream records), or
// — the stream idle — a comparison finds it holds every fragment. Then
// acks wait for replicas again. Camera
// fragments (no acks) go through the same accounting without anyone
// waiting.

// TagDurability is the stream tag that chooses when PERSISTED is sent:
// DurabilityReplicated or DurabilityLocal; without it,
// ReplicationOptions.Durability, else replicated when the cluster has two
// boxes or more (witnesses do not count).
const TagDurability = "kvsedge:durability"

// Durability values.
const (
	DurabilityReplicated = "replicated"
	DurabilityLocal      = "local"
)

// Ack outcomes, as counted per stream.
const (
	ackReplicated = iota // a replica confirmed within the bound
	ackLocal             // local durability was asked for
	ackFallback          // replicated was asked for; acknowledged on local durability alone
)

// durability is the AckGate of this node (engine.AckGate).
type durability struct {
	r       *Replicator
	timeout time.Duration
	def     string
	log     func(msg string, args ...any)
	warn    func(msg string, args ...any)

	mu      sync.Mutex
	streams map[string]*streamDur // by ARN
}

// streamDur is one stream's durability state on its home.
type streamDur struct {
	name    string
	mode    string
	pending []*pendingAck // in the order Durable was called
	// early: numbers a replica reported before Persist ended here.
	early []fragment.Number
	// fallback: acks are local only, since `since`, because of why.
	fallback bool
	why      string
	since    time.Time
	// newest: the newest fragment Durable saw; confirmed: the newest a
	// replica reported, and by whom.
	newest, confirmed fragment.Number
	confirmedBy       string
	lastDurable       time.Time
	// recent: the newest fragments made durable here, and when (for the
	// lag of a replica's report while the stream falls back).
	recent     [maxEarly]recentDur
	recentNext int
	acks       [3]uint64
	// waits: ms from durable here to a replica's report (newest samples).
	waits    []int64
	waitNext int
}

type recentDur struct {
	n  fragment.Number
	at time.Time
}

type pendingAck struct {
	n     fragment.Number
	ready chan struct{}
	at    time.Time
}

const (
	maxEarly          = 64
	defaultAckTimeout = 3 * time.Second
)

func newDurability(r *Replicator) *durability {
	d := &durability{r: r, timeout: r.opts.AckTimeout, def: r.opts.Durability, streams: map[string]*streamDur{},
		log: r.c.opts.Logger.Info, warn: r.c.opts.Logger.Warn}
	if d.timeout <= 0 {
		d.timeout = defaultAckTimeout
	}
	return d
}

// AckGate is the hook the app gives the engine (Engine.SetAckGate): PERSISTED
// waits on it for a replica's confirmation.
func (c *Cluster) AckGate() engine.AckGate {
	if c.repl == nil {
		return nil
	}
	return c.repl.dur
}

// modeOf is the durability the stream asks for.
func (d *durability) modeOf(info *engine.StreamInfo) string {
	switch v := info.Tags[TagDurability]; v {
	case DurabilityReplicated, DurabilityLocal:
		return v
	}
	if d.def == DurabilityReplicated || d.def == DurabilityLocal {
		return d.def
	}
	boxes := 0
	for _, m := range d.r.c.Members() {
		if !m.Witness && !m.KeptOut && m.Status != "left" {
			boxes++
		}
	}
	if boxes >= 2 {
		return DurabilityReplicated
	}
	return DurabilityLocal
}

// noReplica says why the stream has no replica to wait for ("" when it has).
func (d *durability) noReplica(info *engine.StreamInfo) string {
	if d.r.factor(info) < 2 {
		return ""
	}
	pl := d.r.placement(info)
	if !slices.ContainsFunc(pl, func(m status.Member) bool { return m.Self }) {
		return "this box is not one of the stream's holders (send PutMedia to its GetDataEndpoint), so no replica copies from it"
	}
	if len(pl) < 2 {
		return "no replica is alive"
	}
	return ""
}

func (d *durability) stream(arn, name string) *streamDur {
	st := d.streams[arn]
	if st == nil {
		st = &streamDur{name: name}
		d.streams[arn] = st
	}
	if name != "" {
		st.name = name
	}
	return st
}

// Durable implements engine.AckGate.
func (d *durability) Durable(info *engine.StreamInfo, n fragment.Number) {
	mode := d.modeOf(info)
	if mode == DurabilityReplicated && d.r.factor(info) < 2 {
		mode = DurabilityLocal // replication factor 1: nothing to wait for
	}
	var noRepl string
	if mode == DurabilityReplicated {
		noRepl = d.noReplica(info)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stream(info.ARN, info.Name)
	now := time.Now()
	st.mode, st.lastDurable = mode, now
	if n.Compare(st.newest) > 0 {
		st.newest = n
	}
	st.recent[st.recentNext] = recentDur{n, now}
	st.recentNext = (st.recentNext + 1) % maxEarly
	switch {
	case mode == DurabilityLocal:
		if st.fallback {
			d.leaveFallbackLocked(st, "the stream asks for local durability")
		}
		st.acks[ackLocal]++
		return
	case d.r.ctx.Err() != nil:
		st.acks[ackFallback]++ // replication stopped (shutdown)
		return
	case noRepl != "":
		d.fallBackLocked(st, noRepl)
		st.acks[ackFallback]++
		return
	case st.fallback:
		st.acks[ackFallback]++
		return
	}
	if i := slices.Index(st.early, n); i >= 0 {
		st.early = slices.Delete(st.early, i, i+1)
		st.acks[ackReplicated]++
		st.sample(0)
		return
	}
	st.pending = append(st.pending, &pendingAck{n: n, ready: make(chan struct{}), at: time.Now()})
}

// Ready implements engine.AckGate.
func (d *durability) Ready(arn string, n fragment.Number) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if st := d.streams[arn]; st != nil {
		for _, p := range st.pending {
			if p.n == n {
				return p.ready
			}
		}
	}
	return closedCh
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// confirm takes a replica's report that it holds these fragments of the
// stream durably.
func (d *durability) confirm(node, arn string, nums []fragment.Number) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stream(arn, "")
	now := time.Now()
	caughtUp := false
	for _, n := range nums {
		if n.Compare(st.confirmed) > 0 {
			st.confirmed, st.confirmedBy = n, node
		}
		if st.fallback {
			// Caught up: the replica holds the newest fragment, or
			// reports fragments well within the bound of their being
			// durable here (a replica whose lag exceeds a fragment's
			// duration never holds the newest while the stream records).
			for _, r := range st.recent {
				if r.n == n && now.Sub(r.at) < d.timeout/2 {
					caughtUp = true
				}
			}
		}
		i := slices.IndexFunc(st.pending, func(p *pendingAck) bool { return p.n == n })
		if i < 0 {
			// Reported before Persist ended here (the tail sends from
			// the ring), or after the wait ended: kept for Durable, the
			// newest maxEarly only.
			if len(st.early) == maxEarly {
				st.early = slices.Delete(st.early, 0, 1)
			}
			st.early = append(st.early, n)
			continue
		}
		p := st.pending[i]
		st.pending = slices.Delete(st.pending, i, i+1)
		close(p.ready)
		st.acks[ackReplicated]++
		st.sample(now.Sub(p.at).Milliseconds())
	}
	if st.fallback && (caughtUp || !st.newest.IsZero() && st.confirmed.Compare(st.newest) >= 0) {
		d.leaveFallbackLocked(st, "replica "+node+" caught up")
	}
}

// caughtUp takes a comparison's finding that peer holds every fragment of
// the stream (by name) that this node holds: a stream that fell back and
// has been idle since (no fragment to report, which would bring it back)
// waits for replicas again. An active stream comes back by reports only,
// so that a replica slower than the bound does not make it flap.
func (d *durability) caughtUp(name, peer string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, st := range d.streams {
		if st.name == name && st.fallback && st.mode == DurabilityReplicated && time.Since(st.lastDurable) > 2*d.timeout &&
			!strings.HasPrefix(st.why, "this box is not") {
			d.leaveFallbackLocked(st, "the comparison with replica "+peer+" found it holds every fragment")
		}
	}
}

func (st *streamDur) sample(ms int64) {
	if len(st.waits) < lagSamples {
		st.waits = append(st.waits, ms)
		return
	}
	st.waits[st.waitNext] = ms
	st.waitNext = (st.waitNext + 1) % lagSamples
}

// fallBackLocked makes the stream acknowledge on local durability alone
// and releases every fragment waiting (counted as fallback).
func (d *durability) fallBackLocked(st *streamDur, why string) {
	for _, p := range st.pending {
		close(p.ready)
		st.acks[ackFallback]++
	}
	st.pending = st.pending[:0]
	if st.fallback {
		st.why = why
		return
	}
	st.fallback, st.why, st.since = true, why, time.Now()
	d.warn("PERSISTED acks fall back to local durability: a box whose disk dies now loses what it acknowledged and had not replicated",
		"stream", st.name, "why", why)
}

func (d *durability) leaveFallbackLocked(st *streamDur, why string) {
	st.fallback, st.why = false, ""
	d.log("PERSISTED acks wait for a replica again", "stream", st.name, "why", why,
		"local_only_for", time.Since(st.since).Round(time.Millisecond).String())
}

// run ends waits that outlast the timeout (the stream falls back), and
// ends them at once when no replica is alive any more.
func (d *durability) run(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			for _, st := range d.streams {
				for _, p := range st.pending {
					close(p.ready)
					st.acks[ackFallback]++
				}
				st.pending = nil
			}
			d.mu.Unlock()
			return
		case <-t.C:
		}
		if time.Since(lastPrune) > time.Minute {
			lastPrune = time.Now()
			d.prune()
		}
		d.mu.Lock()
		var check []string
		now := time.Now()
		for arn, st := range d.streams {
			if len(st.pending) == 0 {
				continue
			}
			if age := now.Sub(st.pending[0].at); age >= d.timeout {
				d.fallBackLocked(st, fmt.Sprintf("no replica confirmed fragment %s within %v", st.pending[0].n, d.timeout))
			} else if age >= 200*time.Millisecond {
				check = append(check, arn)
			}
		}
		d.mu.Unlock()
		// A replica that died is dropped from the placement within about
		// a second (fast failure detection): no need to wait the bound.
		for _, arn := range check {
			info, err := d.r.eng.Stream(engine.StreamRef{ARN: arn})
			if err != nil {
				continue
			}
			if why := d.noReplica(info); why != "" {
				d.mu.Lock()
				if st := d.streams[arn]; st != nil && len(st.pending) > 0 {
					d.fallBackLocked(st, why)
				}
				d.mu.Unlock()
			}
		}
	}
}

// prune forgets streams that are gone (deleted) and have nothing pending.
func (d *durability) prune() {
	d.mu.Lock()
	var arns []string
	for arn, st := range d.streams {
		if len(st.pending) == 0 {
			arns = append(arns, arn)
		}
	}
	d.mu.Unlock()
	for _, arn := range arns {
		if _, err := d.r.eng.Stream(engine.StreamRef{ARN: arn}); errors.Is(err, engine.ErrStreamNotFound) {
			d.mu.Lock()
			if st := d.streams[arn]; st != nil && len(st.pending) == 0 {
				delete(d.streams, arn)
			}
			d.mu.Unlock()
		}
	}
}

// status fills the durability fields of a stream's replication state.
func (d *durability) status(arn string, sr *status.StreamReplication) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.streams[arn]
	if st == nil {
		return
	}
	sr.Durability = st.mode
	sr.AcksReplicated, sr.AcksLocal, sr.AcksFallback = st.acks[ackReplicated], st.acks[ackLocal], st.acks[ackFallback]
	if st.fallback {
		sr.LocalAcksSince = st.since.UTC().Format(time.RFC3339Nano)
		sr.LocalAcksWhy = st.why
	}
	if !st.confirmed.IsZero() {
		sr.ConfirmedThrough, sr.ConfirmedBy = st.confirmed.String(), st.confirmedBy
	}
	if len(st.waits) > 0 {
		w := slices.Clone(st.waits)
		slices.Sort(w)
		sr.ConfirmP50Ms, sr.ConfirmP99Ms = w[len(w)/2], w[min(len(w)-1, len(w)*99/100)]
	}
}

// DurabilityAlarm says which streams acknowledge on local durability alone although
// they ask for replicated ("" when none): for /readyz's alarms.
func (c *Cluster) DurabilityAlarm() string {
	if c.repl == nil {
		return ""
	}
	d := c.repl.dur
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, st := range d.streams {
		if st.fallback {
			out = append(out, fmt.Sprintf("%s since %s (%s)", st.name, st.since.UTC().Format(time.RFC3339), st.why))
		}
	}
	if len(out) == 0 {
		return ""
	}
	slices.Sort(out)
	return "PERSISTED means durable on this box only, not on a replica, for: " + strings.Join(out, "; ")
}

// durableReport is the body of the durable route (FORMAT.md).
type durableReport struct {
	Fragments []durableStream `json:"fragments"`
}

type durableStream struct {
	ARN     string   `json:"arn"`
	Numbers []string `json:"numbers"`
}

// serveDurable takes a replica's durable report.
func (p *PeerServer) serveDurable(ctx *fasthttp.RequestCtx, node string, body []byte) {
	var rep durableReport
	if err := json.Unmarshal(body, &rep); err != nil {
		ctx.Error("bad durable report: "+err.Error(), http.StatusBadRequest)
		return
	}
	for _, s := range rep.Fragments {
		nums := make([]fragment.Number, 0, len(s.Numbers))
		for _, v := range s.Numbers {
			n, err := fragment.ParseNumber(v)
			if err != nil {
				ctx.Error("bad fragment number in durable report: "+err.Error(), http.StatusBadRequest)
				return
			}
			nums = append(nums, n)
		}
		if p.durable != nil {
			p.durable(node, s.ARN, nums)
		}
	}
	ctx.SetContentType("application/json")
	ctx.SetBodyString("{}")
}

// reporter sends this node's durable reports to one peer: the fragments
// that peer ingested and this node just made durable. Reports queue while
// one is on its way and go in one request.
type reporter struct {
	peer status.Member
	mu   sync.Mutex
	q    map[string][]fragment.Number // by ARN
	wake chan struct{}
}

// reportDurable queues a durable report of fragment n of the stream (ARN)
// to peer, which ingested it.
func (r *Replicator) reportDurable(peer status.Member, arn string, n fragment.Number) {
	r.mu.Lock()
	rp := r.reporters[peer.Name]
	if rp == nil {
		rp = &reporter{peer: peer, q: map[string][]fragment.Number{}, wake: make(chan struct{}, 1)}
		r.reporters[peer.Name] = rp
		r.wg.Add(1)
		go r.runReporter(rp)
	}
	r.mu.Unlock()
	rp.mu.Lock()
	rp.peer = peer
	if q := rp.q[arn]; len(q) < 4096 {
		rp.q[arn] = append(q, n)
	}
	rp.mu.Unlock()
	select {
	case rp.wake <- struct{}{}:
	default:
	}
}

// reporterIdle ends a peer's reporter goroutine after this long without
// reports (the next report starts another).
const reporterIdle = time.Minute

func (r *Replicator) runReporter(rp *reporter) {
	defer r.wg.Done()
	idle := time.NewTimer(reporterIdle)
	defer idle.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-idle.C:
			r.mu.Lock()
			rp.mu.Lock()
			empty := len(rp.q) == 0
			if empty {
				delete(r.reporters, rp.peer.Name)
			}
			rp.mu.Unlock()
			r.mu.Unlock()
			if empty {
				return
			}
			idle.Reset(reporterIdle)
			continue
		case <-rp.wake:
		}
		idle.Reset(reporterIdle)
		rp.mu.Lock()
		peer, q := rp.peer, rp.q
		rp.q = map[string][]fragment.Number{}
		rp.mu.Unlock()
		if len(q) == 0 {
			continue
		}
		var rep durableReport
		for arn, nums := range q {
			ds := durableStream{ARN: arn, Numbers: make([]string, len(nums))}
			for i, n := range nums {
				ds.Numbers[i] = n.String()
			}
			rep.Fragments = append(rep.Fragments, ds)
		}
		body, err := json.Marshal(rep)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		resp, err := r.do(ctx, peer, http.MethodPost, "durable", nil, body)
		if err == nil {
			resp.Body.Close()
		} else if r.ctx.Err() == nil {
			// The home's wait ends at its bound and it falls back; the
			// next report after this one lets it catch up.
			r.c.opts.Logger.Debug("durable report", "peer", peer.Name, "err", err)
		}
		cancel()
	}
}
