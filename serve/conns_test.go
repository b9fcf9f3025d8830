package serve

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first n accepts with EMFILE, as a full file
// table does, then hands out one end of a pipe.
type flakyListener struct {
	n      int
	closed bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.closed {
		return nil, net.ErrClosed
	}
	if l.n > 0 {
		l.n--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	a, _ := net.Pipe()
	return a, nil
}
func (l *flakyListener) Close() error   { l.closed = true; return nil }
func (l *flakyListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestAcceptLoopOutlastsAFullFileTable: fasthttp ends its server on any
// accept error but a timeout; the accept loop retries instead, counts the
// failures, and still returns net.ErrClosed once closed.
func TestAcceptLoopOutlastsAFullFileTable(t *testing.T) {
	fl := &flakyListener{n: 4}
	l := &acceptLoop{Listener: fl, log: slog.New(slog.DiscardHandler)}
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept gave up: %v", err)
	}
	if l.errs.Load() != 4 || l.open.Load() != 1 || l.accepted.Load() != 1 {
		t.Fatalf("errors %d open %d accepted %d", l.errs.Load(), l.open.Load(), l.accepted.Load())
	}
	c.Close()
	c.Close()
	if l.open.Load() != 0 {
		t.Fatalf("open %d after closing twice", l.open.Load())
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestHeaderTimeoutAnswers: a connection that sends nothing is closed
// without an answer at the header timeout; one whose request head is cut
// off by it is answered 408 (fasthttp's default said 400) and closed.
func TestHeaderTimeoutAnswers(t *testing.T) {
	ts := startServerWith(t, "", func(o *Options) { o.HeaderTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(ts.URL, "http://")
	for _, tc := range []struct {
		name, send, want string
	}{
		{"idle", "", ""},
		{"slow head", "POST /listStreams HTTP/1.1\r\nHost: x\r\nX-Slow: aaa", "HTTP/1.1 408 Request Timeout\r\n"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("%s: the box did not close the connection: %v", tc.name, err)
		}
		if !strings.HasPrefix(string(got), tc.want) || (tc.want == "" && len(got) > 0) {
			t.Fatalf("%s: answered %q, want %q", tc.name, got, tc.want)
		}
	}
}

// BenchmarkIdleConnections measures what a connection that never sends a
// byte costs the box while it waits for its header timeout: Go heap and
// goroutine stack in use per connection (the client ends, in the same
// process, cost a few hundred bytes each of that).
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	var heap, stack float64
	for b.Loop() {
		// A fresh server each round: fasthttp keeps idle workers (and
		// their stacks) and pooled buffers from earlier connections.
		ts := startServerWith(b, "", func(o *Options) { o.HeaderTimeout, o.MaxConnsPerIP = time.Minute, n })
		addr := strings.TrimPrefix(ts.URL, "http://")
		base := memInUse()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		waitOpen(b, ts.srv, n)
		held := memInUse()
		heap += (float64(held.HeapInuse) - float64(base.HeapInuse)) / n
		stack += (float64(held.StackInuse) - float64(base.StackInuse)) / n
		for _, c := range conns {
			c.Close()
		}
		waitOpen(b, ts.srv, 0)
		ts.stop()
	}
	b.ReportMetric(heap/float64(b.N), "heap-B/conn")
	b.ReportMetric(stack/float64(b.N), "stack-B/conn")
}

// memInUse is the memory statistics after two collections (the second
// frees what sync.Pools dropped in the first).
func memInUse() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

// waitOpen waits until the server has n connections open and their
// goroutines have settled.
func waitOpen(tb testing.TB, srv *Server, n int64) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for srv.ConnStats().Open != n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d connections open, want %d", srv.ConnStats().Open, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
}
