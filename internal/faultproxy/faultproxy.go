// Package faultproxy is test support for end-to-end tests of producers: a
// loopback TCP proxy in front of one server that can freeze the path
// (stop forwarding in both directions while every connection stays open,
// as a hung server host or a stalled network looks to a producer) and cut
// every connection (as a server host dropping its sockets does).
//
// While frozen, the proxy reads nothing more from either side once the
// data it already holds is waiting (so the sender's socket buffers fill up
// and its writes block, as against a frozen peer), and new connections are
// accepted and dialled through but forward nothing until Thaw. Cut closes
// every open connection through the proxy; new ones are forwarded as
// usual (unless frozen).
//
// It imports nothing of the module; only tests use it.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections arriving at its loopback address to a
// target address. It is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	gate   chan struct{} // closed while forwarding; open (blocking) while frozen
	frozen bool
	closed bool
	conns  map[*pair]struct{}
	opened int

	wg sync.WaitGroup
}

// pair is one client connection and its upstream.
type pair struct {
	client net.Conn
	done   chan struct{}
	once   sync.Once

	mu       sync.Mutex
	upstream net.Conn // nil until dialled
	closed   bool
}

func (p *pair) close() {
	p.once.Do(func() {
		close(p.done)
		_ = p.client.Close()
		p.mu.Lock()
		p.closed = true
		up := p.upstream
		p.mu.Unlock()
		if up != nil {
			_ = up.Close()
		}
	})
}

// setUpstream records the dialled upstream; false (and up closed) when the
// pair was closed meanwhile.
func (p *pair) setUpstream(up net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = up.Close()
		return false
	}
	p.upstream = up
	return true
}

// Listen starts a proxy on 127.0.0.1 (a free port) forwarding to target.
func Listen(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	open := make(chan struct{})
	close(open)
	p := &Proxy{target: target, ln: ln, gate: open, conns: make(map[*pair]struct{})}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is the host:port the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops forwarding in both directions without closing anything.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.frozen {
		p.frozen = true
		p.gate = make(chan struct{})
	}
}

// Thaw forwards again, starting with the data held while frozen.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.gate)
	}
}

// Cut closes every open connection through the proxy (both sides) and
// returns how many there were. New connections are forwarded as usual.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	var all []*pair
	for c := range p.conns {
		all = append(all, c)
		delete(p.conns, c)
	}
	p.mu.Unlock()
	for _, c := range all {
		c.close()
	}
	return len(all)
}

// Open is the number of connections open through the proxy now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Accepted is the number of connections accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opened
}

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	if p.frozen {
		p.frozen = false
		close(p.gate)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		pr := &pair{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[pr] = struct{}{}
		p.opened++
		p.mu.Unlock()
		p.wg.Add(1)
		go p.handle(pr)
	}
}

// waitGate blocks while the proxy is frozen; false when the pair closed.
func (p *Proxy) waitGate(pr *pair) bool {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	select {
	case <-g:
		return true
	case <-pr.done:
		return false
	}
}

func (p *Proxy) handle(pr *pair) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, pr)
		p.mu.Unlock()
		pr.close()
	}()
	// A frozen path does not even complete the upstream connection.
	if !p.waitGate(pr) {
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !pr.setUpstream(up) {
		return // cut while dialling
	}
	var half sync.WaitGroup
	half.Add(1)
	go func() {
		defer half.Done()
		p.pump(pr, up, pr.client)
	}()
	p.pump(pr, pr.client, up)
	half.Wait()
}

// pump copies src to dst, holding each read while the proxy is frozen. A
// clean EOF half-closes dst; an error tears the pair down.
func (p *Proxy) pump(pr *pair, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		if !p.waitGate(pr) {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitGate(pr) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				pr.close()
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
				if tc.CloseWrite() == nil {
					return
				}
			}
			pr.close()
			return
		}
	}
}
