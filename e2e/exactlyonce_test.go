package e2e

// Every frame a producer sends is stored exactly once: a producer harness
// that behaves like the real KVS C producer on the wire
// (exactlyonce_producer_test.go) streams through pauses, a frozen server,
// SIGKILLs, connection rotation, a very slow camera and network faults;
// then GetMedia from EARLIEST and GetMediaForFragmentList of every listed
// fragment must each return every frame sent (minus what the producer
// dropped on ERROR acks, which must be nothing) exactly once, in order
// (exactlyonce_frames_test.go).
//
// The scenarios run concurrently inside one test (t.Run from goroutines):
// they mostly wait on real time, and t.Parallel subtests would queue
// behind -parallel (GOMAXPROCS, 2 on the CI machines). Each scenario that
// touches its server process (SIGSTOP, SIGKILL) has a server of its own.

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/faultproxy"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// eoConcurrently runs the subtests at once and waits for them all.
func eoConcurrently(t *testing.T, subs []eoSub) {
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(s.name, s.fn)
		}()
	}
	wg.Wait()
}

type eoSub struct {
	name string
	fn   func(t *testing.T)
}

func TestExactlyOnce(t *testing.T) {
	t.Parallel()
	eoConcurrently(t, []eoSub{
		{"Pause", eoPauses},
		{"ServerFrozen", eoServerFrozen},
		{"ServerKilled", eoServerKilled},
		{"Rotation", eoRotation},
		{"SlowCamera", eoSlowCamera},
		{"NetworkFaults", eoNetworkFaults},
	})
}

// eoServer starts a server for a scenario; its log is shown when the
// scenario fails.
func eoServer(t *testing.T, env []string, listen string) *proc {
	t.Helper()
	srv := startKvsedge(t, env, "--listen", listen)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log (%s):\n%s", srv.endpoint, srv.logs.String())
		}
	})
	return srv
}

// eoHostPort is the host:port of an endpoint URL.
func eoHostPort(t testing.TB, endpoint string) string {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// eoNowMs is a producer start time: now, in whole seconds.
func eoNowMs() int64 { return time.Now().UnixMilli() / 1000 * 1000 }

// eoPauses: the producer pauses 3, 10 and 25 s inside a fragment, with
// and without the END_OF_FRAGMENT tag. The uplink stalls (the camera goes
// on; the backlog follows at once); one more run freezes the whole host
// (the camera too) for 25 s. The server's idle close (30 s) stays above
// every pause: a pause is never a fragment boundary.
func eoPauses(t *testing.T) {
	srv := eoServer(t, mediaEnv(t.TempDir()), "127.0.0.1:0")
	addr := eoHostPort(t, srv.endpoint)
	var subs []eoSub
	for _, pause := range []time.Duration{3 * time.Second, 10 * time.Second, 25 * time.Second} {
		for _, eof := range []eoEOF{eoEOFNext, eoEOFNone} {
			for _, camera := range []bool{false, true} {
				if camera && (pause != 25*time.Second || eof != eoEOFNext) {
					continue
				}
				name := fmt.Sprintf("%v_%s", pause, eof)
				if camera {
					name += "_HostFrozen"
				}
				subs = append(subs, eoSub{name, func(t *testing.T) {
					stream := "pause-" + strings.ReplaceAll(name, "_", "-")
					createStream(t, srv.endpoint, stream)
					p := eoStart(t, eoConfig{Addr: addr, Stream: stream, TimecodeType: "ABSOLUTE", EOF: eof,
						Source: eoCaptureSource(t, fixture.AbsoluteH264, 6, eoNowMs()),
						Pauses: []eoPause{{Frag: 2, AfterFrame: 20, For: pause, Camera: camera}}})
					eoVerify(t, srv.endpoint, stream, p.Wait())
				}})
			}
		}
	}
	// Longer than the server's idle close (30 s), by a producer that ends
	// its fragments with the tag: the fragment cut by the close is
	// unfinished, so it is dropped, not PERSISTED, and re-sent whole.
	subs = append(subs, eoSub{"35s_EOF_PastIdleClose", func(t *testing.T) {
		stream := "pause-35s-past-idle-close"
		createStream(t, srv.endpoint, stream)
		p := eoStart(t, eoConfig{Addr: addr, Stream: stream, TimecodeType: "ABSOLUTE", EOF: eoEOFNext,
			Source: eoCaptureSource(t, fixture.AbsoluteH264, 6, eoNowMs()),
			Pauses: []eoPause{{Frag: 2, AfterFrame: 20, For: 35 * time.Second}}})
		eoVerify(t, srv.endpoint, stream, p.Wait())
	}})
	eoConcurrently(t, subs)
}

// eoServerFrozen: the server process is stopped (SIGSTOP) mid-fragment for
// 8 s, then resumed. The producer finds the connection stale after 5 s
// and re-sends on a new one, which waits in the stopped server's backlog.
func eoServerFrozen(t *testing.T) {
	srv := eoServer(t, mediaEnv(t.TempDir()), "127.0.0.1:0")
	stream := "frozen"
	createStream(t, srv.endpoint, stream)
	p := eoStart(t, eoConfig{Addr: eoHostPort(t, srv.endpoint), Stream: stream, TimecodeType: "RELATIVE", EOF: eoEOFNext,
		Source: eoCaptureSource(t, fixture.RelativeH264AAC, 12, eoNowMs())})
	if !p.WaitUntil(30*time.Second, func(s eoStatus) bool { return s.Persisted >= 2 && s.midFragment(5) }) {
		t.Fatalf("no 2 PERSISTED fragments, then mid-fragment, in 30 s: %+v\n%s", p.Status(), p.Stop().Log)
	}
	p.Logf("SIGSTOP the server (mid-fragment: %+v)", p.Status())
	if err := srv.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = srv.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	defer resume()
	time.Sleep(8 * time.Second)
	resume()
	p.Logf("SIGCONT the server")
	res := p.Wait()
	if res.Conns < 2 {
		t.Logf("note: the producer never found its connection stale during the freeze (%d connections)", res.Conns)
	}
	eoVerify(t, srv.endpoint, stream, res)
}

// eoServerKilled: the server is SIGKILLed mid-fragment and restarted on
// the same data directory and port 6 s later, ten times in a row, while
// the producer keeps its fragments and re-sends what was not PERSISTED.
func eoServerKilled(t *testing.T) {
	dir := t.TempDir()
	env := mediaEnv(dir)
	srv := eoServer(t, env, "127.0.0.1:0")
	addr := eoHostPort(t, srv.endpoint)
	stream := "killed"
	createStream(t, srv.endpoint, stream)
	p := eoStart(t, eoConfig{Addr: addr, Stream: stream, TimecodeType: "RELATIVE", EOF: eoEOFNext,
		Source: eoCaptureSource(t, fixture.RelativeH264AAC, 150, eoNowMs())})
	const kills = 10
	for k := 1; k <= kills; k++ {
		before := p.Status().Persisted
		if !p.WaitUntil(60*time.Second, func(s eoStatus) bool { return s.Persisted > before && s.midFragment(5) }) {
			srv.kill()
			t.Fatalf("kill %d: no new PERSISTED fragment, then mid-fragment, within 60 s: %+v\n%s", k, p.Status(), p.Stop().Log)
		}
		p.Logf("kill %d: SIGKILL the server (%+v)", k, p.Status())
		srv.kill()
		time.Sleep(6 * time.Second)
		srv = eoServer(t, env, addr)
		p.Logf("kill %d: server restarted", k)
	}
	// Three more fragments after the last restart, then the end.
	p.Truncate(p.Status().Frag + 3)
	res := p.Wait()
	eoVerify(t, srv.endpoint, stream, res)
}

// eoRotation: the producer rotates its connection (a new upload opened
// while the old one still sends; the old one finishes its fragment and
// closes), twice, with ABSOLUTE and RELATIVE timecodes. The old upload
// completes its fragment and it is stored (serve/FORMAT.md): nothing
// needs re-sending. In LongOverlap the old one sends one fragment more,
// which the server refuses silently at its start.
func eoRotation(t *testing.T) {
	srv := eoServer(t, mediaEnv(t.TempDir()), "127.0.0.1:0")
	addr := eoHostPort(t, srv.endpoint)
	run := func(tcType, capture string, eof eoEOF, overlap int) func(t *testing.T) {
		return func(t *testing.T) {
			stream := fmt.Sprintf("rotate-%s-%s-%d", strings.ToLower(tcType), eof, overlap)
			createStream(t, srv.endpoint, stream)
			p := eoStart(t, eoConfig{Addr: addr, Stream: stream, TimecodeType: tcType, EOF: eof,
				Source: eoCaptureSource(t, capture, 10, eoNowMs())})
			for _, after := range []int{2, 5} {
				if !p.WaitUntil(30*time.Second, func(s eoStatus) bool { return s.Persisted >= after && s.midFragment(5) }) {
					t.Fatalf("no %d PERSISTED fragments, then mid-fragment, in 30 s: %+v\n%s", after, p.Status(), p.Stop().Log)
				}
				p.Logf("rotate (%+v)", p.Status())
				p.RotateAfter(overlap)
			}
			res := p.Wait()
			if overlap == 1 && res.Stale == 0 {
				if res.Conns != 3 {
					t.Errorf("%d connections, want 3 (two rotations, nothing else)", res.Conns)
				}
				if res.Resent > 0 {
					t.Errorf("%d fragments had to be re-sent after a clean rotation: the rotated-out upload did not store the fragment it was completing", res.Resent)
				}
			}
			eoVerify(t, srv.endpoint, stream, res)
		}
	}
	eoConcurrently(t, []eoSub{
		{"ABSOLUTE", run("ABSOLUTE", fixture.AbsoluteH264, eoEOFNext, 1)},
		{"RELATIVE", run("RELATIVE", fixture.RelativeH264AAC, eoEOFNext, 1)},
		{"ABSOLUTE_NoEOF", run("ABSOLUTE", fixture.AbsoluteH264, eoEOFNone, 1)},
		// The old upload goes on into the next fragment: the server ends it
		// silently at that boundary; the producer re-sends that fragment.
		{"RELATIVE_LongOverlap", run("RELATIVE", fixture.RelativeH264AAC, eoEOFNext, 2)},
	})
}

// eoSlowCamera: a camera at 0.2 fps (a key frame every 5 s) through
// PutMedia, fragments of 2 key frames = 10 s, with the END_OF_FRAGMENT tag
// as the C producer writes it (when the next fragment begins), right after
// the last frame, and without it.
func eoSlowCamera(t *testing.T) {
	srv := eoServer(t, mediaEnv(t.TempDir()), "127.0.0.1:0")
	addr := eoHostPort(t, srv.endpoint)
	var subs []eoSub
	for _, eof := range []eoEOF{eoEOFNext, eoEOFLast, eoEOFNone} {
		subs = append(subs, eoSub{eof.String(), func(t *testing.T) {
			stream := "slowcam-" + eof.String()
			createStream(t, srv.endpoint, stream)
			p := eoStart(t, eoConfig{Addr: addr, Stream: stream, TimecodeType: "ABSOLUTE", EOF: eof,
				Source: eoSyntheticSource(t, 4, 2, 5*time.Second, 20<<10, true, eoNowMs())})
			eoVerify(t, srv.endpoint, stream, p.Wait())
		}})
	}
	eoConcurrently(t, subs)
}

// eoNetworkFaults: a fault proxy between the producer and the server
// freezes the path for 8 s or 35 s mid-fragment (both directions,
// connections kept), or cuts every connection mid-fragment, twice.
func eoNetworkFaults(t *testing.T) {
	srv := eoServer(t, mediaEnv(t.TempDir()), "127.0.0.1:0")
	proxy := func(t *testing.T) *faultproxy.Proxy {
		px, err := faultproxy.Listen(eoHostPort(t, srv.endpoint))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = px.Close() })
		return px
	}
	frozen := func(d time.Duration) func(t *testing.T) {
		return func(t *testing.T) {
			px := proxy(t)
			stream := fmt.Sprintf("netfrozen-%v", d)
			createStream(t, srv.endpoint, stream)
			p := eoStart(t, eoConfig{Addr: px.Addr(), Stream: stream, TimecodeType: "RELATIVE", EOF: eoEOFNext,
				Source: eoCaptureSource(t, fixture.RelativeH264AAC, 12, eoNowMs())})
			if !p.WaitUntil(30*time.Second, func(s eoStatus) bool { return s.Persisted >= 2 && s.midFragment(5) }) {
				t.Fatalf("no 2 PERSISTED fragments, then mid-fragment, in 30 s: %+v\n%s", p.Status(), p.Stop().Log)
			}
			p.Logf("freeze the network (%+v)", p.Status())
			px.Freeze()
			time.Sleep(d)
			px.Thaw()
			p.Logf("thaw the network; %d connections held", px.Open())
			eoVerify(t, srv.endpoint, stream, p.Wait())
		}
	}
	eoConcurrently(t, []eoSub{
		{"Frozen8s", frozen(8 * time.Second)},
		// Longer than the server's idle close (30 s): the server ends the
		// silent upload, storing the fragment it had begun as far as it
		// got; the producer's re-send of it whole replaces that copy.
		{"Frozen35s", frozen(35 * time.Second)},
		{"Cut", func(t *testing.T) {
			px := proxy(t)
			stream := "netcut"
			createStream(t, srv.endpoint, stream)
			p := eoStart(t, eoConfig{Addr: px.Addr(), Stream: stream, TimecodeType: "ABSOLUTE", EOF: eoEOFNone,
				Source: eoCaptureSource(t, fixture.AbsoluteH264, 10, eoNowMs())})
			for _, after := range []int{2, 5} {
				if !p.WaitUntil(30*time.Second, func(s eoStatus) bool { return s.Persisted >= after && s.midFragment(5) }) {
					t.Fatalf("no %d PERSISTED fragments, then mid-fragment, in 30 s: %+v\n%s", after, p.Status(), p.Stop().Log)
				}
				p.Logf("cut every connection (%+v): %d cut", p.Status(), px.Cut())
			}
			eoVerify(t, srv.endpoint, stream, p.Wait())
		}},
	})
}

// TestExactlyOnceComparatorSelfCheck: the comparator reports a
// duplicated, a missing, an unexpected and a reordered frame, naming
// them, so the scenarios above can fail.
func TestExactlyOnceComparatorSelfCheck(t *testing.T) {
	src := eoSyntheticSource(t, 3, 4, 40*time.Millisecond, 64, false, 1795600000000)
	res := &eoResult{Src: src}
	for range src.Frags {
		res.Frags = append(res.Frags, eoFragState{starts: 1, wholes: 1})
	}
	want := res.Expected()
	if len(want) != 12 {
		t.Fatalf("%d frames expected, want 12", len(want))
	}
	var exact []eoGot
	for _, w := range want {
		exact = append(exact, eoGot{Key: w.Key, Number: fmt.Sprintf("F%d", w.Frag)})
	}
	if d := eoCompare(want, exact); !d.Empty() {
		t.Fatalf("an exact read is reported as different: %s", d)
	}

	// Frame 1 of fragment 0 read twice, frame 2 of fragment 1 missing, a
	// frame nobody sent, and fragment 2's first two frames swapped.
	bad := append([]eoGot(nil), exact...)
	dup, gone := want[1], want[6]
	bad = append(bad[:2], append([]eoGot{{Key: dup.Key, Number: "F9"}}, bad[2:]...)...)
	for i, g := range bad {
		if g.Key == gone.Key {
			bad = append(bad[:i], bad[i+1:]...)
			break
		}
	}
	stranger := eoKeyOf(1, 1795600000000+7, []byte("never sent"))
	bad = append(bad, eoGot{Key: stranger, Number: "F7"})
	for i := range bad {
		if bad[i].Key == want[8].Key {
			bad[i], bad[i+1] = bad[i+1], bad[i]
			break
		}
	}
	d := eoCompare(want, bad)
	if len(d.Missing) != 1 || d.Missing[0].Key != gone.Key {
		t.Errorf("missing: %+v, want only %s", d.Missing, gone.Key)
	}
	if len(d.Duplicated) != 1 || d.Duplicated[0].Want.Key != dup.Key || len(d.Duplicated[0].Numbers) != 2 {
		t.Errorf("duplicated: %+v, want only %s twice", d.Duplicated, dup.Key)
	}
	if len(d.Unexpected) != 1 || d.Unexpected[0].Key != stranger {
		t.Errorf("unexpected: %+v, want only %s", d.Unexpected, stranger)
	}
	if len(d.Disorder) != 1 {
		t.Errorf("out of order: %q, want one", d.Disorder)
	}
	msg := d.String()
	for _, s := range []string{
		"MISSING in fragment 1 (producer 1795600000160 ms",
		fmt.Sprintf("track 1 @ %d ms", gone.Key.Ms),
		"DUPLICATED in fragment 0",
		fmt.Sprintf("track 1 @ %d ms", dup.Key.Ms),
		"read 2 times, in fragments F0, F9",
		"NOT SENT: track 1 @ 1795600000007 ms",
		"OUT OF ORDER",
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("report does not say %q:\n%s", s, msg)
		}
	}
	t.Logf("the comparator's report of a bad read:\n%s", msg)
}
