package cluster

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
)

// TestDropCopiesOutsideThePlacement: two boxes (a, c) hold every stream;
// a third (b) joins, and c falls outside the placement of some streams.
// Once b has copied those, c deletes its copies; streams c still holds
// keep theirs, and no holder loses a fragment, not even one only c held
// (the holders pull it from c first).
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
	// A fragment only c holds (what it recorded standing in as the home
	// and no holder had copied when it left the placement): holders
	// compare with holders only, so c has them pull it before it drops
	// its copy.
	if len(frags) < 3 {
		t.Fatalf("capture has %d fragments", len(frags))
	}
	only := ingestInto(t, c.eng, outside[0], frags[2:3])
	want[outside[0]]++
	waitFor(t, "c deletes its copies outside the placement", 30*time.Second, func() bool {
		for _, s := range outside {
			if len(c.numbers(t, s)) != 0 {
				return false
			}
		}
		return true
	})
	for _, n := range [][]fragment.Number{a.numbers(t, outside[0]), b.numbers(t, outside[0])} {
		if !slices.Contains(n, only[0]) {
			t.Fatalf("%s: c dropped its copy, and with it %s, which only c held", outside[0], only[0])
		}
	}
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

	// The pull route refuses what it cannot do.
	pull := func(to *replNode, from, stream string, body []byte) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, to.url+PeerPrefix+"pull?stream="+stream, bytes.NewReader(body))
		signPeer(req, PeerKey(key), from, time.Now(), body)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		what     string
		to       *replNode
		from     string
		body     []byte
		wantCode int
	}{
		{"a body that is no list of numbers", a, "c", []byte("short"), http.StatusBadRequest},
		{"an asker that is no alive peer", a, "nobody", only[0][:], http.StatusConflict},
		{"a node that no longer holds the stream", c, "a", only[0][:], http.StatusConflict},
	} {
		if code := pull(tc.to, tc.from, outside[0], tc.body); code != tc.wantCode {
			t.Errorf("pull with %s: %d, want %d", tc.what, code, tc.wantCode)
		}
	}
}
