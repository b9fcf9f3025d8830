package netcut

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	ioWait     = 2 * time.Second        // generous deadline for traffic that must arrive
	silentWait = 150 * time.Millisecond // how long to wait for traffic that must not arrive
)

// startTCPEcho serves a TCP echo server on ln and counts accepted connections.
func startTCPEcho(t *testing.T, ln net.Listener) *atomic.Int64 {
	t.Helper()
	var accepts atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return &accepts
}

// udpEcho is a UDP echo server that remembers the last source it heard from.
type udpEcho struct {
	conn     *net.UDPConn
	received atomic.Int64
	mu       sync.Mutex
	sources  map[netip.AddrPort]bool
	last     netip.AddrPort
}

func startUDPEcho(t *testing.T, conn *net.UDPConn) *udpEcho {
	t.Helper()
	e := &udpEcho{conn: conn, sources: make(map[netip.AddrPort]bool)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			e.received.Add(1)
			e.mu.Lock()
			e.sources[from] = true
			e.last = from
			e.mu.Unlock()
			_, _ = conn.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return e
}

func (e *udpEcho) lastSource() netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.last
}

func (e *udpEcho) sourceCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sources)
}

func listenLoopbackTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	return ln
}

func listenLoopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	return c
}

func closeProxy(t *testing.T, p *Proxy) {
	t.Helper()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioWait)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tcpRoundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(ioWait)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// tcpMustBeClosed asserts that c was closed by the proxy: a round trip fails
// with an error other than our own deadline.
func tcpMustBeClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(ioWait)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	_, werr := c.Write([]byte("x"))
	n, rerr := io.ReadFull(c, make([]byte, 1))
	if rerr == nil {
		t.Fatalf("read through cut connection succeeded (%d bytes, write err %v)", n, werr)
	}
	if errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatalf("connection left open by the proxy: read timed out instead of failing")
	}
}

func udpClient(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatalf("resolve %s: %v", addr, err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatalf("dial udp %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func udpRoundTrip(t *testing.T, c *net.UDPConn, msg string) {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("udp write %q: %v", msg, err)
	}
	if err := c.SetReadDeadline(time.Now().Add(ioWait)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("udp read echo of %q: %v", msg, err)
	}
	if got := string(buf[:n]); got != msg {
		t.Fatalf("udp echo = %q, want %q", got, msg)
	}
}

// udpMustBeSilent asserts that nothing arrives on c for silentWait.
func udpMustBeSilent(t *testing.T, c *net.UDPConn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(silentWait)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err == nil {
		t.Fatalf("datagram %q delivered through cut proxy", buf[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("udp read: %v, want deadline exceeded", err)
	}
}

func TestTCPCutAndHeal(t *testing.T) {
	t.Parallel()
	ln := listenLoopbackTCP(t)
	accepts := startTCPEcho(t, ln)
	p, err := ListenTCP("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatalf("ListenTCP: %v", err)
	}
	closeProxy(t, p)
	if p.udpLn != nil {
		t.Fatalf("ListenTCP opened a UDP socket")
	}

	c1 := dialTCP(t, p.Addr())
	tcpRoundTrip(t, c1, "hello")
	tcpRoundTrip(t, c1, "again")

	p.Cut()
	tcpMustBeClosed(t, c1)

	before := accepts.Load()
	c2 := dialTCP(t, p.Addr())
	tcpMustBeClosed(t, c2)
	if got := accepts.Load(); got != before {
		t.Fatalf("target accepted %d connections while cut", got-before)
	}

	p.Heal()
	c3 := dialTCP(t, p.Addr())
	tcpRoundTrip(t, c3, "healed")
}

func TestTCPHalfClose(t *testing.T) {
	t.Parallel()
	ln := listenLoopbackTCP(t)
	startTCPEcho(t, ln)
	p, err := ListenTCP("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatalf("ListenTCP: %v", err)
	}
	closeProxy(t, p)

	c := dialTCP(t, p.Addr())
	if err := c.SetDeadline(time.Now().Add(ioWait)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(got) != "bye" {
		t.Fatalf("echo after half-close = %q, want %q", got, "bye")
	}
}

func TestUDPCutAndHeal(t *testing.T) {
	t.Parallel()
	echo := startUDPEcho(t, listenLoopbackUDP(t))
	p, err := Listen("127.0.0.1:0", echo.conn.LocalAddr().String())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	closeProxy(t, p)

	a := udpClient(t, p.Addr())
	b := udpClient(t, p.Addr())
	udpRoundTrip(t, a, "from-a-1")
	udpRoundTrip(t, b, "from-b-1")
	udpRoundTrip(t, a, "from-a-2")
	udpRoundTrip(t, b, "from-b-2")
	if n := echo.sourceCount(); n != 2 {
		t.Fatalf("target saw %d upstream sources, want 2 (one per client)", n)
	}

	p.Cut()
	// Client -> target is dropped.
	before := echo.received.Load()
	if _, err := a.Write([]byte("cut-a")); err != nil {
		t.Fatalf("udp write: %v", err)
	}
	if _, err := b.Write([]byte("cut-b")); err != nil {
		t.Fatalf("udp write: %v", err)
	}
	udpMustBeSilent(t, a)
	udpMustBeSilent(t, b)
	if got := echo.received.Load(); got != before {
		t.Fatalf("target received %d datagrams while cut", got-before)
	}
	// Target -> client is dropped too.
	if _, err := echo.conn.WriteToUDPAddrPort([]byte("unsolicited"), echo.lastSource()); err != nil {
		t.Fatalf("target write: %v", err)
	}
	udpMustBeSilent(t, a)
	udpMustBeSilent(t, b)

	p.Heal()
	udpRoundTrip(t, a, "from-a-3")
	udpRoundTrip(t, b, "from-b-3")
	if n := echo.sourceCount(); n != 2 {
		t.Fatalf("target saw %d upstream sources after heal, want 2", n)
	}
}

func TestUDPLargeDatagram(t *testing.T) {
	t.Parallel()
	echo := startUDPEcho(t, listenLoopbackUDP(t))
	p, err := Listen("127.0.0.1:0", echo.conn.LocalAddr().String())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	closeProxy(t, p)
	big := make([]byte, 60000)
	for i := range big {
		big[i] = byte('a' + i%26)
	}
	udpRoundTrip(t, udpClient(t, p.Addr()), string(big))
}

func TestUDPIdleMappingExpires(t *testing.T) {
	t.Parallel()
	echo := startUDPEcho(t, listenLoopbackUDP(t))
	p, err := newProxy("127.0.0.1:0", echo.conn.LocalAddr().String(), true, 100*time.Millisecond)
	if err != nil {
		t.Fatalf("newProxy: %v", err)
	}
	closeProxy(t, p)
	c := udpClient(t, p.Addr())
	udpRoundTrip(t, c, "one")

	mappings := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.udpMaps)
	}
	if n := mappings(); n != 1 {
		t.Fatalf("mappings = %d, want 1", n)
	}
	deadline := time.Now().Add(ioWait)
	for mappings() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle UDP mapping did not expire")
		}
		time.Sleep(10 * time.Millisecond)
	}
	udpRoundTrip(t, c, "two")
	if n := echo.sourceCount(); n != 2 {
		t.Fatalf("target saw %d upstream sources, want 2 (a new one after expiry)", n)
	}
}

// TestListenSharesPort checks that TCP and UDP share the proxy port and that
// both are forwarded to a target that also shares one port, as memberlist does.
func TestListenSharesPort(t *testing.T) {
	t.Parallel()
	var (
		ln net.Listener
		uc *net.UDPConn
	)
	for attempt := 0; ; attempt++ {
		ln = listenLoopbackTCP(t)
		var err error
		uc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: ln.Addr().(*net.TCPAddr).Port})
		if err == nil {
			break
		}
		_ = ln.Close()
		if attempt > 20 {
			t.Fatalf("could not bind TCP and UDP on one port: %v", err)
		}
	}
	startTCPEcho(t, ln)
	echo := startUDPEcho(t, uc)

	p, err := Listen("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	closeProxy(t, p)
	tcpPort := p.tcpLn.Addr().(*net.TCPAddr).Port
	udpPort := p.udpLn.LocalAddr().(*net.UDPAddr).Port
	if tcpPort != udpPort || tcpPort == 0 {
		t.Fatalf("TCP port %d, UDP port %d: want the same non-zero port", tcpPort, udpPort)
	}
	if _, port, _ := net.SplitHostPort(p.Addr()); port == "0" {
		t.Fatalf("Addr() = %q, want the real port", p.Addr())
	}

	tcpRoundTrip(t, dialTCP(t, p.Addr()), "tcp")
	udpRoundTrip(t, udpClient(t, p.Addr()), "udp")
	if echo.received.Load() != 1 {
		t.Fatalf("UDP target received %d datagrams, want 1", echo.received.Load())
	}

	p.Cut()
	p.Cut() // idempotent
	udpc := udpClient(t, p.Addr())
	if _, err := udpc.Write([]byte("dropped")); err != nil {
		t.Fatalf("udp write: %v", err)
	}
	udpMustBeSilent(t, udpc)
	tcpMustBeClosed(t, dialTCP(t, p.Addr()))
	p.Heal()
	tcpRoundTrip(t, dialTCP(t, p.Addr()), "tcp again")
	udpRoundTrip(t, udpc, "udp again")
}

func TestCloseStopsForwarding(t *testing.T) {
	t.Parallel()
	ln := listenLoopbackTCP(t)
	startTCPEcho(t, ln)
	p, err := Listen("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	addr := p.Addr()
	c := dialTCP(t, addr)
	tcpRoundTrip(t, c, "before close")

	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(ioWait):
		t.Fatalf("Close did not return")
	}
	tcpMustBeClosed(t, c)
	if c2, err := net.DialTimeout("tcp", addr, ioWait); err == nil {
		_ = c2.Close()
		t.Fatalf("dial after Close succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	t.Parallel()
	if _, err := Listen("no-port", "127.0.0.1:1"); err == nil {
		t.Fatalf("Listen with a bad listen address succeeded")
	}
	if _, err := Listen("127.0.0.1:0", "no-port"); err == nil {
		t.Fatalf("Listen with a bad target address succeeded")
	}
	// A fixed port already taken for UDP must fail, not silently move.
	uc := listenLoopbackUDP(t)
	defer uc.Close()
	if p, err := Listen(uc.LocalAddr().String(), "127.0.0.1:1"); err == nil {
		_ = p.Close()
		t.Fatalf("Listen on a port whose UDP side is taken succeeded")
	}
}
