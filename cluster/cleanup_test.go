package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/status"
)

// TestDropCopiesOutsideThePlacement: two boxes (a, c) hold every stream;
// a third (b) joins, and c falls outside the placement of some streams.
// Once b has copied those, c deletes its copies; streams c still holds
// keep theirs, and no holder loses a fragment.
func TestDropCopiesOutsideThePlacement(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of gossip and replication): make test runs it")
	}
	key := []byte("0123456789abcdef")
	o := replNodeOptions{dropAfter: time.Second}
	a := startReplNodeWith(t, "a", 1, nil, key, o)
	c := startReplNodeWith(t, "c", 3, []string{a.gossipAddr()}, key, o)
	waitFor(t, "two members", 10*time.Second, func() bool { return alive(a.c) == 2 && alive(c.c) == 2 })
	frags := captured(t)
	if len(frags) < 2 {
		t.Fatalf("capture has %d fragments", len(frags))
	}
	streams := make([]string, 8)
	for i := range streams {
		streams[i] = fmt.Sprintf("s%d", i)
		if _, err := a.eng.CreateStream(engine.CreateStreamInput{Name: streams[i], DataRetentionInHours: 2}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int{}
	for _, s := range streams {
		want[s] = len(ingestInto(t, a.eng, s, frags[:2]))
	}
	waitFor(t, "c copies every stream", 20*time.Second, func() bool {
		for _, s := range streams {
			if len(c.numbers(t, s)) != want[s] {
				return false
			}
		}
		return true
	})

	b := startReplNodeWith(t, "b", 2, []string{a.gossipAddr()}, key, o)
	waitFor(t, "three members", 10*time.Second, func() bool { return alive(a.c) == 3 && alive(b.c) == 3 && alive(c.c) == 3 })
	var outside, inside []string
	for _, s := range streams {
		if slices.ContainsFunc(a.c.Placement(s, 2), func(m status.Member) bool { return m.Name == "c" }) {
			inside = append(inside, s)
		} else {
			outside = append(outside, s)
		}
	}
	if len(outside) == 0 || len(inside) == 0 {
		t.Fatalf("placements: c outside %v, inside %v: the test needs both", outside, inside)
	}
	waitFor(t, "c deletes its copies outside the placement", 30*time.Second, func() bool {
		for _, s := range outside {
			if len(c.numbers(t, s)) != 0 {
				return false
			}
		}
		return true
	})
	for _, s := range outside {
		if got := len(b.numbers(t, s)); got != want[s] {
			t.Fatalf("%s: b holds %d of %d fragments after c dropped its copy", s, got, want[s])
		}
		if got := len(a.numbers(t, s)); got != want[s] {
			t.Fatalf("%s: a holds %d of %d fragments", s, got, want[s])
		}
	}
	for _, s := range inside {
		if got := len(c.numbers(t, s)); got != want[s] {
			t.Fatalf("%s: c holds %d of %d fragments of a stream it still holds", s, got, want[s])
		}
	}
	t.Logf("c dropped its copies of %v and kept %v", outside, inside)
}
