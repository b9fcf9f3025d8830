package ingest

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Paced camera reads.
//
// A camera's RTP packets arrive a few at a time, a burst per frame (25 a
// second) or more. Read as they arrive, 16 cameras wake the process from
// idle hundreds of times a second, and each wake costs more than its
// read: the scheduler's futex and epoll calls, and the Go runtime's
// sysmon, which every syscall after an idle spell wakes into polling
// every 20 µs (perf, 16 staggered cameras: sysmon alone took 20 % of the
// recorder's CPU).
//
// So an RTSP connection, once media flows (pacedAfterBytes read: the RTSP
// handshake goes unpaced), reads its socket on the ticks of one box-wide
// clock (readPacer). A read first tries the socket without blocking if
// the previous one got data (more may have come meanwhile: a receive
// buffer smaller than ours is drained at the sender's pace, not one
// buffer a tick); an empty socket then waits for the next tick and tries
// again without blocking, and every camera due then reads on the same
// wake (a socket still empty waits for the tick after, instead of waking
// the process when its bytes come; after pacedEmptyTicks empty ticks, or
// when the last data came a tick or more ago, the read blocks as an
// unpaced one does, so a stalled or quiet camera does not poll). Between
// ticks the bytes wait in the socket's kernel buffer (at 8 Mbit/s, 40 KB
// a tick), and rtspReadBuffer takes them in one read.
//
// The price: up to a tick of latency per burst, well inside the live
// view's budget; a read waiting for a tick notices its read deadline at
// the tick (gortsplib's client sets none: its own timers close a silent
// connection); the sender reports a receiver report echoes are read up
// to a tick late, which lengthens the camera's round-trip estimate by as
// much (rtcprr.go; its jitter, which the ticks would fill, is 0).
//
// The tick is a frame interval at 25 fps, so most cameras have a frame
// waiting at each one. Measured (BenchmarkVsMediaMTX, 16 staggered
// cameras, 2 rounds, against the same binary reading unpaced through a
// throwaway switch that is not in the tree, before the drain read was
// added): 3.5–4.1 CPU ms per camera-second against
// 5.5–5.9; with a 20 ms tick, 4.5–4.8 against 5.1 (half the reads then
// found the socket empty). With the drain: 3.8–4.4, MediaMTX 8.3–9.2 in
// the same run.
//
// One clock for all has a cost: every camera's read, and the fragment it
// completes, fall in the same instant, so the persists of fragments
// completed together wait behind that burst of work and each other
// (BenchmarkRecorder, 64 cameras, 2 runs each way: persist p50 5.3–5.6 ms
// against 2.4–3.3 unpaced, p99 15–27 against 11–13 on a disk whose own
// loaded fsync p99 ran 6–32 ms). Four phases, a quarter of the cameras
// each, brought the latency back but cost a fifth of the CPU saved at 16
// cameras (same run, the phases also a throwaway not in the tree: 4.7–5.4
// CPU ms per camera-second against 3.9–4.2 with one clock). Cameras get no acks, so the CPU wins: a completed
// fragment is durable a few milliseconds later, nothing more.
//
// A camera nobody watches live reads on a slower clock (readTickUnwatched,
// 200 ms, in phases: unwatchedPacers): its bytes go to fragments of a
// second or more, so the only cost is that a fragment completes up to a
// tick later, while every tick is a wake of the process. Once the
// stream's live tap has a subscriber (a WebRTC viewer:
// engine.IngestSession.LiveWatched), its reads follow the frame clock
// again, from the read after it subscribed. Measured, this VM, one
// sitting: BenchmarkVsMediaMTX (2 rounds each, the tick a throwaway
// switch, one clock for all): 16 cameras, 1.52–2.15 CPU ms per
// camera-second at 200 ms against 2.21–2.42 at 40 ms (MediaMTX 7.0–7.75);
// one camera, 6.3–10.0 against 11.7–23 (MediaMTX 13–14).
// BenchmarkRecorder (3 rounds), 40 ms / one 200 ms clock / five phases:
// 64 cameras, CPU 1.68–1.79 (earlier runs) / 1.20 / 1.41 ms per
// camera-second, persist p99 6.7–7.3 / 17.6 / 6.9 ms, RSS 0.71 / 0.85 /
// 0.77 MiB per camera; 16 cameras, CPU 2.29–3.17 / 1.80 / 2.28, RSS 0.80
// / 1.00 / 0.84.
//
// A slow tick leaves its bytes waiting, first in the socket's receive
// window and, beyond it, in the camera's send buffer: a camera with a
// small send buffer blocks (a review measured a 32 KiB one at 8 Mbit/s
// blocked up to 160 ms a tick until Linux grew our window, at 16 Mbit/s
// for good), and firmware may drop what it cannot send. So a connection
// takes the slow clock only once it has measured that a slow tick's
// bytes fit the window a new connection starts with (unwatchedTickBytes,
// 64 KiB: up to ~2.6 Mbit/s, a 720p or H.265 1080p camera, or a
// sub-stream); a faster camera, and any in its first second, reads on the
// frame clock, as all did before.
//
// Only TCP connections that gortsplib dials through dialBuffered are
// paced; its UDP listeners read on their own.
//
// The clock runs only while connections wait on it, and stops after
// pacerIdleTicks ticks without any (so it outlives the last camera by up
// to two seconds, ten for the unwatched clock).

// readTick is the box-wide clock of paced reads of cameras watched live;
// readTickUnwatched of the others.
const (
	readTick          = 40 * time.Millisecond
	readTickUnwatched = 200 * time.Millisecond
)

// unwatchedTickBytes is the most a camera may send in a slow tick for its
// reads to take the slow clock: what a new TCP connection's receive
// window holds (tcp_rmem's default 128 KiB, half of it window).
const unwatchedTickBytes = 64 << 10

// readPacer is the frame clock paced connections read by; unwatchedPacers
// the slow clock, in phases: each a pacer of readTickUnwatched, aligned
// to the time a readTick after the one before. A connection takes the
// phases in turn (unwatchedPacer), so the unwatched cameras' reads, and
// the fragments they complete, spread over the frame clock's ticks: one
// clock for all made each slow tick complete a fifth of a second of
// fragments at once (64 cameras: persist p99 17.6 ms against 7 at the
// frame clock, BenchmarkRecorder), and held their buffers together. A
// single camera still wakes the process 5 times a second, 64 cameras 25.
// The frame clock is aligned too (offset 0), so its ticks and the phases'
// fall at the same instants: a box with watched and unwatched cameras
// wakes once for both.
var (
	readPacer = func() *pacer {
		p := newPacer(readTick)
		p.align = true
		return p
	}()
	unwatchedPacers = func() []*pacer {
		ps := make([]*pacer, readTickUnwatched/readTick)
		for i := range ps {
			ps[i] = newPacer(readTickUnwatched)
			ps[i].align, ps[i].offset = true, time.Duration(i)*readTick
		}
		return ps
	}()
	unwatchedTurn atomic.Uint32
)

// alignedTicker is a ticker of period whose ticks fall on the multiples
// of period, as the read clocks' do (their ticks are multiples of
// readTick): every camera's once-a-second checks (the stall detector,
// the tapped connection's watchdog) fire at the same instants as each
// other and as the read clocks, so the box wakes once for all of them
// instead of once per camera per check at times of their own. It
// returns nil if done closes before the first aligned instant.
func alignedTicker(period time.Duration, done <-chan struct{}) *time.Ticker {
	wait := time.NewTimer(untilAligned(time.Now(), period))
	defer wait.Stop()
	select {
	case <-done:
		return nil
	case <-wait.C:
	}
	return time.NewTicker(period)
}

// untilAligned is the time from now to the next multiple of period
// (counted from the Unix epoch; 0 at one).
func untilAligned(now time.Time, period time.Duration) time.Duration {
	return time.Duration((int64(period) - now.UnixNano()%int64(period)) % int64(period))
}

// unwatchedPacer is the next phase of the slow clock.
func unwatchedPacer() *pacer {
	return unwatchedPacers[int(unwatchedTurn.Add(1))%len(unwatchedPacers)]
}

// pacer broadcasts a tick to the goroutines waiting on it. A condition
// variable, not a channel closed per tick: a tick then allocates nothing.
type pacer struct {
	tick time.Duration
	// align: the clock ticks at the times that are offset past a
	// multiple of tick (monotonic enough: wall-clock steps only move a
	// phase, and a restart realigns it).
	align  bool
	offset time.Duration
	mu     sync.Mutex
	// ticked is broadcast at every tick that had a waiter; ticks counts
	// them. Guarded by mu, as are running (the clock goroutine runs) and
	// waiting (someone waited since the last tick).
	ticked  sync.Cond
	ticks   uint64
	running bool
	waiting bool
}

func newPacer(tick time.Duration) *pacer {
	p := &pacer{tick: tick}
	p.ticked.L = &p.mu
	return p
}

// wait blocks until the clock's next tick, starting the clock if it
// stopped.
func (p *pacer) wait() {
	p.mu.Lock()
	if !p.running {
		p.running = true
		go p.run()
	}
	p.waiting = true
	for at := p.ticks; p.ticks == at; {
		p.ticked.Wait()
	}
	p.mu.Unlock()
}

// pacerIdleTicks is how many ticks without a waiter stop the clock.
const pacerIdleTicks = 50

func (p *pacer) run() {
	if p.align {
		time.Sleep(untilAligned(time.Now().Add(-p.offset), p.tick)) // to the next offset past a multiple
		p.mu.Lock()
		if p.waiting { // the first tick, at the phase
			p.waiting = false
			p.ticks++
			p.ticked.Broadcast()
		}
		p.mu.Unlock()
	}
	t := time.NewTicker(p.tick)
	defer t.Stop()
	idle := 0
	for range t.C {
		p.mu.Lock()
		if !p.waiting {
			if idle++; idle >= pacerIdleTicks {
				p.running = false
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
			continue
		}
		idle = 0
		p.waiting = false
		p.ticks++
		p.ticked.Broadcast()
		p.mu.Unlock()
	}
}

// pacedConn is a connection whose reads follow a pacer (the rules above).
// Everything else is the connection's own. Reads come from one goroutine
// (the buffer above it).
type pacedConn struct {
	net.Conn
	tick time.Duration
	wait func() // until the next tick
	// watched reports whether the camera is watched live; when it says
	// no, reads follow slowTick and slowWait instead. nil: always watched.
	watched  func() bool
	slowTick time.Duration
	slowWait func()
	// perSlowTick is what the camera sent per slowTick over the last
	// measured second (-1: not measured yet); rateFrom and rateBytes the
	// second being measured.
	perSlowTick int64
	rateFrom    time.Time
	rateBytes   int64
	rc          syscall.RawConn // nil: not a socket; reads are not paced
	read        int64           // bytes read so far
	last        time.Time       // when a read last got data
	// drain: the previous read got data; this one tries the socket at
	// once before it waits for a tick.
	drain bool
	// tryRead's read, made once (a closure per read would allocate), and
	// its buffer and outcome.
	rawRead func(fd uintptr) bool
	rbuf    []byte
	rn      int
	rerr    error
}

// pacedAfterBytes is how much a connection reads unpaced (its RTSP
// handshake and the first media).
const pacedAfterBytes = 64 << 10

// pacedEmptyTicks is how many ticks a paced read tries an empty socket
// before it blocks.
const pacedEmptyTicks = 5

// newPacedConn paces c's reads by p, and by slow while watched (if not
// nil) reports the camera unwatched.
func newPacedConn(c net.Conn, p, slow *pacer, watched func() bool) *pacedConn {
	pc := &pacedConn{Conn: c, tick: p.tick, wait: p.wait, perSlowTick: -1}
	if slow != nil && watched != nil {
		pc.watched, pc.slowTick, pc.slowWait = watched, slow.tick, slow.wait
	}
	pc.rawRead = pc.readFD
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			pc.rc = rc
		}
	}
	return pc
}

func (c *pacedConn) Read(b []byte) (int, error) {
	if c.rc != nil && c.read >= pacedAfterBytes {
		if c.drain {
			if n, err, empty := c.tryRead(b); !empty {
				return c.got(n), err
			}
			c.drain = false
		}
		tick, wait := c.tick, c.wait
		if c.slowWait != nil && c.perSlowTick >= 0 && c.perSlowTick <= unwatchedTickBytes && !c.watched() {
			tick, wait = c.slowTick, c.slowWait
		}
		if time.Since(c.last) < tick {
			for range pacedEmptyTicks {
				wait()
				if n, err, empty := c.tryRead(b); !empty {
					return c.got(n), err
				}
			}
		}
	}
	n, err := c.Conn.Read(b)
	return c.got(n), err
}

// got notes a read of n bytes and returns n.
func (c *pacedConn) got(n int) int {
	c.drain = n > 0
	if n > 0 {
		c.read += int64(n)
		c.last = time.Now()
		c.rateBytes += int64(n)
		if since := c.last.Sub(c.rateFrom); since >= time.Second {
			if !c.rateFrom.IsZero() {
				c.perSlowTick = c.rateBytes * int64(c.slowTick) / int64(since)
			}
			c.rateFrom, c.rateBytes = c.last, 0
		}
	}
	return n
}

// tryRead reads what the socket holds without waiting; empty: it holds
// nothing yet.
func (c *pacedConn) tryRead(b []byte) (n int, err error, empty bool) {
	c.rbuf = b
	cerr := c.rc.Read(c.rawRead)
	c.rbuf = nil
	n, rerr := c.rn, c.rerr
	switch {
	case cerr != nil:
		return 0, cerr, false
	case rerr == syscall.EAGAIN:
		return 0, nil, true
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}, false
	case n == 0 && len(b) > 0:
		return 0, io.EOF, false
	}
	return n, nil, false
}

// readFD is tryRead's read(2) of c.rbuf; it never asks to wait.
func (c *pacedConn) readFD(fd uintptr) bool {
	for {
		c.rn, c.rerr = syscall.Read(int(fd), c.rbuf)
		if c.rerr != syscall.EINTR {
			return true
		}
	}
}
