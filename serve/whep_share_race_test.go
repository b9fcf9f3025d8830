package serve

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/pion/rtp"
)

// checkingTrack checks each packet's payload against the frame's own cut
// when it is handed over (the shared bytes must still be the frame's).
type checkingTrack struct {
	want [][]byte // this frame's expected payloads
	i    int
	bad  int
}

func (c *checkingTrack) WriteRTP(p *rtp.Packet) error {
	if c.i >= len(c.want) || !bytes.Equal(p.Payload, c.want[c.i]) {
		c.bad++
	}
	c.i++
	return nil
}

// TestWHEPSharedPayloadsConcurrentViewers: viewers sending the same live
// frames at once from their own goroutines (attMu, AttachBuf, the
// frames' release as the last viewer lets go and the tap's chunks are
// reused for later frames) each hand pion exactly the frame's payloads;
// run it with -race.
func TestWHEPSharedPayloadsConcurrentViewers(t *testing.T) {
	const viewers, frames = 4, 200
	tracks := make([]*checkingTrack, viewers)
	tap := newWHEPTap(t, viewers, func(i int) rtpTrack { tracks[i] = &checkingTrack{}; return tracks[i] })
	mk := func(i int) *engine.LiveFrame {
		n := 3000 + i*37%5000
		b := []byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 0x41}
		if i%25 == 0 {
			b[4] = 0x65
		}
		b = append(b, bytes.Repeat([]byte{byte(i)}, n-1)...)
		return &engine.LiveFrame{Track: 1, Video: true, Key: i%25 == 0, TimeMs: int64(i * 40), Data: b}
	}
	var wg sync.WaitGroup
	for v := range viewers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, tr := tap.ws[v], tracks[v]
			for got := 0; got < frames; got++ {
				var f *engine.LiveFrame
				select {
				case f = <-tap.subs[v].C():
				case <-time.After(10 * time.Second):
					t.Errorf("viewer %d: frame %d never came", v, got)
					return
				}
				ps := [][]byte(nil)
				if f.Key {
					ps = [][]byte{testSPS, testPPS}
				}
				buf, n := cutH264(nil, f.Data, 4, ps, rtpMTU)
				tr.want, tr.i = tr.want[:0], 0
				for i, off := 0, 0; i < n; i++ {
					var p []byte
					p, off = nextRTPPayload(buf, off)
					tr.want = append(tr.want, p)
				}
				err := w.sendAt(f, int64(got*40), false)
				f.Release()
				if err != nil {
					t.Errorf("viewer %d: %v", v, err)
					return
				}
				if tr.i != n {
					t.Errorf("viewer %d: frame %d: %d packets, want %d", v, got, tr.i, n)
				}
			}
		}()
	}
	for i := range frames {
		tap.publish(mk(i))
		if i%8 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	for v, tr := range tracks {
		if tr.bad != 0 {
			t.Errorf("viewer %d: %d packets not the frame's payloads", v, tr.bad)
		}
	}
}
