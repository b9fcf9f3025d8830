package e2e

// A producer harness that behaves like the real KVS C producer on the wire
// (shared/kvs-api.md §4, §11), for the exactly-once tests
// (exactlyonce_test.go):
//
//   - frames come from a camera at a real pace (eoConfig.Pace) and are
//     written as they come, in chunks of a chunked body signed with SigV4
//     (empty-payload hash, as the C producer signs PutMedia), while a
//     reader goroutine takes the acks of the same connection (full
//     duplex);
//   - every fragment is kept until PERSISTED arrives for its timecode;
//   - a fragment whose cluster went out without any ack (IDLE aside) for
//     AckTimeout (5 s) makes the connection stale: it is dropped (mid-chunk
//     if need be) and a NEW connection re-sends every fragment not yet
//     PERSISTED: a new EBML header and Segment, and for RELATIVE a later
//     x-amzn-producer-start-timestamp (the first re-sent fragment's time)
//     with the cluster timecodes rebased on it, so producer times stay the
//     same;
//   - an ERROR ack drops its fragment (lost by the producer, counted) and
//     the upload ends; a new connection goes on;
//   - an upload that ends (the server closed it, a connection refused)
//     is followed by a new one after RetryEvery, re-sending what is not
//     PERSISTED;
//   - Rotate opens a new connection before closing the old one: the old
//     one finishes the fragment it is sending (or, between fragments, one
//     more), ends its body and waits for its acks, while the new one
//     carries on from the next fragment;
//   - pauses inside a fragment (the uplink stalls, or the whole host and
//     camera freeze), and the AWS_KINESISVIDEO_END_OF_FRAGMENT tag after
//     each fragment or none;
//   - at the end it waits for the last PERSISTED (up to StopWait, as the C
//     producer waits up to 120 s) before the final chunk.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
)

// eoEOF is when a producer writes the AWS_KINESISVIDEO_END_OF_FRAGMENT tag.
type eoEOF int

const (
	// eoEOFNone: never; a fragment ends at the next cluster or the body end.
	eoEOFNone eoEOF = iota
	// eoEOFNext: after each fragment, when the next one begins (what the C
	// producer does: its captures carry the tag in the same write as the
	// next cluster), at the end after one frame interval.
	eoEOFNext
	// eoEOFLast: right after each fragment's last frame.
	eoEOFLast
)

func (e eoEOF) String() string {
	return [...]string{"NoEOF", "EOF", "EOFAtLastFrame"}[e]
}

// eoPause holds the producer inside fragment Frag, after frame AfterFrame,
// for For, the first time it gets there.
type eoPause struct {
	Frag, AfterFrame int
	For              time.Duration
	// Camera: the camera stops too (a frozen host): the frames after the
	// pause come For later. Otherwise only the uplink stalls: the camera
	// goes on and the backlog is sent at once after the pause.
	Camera bool
}

// eoConfig configures a harness producer.
type eoConfig struct {
	Addr         string // host:port to connect to (a server or a proxy in front of it)
	Stream       string
	TimecodeType string // ABSOLUTE or RELATIVE
	Source       *eoSource
	Pace         float64 // camera speed: 1 (default) real time, 2 twice as fast
	EOF          eoEOF
	Pauses       []eoPause
	AckTimeout   time.Duration // stale after a fragment start without acks for this long; default 5 s
	RetryEvery   time.Duration // a new connection after a failed or ended one; default 500 ms
	StopWait     time.Duration // wait for the last PERSISTED before the final chunk; default 120 s
	DrainWait    time.Duration // a rotated-out connection waits this long for its acks; default 10 s
	MaxChunk     int           // largest HTTP chunk; default 64 KiB
	Deadline     time.Duration // the whole run; default 4 min
}

// eoAck is one acknowledgement as received.
type eoAck struct {
	EventType        string
	FragmentTimecode *uint64
	FragmentNumber   string
	ErrorId          int
	Conn             int       `json:"-"`
	At               time.Time `json:"-"`
}

func (a eoAck) String() string {
	s := fmt.Sprintf("conn %d %s", a.Conn, a.EventType)
	if a.FragmentTimecode != nil {
		s += fmt.Sprintf(" tc=%d", *a.FragmentTimecode)
	}
	if a.FragmentNumber != "" {
		s += " fn=" + a.FragmentNumber
	}
	if a.ErrorId != 0 {
		s += fmt.Sprintf(" ErrorId=%d", a.ErrorId)
	}
	return s
}

// eoFragState is what the producer knows of one fragment.
type eoFragState struct {
	persisted bool
	number    string // the PERSISTED fragment number
	dropped   bool   // ERROR ack: lost by the producer
	starts    int    // times its cluster was started on a connection
	wholes    int    // times it was written whole
	sentAs    []string
}

// eoConn is one PutMedia upload.
type eoConn struct {
	id      int
	nc      net.Conn
	req     *http.Request
	startMs int64 // x-amzn-producer-start-timestamp (ms)
	opened  time.Time
	// frag, item: the next item to write (items of a fragment: its frames,
	// then the end-of-fragment tag if any).
	frag, item int
	// last: the last fragment it sends (-1: all); set when rotated out.
	last      int
	draining  bool
	bodyEnded time.Time // when the final chunk went out (zero: not yet)
	wroteAll  time.Time // when it had written everything it sends
	dead      bool
	lastAck   time.Time         // last ack other than IDLE
	pending   map[int]time.Time // fragments started here without an ack for them since
	carried   map[int]bool
	acks      int
	bytes     int64
}

// eoEvent is an ack or the end of a response, from a reader goroutine.
type eoEvent struct {
	c   *eoConn
	ack *eoAck
	end error // with ack nil: the response ended (nil: cleanly)
}

// eoStatus is a snapshot of the producer for tests to wait on.
type eoStatus struct {
	Persisted, Dropped int
	Conns              int  // connections opened
	Live               bool // a current connection is open
	Frag, Item         int  // the current connection's next item
	FragFrames         int  // frames in that fragment
	WaitingForCamera   bool // the next item is not there yet
	Paused             bool
	Done               bool
}

// midFragment: the current connection has sent at least margin frames of
// a fragment and is waiting for more of it from the camera.
func (s eoStatus) midFragment(margin int) bool {
	return s.Live && !s.Paused && s.WaitingForCamera && s.Item >= margin && s.Item <= s.FragFrames-margin
}

// eoProducer is a running harness producer.
type eoProducer struct {
	cfg    eoConfig
	src    *eoSource
	t0     time.Time
	n      int // fragments to send (Truncate lowers it)
	base   [][]time.Duration
	frags  []*eoFragState
	byMs   map[int64]int
	conns  []*eoConn
	cur    *eoConn
	old    *eoConn
	nextID int

	pausedUntil      time.Time
	applied          []bool          // pauses applied
	shifts           []eoCameraShift // camera pauses applied
	nextDial         time.Time
	refused          int
	stale, lostConns int

	events   chan eoEvent
	ctl      chan func()
	quit     chan struct{}
	stopOnce sync.Once
	done     chan struct{}

	mu     sync.Mutex
	status eoStatus
	log    strings.Builder
	errs   []eoAck
	acks   int
}

type eoCameraShift struct {
	frag, item int
	by         time.Duration
}

// eoStart starts a harness producer; Wait returns its result.
func eoStart(t testing.TB, cfg eoConfig) *eoProducer {
	t.Helper()
	if cfg.Pace == 0 {
		cfg.Pace = 1
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 5 * time.Second
	}
	if cfg.RetryEvery == 0 {
		cfg.RetryEvery = 500 * time.Millisecond
	}
	if cfg.StopWait == 0 {
		cfg.StopWait = 120 * time.Second
	}
	if cfg.DrainWait == 0 {
		cfg.DrainWait = 10 * time.Second
	}
	if cfg.MaxChunk == 0 {
		cfg.MaxChunk = 64 << 10
	}
	if cfg.Deadline == 0 {
		cfg.Deadline = 4 * time.Minute
	}
	if cfg.TimecodeType != "ABSOLUTE" && cfg.TimecodeType != "RELATIVE" {
		t.Fatalf("harness: timecode type %q", cfg.TimecodeType)
	}
	src := cfg.Source
	p := &eoProducer{cfg: cfg, src: src, n: len(src.Frags), byMs: map[int64]int{},
		applied: make([]bool, len(cfg.Pauses)),
		events:  make(chan eoEvent, 4096), ctl: make(chan func(), 16),
		quit: make(chan struct{}), done: make(chan struct{})}
	// Camera times: each item's time after the first frame at the pace,
	// never earlier than the item before it.
	var prev time.Duration
	at := func(ms int64) time.Duration {
		d := time.Duration(float64(time.Duration(ms-src.Frags[0].Ms)*time.Millisecond) / cfg.Pace)
		prev = max(prev, d)
		return prev
	}
	gap := time.Duration(float64(src.FrameGap) / cfg.Pace)
	for f := range src.Frags {
		p.frags = append(p.frags, &eoFragState{})
		if _, dup := p.byMs[src.Frags[f].Ms]; dup {
			t.Fatalf("harness: two fragments at producer time %d", src.Frags[f].Ms)
		}
		p.byMs[src.Frags[f].Ms] = f
		var b []time.Duration
		for j := range src.Frags[f].Frames {
			b = append(b, at(src.frameMs(f, j)))
		}
		p.base = append(p.base, b)
	}
	for f := range src.Frags {
		switch cfg.EOF {
		case eoEOFLast:
			p.base[f] = append(p.base[f], p.base[f][len(p.base[f])-1])
		case eoEOFNext:
			end := p.base[f][len(p.base[f])-1] + gap
			if f+1 < len(src.Frags) {
				end = p.base[f+1][0]
			}
			p.base[f] = append(p.base[f], end)
		}
	}
	p.t0 = time.Now()
	p.logf("start: %d fragments, %d frames, %s, %s, pace %.2g, source %s", len(src.Frags), src.frames(), cfg.TimecodeType, cfg.EOF, cfg.Pace, src.Name)
	go p.run()
	t.Cleanup(func() { p.Stop() })
	return p
}

// Status is a snapshot of the producer.
func (p *eoProducer) Status() eoStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// WaitUntil waits (up to within) until cond holds for the producer's
// status, and reports whether it did.
func (p *eoProducer) WaitUntil(within time.Duration, cond func(eoStatus) bool) bool {
	deadline := time.Now().Add(within)
	for {
		s := p.Status()
		if cond(s) {
			return true
		}
		if s.Done || time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Rotate opens a new connection now; the current one finishes its
// fragment (one more whole fragment when between two), ends its body and
// waits for its acks, then closes.
func (p *eoProducer) Rotate() { p.RotateAfter(1) }

// RotateAfter is Rotate with the old connection sending n fragments from
// the one it is on (n = 1: it finishes its fragment) while the new one
// waits for the fragment after them.
func (p *eoProducer) RotateAfter(n int) {
	p.do(func() { p.rotate(time.Now(), max(n, 1)) })
}

// Truncate ends the source after n fragments (never before a fragment
// already started).
func (p *eoProducer) Truncate(n int) {
	p.do(func() {
		started := 0
		for f, st := range p.frags {
			if st.starts > 0 {
				started = f + 1
			}
		}
		p.n = max(min(n, p.n), started)
		p.logf("source truncated to %d fragments", p.n)
	})
}

// Stop ends the run now (closing its connections) and returns its
// result.
func (p *eoProducer) Stop() *eoResult {
	p.stopOnce.Do(func() { close(p.quit) })
	return p.Wait()
}

// Logf adds a line of the test's own to the producer's log.
func (p *eoProducer) Logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(&p.log, "%9s test: %s\n", p.since(), fmt.Sprintf(format, args...))
}

func (p *eoProducer) do(fn func()) {
	select {
	case p.ctl <- fn:
	case <-p.done:
	}
}

func (p *eoProducer) since() string {
	return fmt.Sprintf("+%.3fs", time.Since(p.t0).Seconds())
}

func (p *eoProducer) logf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(&p.log, "%9s %s\n", p.since(), fmt.Sprintf(format, args...))
}

// ---- the sending loop ----

func (p *eoProducer) run() {
	defer close(p.done)
	deadline := p.t0.Add(p.cfg.Deadline)
	for {
		p.pump(0, true)
		now := time.Now()
		if p.complete() {
			p.finish()
			break
		}
		select {
		case <-p.quit:
			p.logf("stopped by the test's end")
			p.closeAll("stopped")
			p.publish(true)
			return
		default:
		}
		if now.After(deadline) {
			p.logf("deadline of %v reached", p.cfg.Deadline)
			p.closeAll("deadline")
			break
		}
		p.checkStale(now)
		p.checkDrain(now)
		if p.cur == nil && p.needConn() && !now.Before(p.nextDial) {
			p.open(now, -1)
		}
		wait := p.step(now)
		p.publish(false)
		if wait > 0 {
			p.pump(min(wait, 100*time.Millisecond), true)
		}
	}
	p.publish(true)
}

// pump handles the events (and, withCtl, the control calls) that are
// waiting, waiting up to d for the first. Writes pump without control
// calls: a Rotate in the middle of a write would change what the write's
// caller is sending.
func (p *eoProducer) pump(d time.Duration, withCtl bool) {
	ctl := p.ctl
	if !withCtl {
		ctl = nil
	}
	var timer <-chan time.Time
	if d > 0 {
		tm := time.NewTimer(d)
		defer tm.Stop()
		timer = tm.C
	}
	for {
		if timer == nil {
			select {
			case ev := <-p.events:
				p.handle(ev)
			case fn := <-ctl:
				fn()
			default:
				return
			}
			continue
		}
		select {
		case ev := <-p.events:
			p.handle(ev)
		case fn := <-ctl:
			fn()
		case <-p.quit:
			return
		case <-timer:
			return
		}
		// After the first event, take the rest without waiting.
		timer = nil
	}
}

// complete: every fragment of the source is PERSISTED or dropped.
func (p *eoProducer) complete() bool {
	for f := 0; f < p.n; f++ {
		if !p.frags[f].persisted && !p.frags[f].dropped {
			return false
		}
	}
	return true
}

// firstOpen is the first fragment from from on that is neither PERSISTED
// nor dropped (p.n if none).
func (p *eoProducer) firstOpen(from int) int {
	f := from
	for f < p.n && (p.frags[f].persisted || p.frags[f].dropped) {
		f++
	}
	return f
}

// needConn: something is left for a current connection to send.
func (p *eoProducer) needConn() bool {
	from := 0
	if p.old != nil {
		from = p.old.last + 1
	}
	return p.firstOpen(from) < p.n
}

func (p *eoProducer) items(f int) int {
	return len(p.base[f])
}

// availAt is when item j of fragment f comes from the camera.
func (p *eoProducer) availAt(f, j int) time.Time {
	at := p.t0.Add(p.base[f][j])
	for _, s := range p.shifts {
		if f > s.frag || (f == s.frag && j >= s.item) {
			at = at.Add(s.by)
		}
	}
	return at
}

// timecode is fragment f's cluster Timecode on connection c.
func (p *eoProducer) timecode(c *eoConn, f int) uint64 {
	if p.cfg.TimecodeType == "RELATIVE" {
		return uint64(p.src.Frags[f].Ms - c.startMs)
	}
	return uint64(p.src.Frags[f].Ms)
}

// open dials a new current connection that sends from the first open
// fragment at or after from (-1: after what a draining connection sends).
func (p *eoProducer) open(now time.Time, from int) {
	if from < 0 {
		from = 0
		if p.old != nil {
			from = p.old.last + 1
		}
	}
	first := p.firstOpen(from)
	if first >= p.n {
		return
	}
	nc, err := net.DialTimeout("tcp", p.cfg.Addr, 2*time.Second)
	if err != nil {
		if p.refused++; p.refused == 1 || p.refused%10 == 0 {
			p.logf("dial: %v (%d failures so far)", err, p.refused)
		}
		p.nextDial = now.Add(p.cfg.RetryEvery)
		return
	}
	p.nextID++
	c := &eoConn{id: p.nextID, nc: nc, startMs: p.src.Frags[first].Ms, opened: now, frag: first, last: -1,
		pending: map[int]time.Time{}, carried: map[int]bool{}}
	head, req, err := p.requestHead(c)
	if err != nil {
		p.logf("conn %d: signing: %v", c.id, err)
		_ = nc.Close()
		p.nextDial = now.Add(p.cfg.RetryEvery)
		return
	}
	c.req = req
	p.conns = append(p.conns, c)
	p.cur = c
	p.logf("conn %d: opened, from fragment %d (producer %d ms), start timestamp %s", c.id, first, p.src.Frags[first].Ms, eoSeconds(c.startMs))
	go p.read(c)
	// The request head and the session header (EBML, Segment, Info,
	// Tracks) go out at once; frames follow as they come.
	if !p.write(c, head) {
		return
	}
	p.writeChunk(c, p.src.Header)
}

func eoSeconds(ms int64) string { return fmt.Sprintf("%d.%03d", ms/1000, ms%1000) }

// requestHead is the signed PutMedia request head of connection c.
func (p *eoProducer) requestHead(c *eoConn) ([]byte, *http.Request, error) {
	return eoPutMediaHead(p.cfg.Addr, p.cfg.Stream, p.cfg.TimecodeType, c.startMs)
}

// eoPutMediaHead is a signed PutMedia request head with the C producer's
// headers and a chunked body.
func eoPutMediaHead(addr, stream, tcType string, startMs int64) ([]byte, *http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/putMedia", nil)
	if err != nil {
		return nil, nil, err
	}
	req.ContentLength = -1
	h := req.Header
	h.Set("User-Agent", "AWS-PRODUCER-SDK-KVS/1.6.0 kvsedge-e2e-exactlyonce")
	h.Set("X-Amzn-Stream-Name", stream)
	h.Set("X-Amzn-Fragment-Timecode-Type", tcType)
	h.Set("X-Amzn-Producer-Start-Timestamp", eoSeconds(startMs))
	h.Set("X-Amzn-Fragment-Acknowledgment-Required", "1")
	h.Set("Content-Type", "application/json")
	h.Set("Connection", "keep-alive")
	head, err := signedPutMediaHead(req, addr, e2eSecret)
	if err != nil {
		return nil, nil, err
	}
	head.WriteString("\r\n")
	return head.Bytes(), req, nil
}

// rotate moves the current connection to draining (it sends n more
// fragment ends) and opens the next.
func (p *eoProducer) rotate(now time.Time, n int) {
	c := p.cur
	if c == nil || c.dead || p.old != nil || !c.bodyEnded.IsZero() {
		p.logf("rotation asked for, but no connection to rotate (or one still draining)")
		return
	}
	last := c.frag + n - 1
	if last >= p.n-1 {
		p.logf("rotation asked for at the last fragment: not rotating")
		return
	}
	c.draining, c.last = true, last
	p.old, p.cur = c, nil
	p.logf("conn %d: rotating: it sends up to the end of fragment %d and closes; a new connection carries on", c.id, last)
	p.open(now, last+1)
	if p.cur == nil {
		p.logf("rotation: the new connection could not be opened")
	}
}

// step writes every item that is due on the draining and the current
// connection and returns how long until the next one is due (0 when it
// wrote something or the state changed).
func (p *eoProducer) step(now time.Time) time.Duration {
	if now.Before(p.pausedUntil) {
		return p.pausedUntil.Sub(now)
	}
	wait := time.Duration(1<<62 - 1)
	for _, c := range []*eoConn{p.old, p.cur} {
		if c == nil || c.dead || !c.bodyEnded.IsZero() {
			continue
		}
		d, changed := p.stepConn(c, now)
		if changed {
			return 0
		}
		wait = min(wait, d)
	}
	return wait
}

// stepConn writes what is due on c.
func (p *eoProducer) stepConn(c *eoConn, now time.Time) (time.Duration, bool) {
	last := p.n - 1
	if c.draining {
		last = c.last
	}
	var buf []byte
	wrote := false
	flush := func() bool {
		if len(buf) == 0 {
			return true
		}
		ok := p.writeChunk(c, buf)
		buf = buf[:0]
		wrote = true
		return ok
	}
	wait := time.Duration(-1)
	for c.frag <= last {
		f := c.frag
		if c.item == 0 && (p.frags[f].persisted || p.frags[f].dropped) {
			c.frag++ // not to be sent again
			continue
		}
		if k := p.pauseAt(f, c.item); k >= 0 {
			if !flush() {
				return 0, true
			}
			pa := p.cfg.Pauses[k]
			p.applied[k] = true
			p.pausedUntil = time.Now().Add(pa.For)
			if pa.Camera {
				p.shifts = append(p.shifts, eoCameraShift{frag: f, item: c.item, by: pa.For})
			}
			p.logf("conn %d: pausing %v inside fragment %d after frame %d (camera stopped too: %v)", c.id, pa.For, f, pa.AfterFrame, pa.Camera)
			return 0, true
		}
		at := p.availAt(f, c.item)
		if at.After(now) {
			wait = at.Sub(now)
			break
		}
		frames := p.src.Frags[f].Frames
		if c.item == 0 {
			buf = p.appendClusterStart(buf, c, f)
			c.pending[f] = now
			c.carried[f] = true
			p.frags[f].starts++
			p.frags[f].sentAs = append(p.frags[f].sentAs, fmt.Sprintf("%d on conn %d", p.timecode(c, f), c.id))
		}
		if c.item < len(frames) {
			buf = eoAppendBlock(buf, frames[c.item])
		} else {
			buf = mkv.AppendEndOfFragment(buf)
		}
		c.item++
		if c.item == p.items(f) {
			c.item = 0
			c.frag++
			p.frags[f].wholes++
		}
		if len(buf) >= p.cfg.MaxChunk {
			if !flush() {
				return 0, true
			}
		}
	}
	if !flush() {
		return 0, true
	}
	if c.frag > last {
		if c.wroteAll.IsZero() {
			c.wroteAll = now
		}
		if c.draining {
			p.endBody(c, "rotated out")
			return 0, true
		}
		// The source is done: wait for the last PERSISTED, then end.
		if now.Sub(c.wroteAll) >= p.cfg.StopWait {
			p.endBody(c, fmt.Sprintf("no PERSISTED for everything %v after the last frame", p.cfg.StopWait))
			return 0, true
		}
		wait = c.wroteAll.Add(p.cfg.StopWait).Sub(now)
	}
	if wrote {
		return 0, true
	}
	if wait < 0 {
		wait = 100 * time.Millisecond
	}
	return wait, false
}

// pauseAt is the pause to take before item j of fragment f, or -1.
func (p *eoProducer) pauseAt(f, j int) int {
	for k, pa := range p.cfg.Pauses {
		if !p.applied[k] && pa.Frag == f && pa.AfterFrame+1 == j {
			return k
		}
	}
	return -1
}

// appendClusterStart appends a Cluster of unknown size and its Timecode
// (8 bytes), as the C producer writes them.
func (p *eoProducer) appendClusterStart(dst []byte, c *eoConn, f int) []byte {
	dst = append(dst, 0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)
	dst = append(dst, 0xE7, 0x88)
	return binary.BigEndian.AppendUint64(dst, p.timecode(c, f))
}

// eoAppendBlock appends a SimpleBlock with an 8-byte size.
func eoAppendBlock(dst []byte, fr eoFrame) []byte {
	if fr.Track == 0 || fr.Track > 126 {
		panic("harness: track numbers 1–126 only")
	}
	body := 1 + 2 + 1 + len(fr.Payload)
	dst = append(dst, mkv.IDSimpleBlock)
	dst = append(dst, mkvcheck.Size8(body)...)
	dst = append(dst, 0x80|byte(fr.Track))
	dst = binary.BigEndian.AppendUint16(dst, uint16(fr.Offset))
	dst = append(dst, fr.Flags)
	return append(dst, fr.Payload...)
}

// writeChunk writes data as one HTTP chunk.
func (p *eoProducer) writeChunk(c *eoConn, data []byte) bool {
	frame := make([]byte, 0, len(data)+16)
	frame = strconv.AppendInt(frame, int64(len(data)), 16)
	frame = append(frame, "\r\n"...)
	frame = append(frame, data...)
	frame = append(frame, "\r\n"...)
	return p.write(c, frame)
}

// write writes b to c. A write that cannot go on (a frozen peer) is
// retried every 100 ms while acks are taken and staleness is checked: a
// stale connection is dropped mid-write.
func (p *eoProducer) write(c *eoConn, b []byte) bool {
	for len(b) > 0 {
		if c.dead {
			return false
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.nc.Write(b)
		b = b[n:]
		c.bytes += int64(n)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			p.pump(0, false)
			now := time.Now()
			p.checkStale(now)
			select {
			case <-p.quit:
				p.drop(c, "stopped")
				return false
			default:
			}
			if now.After(p.t0.Add(p.cfg.Deadline)) {
				p.drop(c, "deadline")
				return false
			}
			continue
		}
		p.lost(c, "write: "+err.Error())
		return false
	}
	return true
}

// endBody writes the final chunk.
func (p *eoProducer) endBody(c *eoConn, why string) {
	if c.dead || !c.bodyEnded.IsZero() {
		return
	}
	c.bodyEnded = time.Now()
	p.logf("conn %d: ending the body (%s)", c.id, why)
	p.write(c, []byte("0\r\n\r\n"))
}

// checkStale drops a connection on which a fragment start went out
// without any ack for AckTimeout; the current one is replaced at once.
func (p *eoProducer) checkStale(now time.Time) {
	for _, c := range []*eoConn{p.cur, p.old} {
		if c == nil || c.dead || len(c.pending) == 0 {
			continue
		}
		oldest := now
		for _, at := range c.pending {
			if at.Before(oldest) {
				oldest = at
			}
		}
		ref := oldest
		if c.lastAck.After(ref) {
			ref = c.lastAck
		}
		if now.Sub(ref) >= p.cfg.AckTimeout {
			var fs []int
			for f := range c.pending {
				fs = append(fs, f)
			}
			sort.Ints(fs)
			p.stale++
			p.drop(c, fmt.Sprintf("stale: no ack for %v after the start of fragments %v", now.Sub(ref).Round(time.Millisecond), fs))
			if p.cur == nil {
				p.nextDial = now // reconnect at once
			}
		}
	}
}

// checkDrain closes a rotated-out connection that has waited long enough.
func (p *eoProducer) checkDrain(now time.Time) {
	c := p.old
	if c == nil || c.bodyEnded.IsZero() {
		return
	}
	open := false
	for f := range c.carried {
		if !p.frags[f].persisted && !p.frags[f].dropped {
			open = true
		}
	}
	if !open {
		p.drop(c, "rotated out, all its fragments PERSISTED")
		return
	}
	if now.Sub(c.bodyEnded) >= p.cfg.DrainWait {
		p.drop(c, fmt.Sprintf("rotated out, no PERSISTED for all its fragments after %v", p.cfg.DrainWait))
	}
}

// drop closes c by the producer's choice.
func (p *eoProducer) drop(c *eoConn, why string) {
	p.closeConn(c, why)
}

// lost: c ended (by the server, or a write failed).
func (p *eoProducer) lost(c *eoConn, why string) {
	if !c.dead && c.bodyEnded.IsZero() {
		p.lostConns++
	}
	p.closeConn(c, why)
	if p.cur == nil && p.nextDial.Before(time.Now().Add(p.cfg.RetryEvery)) {
		p.nextDial = time.Now().Add(p.cfg.RetryEvery)
	}
}

// closeConn closes c and settles what it leaves: a current connection is
// replaced; fragments a rotated-out connection carried without PERSISTED
// are re-sent on a new current connection (the C producer's rollback).
func (p *eoProducer) closeConn(c *eoConn, why string) {
	if c.dead {
		return
	}
	c.dead = true
	_ = c.nc.Close()
	var open []int
	for f := range c.carried {
		if !p.frags[f].persisted && !p.frags[f].dropped {
			open = append(open, f)
		}
	}
	sort.Ints(open)
	p.logf("conn %d: closed (%s); %d bytes, %d acks; carried without PERSISTED: %v", c.id, why, c.bytes, c.acks, open)
	switch c {
	case p.cur:
		p.cur = nil
	case p.old:
		p.old = nil
		if len(open) > 0 && p.cur != nil {
			// The current connection is past these fragments: replace it by
			// one that re-sends from the oldest.
			p.closeConn(p.cur, fmt.Sprintf("re-sending fragments %v of rotated-out conn %d", open, c.id))
			p.nextDial = time.Now()
		}
	}
}

func (p *eoProducer) closeAll(why string) {
	for _, c := range []*eoConn{p.old, p.cur} {
		if c != nil && !c.dead {
			p.closeConn(c, why)
		}
	}
}

// finish ends the uploads once everything is PERSISTED: the final chunk,
// then a short wait for the responses to end.
func (p *eoProducer) finish() {
	p.logf("every fragment PERSISTED or dropped")
	for _, c := range []*eoConn{p.old, p.cur} {
		if c != nil && !c.dead {
			p.endBody(c, "done")
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ((p.cur != nil && !p.cur.dead) || (p.old != nil && !p.old.dead)) {
		p.pump(100*time.Millisecond, false)
	}
	p.closeAll("done")
}

// handle takes one event of a reader goroutine.
func (p *eoProducer) handle(ev eoEvent) {
	c := ev.c
	if ev.ack == nil {
		if c.dead {
			return
		}
		why := "response ended"
		if ev.end != nil {
			why = "response broke off: " + ev.end.Error()
		}
		p.lost(c, why)
		return
	}
	a := *ev.ack
	c.acks++
	p.mu.Lock()
	p.acks++
	p.mu.Unlock()
	if c.dead {
		return // acks for a closed upload are dropped, as the C producer does
	}
	if a.EventType == "IDLE" {
		return
	}
	c.lastAck = a.At
	f := -1
	if a.FragmentTimecode != nil {
		ms := int64(*a.FragmentTimecode)
		if p.cfg.TimecodeType == "RELATIVE" {
			ms += c.startMs
		}
		if i, ok := p.byMs[ms]; ok {
			f = i
		}
	}
	if f >= 0 {
		for g := range c.pending {
			if g <= f {
				delete(c.pending, g)
			}
		}
	}
	switch a.EventType {
	case "PERSISTED":
		if f < 0 {
			p.logf("conn %d: %s for no fragment of ours", c.id, a)
			return
		}
		st := p.frags[f]
		if !st.persisted {
			st.persisted, st.number = true, a.FragmentNumber
			p.logf("conn %d: PERSISTED fragment %d as %s", c.id, f, a.FragmentNumber)
		} else if st.number != a.FragmentNumber {
			p.logf("conn %d: PERSISTED fragment %d again, as %s (first %s)", c.id, f, a.FragmentNumber, st.number)
		}
	case "ERROR":
		p.mu.Lock()
		p.errs = append(p.errs, a)
		p.mu.Unlock()
		if f >= 0 && !p.frags[f].persisted && !p.frags[f].dropped {
			p.frags[f].dropped = true
			p.logf("conn %d: %s: fragment %d DROPPED (lost by the producer)", c.id, a, f)
		} else {
			p.logf("conn %d: %s (fragment %d)", c.id, a, f)
		}
		p.lost(c, "after an ERROR ack")
	case "BUFFERING", "RECEIVED":
		// Only progress: the fragment is freed on PERSISTED.
	default:
		p.logf("conn %d: unknown ack %s", c.id, a)
	}
}

// read takes the response of c: head, then one ack per chunk.
func (p *eoProducer) read(c *eoConn) {
	send := func(ev eoEvent) bool {
		select {
		case p.events <- ev:
			return true
		case <-p.done:
			return false
		}
	}
	br := bufio.NewReader(c.nc)
	var resp *http.Response
	for {
		r, err := http.ReadResponse(br, c.req)
		if err != nil {
			send(eoEvent{c: c, end: fmt.Errorf("response head: %w", err)})
			return
		}
		if r.StatusCode == http.StatusContinue {
			continue
		}
		resp = r
		break
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		send(eoEvent{c: c, end: fmt.Errorf("status %d: %s", resp.StatusCode, b)})
		return
	}
	var pending []byte
	for {
		data, err := readChunk(br)
		if err == io.EOF {
			send(eoEvent{c: c})
			return
		}
		if err != nil {
			send(eoEvent{c: c, end: err})
			return
		}
		pending = append(pending, data...)
		dec := json.NewDecoder(bytes.NewReader(pending))
		consumed := 0
		for {
			var a eoAck
			if err := dec.Decode(&a); err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF {
					send(eoEvent{c: c, end: fmt.Errorf("bad ack %q: %w", pending, err)})
					return
				}
				break
			}
			consumed = int(dec.InputOffset())
			a.Conn, a.At = c.id, time.Now()
			if !send(eoEvent{c: c, ack: &a}) {
				return
			}
		}
		pending = append([]byte(nil), pending[consumed:]...)
	}
}

// publish updates the status snapshot.
func (p *eoProducer) publish(done bool) {
	s := eoStatus{Done: done, Paused: time.Now().Before(p.pausedUntil), Conns: len(p.conns)}
	for _, st := range p.frags {
		if st.persisted {
			s.Persisted++
		}
		if st.dropped {
			s.Dropped++
		}
	}
	if c := p.cur; c != nil && !c.dead && c.frag < p.n {
		s.Live, s.Frag, s.Item = true, c.frag, c.item
		s.FragFrames = len(p.src.Frags[c.frag].Frames)
		s.WaitingForCamera = p.availAt(c.frag, c.item).After(time.Now())
	}
	p.mu.Lock()
	p.status = s
	p.mu.Unlock()
}

// ---- the result ----

// eoResult is what a harness run did.
type eoResult struct {
	Src         *eoSource
	Frags       []eoFragState // of the fragments the run was to send
	Dropped     []int         // dropped on an ERROR ack
	Unpersisted []int         // sent, never acknowledged PERSISTED
	NeverSent   []int
	ErrorAcks   []eoAck
	Conns       int // connections opened
	Stale       int // connections dropped for want of acks
	Lost        int // connections the server ended or broke (but for a rotated-out one after its body)
	Resent      int // fragments started more than once
	Log         string
}

// Wait waits for the run to end.
func (p *eoProducer) Wait() *eoResult {
	<-p.done
	r := &eoResult{Src: p.src, Conns: len(p.conns), Stale: p.stale, Lost: p.lostConns}
	for f := 0; f < p.n; f++ {
		st := *p.frags[f]
		r.Frags = append(r.Frags, st)
		switch {
		case st.dropped:
			r.Dropped = append(r.Dropped, f)
		case st.starts == 0:
			r.NeverSent = append(r.NeverSent, f)
		case !st.persisted:
			r.Unpersisted = append(r.Unpersisted, f)
		}
		if st.starts > 1 {
			r.Resent++
		}
	}
	p.mu.Lock()
	r.ErrorAcks = append(r.ErrorAcks, p.errs...)
	fmt.Fprintf(&p.log, "%9s end: %d connections (%d stale, %d ended by the server or broken), %d acks, %d fragments started more than once\n",
		p.since(), len(p.conns), p.stale, p.lostConns, p.acks, r.Resent)
	r.Log = p.log.String()
	p.mu.Unlock()
	return r
}

// label names fragment f: its producer time and the cluster timecodes it
// was sent with.
func (r *eoResult) label(f int) string {
	s := fmt.Sprintf("producer %d ms", r.Src.Frags[f].Ms)
	if f < len(r.Frags) && len(r.Frags[f].sentAs) > 0 {
		s += ", cluster timecode " + strings.Join(r.Frags[f].sentAs, ", ")
	}
	if f < len(r.Frags) && r.Frags[f].number != "" {
		s += ", PERSISTED as " + r.Frags[f].number
	}
	return s
}

func (r *eoResult) fragList(fs []int) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, fmt.Sprintf("fragment %d (%s)", f, r.label(f)))
	}
	return strings.Join(parts, "; ")
}

// Expected lists the frames the reads must return once each, in order:
// every frame of every fragment sent, minus the dropped ones.
func (r *eoResult) Expected() []eoWant {
	var out []eoWant
	for f, st := range r.Frags {
		if st.dropped || st.starts == 0 {
			continue
		}
		label := r.label(f)
		for j, fr := range r.Src.Frags[f].Frames {
			out = append(out, eoWant{Key: eoKeyOf(fr.Track, r.Src.frameMs(f, j), fr.Payload), Frag: f, Label: label, Idx: len(out)})
		}
	}
	return out
}
