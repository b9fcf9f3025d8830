package serve

import (
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// heldGate is an engine.AckGate that holds every fragment's PERSISTED
// until `hold` after its Durable call, and records when it let each go.
type heldGate struct {
	hold     time.Duration
	mu       sync.Mutex
	ready    map[fragment.Number]chan struct{}
	released map[fragment.Number]time.Time
}

func (g *heldGate) Durable(_ *engine.StreamInfo, n fragment.Number) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.ready[n] = ch
	g.mu.Unlock()
	time.AfterFunc(g.hold, func() {
		g.mu.Lock()
		g.released[n] = time.Now()
		g.mu.Unlock()
		close(ch)
	})
}

func (g *heldGate) Ready(_ string, n fragment.Number) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ch, ok := g.ready[n]; ok {
		return ch
	}
	c := make(chan struct{})
	close(c)
	return c
}

// TestPutMediaPersistedWaitsForAckGate: PERSISTED goes only once the
// engine's AckGate lets the fragment go (replicated durability), in
// fragment order, and a held ack does not hold up the next fragments'
// persisting and RECEIVED acks.
func TestPutMediaPersistedWaitsForAckGate(t *testing.T) {
	ts := startServerWith(t, "", fastMedia)
	g := &heldGate{hold: 400 * time.Millisecond, ready: map[fragment.Number]chan struct{}{}, released: map[fragment.Number]time.Time{}}
	ts.eng.SetAckGate(g)
	createMediaStream(t, ts, "cam", 24)
	c := loadCapture(t, "real-producer-h264-absolute")
	res := putUpload(t, ts, "cam", "ABSOLUTE", "1795579974.135", c, 0)
	if res.status != 200 || len(res.events("ERROR")) > 0 {
		t.Fatalf("status %d, ERROR acks %+v", res.status, res.events("ERROR"))
	}
	persisted, received := res.events("PERSISTED"), res.events("RECEIVED")
	if len(persisted) < 3 || len(persisted) != len(received) {
		t.Fatalf("%d PERSISTED and %d RECEIVED acks", len(persisted), len(received))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	prev := ""
	for i, a := range persisted {
		n, err := fragment.ParseNumber(a.FragmentNumber)
		if err != nil {
			t.Fatal(err)
		}
		rel, ok := g.released[n]
		if !ok || a.at.Before(rel) {
			t.Fatalf("PERSISTED #%d (%s) at %v, before the gate let it go (%v, %v)", i, n, a.at, rel, ok)
		}
		if a.FragmentNumber <= prev {
			t.Fatalf("PERSISTED #%d %s after %s", i, a.FragmentNumber, prev)
		}
		prev = a.FragmentNumber
	}
	// Pipelined: held acks do not hold up the next fragments' persisting
	// (held one after another, n acks would span (n-1) × the hold).
	span := persisted[len(persisted)-1].at.Sub(persisted[0].at)
	if serial := time.Duration(len(persisted)-1) * g.hold; span > serial/2 {
		t.Fatalf("%d PERSISTED acks span %v (one after another: %v): the held acks stalled the upload", len(persisted), span, serial)
	}
}
