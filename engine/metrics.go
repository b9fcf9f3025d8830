package engine

import (
	"sync/atomic"

	"github.com/kvsedge/kvsedge/internal/latency"
)

// metrics are the engine's counters (exported as Prometheus metrics by the
// appliance issue; read with Stats now).
type metrics struct {
	fragmentsReceived  atomic.Uint64
	fragmentsPersisted atomic.Uint64
	bytesReceived      atomic.Uint64
	fragmentsImported  atomic.Uint64
	bytesImported      atomic.Uint64
	bytesPersisted     atomic.Uint64
	// persistLatency: from a fragment complete to durable (when its
	// PERSISTED ack may go), by bucket.
	persistLatency latency.Histogram
	// unreadable counts stored fragments found damaged by readers.
	unreadable atomic.Uint64
}

// LatencyBucketsMs are the upper bounds of the latency histograms.
var LatencyBucketsMs = latency.BucketsMs

// Latency is a histogram snapshot: Counts[i] observations at most
// LatencyBucketsMs[i] (not cumulative; the last is the overflow).
type Latency = latency.Snapshot

// Stats is a snapshot of the engine's counters.
type Stats struct {
	FragmentsReceived, FragmentsPersisted, BytesReceived uint64
	// FragmentsImported and BytesImported count replicas stored from peers.
	FragmentsImported, BytesImported uint64
	// BytesPersisted is the media of ingested fragments stored.
	BytesPersisted uint64
	// PersistLatency: from fragment complete to durable.
	PersistLatency Latency
	// UnreadableFragments counts stored fragments readers found damaged
	// (and skipped) since start.
	UnreadableFragments uint64
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	return Stats{
		FragmentsReceived:  e.metrics.fragmentsReceived.Load(),
		FragmentsPersisted: e.metrics.fragmentsPersisted.Load(),
		BytesReceived:      e.metrics.bytesReceived.Load(),
		FragmentsImported:  e.metrics.fragmentsImported.Load(),
		BytesImported:      e.metrics.bytesImported.Load(),
		BytesPersisted:     e.metrics.bytesPersisted.Load(),
		PersistLatency:     e.metrics.persistLatency.Snapshot(),

		UnreadableFragments: e.metrics.unreadable.Load(),
	}
}
