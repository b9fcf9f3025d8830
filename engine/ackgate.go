package engine

import (
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// AckGate decides when a fragment this node ingested, durable here, may be
// acknowledged PERSISTED: with replicated durability, once a replica holds
// it durably too (package cluster implements it; the engine knows nothing
// of peers). Without a gate a fragment is acknowledged as soon as it is
// durable here.
//
// The gate never fails a fragment: a fragment durable here is always
// acknowledged, at the latest when the gate's own bound on the wait ends
// (it then falls back to local acks and says so). So no ERROR ack comes
// from the gate, and no producer loses a fragment it could have kept.
type AckGate interface {
	// Durable is called once for every fragment this node ingested
	// (PutMedia or camera) right after it became durable here, in number
	// order per ingest session. It must not block and must not call back
	// into the engine (it runs under the stream's persist lock).
	Durable(info *StreamInfo, n fragment.Number)
	// Ready returns a channel closed once fragment n of the stream with
	// this ARN may be acknowledged PERSISTED; already closed when the gate
	// holds nothing back for it (local durability, confirmed, fallen back,
	// or unknown).
	Ready(arn string, n fragment.Number) <-chan struct{}
}

// SetAckGate installs the gate that PERSISTED acks wait on (nil: none).
// The app wires it from the cluster after Open.
func (e *Engine) SetAckGate(g AckGate) {
	if g == nil {
		e.gate.Store(nil)
		return
	}
	e.gate.Store(&g)
}

func (e *Engine) ackGate() AckGate {
	if p := e.gate.Load(); p != nil {
		return *p
	}
	return nil
}

// closedReady is the Ready channel of a fragment nothing holds back.
var closedReady = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// durable tells the gate that f, ingested by this session, is durable
// here (Persist, after its syncs): its PERSISTED may wait on AckReady.
func (sess *IngestSession) durable(f *Fragment) {
	if g := sess.e.ackGate(); g != nil {
		g.Durable(sess.s.info.Load(), f.Meta.Number)
	}
}

// AckReady returns a channel closed once fragment n, which this session
// persisted (or which a duplicate it received repeats), may be
// acknowledged PERSISTED (AckGate): when Persist returned nil the fragment
// is durable here, and PERSISTED waits on this too. Wait on it after Persist (or
// Received.AwaitDurable) returned nil; cameras, which send no acks, need
// not.
func (sess *IngestSession) AckReady(n fragment.Number) <-chan struct{} {
	g := sess.e.ackGate()
	if g == nil {
		return closedReady
	}
	return g.Ready(sess.s.info.Load().ARN, n)
}
