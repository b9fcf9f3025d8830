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
}

// Stats is a snapshot of the engine's counters.
type Stats struct {
	FragmentsReceived, FragmentsPersisted, BytesReceived uint64
	// FragmentsImported and BytesImported count replicas stored from peers.
	FragmentsImported, BytesImported uint64
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	return Stats{
		FragmentsReceived:  e.metrics.fragmentsReceived.Load(),
		FragmentsPersisted: e.metrics.fragmentsPersisted.Load(),
		BytesReceived:      e.metrics.bytesReceived.Load(),
		FragmentsImported:  e.metrics.fragmentsImported.Load(),
		BytesImported:      e.metrics.bytesImported.Load(),
	}
}
