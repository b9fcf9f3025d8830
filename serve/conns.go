package serve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Connection limits (shared/kvs-api.md is silent; an appliance must not die
// of a flood). fasthttp's accept loop returns, and so ends the server, on
// any accept error that is not a timeout — "too many open files" included.
// acceptLoop keeps accepting whatever the error, backing off while it lasts;
// fasthttp enforces the other limits (Options.MaxConns as its Concurrency,
// MaxConnsPerIP, HeaderTimeout as its ReadTimeout for the request head and
// small bodies, from the connection's accept until its first byte and
// again from that byte; the media routes clear the deadline and bound
// themselves by progress, not age). With ReduceMemoryUsage a connection
// waiting for its first byte holds no buffers: a flood of idle
// connections costs each its goroutine and descriptor.

// ConnStats are the server's connection counters.
type ConnStats struct {
	// Open is the connections currently accepted and not yet closed.
	Open int64
	// Accepted counts every accepted connection.
	Accepted uint64
	// AcceptErrors counts failed accepts (file limit reached, …); each is
	// retried after a pause.
	AcceptErrors uint64
}

// acceptLoop is a listener whose Accept retries failed accepts with a
// backoff (5 ms doubling to 1 s) until the listener is closed, and counts
// connections.
type acceptLoop struct {
	net.Listener
	log    *slog.Logger
	closed atomic.Bool

	open, accepted, errs atomic.Int64
	lastLog              atomic.Int64 // unix ns of the last logged accept error
}

func (l *acceptLoop) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.accepted.Add(1)
			l.open.Add(1)
			return &countedConn{Conn: c, open: &l.open}, nil
		}
		if l.closed.Load() || errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.errs.Add(1)
		if now := time.Now().UnixNano(); now-l.lastLog.Load() > int64(10*time.Second) {
			l.lastLog.Store(now)
			l.log.Warn("accepting connections failed; retrying (connections are refused meanwhile)", "err", err,
				"open_connections", l.open.Load(), "accept_errors", l.errs.Load())
		}
		time.Sleep(backoff)
		backoff = min(backoff*2, time.Second)
	}
}

func (l *acceptLoop) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

// countedConn decrements the open count once, on its first Close.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// ConnStats returns the connection counters.
func (s *Server) ConnStats() ConnStats {
	l := s.ln.Load()
	if l == nil {
		return ConnStats{}
	}
	return ConnStats{Open: l.open.Load(), Accepted: uint64(l.accepted.Load()), AcceptErrors: uint64(l.errs.Load())}
}

// Lingering close bounds (RFC 9112 §9.6).
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 16 << 20
)

// lingerSlots bounds the refused requests lingering at once. Refusals
// of requests whose signature failed or was never checked (anyone can
// send those) have their own few slots, so a flood of them cannot take
// the slots of signed producers' refusals; an upload's end lingers
// without a slot (it is a signed producer's, one per upload). A refusal
// with no free slot closes at once.
type lingerSlots struct {
	n   atomic.Int64
	max int64
}

const (
	maxLingeringUnsigned = 16
	maxLingeringSigned   = 64
)

func (l *lingerSlots) take() bool {
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *lingerSlots) give() { l.n.Add(-1) }

// lingerClose ends a response sent while the request body is still
// arriving (a PutMedia refused from its headers, an upload ended by an
// ERROR). Closing a socket with unread input makes the kernel answer with
// a reset, and a producer that is still writing then sees its write fail
// ("connection reset by peer"), which Go's client reports instead of the
// response it has not read yet. So the input is read and dropped until
// the client closes (it does once it has read the response, which ends
// by its length or last chunk), lingerTime passes or lingerBytes arrive;
// the caller closes the connection after. The write side is not shut
// first: fasthttp's per-IP wrapper hides the TCP connection's CloseWrite.
// c is the hijacked connection (fasthttp's wrapper reads what its reader
// buffered first); slots, if not nil, bounds how many linger at once.
// Shutdown cuts a linger short.
func (s *Server) lingerClose(c net.Conn, slots *lingerSlots) {
	if slots != nil {
		if !slots.take() {
			return
		}
		defer slots.give()
	}
	if c.SetReadDeadline(time.Now().Add(lingerTime)) != nil {
		return
	}
	// Shutdown cuts the linger short (c must not be used once this
	// returns: wait for a cut already under way).
	cut := make(chan struct{})
	stop := context.AfterFunc(s.life, func() {
		_ = c.SetReadDeadline(time.Now())
		close(cut)
	})
	defer func() {
		if !stop() {
			<-cut
		}
	}()
	_, _ = io.Copy(io.Discard, io.LimitReader(c, lingerBytes))
}
