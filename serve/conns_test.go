package serve

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"testing"
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
