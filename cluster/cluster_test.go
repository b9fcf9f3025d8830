package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/status"
)

// kill stops gossip without leaving, as a crash does.
func (c *Cluster) kill() error {
	if c.repl != nil {
		c.repl.Close()
	}
	close(c.done)
	c.wg.Wait()
	return c.serf.Shutdown()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startNode(t *testing.T, name string, seeds []string, key []byte) *Cluster {
	t.Helper()
	return startNodeLog(t, name, seeds, key, slog.New(slog.DiscardHandler))
}

func startNodeLog(t *testing.T, name string, seeds []string, key []byte, log *slog.Logger) *Cluster {
	t.Helper()
	c, err := Start(Options{NodeName: name, Bind: freePort(t), Seeds: seeds, Key: key, APIURL: "http://" + name + ":8080",
		Profile: "test", FreeBytes: func() uint64 { return 1 << 30 }, FastFailureDetection: true,
		Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func alive(c *Cluster) int {
	n := 0
	for _, m := range c.Members() {
		if m.Status == "alive" {
			n++
		}
	}
	return n
}

func TestMembershipPlacementAndFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	key := []byte("0123456789abcdef")
	a := startNode(t, "a", nil, key)
	defer a.Close()
	seed := []string{a.serf.LocalMember().Addr.String() + ":" + fmt.Sprint(a.serf.LocalMember().Port)}
	b := startNode(t, "b", seed, key)
	defer b.Close()
	c := startNode(t, "c", seed, key)
	waitFor(t, "three members alive everywhere", 10*time.Second, func() bool { return alive(a) == 3 && alive(b) == 3 && alive(c) == 3 })

	// Tags travel: every node sees the others' API URLs and capacity.
	for _, m := range b.Members() {
		if m.APIURL != "http://"+m.Name+":8080" || m.FreeBytes != 1<<30 || m.Profile != "test" {
			t.Fatalf("member seen by b: %+v", m)
		}
	}
	// Every node places every stream the same way; homes are spread.
	homes := map[string]int{}
	for i := 0; i < 300; i++ {
		s := fmt.Sprintf("cam-%d", i)
		pa, pb, pc := a.Placement(s, 2), b.Placement(s, 2), c.Placement(s, 2)
		if len(pa) != 2 || pa[0].Name != pb[0].Name || pa[1].Name != pc[1].Name || pa[0].Name == pa[1].Name {
			t.Fatalf("placement of %s differs: %v %v %v", s, pa, pb, pc)
		}
		homes[pa[0].Name]++
	}
	for _, n := range []string{"a", "b", "c"} {
		if homes[n] < 60 {
			t.Fatalf("homes not spread: %v", homes)
		}
	}
	// c crashes: the others see it failed within seconds, and its streams
	// move; the others' streams stay where they were.
	before := map[string]string{}
	for i := 0; i < 300; i++ {
		s := fmt.Sprintf("cam-%d", i)
		before[s] = a.Placement(s, 1)[0].Name
	}
	if err := c.kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, "c detected as failed", 10*time.Second, func() bool { return alive(a) == 2 && alive(b) == 2 })
	t.Logf("failure detected in %v", time.Since(start).Round(10*time.Millisecond))
	for s, was := range before {
		now := a.Placement(s, 1)[0].Name
		if was != "c" && now != was {
			t.Fatalf("%s moved from %s to %s though %s is alive", s, was, now, was)
		}
		if now == "c" {
			t.Fatalf("%s still placed on the failed node", s)
		}
		if b.Placement(s, 1)[0].Name != now {
			t.Fatalf("a and b disagree on %s after the failure", s)
		}
	}
}

func TestWrongGossipKeyCannotJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	var logs syncLog
	a := startNodeLog(t, "a", nil, []byte("0123456789abcdef"), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})))
	defer a.Close()
	seed := []string{a.serf.LocalMember().Addr.String() + ":" + fmt.Sprint(a.serf.LocalMember().Port)}
	x := startNode(t, "x", seed, []byte("fedcba9876543210"))
	defer x.Close()
	// The box with the right key says why a peer is kept out.
	waitFor(t, "a warning about the other cluster.key", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "different cluster.key")
	})
	if alive(a) != 1 || alive(x) != 1 {
		t.Fatalf("a node with another gossip key joined: %v / %v", a.Members(), x.Members())
	}
}

func TestSingleNodeIsAClusterOfOne(t *testing.T) {
	a := startNode(t, "solo", nil, nil)
	defer a.Close()
	if p := a.Placement("cam", 2); len(p) != 1 || p[0].Name != "solo" || !p[0].Self || a.Home("cam") != "http://solo:8080" {
		t.Fatalf("placement on a single node: %+v", p)
	}
}

func TestQuorum(t *testing.T) {
	m := func(statuses ...string) []status.Member {
		var out []status.Member
		for i, s := range statuses {
			out = append(out, status.Member{Name: fmt.Sprint("n", i), Status: s})
		}
		return out
	}
	for _, tc := range []struct {
		ms   []status.Member
		want bool
	}{
		{m("alive"), true},
		{m("alive", "failed"), true},            // two boxes: the survivor records
		{m("alive", "failed", "failed"), false}, // cut off from a majority
		{m("alive", "alive", "failed"), true},
		{m("alive", "left", "left"), true}, // left gracefully: not counted
		{m("alive", "failed", "failed", "alive"), true},
		{m("alive", "failed", "failed", "failed", "alive"), false},
	} {
		if got := hasQuorum(tc.ms); got != tc.want {
			t.Errorf("%+v: quorum %v, want %v", tc.ms, got, tc.want)
		}
	}
}

// syncLog collects log output written from several goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWitnessBreaksTies: two boxes cut apart each see half and keep a
// majority; with a witness, only the side that sees it does.
func TestWitnessBreaksTies(t *testing.T) {
	box := func(name, st string, self bool) status.Member {
		return status.Member{Name: name, Status: st, Self: self}
	}
	witness := func(st string) status.Member { return status.Member{Name: "w", Status: st, Witness: true} }
	for _, c := range []struct {
		what    string
		members []status.Member
		want    bool
	}{
		{"two boxes cut apart, no witness", []status.Member{box("a", "alive", true), box("b", "failed", false)}, true},
		{"cut off from the other box and the witness", []status.Member{box("a", "alive", true), box("b", "failed", false), witness("failed")}, false},
		{"cut off from the other box, with the witness", []status.Member{box("a", "alive", true), box("b", "failed", false), witness("alive")}, true},
		{"the witness down, both boxes up", []status.Member{box("a", "alive", true), box("b", "alive", false), witness("failed")}, true},
	} {
		if got := hasQuorum(c.members); got != c.want {
			t.Errorf("%s: quorum %v, want %v", c.what, got, c.want)
		}
	}
}

// TestCameraHomesHonourMaxCameras: a box homes no more cameras than its
// media.max_cameras while another has room; without limits camera homes
// are the rendezvous homes; over the site's capacity the extra cameras go
// to their first-ranked box (which holds them in STANDBY).
func TestCameraHomesHonourMaxCameras(t *testing.T) {
	members := []status.Member{{Name: "n1", MaxCameras: 2}, {Name: "n2", MaxCameras: 2}, {Name: "n3", MaxCameras: 2}}
	var streams []string
	for i := range 6 {
		streams = append(streams, fmt.Sprintf("cam-%d", i))
	}
	// Without limits: the rendezvous home; with them, count per box.
	free := []status.Member{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}
	unlimited := CameraHomes(streams, free)
	crowded := map[string]int{}
	for _, s := range streams {
		if want := Rank(s, free, 1)[0].Name; unlimited[s] != want {
			t.Fatalf("%s: home %s without limits, rendezvous says %s", s, unlimited[s], want)
		}
		crowded[unlimited[s]]++
	}
	if max(crowded["n1"], crowded["n2"], crowded["n3"]) <= 2 {
		t.Skipf("the rendezvous homes of these names are already balanced (%v): the test needs a crowded box", crowded)
	}
	homes := CameraHomes(streams, members)
	per := map[string]int{}
	for _, s := range streams {
		per[homes[s]]++
	}
	if per["n1"] != 2 || per["n2"] != 2 || per["n3"] != 2 {
		t.Fatalf("6 cameras on 3 boxes of 2: %v (rendezvous alone: %v)", per, crowded)
	}
	// Capacity for 3 only: 3 placed by room, the other 3 on their first
	// box.
	small := []status.Member{{Name: "n1", MaxCameras: 1}, {Name: "n2", MaxCameras: 1}, {Name: "n3", MaxCameras: 1}}
	homes = CameraHomes(streams, small)
	seen := map[string]int{}
	for _, s := range streams[:3] {
		seen[homes[s]]++
	}
	if len(seen) != 3 {
		t.Fatalf("the first 3 cameras on boxes of 1: %v", homes)
	}
	for _, s := range streams[3:] {
		if homes[s] != Rank(s, small, 1)[0].Name {
			t.Fatalf("%s over capacity goes to %s, not its first-ranked box", s, homes[s])
		}
	}
}
