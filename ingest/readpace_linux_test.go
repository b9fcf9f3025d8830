package ingest

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tcpPair is a loopback TCP connection: the client end and the server's.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// testTicks is a pacer clock the test drives: each wait reports itself on
// waiting and returns at the test's tick. With forbid, a wait is an
// error. A wait nobody answers fails the test instead of hanging it.
type testTicks struct {
	t       *testing.T
	forbid  bool
	waiting chan struct{}
	tick    chan struct{}
}

func newTestTicks(t *testing.T) *testTicks {
	return &testTicks{t: t, waiting: make(chan struct{}), tick: make(chan struct{})}
}

func (tt *testTicks) wait() {
	if tt.forbid {
		tt.t.Error("a read waited for a tick")
		return
	}
	select {
	case tt.waiting <- struct{}{}:
	case <-time.After(10 * time.Second):
		tt.t.Error("a read waited for a tick nobody gave")
		return
	}
	<-tt.tick
}

// give lets one waiting read go: it waits until the read waits, then ticks.
func (tt *testTicks) give(t *testing.T) {
	t.Helper()
	select {
	case <-tt.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not wait for a tick")
	}
	tt.tick <- struct{}{}
}

// giveUntil ticks for a waiting read until done is closed.
func (tt *testTicks) giveUntil(t *testing.T, done <-chan struct{}) {
	t.Helper()
	for {
		select {
		case <-done:
			return
		case <-tt.waiting:
			tt.tick <- struct{}{}
		case <-time.After(10 * time.Second):
			t.Fatal("the read neither waited for a tick nor returned")
		}
	}
}

// queued waits until the client's socket holds n bytes.
func queued(t *testing.T, c net.Conn, n int) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got int
		_ = rc.Control(func(fd uintptr) { got, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket holds %d bytes, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// pacedForTest paces c by tt, as a connection whose media flows (past
// pacedAfterBytes) and whose last data came just now.
func pacedForTest(t *testing.T, c net.Conn, tt *testTicks) *pacedConn {
	t.Helper()
	pc := newPacedConn(c, readPacer, nil, nil)
	if pc.rc == nil {
		t.Fatal("a TCP connection is not paced")
	}
	pc.tick, pc.wait = time.Hour, tt.wait
	pc.read, pc.last = pacedAfterBytes, time.Now()
	return pc
}

// readAsync runs one Read of pc in the background.
func readAsync(pc *pacedConn, buf []byte) (done chan struct{}, n *int, err *error) {
	done, n, err = make(chan struct{}), new(int), new(error)
	go func() {
		defer close(done)
		*n, *err = pc.Read(buf)
	}()
	return done, n, err
}

// TestPacedConnTakesABurstInOneRead: a read that finds the socket empty
// waits for the tick and then takes everything that arrived meanwhile in
// one read, however many writes brought it.
func TestPacedConnTakesABurstInOneRead(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks(t)
	pc := pacedForTest(t, client, tt)
	buf := make([]byte, 1024)
	done, n, err := readAsync(pc, buf)
	select {
	case <-tt.waiting: // empty: it waits
	case <-done:
		t.Fatalf("read %q, %v from an empty socket without a tick", buf[:*n], *err)
	}
	for _, s := range []string{"bb", "ccc", "dddd"} {
		if _, err := server.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	queued(t, client, 9)
	tt.tick <- struct{}{}
	<-done
	if *err != nil || string(buf[:*n]) != "bbcccdddd" {
		t.Fatalf("paced read: %q, %v; want the three writes in one read", buf[:*n], *err)
	}
}

// TestPacedConnDrainsWithoutWaiting: after a read that got data, the next
// tries the socket at once, so what is there (more than one buffer, or
// what a small receive buffer let in since) comes without a tick.
func TestPacedConnDrainsWithoutWaiting(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks(t)
	pc := pacedForTest(t, client, tt)
	pc.last = time.Time{} // long ago: the first read blocks at once
	tt.forbid = true
	if _, err := server.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	queued(t, client, 10)
	buf := make([]byte, 4)
	var got []byte
	for len(got) < 10 {
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "0123456789" {
		t.Fatalf("read %q", got)
	}
}

// TestPacedConnHandshakeUnpaced: until pacedAfterBytes are read (the RTSP
// exchange before media flows), reads never wait for a tick.
func TestPacedConnHandshakeUnpaced(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks(t)
	tt.forbid = true
	pc := newPacedConn(client, readPacer, nil, nil)
	pc.tick, pc.wait = time.Hour, tt.wait
	buf := make([]byte, 64)
	for _, msg := range []string{"RTSP/1.0 200 OK\r\n\r\n", "RTSP/1.0 401\r\n\r\n", "RTSP/1.0 200 OK\r\n\r\n"} {
		// Data just came and none is left to drain: paced, this read
		// would wait for a tick (an error here, tt.forbid).
		pc.last, pc.drain = time.Now(), false
		done, n, err := readAsync(pc, buf)
		if _, werr := server.Write([]byte(msg)); werr != nil {
			t.Fatal(werr)
		}
		<-done
		if *err != nil || string(buf[:*n]) != msg {
			t.Fatalf("read %q, %v; want %q", buf[:*n], *err, msg)
		}
	}
}

// TestPacedConnStalledSocketBlocks: an empty socket is tried at
// pacedEmptyTicks ticks, then the read blocks as an unpaced one does (a
// stalled camera does not poll): here until the read deadline set then.
func TestPacedConnStalledSocketBlocks(t *testing.T) {
	client, _ := tcpPair(t)
	tt := newTestTicks(t)
	pc := pacedForTest(t, client, tt)
	done, _, err := readAsync(pc, make([]byte, 16))
	for range pacedEmptyTicks {
		tt.give(t)
	}
	if err := pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-tt.waiting:
		t.Fatal("the read waited for more ticks than pacedEmptyTicks")
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not end at its deadline")
	}
	if !errors.Is(*err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled read: %v, want the deadline's error", *err)
	}
}

// TestPacedConnEnds: the peer's close is io.EOF; a read of a connection
// closed here fails.
func TestPacedConnEnds(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks(t)
	pc := pacedForTest(t, client, tt)
	server.Close()
	buf := make([]byte, 16)
	done, n, err := readAsync(pc, buf)
	tt.giveUntil(t, done)
	if *n != 0 || *err != io.EOF {
		t.Fatalf("after the peer closed: %d, %v; want io.EOF", *n, *err)
	}

	pc.Close()
	pc.last = time.Now()
	done, _, err = readAsync(pc, buf)
	tt.giveUntil(t, done)
	if !errors.Is(*err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v", *err)
	}
}

// TestPacerTicksEveryWaiterAndStops: one tick wakes every waiter, a
// wait allocates nothing, and the clock stops once nobody waits and
// starts again for the next waiter.
func TestPacerTicksEveryWaiterAndStops(t *testing.T) {
	p := newPacer(time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); p.wait() }()
	}
	woke := make(chan struct{})
	go func() { wg.Wait(); close(woke) }()
	select {
	case <-woke:
	case <-time.After(10 * time.Second):
		t.Fatal("a tick did not wake every waiter")
	}
	if a := testing.AllocsPerRun(20, p.wait); a != 0 {
		t.Fatalf("a wait allocates %v times", a)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		running := p.running
		p.mu.Unlock()
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the clock still runs with nobody waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.wait() // and starts again
}

// TestPacedConnReadAllocatesNothing: a paced read of a waiting burst
// allocates nothing (the hot path of every camera).
func TestPacedConnReadAllocatesNothing(t *testing.T) {
	client, server := tcpPair(t)
	pc := newPacedConn(client, readPacer, nil, nil)
	pc.tick, pc.wait = time.Hour, func() {}
	pc.read = pacedAfterBytes
	buf := make([]byte, 64)
	msg := []byte("frame")
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := server.Write(msg); err != nil {
			t.Fatal(err)
		}
		queued(t, client, len(msg))
		pc.last = time.Now() // recent: the tick path, tryRead
		if n, err := pc.Read(buf); err != nil || n != len(msg) {
			t.Fatalf("read %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per paced read, want 0", allocs)
	}
}

// TestPacedConnUnwatchedFollowsTheSlowClock: while the camera has no live
// viewer and sends little enough per slow tick, an empty socket waits for
// the unwatched clock's tick, never the frame clock's; once a viewer
// comes, or while its rate is unknown or too high for the slow clock, the
// next read waits for the frame clock, never the slow one.
func TestPacedConnUnwatchedFollowsTheSlowClock(t *testing.T) {
	client, server := tcpPair(t)
	fast, slow := newTestTicks(t), newTestTicks(t)
	pc := pacedForTest(t, client, fast)
	var viewers atomic.Int32
	pc.watched = func() bool { return viewers.Load() > 0 }
	pc.slowTick, pc.slowWait = time.Hour, slow.wait
	pc.rateFrom = time.Now() // no new rate figure during the test
	read := func(clock *testTicks, other *testTicks, payload string) {
		t.Helper()
		other.forbid = true
		defer func() { other.forbid = false }()
		buf := make([]byte, 64)
		done, n, err := readAsync(pc, buf)
		select {
		case <-clock.waiting:
		case <-done:
			t.Fatalf("read %q, %v from an empty socket without a tick", buf[:*n], *err)
		case <-time.After(10 * time.Second):
			t.Fatal("the read waited on neither clock")
		}
		if _, err := server.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
		queued(t, client, len(payload))
		clock.tick <- struct{}{}
		<-done
		if *err != nil || string(buf[:*n]) != payload {
			t.Fatalf("read %q, %v; want %q", buf[:*n], *err, payload)
		}
		// The next read drains first: the socket is empty, so it waits
		// again, on the clock of that moment; let it find data at once.
		pc.drain = false
		pc.last = time.Now()
	}
	read(fast, slow, "rate not measured yet")
	pc.perSlowTick = unwatchedTickBytes
	read(slow, fast, "unwatched")
	read(slow, fast, "still unwatched")
	viewers.Add(1)
	read(fast, slow, "watched")
	viewers.Add(-1)
	read(slow, fast, "unwatched again")
	pc.perSlowTick = unwatchedTickBytes + 1
	read(fast, slow, "unwatched, too fast for the slow clock")
}

// A connection measures what its camera sends per slow tick over about a
// second of reads: not after its first read, then from the bytes of the
// second that ended.
func TestPacedConnMeasuresItsRate(t *testing.T) {
	client, _ := tcpPair(t)
	pc := newPacedConn(client, readPacer, unwatchedPacer(), func() bool { return false })
	pc.got(1000)
	if pc.perSlowTick != -1 {
		t.Fatalf("after one read: %d bytes per slow tick, want unmeasured", pc.perSlowTick)
	}
	// Two seconds ago the second began, and 99,000 bytes came since.
	pc.rateFrom, pc.rateBytes = time.Now().Add(-2*time.Second), 99_000
	pc.got(1000)
	want := int64(100_000 * readTickUnwatched / (2 * time.Second))
	if pc.perSlowTick < want*9/10 || pc.perSlowTick > want {
		t.Fatalf("%d bytes per slow tick, want about %d", pc.perSlowTick, want)
	}
	if pc.rateBytes != 0 || time.Since(pc.rateFrom) > time.Second {
		t.Fatal("the next second did not begin")
	}
}

// The slow clock comes in phases a frame tick apart, taken in turn by
// new connections, so unwatched cameras' reads spread over the frame
// clock's ticks; an aligned clock (a phase) ticks for its waiters as the
// plain one does.
func TestUnwatchedClockPhases(t *testing.T) {
	n := len(unwatchedPacers)
	if n != int(readTickUnwatched/readTick) {
		t.Fatalf("%d phases, want %d", n, readTickUnwatched/readTick)
	}
	if !readPacer.align || readPacer.offset != 0 {
		t.Fatal("the frame clock is not aligned with the phases")
	}
	seen := map[time.Duration]int{}
	for range 2 * n {
		p := unwatchedPacer()
		if !p.align || p.tick != readTickUnwatched || p.offset%readTick != 0 || p.offset >= readTickUnwatched {
			t.Fatalf("phase: align %v, tick %v, offset %v", p.align, p.tick, p.offset)
		}
		seen[p.offset]++
	}
	for off, k := range seen {
		if k != 2 {
			t.Errorf("offset %v taken %d times in two turns", off, k)
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct phases, want %d", len(seen), n)
	}

	p := newPacer(20 * time.Millisecond)
	p.align, p.offset = true, 10*time.Millisecond
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 3 {
			p.wait()
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("an aligned clock did not tick for its waiter")
	}
}
