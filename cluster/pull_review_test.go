package cluster

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

// TestPullDoesNotCountAFragmentTheAskerFailedToSend: c, outside a
// stream's placement, holds a fragment no holder has and asks the holders
// to pull it. c's fetch route skips a fragment it fails to read
// (p.eng.Fragment's error: the media memory full for archive reads, an
// I/O error), answering only the end frame. The holders then imported
// nothing, yet they answer pull "ok", and c deletes the only copy. Here
// c's fetch answers as it does when every read fails; c must keep its
// copy (or the holders must hold the fragment).
func TestPullDoesNotCountAFragmentTheAskerFailedToSend(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of gossip and replication)")
	}
	key := []byte("0123456789abcdef")
	var failReads atomic.Bool
	o := replNodeOptions{dropAfter: time.Second}
	a := startReplNodeWith(t, "a", 1, nil, key, o)
	oc := o
	oc.wrap = func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
		return func(ctx *fasthttp.RequestCtx) {
			if failReads.Load() {
				switch string(ctx.Path()) {
				case PeerPrefix + "fetch":
					// What the fetch route writes when p.eng.Fragment
					// fails for every number asked: the end frame only.
					ctx.SetContentType("application/octet-stream")
					ctx.SetBody([]byte{frameEnd})
					return
				case PeerPrefix + "tail":
					ctx.Error("reads failing", fasthttp.StatusServiceUnavailable)
					return
				}
			}
			next(ctx)
		}
	}
	c := startReplNodeWith(t, "c", 3, []string{a.gossipAddr()}, key, oc)
	waitFor(t, "two members", 10*time.Second, func() bool { return alive(a.c) == 2 && alive(c.c) == 2 })
	frags := captured(t)
	if len(frags) < 3 {
		t.Fatalf("capture has %d fragments", len(frags))
	}
	streams := make([]string, 8)
	for i := range streams {
		streams[i] = fmt.Sprintf("s%d", i)
		if _, err := a.eng.CreateStream(engine.CreateStreamInput{Name: streams[i], DataRetentionInHours: 2}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range streams {
		ingestInto(t, a.eng, s, frags[:2])
	}
	waitFor(t, "c copies every stream", 20*time.Second, func() bool {
		for _, s := range streams {
			if len(c.numbers(t, s)) != 2 {
				return false
			}
		}
		return true
	})
	b := startReplNodeWith(t, "b", 2, []string{a.gossipAddr()}, key, o)
	waitFor(t, "three members", 10*time.Second, func() bool { return alive(a.c) == 3 && alive(b.c) == 3 && alive(c.c) == 3 })
	var outside []string
	for _, s := range streams {
		if !slices.ContainsFunc(a.c.Placement(s, 2), func(m status.Member) bool { return m.Name == "c" }) {
			outside = append(outside, s)
		}
	}
	if len(outside) == 0 {
		t.Fatal("c holds every stream: the test needs one outside its placement")
	}
	s := outside[0]
	failReads.Store(true)
	only := ingestInto(t, c.eng, s, frags[2:3])[0]
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if !slices.Contains(c.numbers(t, s), only) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if slices.Contains(c.numbers(t, s), only) {
		t.Logf("c kept %s (it could not send it)", only)
		return
	}
	if !slices.Contains(a.numbers(t, s), only) || !slices.Contains(b.numbers(t, s), only) {
		t.Fatalf("%s: c deleted %s, which only it held, after asking the holders to pull it; a holds %v, b %v: the fragment is gone from every box",
			s, only, a.numbers(t, s), b.numbers(t, s))
	}
}
