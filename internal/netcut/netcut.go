// Package netcut is test support for end-to-end tests of a kvsedge cluster:
// a loopback proxy that forwards TCP and UDP to one node and can cut that
// node off from the network and heal it again.
//
// kvsedge nodes gossip with hashicorp/serf (memberlist), which speaks both UDP
// and TCP on the same host:port, and they also talk HTTP (TCP) to each other.
// A test gives each node a [Proxy] address as its advertised gossip address
// (the proxy forwards to the node's real bind address) and a [ListenTCP]
// proxy in front of its HTTP address. Calling [Proxy.Cut] on every proxy of
// one node then partitions that node from all others; [Proxy.Heal] undoes it.
//
// UDP is relayed NAT-style: each distinct client source address gets its own
// upstream socket connected to the target, and replies arriving on that
// socket are sent back to the client from the listening socket. While a proxy
// is cut, datagrams in both directions are dropped (never queued), new TCP
// connections are closed as soon as they are accepted, and every open TCP
// connection through the proxy is closed.
package netcut

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// maxDatagram is the largest UDP datagram relayed.
	maxDatagram = 64 * 1024
	// defaultUDPIdle is how long a UDP client mapping may be idle before it expires.
	defaultUDPIdle = 2 * time.Minute
	// listenAttempts bounds the retries when binding UDP to the port TCP got.
	listenAttempts = 20
	// dialTimeout bounds dialing the TCP target for one accepted connection.
	dialTimeout = 5 * time.Second
)

// Proxy forwards TCP and UDP arriving at one loopback address to a target
// address, until cut. It is safe for concurrent use.
type Proxy struct {
	target    string
	tcpLn     *net.TCPListener
	udpLn     *net.UDPConn // nil for ListenTCP proxies
	udpTarget *net.UDPAddr
	udpIdle   time.Duration
	epoch     time.Time // base of udpMapping.last (monotonic)

	ctx    context.Context // canceled by Close; aborts target dials
	cancel context.CancelFunc

	cut atomic.Bool // written only while holding mu

	tcpToTarget, tcpFromTarget atomic.Int64

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{} // both ends of every open TCP pair
	udpMaps map[netip.AddrPort]*udpMapping

	wg sync.WaitGroup
}

// udpMapping is the relay state for one UDP client source address.
type udpMapping struct {
	client netip.AddrPort
	up     *net.UDPConn // connected to the target
	last   atomic.Int64 // time.Since(Proxy.epoch) of the last activity
}

// Listen starts a proxy on listen forwarding TCP and UDP to target. TCP and
// UDP share the same port; if listen has port 0, the port TCP got is used for
// UDP too, retrying with a fresh port if UDP cannot bind it.
func Listen(listen, target string) (*Proxy, error) {
	return newProxy(listen, target, true, defaultUDPIdle)
}

// ListenTCP is [Listen] for TCP only (HTTP proxying).
func ListenTCP(listen, target string) (*Proxy, error) {
	return newProxy(listen, target, false, defaultUDPIdle)
}

func newProxy(listen, target string, withUDP bool, udpIdle time.Duration) (*Proxy, error) {
	p := &Proxy{
		target:  target,
		udpIdle: udpIdle,
		epoch:   time.Now(),
		conns:   make(map[net.Conn]struct{}),
		udpMaps: make(map[netip.AddrPort]*udpMapping),
	}
	if withUDP {
		ua, err := net.ResolveUDPAddr("udp", target)
		if err != nil {
			return nil, err
		}
		p.udpTarget = ua
	}
	if err := p.bind(listen, withUDP); err != nil {
		return nil, err
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.serveTCP()
	if p.udpLn != nil {
		p.wg.Add(1)
		go p.serveUDP()
	}
	return p, nil
}

// bind opens the TCP listener and, if withUDP, a UDP socket on the same port.
func (p *Proxy) bind(listen string, withUDP bool) error {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return err
	}
	fixedPort := port != "" && port != "0"
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			return err
		}
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			_ = ln.Close()
			return errors.New("netcut: unexpected listener type")
		}
		if !withUDP {
			p.tcpLn = tl
			return nil
		}
		ta, ok := tl.Addr().(*net.TCPAddr)
		if !ok {
			_ = tl.Close()
			return errors.New("netcut: unexpected listener address type")
		}
		uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: ta.IP, Port: ta.Port, Zone: ta.Zone})
		if err == nil {
			p.tcpLn, p.udpLn = tl, uc
			return nil
		}
		_ = tl.Close()
		if fixedPort || attempt >= listenAttempts {
			return err
		}
	}
}

// Addr returns the host:port the proxy actually listens on (TCP and UDP).
func (p *Proxy) Addr() string {
	return p.tcpLn.Addr().String()
}

// Cut drops every UDP datagram in both directions, closes new TCP
// connections as soon as they are accepted, and closes every open TCP
// connection through the proxy. It lasts until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut.Store(true)
	conns := p.takeConnsLocked()
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// Heal makes the proxy forward again after Cut.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut.Store(false)
	p.mu.Unlock()
}

// Close stops the proxy, closes every connection and UDP mapping through it
// and waits for its goroutines to finish. Closing twice returns nil.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	conns := p.takeConnsLocked()
	maps := make([]*udpMapping, 0, len(p.udpMaps))
	for k, m := range p.udpMaps {
		maps = append(maps, m)
		delete(p.udpMaps, k)
	}
	p.mu.Unlock()

	p.cancel()
	err := p.tcpLn.Close()
	if p.udpLn != nil {
		err = errors.Join(err, p.udpLn.Close())
	}
	for _, c := range conns {
		_ = c.Close()
	}
	for _, m := range maps {
		_ = m.up.Close()
	}
	p.wg.Wait()
	return err
}

// takeConnsLocked empties p.conns and returns what it held. p.mu must be held.
func (p *Proxy) takeConnsLocked() []net.Conn {
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
		delete(p.conns, c)
	}
	return conns
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// ---- TCP ----

func (p *Proxy) serveTCP() {
	defer p.wg.Done()
	for {
		c, err := p.tcpLn.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.isClosed() {
				return
			}
			time.Sleep(5 * time.Millisecond) // e.g. EMFILE: back off briefly
			continue
		}
		if p.cut.Load() {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.handleTCP(c)
	}
}

func (p *Proxy) handleTCP(client net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	upstream, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.closed || p.cut.Load() {
		p.mu.Unlock()
		_ = client.Close()
		_ = upstream.Close()
		return
	}
	p.conns[client] = struct{}{}
	p.conns[upstream] = struct{}{}
	p.mu.Unlock()

	var half sync.WaitGroup
	half.Add(1)
	go func() {
		defer half.Done()
		copyHalf(countingWriter{upstream, &p.tcpToTarget}, upstream, client)
	}()
	copyHalf(countingWriter{client, &p.tcpFromTarget}, client, upstream)
	half.Wait()

	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, upstream)
	p.mu.Unlock()
	_ = client.Close()
	_ = upstream.Close()
}

// copyHalf copies src to dst. On a clean EOF it half-closes dst so the peer
// sees EOF while the other direction keeps flowing; on an error it closes
// both so the pair is torn down.
func copyHalf(w io.Writer, dst, src net.Conn) {
	_, err := io.Copy(w, src)
	if err == nil {
		if tc, ok := dst.(*net.TCPConn); ok {
			if tc.CloseWrite() == nil {
				return
			}
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// TCPBytes reports the TCP bytes relayed so far: to the target, and from it
// back to clients.
func (p *Proxy) TCPBytes() (toTarget, fromTarget int64) {
	return p.tcpToTarget.Load(), p.tcpFromTarget.Load()
}

// ---- UDP ----

func (p *Proxy) now() int64 { return int64(time.Since(p.epoch)) }

func (p *Proxy) serveUDP() {
	defer p.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := p.udpLn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.isClosed() {
				return
			}
			time.Sleep(time.Millisecond) // transient error: avoid spinning
			continue
		}
		if p.cut.Load() {
			continue
		}
		m := p.mapping(from)
		if m == nil {
			continue
		}
		_, _ = m.up.Write(buf[:n]) // UDP is lossy; errors are drops
	}
}

// mapping returns the (touched) mapping for client, creating it and its reply
// relay if needed. It returns nil if the proxy is closed or the upstream
// socket cannot be opened.
func (p *Proxy) mapping(client netip.AddrPort) *udpMapping {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if m := p.udpMaps[client]; m != nil {
		m.last.Store(p.now())
		return m
	}
	up, err := net.DialUDP("udp", nil, p.udpTarget)
	if err != nil {
		return nil
	}
	m := &udpMapping{client: client, up: up}
	m.last.Store(p.now())
	p.udpMaps[client] = m
	p.wg.Add(1)
	go p.relayReplies(m)
	return m
}

// relayReplies sends datagrams arriving on m's upstream socket back to the
// client, until the mapping expires or the proxy closes.
func (p *Proxy) relayReplies(m *udpMapping) {
	defer p.wg.Done()
	defer func() { _ = m.up.Close() }()
	buf := make([]byte, maxDatagram)
	for {
		idleFor := time.Duration(p.now() - m.last.Load())
		_ = m.up.SetReadDeadline(time.Now().Add(p.udpIdle - idleFor))
		n, err := m.up.Read(buf)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				p.dropMapping(m, false)
				return
			case isTimeout(err):
				if p.dropMapping(m, true) {
					return
				}
			default:
				// e.g. ECONNREFUSED from an ICMP error while the target is
				// down: keep the mapping, the target may come back.
				time.Sleep(time.Millisecond)
			}
			continue
		}
		if p.cut.Load() {
			continue
		}
		m.last.Store(p.now())
		_, _ = p.udpLn.WriteToUDPAddrPort(buf[:n], m.client)
	}
}

// dropMapping removes m from the table. If onlyIdle, it does so only when m
// has been idle for the idle timeout, and reports whether it removed it.
func (p *Proxy) dropMapping(m *udpMapping, onlyIdle bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if onlyIdle && time.Duration(p.now()-m.last.Load()) < p.udpIdle {
		return false
	}
	if p.udpMaps[m.client] == m {
		delete(p.udpMaps, m.client)
	}
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
