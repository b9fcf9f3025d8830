package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

// replNode is one in-process node: an engine on a temporary store, the
// node-to-node path on a loopback HTTP listener, gossip and replication.
type replNode struct {
	c   *Cluster
	eng *engine.Engine
	url string
}

func startReplNode(t *testing.T, name string, nodeID uint16, seeds []string, key []byte) *replNode {
	t.Helper()
	return startReplNodeWith(t, name, nodeID, seeds, key, replNodeOptions{})
}

// replNodeOptions adjusts a test node.
type replNodeOptions struct {
	log *slog.Logger // default: discard
	// wrap, when set, wraps the node's handler of the node-to-node path.
	wrap       func(fasthttp.RequestHandler) fasthttp.RequestHandler
	newerRetry time.Duration
	ackTimeout time.Duration
	dropAfter  time.Duration
}

func startReplNodeWith(t *testing.T, name string, nodeID uint16, seeds []string, key []byte, o replNodeOptions) *replNode {
	t.Helper()
	log := o.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	eng, err := engine.Open(engine.Options{Store: engine.StoreOptions{Dir: t.TempDir(), CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, NodeID: nodeID, Logger: log, RingBytesPerStream: 4 << 20,
		Media: engine.MediaOptions{Debug: true}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &replNode{eng: eng, url: "http://" + ln.Addr().String()}
	life, stop := context.WithCancel(context.Background())
	var handler fasthttp.RequestHandler = func(ctx *fasthttp.RequestCtx) { n.c.ServePeer(ctx, life) }
	if o.wrap != nil {
		handler = o.wrap(handler)
	}
	srv := &fasthttp.Server{Handler: handler}
	go srv.Serve(ln) //nolint:errcheck // ends at Shutdown
	c, err := Start(Options{NodeName: name, Bind: freePort(t), Seeds: seeds, Key: key, APIURL: n.url, NodeID: nodeID,
		FastFailureDetection: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.c = c
	c.StartReplication(ReplicationOptions{Engine: eng, Key: PeerKey(key), AntiEntropy: 500 * time.Millisecond, Registry: 200 * time.Millisecond, Settle: time.Millisecond,
		newerRetry: o.newerRetry, AckTimeout: o.ackTimeout, DropAfter: o.dropAfter, dropRetry: time.Second})
	eng.SetAckGate(c.AckGate())
	t.Cleanup(func() {
		stop()
		_ = c.Close()
		_ = srv.Shutdown()
		_ = eng.Close()
	})
	return n
}

func (n *replNode) gossipAddr() string {
	m := n.c.serf.LocalMember()
	return net.JoinHostPort(m.Addr.String(), fmt.Sprint(m.Port))
}

func (n *replNode) numbers(t *testing.T, stream string) []fragment.Number {
	t.Helper()
	var out []fragment.Number
	err := n.eng.FragmentNumbers(engine.StreamRef{Name: stream}, fragment.Number{}, func(f fragment.Number) bool { out = append(out, f); return true })
	if err != nil {
		return nil
	}
	return out
}

func captured(t *testing.T) []*mkv.Fragment {
	t.Helper()
	data, err := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err != nil {
		t.Fatal(err)
	}
	rd := mkv.NewReader(bytes.NewReader(data), mkv.Options{})
	var out []*mkv.Fragment
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev == mkv.EventFragmentEnd {
			out = append(out, rd.TakeFragment())
		}
	}
}

func ingestInto(t *testing.T, e *engine.Engine, stream string, frags []*mkv.Fragment) []fragment.Number {
	t.Helper()
	sess, err := e.BeginIngest(engine.StreamRef{Name: stream})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var nums []fragment.Number
	for _, f := range frags {
		c := *f
		c.Buf = append(engine.NewMediaBuffer(), f.Buf...)
		n, serverMs, err := sess.StartFragment()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := sess.Receive(n, serverMs, serverMs, &c)
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.Persist(rec.Fragment); err != nil {
			t.Fatal(err)
		}
		nums = append(nums, n)
	}
	return nums
}

func equalNums(a, b []fragment.Number) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReplicationTailAndAntiEntropy: a stream created on one node reaches
// the others' registries; its fragments reach its replica in order with
// the same numbers, live and after the replica was away; a node with the
// wrong key gets nothing.
func TestReplicationTailAndAntiEntropy(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	key := []byte("0123456789abcdef")
	a := startReplNode(t, "a", 1, nil, key)
	b := startReplNode(t, "b", 2, []string{a.gossipAddr()}, key)
	waitFor(t, "two members", 10*time.Second, func() bool { return alive(a.c) == 2 && alive(b.c) == 2 })
	if _, err := a.eng.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream reaches b", 10*time.Second, func() bool {
		_, err := b.eng.Stream(engine.StreamRef{Name: "cam"})
		return err == nil
	})
	frags := captured(t)
	if len(frags) < 6 {
		t.Fatalf("capture has %d fragments", len(frags))
	}
	// With two nodes and factor 2, each holds the stream; fragments ingested
	// on a reach b, and those on b reach a.
	na := ingestInto(t, a.eng, "cam", frags[:3])
	waitFor(t, "a's fragments on b", 10*time.Second, func() bool { return equalNums(b.numbers(t, "cam"), na) })
	// MissingHere is the last comparison's: one that ran while a's
	// fragments were still arriving may count them; the next one must not.
	waitFor(t, "b compared with a, missing nothing", 10*time.Second, func() bool {
		st := b.c.repl.Status()
		return len(st) == 1 && st[0].Holds && st[0].MissingHere == 0
	})
	if st := b.c.repl.Status(); st[0].Imported < 3 || st[0].Samples < 3 || st[0].MissingHere != 0 || st[0].LastSync == "" {
		t.Fatalf("b's replication status: %+v", st)
	}
	nb := ingestInto(t, b.eng, "cam", frags[3:5])
	if nb[0].Compare(na[len(na)-1]) <= 0 {
		t.Fatalf("b numbered %s after a's %s", nb[0], na[len(na)-1])
	}
	all := append(append([]fragment.Number{}, na...), nb...)
	waitFor(t, "b's fragments on a", 10*time.Second, func() bool { return equalNums(a.numbers(t, "cam"), all) })

	// A peer with the wrong key is refused on the node-to-node path.
	req, _ := http.NewRequest(http.MethodGet, a.url+PeerPrefix+"numbers?stream=cam", nil)
	signPeer(req, PeerKey([]byte("fedcba9876543210")), "intruder", time.Now(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || bytes.Contains(body, na[0][:]) {
		t.Fatalf("wrong key: %d %q", resp.StatusCode, body)
	}
	req, _ = http.NewRequest(http.MethodGet, a.url+PeerPrefix+"tail?stream=cam&origin=1", nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned tail: %d", resp.StatusCode)
	}

	// A fragment ingested on a while b's tail is stopped (b is away) is
	// found by anti-entropy.
	b.c.repl.mu.Lock()
	for k, stop := range b.c.repl.tails {
		stop()
		delete(b.c.repl.tails, k)
	}
	b.c.repl.mu.Unlock()
	// Keep b's tails from restarting until a has ingested; meanwhile a's
	// comparison with b counts the new fragment as under-replicated.
	b.c.repl.mu.Lock()
	more := ingestInto(t, a.eng, "cam", frags[5:6])
	var bm status.Member
	for _, m := range a.c.Members() {
		if m.Name == "b" {
			bm = m
		}
	}
	_, _, absent, err := a.c.repl.compare("cam", bm, fragment.Number{})
	b.c.repl.mu.Unlock()
	if err != nil || len(absent) != 1 || absent[0] != more[0] {
		t.Fatalf("a's comparison with b: absent there %v (want %v), %v", absent, more, err)
	}
	all = append(all, more...)
	waitFor(t, "the missed fragment on b", 10*time.Second, func() bool { return equalNums(b.numbers(t, "cam"), all) })

	waitFor(t, "a sees b complete", 10*time.Second, func() bool {
		st := a.c.repl.Status()
		return len(st) == 1 && st[0].UnderReplicated == 0 && st[0].MissingHere == 0 && st[0].Holds
	})

	// A stream tagged with replication factor 1 stays on its home.
	if _, err := a.eng.CreateStream(engine.CreateStreamInput{Name: "solo", DataRetentionInHours: 2,
		Tags: map[string]string{TagReplicationFactor: "1"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "solo reaches b", 10*time.Second, func() bool {
		_, err := b.eng.Stream(engine.StreamRef{Name: "solo"})
		return err == nil
	})
	home, away := a, b
	if p := a.c.Placement("solo", 1); p[0].Name == "b" {
		home, away = b, a
	}
	solo := ingestInto(t, home.eng, "solo", frags[:2])
	// Two full comparison rounds later (the away node compares cam with
	// its peer every round), solo is still only on its home.
	away.c.repl.mu.Lock()
	away.c.repl.fullDue = true
	away.c.repl.mu.Unlock()
	last := ""
	waitFor(t, "a comparison round on the away node", 10*time.Second, func() bool {
		for _, st := range away.c.repl.Status() {
			if st.Stream == "cam" {
				if last == "" {
					last = st.LastSync
				}
				return st.LastSync != last
			}
		}
		return false
	})
	if got := away.numbers(t, "solo"); len(got) != 0 {
		t.Fatalf("a factor-1 stream was copied to %d fragments on the away node", len(got))
	}
	if got := home.numbers(t, "solo"); !equalNums(got, solo) {
		t.Fatalf("home holds %v of solo, want %v", got, solo)
	}
	for _, st := range away.c.repl.Status() {
		if st.Stream == "solo" && (st.Holds || len(st.Replicas) != 0 || st.Factor != 1) {
			t.Fatalf("solo's status on the away node: %+v", st)
		}
	}

	// Deleting on one node deletes everywhere.
	info, _ := a.eng.Stream(engine.StreamRef{Name: "cam"})
	if err := a.eng.DeleteStream(info.ARN, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deletion reaches b", 10*time.Second, func() bool {
		_, err := b.eng.Stream(engine.StreamRef{Name: "cam"})
		return err != nil
	})
}

// logRecorder keeps every log record, for tests that check what a node
// logs.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // level, message, attributes
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

func (l *logRecorder) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.recs, "\n")
}

// count returns how many records contain every one of substrs.
func (l *logRecorder) count(substrs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, r := range l.recs {
		for _, s := range substrs {
			if !strings.Contains(r, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// TestPeerSpeakingNewerProtocolIsSkipped: half-way through a rolling
// upgrade, a peer answers tails and fetches with frames of a version this
// node does not read (as a later release would if it disregarded the
// frames parameter). This node refuses them, logs it once however often
// it retries, stores nothing from them, does not stop; the peer still
// replicates from this node, and this node's other work goes on.
func TestPeerSpeakingNewerProtocolIsSkipped(t *testing.T) {
	key := []byte("0123456789abcdef")
	logs := &logRecorder{}
	a := startReplNodeWith(t, "a", 1, nil, key, replNodeOptions{log: slog.New(logs), newerRetry: 300 * time.Millisecond})
	// b's fragment frames are of version 2 (a valid-looking prefix, then
	// fields a version 1 reader must not try to interpret).
	v2 := append([]byte{frameFragment, 2, 0, 120}, bytes.Repeat([]byte{0xa5}, 120)...)
	var refused atomic.Int32
	b := startReplNodeWith(t, "b", 2, []string{a.gossipAddr()}, key, replNodeOptions{
		wrap: func(next fasthttp.RequestHandler) fasthttp.RequestHandler {
			return func(ctx *fasthttp.RequestCtx) {
				switch strings.TrimPrefix(string(ctx.Path()), PeerPrefix) {
				case "tail", "fetch":
					if string(ctx.QueryArgs().Peek(framesParam)) != "1" {
						ctx.Error("no frames=1 in the request", http.StatusBadRequest)
						return
					}
					refused.Add(1)
					ctx.SetContentType("application/octet-stream")
					ctx.SetBody(v2)
					return
				}
				next(ctx)
			}
		},
	})
	waitFor(t, "two members", 10*time.Second, func() bool { return alive(a.c) == 2 && alive(b.c) == 2 })
	if _, err := b.eng.CreateStream(engine.CreateStreamInput{Name: "cam", DataRetentionInHours: 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stream reaches a", 10*time.Second, func() bool {
		_, err := a.eng.Stream(engine.StreamRef{Name: "cam"})
		return err == nil
	})
	frags := captured(t)
	ingestInto(t, b.eng, "cam", frags[:2])
	// The tail is refused, waits newerRetry, is refused again…; while it
	// keeps finding b newer, anti-entropy leaves b alone.
	waitFor(t, "a's repeated tails of b", 10*time.Second, func() bool { return refused.Load() >= 4 })
	// A fetch (anti-entropy's) is refused the same way.
	var bm status.Member
	for _, m := range a.c.Members() {
		if m.Name == "b" {
			bm = m
		}
	}
	if _, _, _, err := a.c.repl.compare("cam", bm, fragment.Number{}); !errors.Is(err, ErrFrameVersion) {
		t.Fatalf("a's comparison with b: %v, want ErrFrameVersion", err)
	}
	if n := logs.count("WARN", "a peer speaks a newer node-to-node protocol", "peer=b", "version 2"); n != 1 {
		t.Fatalf("a logged the newer peer %d times, want once:\n%s", n, logs.all())
	}
	if got := a.numbers(t, "cam"); len(got) != 0 {
		t.Fatalf("a stored %d fragments from refused frames", len(got))
	}
	// The other direction is unaffected: b reads a's version 1 frames.
	na := ingestInto(t, a.eng, "cam", frags[2:4])
	waitFor(t, "a's fragments on b", 10*time.Second, func() bool {
		held := map[fragment.Number]bool{}
		for _, n := range b.numbers(t, "cam") {
			held[n] = true
		}
		return held[na[0]] && held[na[1]]
	})
	if st := a.c.repl.Status(); len(st) != 1 || st[0].Holds {
		t.Fatalf("a's status claims a whole archive without b's fragments: %+v", st)
	}
}
