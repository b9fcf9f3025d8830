package cluster

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/valyala/fasthttp"
)

// ingestAwait ingests frags into stream on e and, for each, waits for its
// AckReady after Persist, as PutMedia does. It returns the numbers, how
// long each ack was held back, and whether peer held the fragment
// durably when its ack was let go (nil peer: not checked).
var ingestAwaitRuns atomic.Int64

func ingestAwait(t *testing.T, e *engine.Engine, stream string, n int, peer *engine.Engine) (nums []fragment.Number, held []time.Duration, onPeer []bool) {
	t.Helper()
	frags := captured(t)
	// Each call records the capture again, 1000 s after the last one: the
	// same frames near one producer time would be a copy (engine/resend.go).
	run := ingestAwaitRuns.Add(1) * 1_000_000
	sess, err := e.BeginIngest(engine.StreamRef{Name: stream})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for i := range n {
		c := *frags[i%len(frags)]
		c.Buf = append(engine.NewMediaBuffer(), frags[i%len(frags)].Buf...)
		num, serverMs, err := sess.StartFragment()
		if err != nil {
			t.Fatal(err)
		}
		rec, err := sess.Receive(num, serverMs, serverMs+run+int64(i)*10_000, &c)
		if err != nil {
			t.Fatal(err)
		}
		if err := sess.Persist(rec.Fragment); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		select {
		case <-sess.AckReady(num):
		case <-time.After(20 * time.Second):
			t.Fatalf("fragment %s: PERSISTED held back for 20 s", num)
		}
		held = append(held, time.Since(start))
		nums = append(nums, num)
		if peer != nil {
			has, err := peer.HasFragment(engine.StreamRef{Name: stream}, num)
			onPeer = append(onPeer, err == nil && has)
		}
	}
	return nums, held, onPeer
}

func replOf(t *testing.T, c *Cluster, stream string) status.StreamReplication {
	t.Helper()
	for _, sr := range c.Replication() {
		if sr.Stream == stream {
			return sr
		}
	}
	t.Fatalf("no replication state of %s", stream)
	return status.StreamReplication{}
}

// TestReplicatedDurability: with two boxes, a fragment's PERSISTED is let
// go only once the replica holds it durably; when the replica's reports
// stop, the stream falls back to local acks within the bound and says so
// (status, alarm), and returns to replicated acks once the replica caught
// up; a stream tagged local never waits; with the replica dead, acks are
// local at once.
func TestReplicatedDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("long (seconds of real media or gossip): make test runs it")
	}
	key := []byte("0123456789abcdef")
	var dropReports atomic.Bool
	a := startReplNodeWith(t, "a", 1, nil, key, replNodeOptions{ackTimeout: 1500 * time.Millisecond,
		wrap: func(h fasthttp.RequestHandler) fasthttp.RequestHandler {
			return func(ctx *fasthttp.RequestCtx) {
				if dropReports.Load() && strings.HasSuffix(string(ctx.Path()), "/durable") {
					ctx.Error("dropped by the test", http.StatusServiceUnavailable)
					return
				}
				h(ctx)
			}
		}})
	b := startReplNode(t, "b", 2, []string{a.gossipAddr()}, key)
	waitFor(t, "two members", 10*time.Second, func() bool { return alive(a.c) == 2 && alive(b.c) == 2 })
	for _, s := range []engine.CreateStreamInput{{Name: "cam", DataRetentionInHours: 2},
		{Name: "quick", DataRetentionInHours: 2, Tags: map[string]string{TagDurability: DurabilityLocal}},
		{Name: "sure", DataRetentionInHours: 2, Tags: map[string]string{TagDurability: DurabilityReplicated}}} {
		if _, err := a.eng.CreateStream(s); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the streams reach b", 10*time.Second, func() bool {
		_, e1 := b.eng.Stream(engine.StreamRef{Name: "cam"})
		_, e2 := b.eng.Stream(engine.StreamRef{Name: "sure"})
		return e1 == nil && e2 == nil
	})
	waitFor(t, "b tails a", 10*time.Second, func() bool {
		b.c.repl.mu.Lock()
		defer b.c.repl.mu.Unlock()
		return len(b.c.repl.tails) == 3
	})

	// Replicated: every ack waits for b, and b has the fragment then.
	nums, held, onB := ingestAwait(t, a.eng, "cam", 5, b.eng)
	for i := range nums {
		if !onB[i] {
			t.Fatalf("fragment %s acknowledged before b held it (held back %v)", nums[i], held[i])
		}
	}
	sr := replOf(t, a.c, "cam")
	if sr.Durability != DurabilityReplicated || sr.AcksReplicated != 5 || sr.AcksFallback != 0 || sr.LocalAcksSince != "" || sr.ConfirmedBy != "b" {
		t.Fatalf("a's state of cam after 5 replicated acks: %+v", sr)
	}
	t.Logf("acks held back for a replica: %v (confirm p50 %d ms, p99 %d ms)", held, sr.ConfirmP50Ms, sr.ConfirmP99Ms)
	if a.c.DurabilityAlarm() != "" {
		t.Fatalf("alarm while replicated: %s", a.c.DurabilityAlarm())
	}

	// Local by choice: no wait, counted as local.
	_, held, _ = ingestAwait(t, a.eng, "quick", 2, nil)
	if sr := replOf(t, a.c, "quick"); sr.Durability != DurabilityLocal || sr.AcksLocal != 2 || sr.AcksReplicated != 0 {
		t.Fatalf("a's state of quick: %+v (held %v)", sr, held)
	}

	// b's reports stop reaching a: the first ack waits the bound, then
	// the stream acknowledges on local durability and says so.
	dropReports.Store(true)
	_, held, _ = ingestAwait(t, a.eng, "cam", 3, nil)
	if held[0] < time.Second || held[0] > 10*time.Second || held[1] > time.Second || held[2] > time.Second {
		t.Fatalf("with reports dropped, acks held back %v (want the 1.5 s bound once, then none)", held)
	}
	sr = replOf(t, a.c, "cam")
	if sr.AcksFallback != 3 || sr.LocalAcksSince == "" || !strings.Contains(sr.LocalAcksWhy, "within") {
		t.Fatalf("a's state of cam after the fallback: %+v", sr)
	}
	if al := a.c.DurabilityAlarm(); !strings.Contains(al, "cam") {
		t.Fatalf("no alarm for cam: %q", al)
	}
	// The reports come through again, but the stream is idle: a's next
	// comparison with b finds b holds everything, which brings replicated
	// acks back (an active stream comes back by b's reports: TestClusterDiskDeath).
	dropReports.Store(false)
	waitFor(t, "cam back to replicated acks", 10*time.Second, func() bool { return replOf(t, a.c, "cam").LocalAcksSince == "" })
	nums, _, onB = ingestAwait(t, a.eng, "cam", 2, b.eng)
	if !onB[0] || !onB[1] {
		t.Fatalf("after the recovery, fragments %v acknowledged before b held them: %v", nums, onB)
	}
	if a.c.DurabilityAlarm() != "" {
		t.Fatalf("alarm after the recovery: %s", a.c.DurabilityAlarm())
	}

	// b dies (gossip stops without leaving, as in a crash): acks no
	// longer wait for a report that cannot come; the streams fall back
	// at once and say why.
	b.c.repl.Close()
	_ = b.c.serf.Shutdown()
	waitFor(t, "b seen dead", 10*time.Second, func() bool { return alive(a.c) == 1 })
	_, held, _ = ingestAwait(t, a.eng, "cam", 1, nil)
	_, held2, _ := ingestAwait(t, a.eng, "sure", 1, nil)
	if held[0] > time.Second || held2[0] > time.Second {
		t.Fatalf("with no replica alive, acks held back %v and %v", held, held2)
	}
	for _, name := range []string{"cam", "sure"} {
		if sr := replOf(t, a.c, name); sr.Durability != DurabilityReplicated || !strings.Contains(sr.LocalAcksWhy, "no replica") || sr.AcksFallback == 0 {
			t.Fatalf("a's state of %s with b dead: %+v", name, sr)
		}
	}
}

// TestDurabilityModeOf: the stream's tag wins over the configured default;
// an unknown tag value is ignored.
func TestDurabilityModeOf(t *testing.T) {
	for _, tc := range []struct{ def, tag, want string }{
		{DurabilityLocal, "", DurabilityLocal},
		{DurabilityReplicated, "", DurabilityReplicated},
		{DurabilityLocal, DurabilityReplicated, DurabilityReplicated},
		{DurabilityReplicated, DurabilityLocal, DurabilityLocal},
		{DurabilityLocal, "twice", DurabilityLocal},
	} {
		d := &durability{def: tc.def}
		info := &engine.StreamInfo{Name: "s", Tags: map[string]string{}}
		if tc.tag != "" {
			info.Tags[TagDurability] = tc.tag
		}
		if got := d.modeOf(info); got != tc.want {
			t.Errorf("default %q, tag %q: %q, want %q", tc.def, tc.tag, got, tc.want)
		}
	}
}
