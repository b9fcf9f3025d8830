package ingest

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
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
// waiting and returns at the test's tick.
type testTicks struct {
	waiting chan struct{}
	tick    chan struct{}
}

func newTestTicks() *testTicks {
	return &testTicks{waiting: make(chan struct{}), tick: make(chan struct{})}
}

func (tt *testTicks) wait() {
	tt.waiting <- struct{}{}
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

func pacedForTest(t *testing.T, c net.Conn, tt *testTicks) *pacedConn {
	t.Helper()
	pc := newPacedConn(c, readPacer)
	if pc.rc == nil {
		t.Fatal("a TCP connection is not paced")
	}
	pc.tick, pc.wait = time.Hour, tt.wait // every read after the first is "recent"
	return pc
}

// TestPacedConnTakesABurstInOneRead: the first read goes at once; the next
// waits for the tick and takes everything that arrived meanwhile in one
// read, however many writes brought it.
func TestPacedConnTakesABurstInOneRead(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks()
	pc := pacedForTest(t, client, tt)
	buf := make([]byte, 1024)

	if _, err := server.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	n, err := pc.Read(buf) // at once: no tick given
	if err != nil || string(buf[:n]) != "a" {
		t.Fatalf("first read: %q, %v", buf[:n], err)
	}

	for _, s := range []string{"bb", "ccc", "dddd"} {
		if _, err := server.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	queued(t, client, 9)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err = pc.Read(buf)
	}()
	tt.give(t)
	<-done
	if err != nil || string(buf[:n]) != "bbcccdddd" {
		t.Fatalf("paced read: %q, %v; want the three writes in one read", buf[:n], err)
	}
}

// TestPacedConnFullBufferReadsOnAtOnce: a read that fills its buffer is
// followed by the next without a tick (more is probably waiting).
func TestPacedConnFullBufferReadsOnAtOnce(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks()
	pc := pacedForTest(t, client, tt)
	if _, err := server.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	queued(t, client, 10)
	buf := make([]byte, 4)
	var got []byte
	for len(got) < 10 {
		n, err := pc.Read(buf) // a tick would block on tt forever: none is given
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
		if n < len(buf) {
			break
		}
	}
	if string(got) != "0123456789" {
		t.Fatalf("read %q", got)
	}
}

// TestPacedConnStalledSocketBlocks: an empty socket is tried at
// pacedEmptyTicks ticks, then the read blocks as an unpaced one does, so
// the connection's read deadline ends it (and a stalled camera does not
// poll).
func TestPacedConnStalledSocketBlocks(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks()
	pc := pacedForTest(t, client, tt)
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := pc.Read(buf); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err = pc.Read(buf)
	}()
	for range pacedEmptyTicks {
		tt.give(t)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the read did not end at its deadline")
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled read: %v, want the deadline's error", err)
	}
	select {
	case <-tt.waiting:
		t.Fatal("the read waited for more ticks than pacedEmptyTicks")
	default:
	}
}

// TestPacedConnEnds: the peer's close is io.EOF at the next tick; a read
// of a connection closed here fails.
func TestPacedConnEnds(t *testing.T) {
	client, server := tcpPair(t)
	tt := newTestTicks()
	pc := pacedForTest(t, client, tt)
	if _, err := server.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if _, err := pc.Read(buf); err != nil {
		t.Fatal(err)
	}
	server.Close()
	var (
		n   int
		err error
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n, err = pc.Read(buf)
	}()
	tt.give(t)
	<-done
	if n != 0 || err != io.EOF {
		t.Fatalf("after the peer closed: %d, %v; want io.EOF", n, err)
	}

	pc.Close()
	pc.last = time.Now()
	done = make(chan struct{})
	go func() {
		defer close(done)
		_, err = pc.Read(buf)
	}()
	tt.give(t)
	<-done
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read of a closed connection: %v", err)
	}
}

// TestPacerTicksEveryWaiterAndStops: one tick releases every goroutine
// waiting, and the clock stops once nobody waits.
func TestPacerTicksEveryWaiterAndStops(t *testing.T) {
	p := newPacer(time.Millisecond)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				p.wait()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		running := p.mu.running
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
	pc := newPacedConn(client, readPacer)
	pc.tick, pc.wait = time.Hour, func() {}
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
