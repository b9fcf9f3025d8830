package engine

import "sync/atomic"

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
	persistLatency latencyHistogram
	// unreadable counts stored fragments found damaged by readers.
	unreadable atomic.Uint64
}

// LatencyBucketsMs are the upper bounds of the persist-latency histogram.
var LatencyBucketsMs = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}

// latencyHistogram counts observations by bucket (and one overflow).
type latencyHistogram struct {
	counts [14]atomic.Uint64
	sumUs  atomic.Uint64
}

func (h *latencyHistogram) observe(ms float64) {
	i := 0
	for i < len(LatencyBucketsMs) && ms > LatencyBucketsMs[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumUs.Add(uint64(ms * 1000))
}

// Latency is a histogram snapshot: Counts[i] observations at most
// LatencyBucketsMs[i] (not cumulative; the last is the overflow).
type Latency struct {
	Counts []uint64
	SumMs  float64
}

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
		PersistLatency:     e.metrics.persistLatency.snapshot(),

		UnreadableFragments: e.metrics.unreadable.Load(),
	}
}

func (h *latencyHistogram) snapshot() Latency {
	l := Latency{Counts: make([]uint64, len(h.counts)), SumMs: float64(h.sumUs.Load()) / 1000}
	for i := range h.counts {
		l.Counts[i] = h.counts[i].Load()
	}
	return l
}
