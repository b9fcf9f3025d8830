package serve

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/serve/sigv4"
	"github.com/valyala/fasthttp"
)

// PutMedia (shared/kvs-api.md §4) is full duplex on one HTTP/1.1
// connection: the 200 and the ack stream go out while the chunked body is
// still arriving. On fasthttp: StreamRequestBody lets the handler read the
// body as it arrives, and the connection is hijacked to write the
// response, so each ack leaves as exactly one HTTP chunk in one write
// (fasthttp's own stream writer pipes writes and can merge two acks into
// one chunk; the KVS C producer rejects reads over 1,024 bytes). Same
// port, same server; TestPutMediaAcksArriveDuringUpload and the e2e
// replay tests check the duplex behaviour and the chunking.
//
// Four goroutines cooperate with the ack writer:
//
//	body pump  → reads the request body into a few reused 64 KiB buffers
//	             (idleBody), so the parser can tell silence from data
//	parser     → mkv.Reader over idleBody; numbers fragments, hands them
//	             to the engine's ring (BUFFERING, RECEIVED acks)
//	persister  → syncs the fragments queued so far to the store together
//	             (one pair of syncs), then PERSISTED for each
//	ack gate   → holds each PERSISTED until the engine's AckGate lets it
//	             go (at once without replicated durability; else once a
//	             replica holds the fragment durably too, or it fell back)
//
// Copies of media: body bytes go network → pump buffer → the fragment's
// buffer in the engine's media memory (one copy each), then to its
// segment file; readers share the fragment buffer. When the media memory
// budget has no room for a fragment (engine.ErrMemoryFull) it is refused
// with ERROR 5000 INTERNAL_ERROR — retriable: the KVS C producer re-sends
// the fragment on a new connection (its serviceCallResultRetry), as
// producer.Producer does — and the upload ends; fragments before it are
// still stored and acknowledged.

// ack is one acknowledgement event.
type ack struct {
	event    string
	timecode uint64
	hasTC    bool
	number   fragment.Number
	errorID  int
}

func (a *ack) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"EventType":"`...)
	dst = append(dst, a.event...)
	dst = append(dst, '"')
	if a.hasTC {
		dst = append(dst, `,"FragmentTimecode":`...)
		dst = strconv.AppendUint(dst, a.timecode, 10)
	}
	if !a.number.IsZero() {
		dst = append(dst, `,"FragmentNumber":"`...)
		dst = a.number.AppendDecimal(dst)
		dst = append(dst, '"')
	}
	if a.errorID != 0 {
		dst = append(dst, `,"ErrorId":`...)
		dst = strconv.AppendInt(dst, int64(a.errorID), 10)
		if code := errorCodeName(a.errorID); code != "" {
			dst = append(dst, `,"ErrorCode":"`...)
			dst = append(dst, code...)
			dst = append(dst, '"')
		}
	}
	return append(dst, "}\n"...)
}

// ackWriteTimeout bounds one ack write to a producer that stopped reading.
const ackWriteTimeout = 30 * time.Second

// PutMedia ErrorIds beyond what the Matroska reader reports.
const (
	errIDMaxConnDuration = 4003
	errIDStreamNotActive = 4008
	errIDInternal        = 5000
	errIDArchival        = 5001
)

func errorCodeName(id int) string {
	switch id {
	case errIDMaxConnDuration:
		return "MAX_CONNECTION_DURATION_REACHED"
	case errIDStreamNotActive:
		return "STREAM_NOT_ACTIVE"
	case errIDInternal:
		return "INTERNAL_ERROR"
	case errIDArchival:
		return "ARCHIVAL_ERROR"
	}
	return (&mkv.Error{ID: id}).Code()
}

// putMediaHeaders are the validated request headers.
type putMediaHeaders struct {
	ref         engine.StreamRef
	absolute    bool
	startMs     int64
	haveStartMs bool
	payloadHash string
}

func parsePutMediaHeaders(h *fasthttp.RequestHeader) (putMediaHeaders, *apiError) {
	var p putMediaHeaders
	v := &validator{}
	name, arn := string(h.Peek("x-amzn-stream-name")), string(h.Peek("x-amzn-stream-arn"))
	var np, ap *string
	if name != "" {
		np = &name
	}
	if arn != "" {
		ap = &arn
	}
	v.streamRef(np, ap)
	switch tt := string(h.Peek("x-amzn-fragment-timecode-type")); tt {
	case "ABSOLUTE":
		p.absolute = true
	case "RELATIVE":
	case "":
		v.add("The x-amzn-fragment-timecode-type header is required (ABSOLUTE or RELATIVE).")
	default:
		v.add("Value '%s' at 'x-amzn-fragment-timecode-type' failed to satisfy constraint: Member must satisfy enum value set: [ABSOLUTE, RELATIVE]", clip(tt))
	}
	if st := string(h.Peek("x-amzn-producer-start-timestamp")); st != "" {
		ms, ok := parseEpochSeconds(st)
		if !ok {
			v.add("Value '%s' at 'x-amzn-producer-start-timestamp' is not a decimal epoch timestamp in seconds.", clip(st))
		}
		p.startMs, p.haveStartMs = ms, ok
	} else if !p.absolute {
		v.add("The x-amzn-producer-start-timestamp header is required with RELATIVE timecodes.")
	}
	if aerr := v.err(); aerr != nil {
		return p, aerr
	}
	p.ref = engine.StreamRef{Name: name, ARN: arn}
	p.payloadHash = sigv4.EmptyPayloadHash
	if ph := string(h.Peek("x-amz-content-sha256")); ph != "" {
		p.payloadHash = ph
	}
	return p, nil
}

// parseEpochSeconds parses "1795579974.135" (up to millisecond precision;
// more digits are truncated) into epoch milliseconds.
func parseEpochSeconds(s string) (int64, bool) {
	whole, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || sec < 0 || sec > 1<<40 {
		return 0, false
	}
	ms := int64(0)
	for i := 0; i < 3; i++ {
		ms *= 10
		if i < len(frac) {
			c := frac[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			ms += int64(c - '0')
		}
	}
	for i := 3; i < len(frac); i++ {
		if frac[i] < '0' || frac[i] > '9' {
			return 0, false
		}
	}
	return sec*1000 + ms, true
}

func (s *Server) putMedia(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		s.refusePutMedia(ctx, newAPIError(http.StatusMethodNotAllowed, errUnknownOperation, "/putMedia accepts only POST."), &s.lingerUnsigned)
		return
	}
	hdrs, aerr := parsePutMediaHeaders(&ctx.Request.Header)
	if aerr == nil && s.opts.Auth != nil {
		if err := s.opts.Auth.Authenticate(ctx, hdrs.payloadHash); err != nil {
			s.opts.Logger.Info("request refused", "path", "/putMedia", "remote", ctx.RemoteAddr().String(), "err", err)
			aerr = authError(err)
		}
	}
	if aerr != nil {
		s.refusePutMedia(ctx, aerr, &s.lingerUnsigned)
		return
	}
	sess, err := s.eng.BeginIngest(hdrs.ref)
	if err != nil {
		s.refusePutMedia(ctx, engineError(err), &s.lingerSigned)
		return
	}
	body := ctx.RequestBodyStream()
	if body == nil {
		body = strings.NewReader("") // a body fasthttp already read whole (Content-Length 0)
		if b := ctx.PostBody(); len(b) > 0 {
			body = strings.NewReader(string(b))
		}
	}
	log := s.opts.Logger.With("op", "PutMedia", "stream", hdrs.ref.String(), "remote", ctx.RemoteAddr().String())
	reqID := string(ctx.Response.Header.Peek("x-amzn-RequestId"))
	// The response is written on the hijacked connection: fasthttp's body
	// stream writer passes writes through a pipe that may merge two acks
	// into one HTTP chunk, and the KVS C producer needs each ack in its own
	// small chunk. fasthttp keeps the request body stream readable in the
	// hijack handler.
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer s.recoverSession("PutMedia")
		s.sessions.Add(1)
		defer s.sessions.Done()
		up := &upload{s: s, sess: sess, hdrs: hdrs, log: log, conn: c}
		header := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n" +
			"Connection: close\r\nx-amzn-RequestId: " + reqID + "\r\nServer: kvsedge\r\n\r\n"
		if _, err := io.WriteString(c, header); err != nil {
			sess.Close()
			return
		}
		up.run(body)
		_, _ = io.WriteString(c, "0\r\n\r\n")
		if s.life.Err() == nil {
			s.lingerClose(c, nil) // the last acks must reach a producer still sending
		}
	})
}

// refusePutMedia answers a PutMedia refused before its upload began. The
// producer is already sending its body, so the connection closes
// lingering (Server.lingerClose) for the error to reach it. The response
// is written on the hijacked connection: fasthttp skips the hijack when
// either side asked for "Connection: close" (Go's client does when it
// keeps no connections). slots are those of the request's kind (signed
// or not: lingerSlots).
func (s *Server) refusePutMedia(ctx *fasthttp.RequestCtx, aerr *apiError, slots *lingerSlots) {
	writeError(ctx, aerr)
	ctx.Response.SetConnectionClose()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		s.sessions.Add(1) // Shutdown waits for the linger (which it cuts)
		defer s.sessions.Done()
		_ = c.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
		if _, err := ctx.Response.WriteTo(c); err != nil {
			return
		}
		s.lingerClose(c, slots)
	})
}

// upload is one PutMedia session on the wire.
type upload struct {
	s    *Server
	sess *engine.IngestSession
	hdrs putMediaHeaders
	log  *slog.Logger
	conn net.Conn
	// stopped: the writer already told the producer why the upload ends;
	// the parser must not report the interrupted read as another error.
	stopped atomic.Bool
}

// persistItem is a received fragment on its way to disk.
type persistItem struct {
	rec      engine.Received
	timecode uint64
	// silent: stored without RECEIVED or PERSISTED (an unfinished
	// fragment cut by the idle close).
	silent bool
}

func (u *upload) run(body io.Reader) {
	defer u.sess.Close()
	// fasthttp's per-request deadlines do not fit an upload that lasts
	// minutes; the idle rules below bound it instead.
	_ = u.conn.SetReadDeadline(time.Time{})
	_ = u.conn.SetWriteDeadline(time.Time{})

	acks := make(chan ack, 64)
	src := newIdleBody(body)
	defer func() {
		// The body must not be read after the response ends: stop the
		// pump and wait for it.
		src.stop()
		_ = u.conn.SetReadDeadline(time.Now())
		<-src.pumped
	}()
	// Fragments received and waiting for the persister. Each holds its
	// media buffer: an upload faster than the disk keeps the queue full,
	// so its depth is memory, not speed (BenchmarkPutMediaVsDD, this VM,
	// 7 uploads a run: 4 deep, 442–510 MB/s, 1.3–1.5 server CPU-s/GB, 20
	// page faults/MB; 16 deep, 434–455 MB/s, 2.0–2.3 CPU-s/GB, 58
	// faults/MB, ~47 MB held by one upload).
	persistQ := make(chan persistItem, 4)
	ackQ := make(chan ack, 16)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { // parser
		defer wg.Done()
		defer close(persistQ)
		defer func() {
			// Input must never crash the box: a parser bug ends this
			// upload with an internal error instead.
			if p := recover(); p != nil {
				u.log.Error("PutMedia parser panic", "panic", p, "stack", string(debug.Stack()))
				acks <- ack{event: "ERROR", errorID: errIDInternal}
			}
		}()
		u.parse(src, acks, persistQ)
	}()
	go func() { // persister
		defer wg.Done()
		defer close(ackQ)
		u.persist(persistQ, ackQ)
	}()
	go func() { // ack gate
		defer wg.Done()
		u.gateAcks(ackQ, acks)
	}()
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()

	// Each ack is one HTTP chunk, written with one write: size line, JSON
	// object and newline, CRLF.
	var buf, chunk []byte
	idle := time.NewTicker(u.s.opts.PutMediaIdleAck)
	defer idle.Stop()
	maxAge := time.NewTimer(u.s.opts.PutMediaMaxDuration)
	defer maxAge.Stop()
	sessDone := u.sess.Done()
	life := u.s.life.Done()
	writeFailed := false
	write := func(a *ack) {
		if writeFailed {
			return
		}
		buf = a.appendJSON(buf[:0])
		chunk = strconv.AppendInt(chunk[:0], int64(len(buf)), 16)
		chunk = append(chunk, "\r\n"...)
		chunk = append(chunk, buf...)
		chunk = append(chunk, "\r\n"...)
		// A producer that stops reading must not block the writer for
		// ever: a write that cannot complete in time ends the upload.
		_ = u.conn.SetWriteDeadline(time.Now().Add(ackWriteTimeout))
		if _, err := u.conn.Write(chunk); err == nil {
			return
		}
		writeFailed = true
		// The producer is gone: stop reading its body so the parser and
		// persister finish.
		_ = u.conn.SetReadDeadline(time.Now())
		src.stop()
	}
	for {
		select {
		case a := <-acks:
			write(&a)
			continue
		default:
		}
		select {
		case a := <-acks:
			write(&a)
		case <-idle.C:
			since := src.sinceData()
			if since >= u.s.opts.PutMediaIdleClose && !src.endedByIdle() {
				u.log.Info("closing idle upload", "idle", since.String())
				src.endIdle()
			} else if since >= u.s.opts.PutMediaIdleAck && !src.endedByIdle() {
				write(&ack{event: "IDLE"})
			}
		case <-life:
			// The server is shutting down: end the upload at once; the
			// producer re-sends what was not PERSISTED.
			life = nil
			u.stopped.Store(true)
			_ = u.conn.SetReadDeadline(time.Now())
			src.stop()
		case <-maxAge.C:
			u.log.Info("upload reached its maximum duration", "max", u.s.opts.PutMediaMaxDuration.String())
			write(&ack{event: "ERROR", errorID: errIDMaxConnDuration})
			u.stopped.Store(true)
			_ = u.conn.SetReadDeadline(time.Now())
			src.stop()
		case <-sessDone:
			sessDone = nil // handled; a closed channel would spin the loop
			if errors.Is(u.sess.Err(), engine.ErrSuperseded) {
				// A newer upload of the stream began (a producer
				// reconnecting or rotating its connection). This one goes
				// on to the end of the fragment it carries, then ends
				// without an ERROR ack: an ERROR would make the producer
				// drop that fragment (shared/kvs-api.md §4.4).
				continue
			}
			// The stream was deleted: stop reading; the parser reports it.
			_ = u.conn.SetReadDeadline(time.Now())
			src.stop()
		case <-finished:
			for {
				select {
				case a := <-acks:
					write(&a)
				default:
					return
				}
			}
		}
	}
}

// parse runs the Matroska reader and the engine's receive side.
func (u *upload) parse(src *idleBody, acks chan<- ack, persistQ chan<- persistItem) {
	var liveOffset int64 // live frames carry producer times, as fragments do
	if !u.hdrs.absolute {
		liveOffset = u.hdrs.startMs
	}
	rd := mkv.NewReader(src, mkv.Options{Buffers: u.sess.Buffers(engine.MediaUpload), BufferHint: u.sess.FragmentSizeHint(), OnBlock: u.sess.LiveHook(liveOffset),
		RequireEveryTrack: true})
	defer rd.Close() // frees a fragment left unfinished
	var (
		num      fragment.Number
		serverMs int64
	)
	fail := func(id int, tc uint64, hasTC bool, err error) {
		u.log.Info("upload failed", "error_id", id, "err", err)
		acks <- ack{event: "ERROR", errorID: id, timecode: tc, hasTC: hasTC, number: num}
	}
	for {
		ev, err := rd.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			var tc uint64
			hasTC := false
			if f := rd.Fragment(); f != nil {
				tc, hasTC = f.Timecode, true
			}
			if u.stopped.Load() {
				return
			}
			if rd.Fragment() == nil && src.closedAtBoundary() {
				// The producer closed the connection between fragments
				// (without the final empty chunk): nothing was lost.
				u.log.Debug("producer closed the upload between fragments")
				return
			}
			if u.sess.Stopped() {
				if !errors.Is(u.sess.Err(), engine.ErrSuperseded) {
					fail(u.stopReason(), tc, hasTC, err)
				}
				return // superseded: the newer upload carries on, silently
			}
			var me *mkv.Error
			switch {
			case errors.Is(err, engine.ErrMemoryFull):
				u.log.Warn("fragment refused: the media memory budget is full; the producer re-sends it", "timecode", tc)
				fail(errIDInternal, tc, hasTC, err)
			case errors.As(err, &me):
				fail(me.ID, tc, hasTC, err)
			default:
				fail(mkv.ErrIDStreamRead, tc, hasTC, err)
			}
			return
		}
		switch ev {
		case mkv.EventFragmentStart:
			f := rd.Fragment()
			num, serverMs, err = u.sess.StartFragment()
			if errors.Is(err, engine.ErrSuperseded) {
				// A newer upload took over at this fragment boundary: end
				// silently; the producer re-sends this fragment there.
				u.log.Info("upload superseded by a newer one; ended at a fragment boundary")
				return
			}
			if err != nil {
				fail(engineIngestErrorID(err), f.Timecode, true, err)
				return
			}
			acks <- ack{event: "BUFFERING", timecode: f.Timecode, hasTC: true, number: num}
		case mkv.EventFragmentEnd:
			f := rd.TakeFragment()
			if f.EndOfFragment {
				u.sess.MarkTagged()
			}
			if src.endedByIdle() && u.sess.Stopped() {
				// The connection went silent mid-fragment after a newer
				// upload began: that upload carries the whole fragment.
				u.log.Info("superseded upload idle inside a fragment: dropped, the newer upload carries it", "timecode", f.Timecode)
				u.s.eng.Media().Free(f.Buf)
				return
			}
			// Cut by the idle close, from a producer that ends its
			// fragments with the tag: unfinished. It is stored (nothing is
			// lost if the producer never returns) but not acknowledged: a
			// PERSISTED would cost the producer the rest of it; its whole
			// re-send replaces this copy (engine/resend.go).
			silent := src.endedByIdle() && !f.EndOfFragment && u.sess.Tagged()
			if silent {
				u.log.Info("upload idle inside an unfinished fragment: stored without an ack, the producer re-sends it whole", "timecode", f.Timecode)
			}
			producerMs := int64(f.Timecode * f.Header.TimecodeScale / 1_000_000)
			if !u.hdrs.absolute {
				producerMs += u.hdrs.startMs
			}
			rec, err := u.sess.Receive(num, serverMs, producerMs, f)
			if err != nil {
				fail(engineIngestErrorID(err), f.Timecode, true, err)
				return
			}
			if !silent {
				acks <- ack{event: "RECEIVED", timecode: f.Timecode, hasTC: true, number: rec.Meta.Number}
			}
			persistQ <- persistItem{rec: rec, timecode: f.Timecode, silent: silent}
			num = fragment.Number{} // an error from here on concerns the next fragment
		}
	}
}

// stopReason is the ErrorId for a session the engine ended.
func (u *upload) stopReason() int {
	return engineIngestErrorID(u.sess.Err())
}

func engineIngestErrorID(err error) int {
	switch {
	case errors.Is(err, engine.ErrStreamDeleted), errors.Is(err, engine.ErrStreamNotActive):
		return errIDStreamNotActive
	case errors.Is(err, engine.ErrSuperseded):
		return errIDStreamNotActive
	case errors.Is(err, engine.ErrStorageFull):
		return errIDArchival // the box refuses new media: it cannot persist it
	case errors.Is(err, engine.ErrMemoryFull):
		return errIDInternal // retriable: the producer re-sends
	}
	return errIDInternal
}

// persistBatch bounds how many queued fragments one PersistAll stores
// with one pair of syncs.
const persistBatch = 16

// persist makes received fragments durable in order and acknowledges them.
// The fragments queued while a sync runs are stored together by the next
// run (one media sync and one index commit for all), so an upload faster
// than the disk's sync rate pays fewer syncs; one at a time, each is
// stored alone as soon as it arrives. A run's media is written while the
// run before it syncs (engine.PersistAsync, chained to it: committed only
// after it, not at all if it failed); a run is acknowledged as soon as it
// is stored, and after every run before it. Every PERSISTED still follows
// its fragment's syncs.
func (u *upload) persist(q <-chan persistItem, acks chan<- ack) {
	failed := false
	batch := make([]persistItem, 0, persistBatch)
	frags := make([]*engine.Fragment, 0, persistBatch)
	var (
		inflight      *engine.PendingPersist // the run being stored
		inflightItems = make([]persistItem, 0, persistBatch)
	)
	fail := func(it persistItem, n int, err error) {
		failed = true
		u.log.Warn("persisting a fragment failed", "number", it.rec.Meta.Number.String(), "fragments", n, "err", err)
		id := errIDArchival
		if errors.Is(err, engine.ErrStreamDeleted) {
			id = errIDStreamNotActive
		}
		acks <- ack{event: "ERROR", errorID: id, timecode: it.timecode, hasTC: true, number: it.rec.Meta.Number}
		_ = u.conn.SetReadDeadline(time.Now()) // end the upload
	}
	// settle waits for the run in flight and acknowledges it.
	settle := func() {
		if inflight == nil {
			return
		}
		err := inflight.Wait()
		inflight = nil
		items := inflightItems
		inflightItems = inflightItems[:0]
		switch {
		case err != nil && !failed:
			fail(items[0], len(items), err)
		case err == nil && u.sess.Persists():
			for _, it := range items {
				if !it.silent {
					acks <- ack{event: "PERSISTED", timecode: it.timecode, hasTC: true, number: it.rec.Meta.Number}
				}
			}
		}
	}
	defer settle()
	for {
		var it persistItem
		ok := true
		if inflight != nil {
			select {
			case it, ok = <-q:
			case <-inflight.Done():
				settle()
				continue
			}
		} else {
			it, ok = <-q
		}
		if !ok {
			return
		}
		batch = append(batch[:0], it)
	more:
		for len(batch) < persistBatch && !it.rec.Duplicate {
			select {
			case next, ok := <-q:
				if !ok {
					break more
				}
				batch = append(batch, next)
				if next.rec.Duplicate {
					break more
				}
			default:
				break more
			}
		}
		for len(batch) > 0 {
			if failed {
				// Not stored: say so to whoever waits on them (a re-sent copy
				// in a later upload), and let them go.
				for _, it := range batch {
					if it.rec.Fragment != nil {
						u.sess.Abandon(it.rec.Fragment, errUploadFailed)
					}
					it.rec.Release()
				}
				break
			}
			// The run of new fragments first, then a duplicate alone.
			n := 0
			for n < len(batch) && !batch[n].rec.Duplicate {
				n++
			}
			if n == 0 {
				// A duplicate: acknowledged after the runs before it.
				settle()
				if failed {
					continue
				}
				if err := batch[0].rec.AwaitDurable(); err != nil {
					// The rest of the batch is not stored either.
					fail(batch[0], 1, err)
				} else if u.sess.Persists() && !batch[0].silent {
					acks <- ack{event: "PERSISTED", timecode: batch[0].timecode, hasTC: true, number: batch[0].rec.Meta.Number}
				}
				batch = batch[1:]
				continue
			}
			frags = frags[:0]
			for _, it := range batch[:n] {
				frags = append(frags, it.rec.Fragment)
			}
			p := u.sess.PersistAsync(frags, inflight)
			settle() // the run before: its acks go first
			inflight = p
			inflightItems = append(inflightItems, batch[:n]...)
			batch = batch[n:]
		}
	}
}

// gateAcks passes the persister's acks on in order, each PERSISTED once
// the engine's AckGate lets its fragment go (replicated durability: a
// replica holds the fragment durably too; the gate bounds the wait and
// falls back to local acks, never fails one). On server shutdown the ones
// still held back are dropped: the producer re-sends them, and the copy
// stored here is recognised.
func (u *upload) gateAcks(in <-chan ack, acks chan<- ack) {
	life := u.s.life.Done()
	for a := range in {
		if a.event == "PERSISTED" {
			select {
			case <-u.sess.AckReady(a.number):
			case <-life:
				continue
			}
		}
		acks <- a
	}
}

// errUploadFailed: a fragment left unstored because an earlier one of the
// same upload could not be.
var errUploadFailed = errors.New("an earlier fragment of the upload could not be stored")

// idleBody reads the request body through a pump goroutine and a few
// reused 64 KiB buffers, so the upload can tell how long the producer has
// been silent (sinceData) and end the body cleanly after the idle limit
// (endIdle) without waiting on a blocked read.
type idleBody struct {
	chunks chan []byte
	free   chan []byte
	errc   chan error
	done   chan struct{}
	pumped chan struct{} // closed when pump returned
	once   sync.Once
	// idleEnd is closed by endIdle: once what arrived is consumed, Read
	// returns io.EOF, a clean end of the body at the idle limit.
	idleEnd  chan struct{}
	idleOnce sync.Once
	// boundary: the source ended with the connection closed early
	// (io.ErrUnexpectedEOF), which is harmless between fragments.
	early atomic.Bool

	cur    []byte
	curBuf []byte
	err    error
	mu     sync.Mutex
	lastRx time.Time
}

func newIdleBody(r io.Reader) *idleBody {
	b := &idleBody{
		chunks:  make(chan []byte, 2),
		free:    make(chan []byte, 3),
		errc:    make(chan error, 1),
		done:    make(chan struct{}),
		pumped:  make(chan struct{}),
		idleEnd: make(chan struct{}),
		lastRx:  time.Now(),
	}
	for i := 0; i < 3; i++ {
		b.free <- make([]byte, 64<<10)
	}
	go b.pump(r)
	return b
}

func (b *idleBody) pump(r io.Reader) {
	defer close(b.pumped)
	for {
		var buf []byte
		select {
		case buf = <-b.free:
		case <-b.done:
			b.errc <- io.ErrClosedPipe
			return
		}
		n, err := r.Read(buf)
		if n > 0 {
			b.mu.Lock()
			b.lastRx = time.Now()
			b.mu.Unlock()
			select {
			case b.chunks <- buf[:n]:
			case <-b.done:
				b.errc <- io.ErrClosedPipe
				return
			}
		} else {
			b.free <- buf
		}
		if err != nil {
			b.errc <- err
			return
		}
	}
}

// stop ends the pump (its blocked Read returns once the connection's read
// deadline passes).
func (b *idleBody) stop() { b.once.Do(func() { close(b.done) }) }

// endIdle ends the body cleanly at the idle limit: Read returns io.EOF once
// what already arrived is consumed.
func (b *idleBody) endIdle() { b.idleOnce.Do(func() { close(b.idleEnd) }) }

// endedByIdle reports whether endIdle was called.
func (b *idleBody) endedByIdle() bool {
	select {
	case <-b.idleEnd:
		return true
	default:
		return false
	}
}

// closedAtBoundary reports whether the producer closed the connection
// without the final chunk (io.ErrUnexpectedEOF from the body).
func (b *idleBody) closedAtBoundary() bool { return b.early.Load() }

func (b *idleBody) sinceData() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return time.Since(b.lastRx)
}

func (b *idleBody) Read(p []byte) (int, error) {
	if len(b.cur) == 0 {
		if b.curBuf != nil {
			b.free <- b.curBuf[:cap(b.curBuf)]
			b.curBuf = nil
		}
		if b.err != nil {
			return 0, b.err
		}
		select {
		case c := <-b.chunks:
			b.cur, b.curBuf = c, c
		default:
			select {
			case c := <-b.chunks:
				b.cur, b.curBuf = c, c
			case err := <-b.errc:
				// Drain what the pump queued before its error.
				select {
				case c := <-b.chunks:
					b.cur, b.curBuf = c, c
					b.errc <- err
				default:
					if errors.Is(err, io.ErrUnexpectedEOF) {
						b.early.Store(true)
					}
					if errors.Is(err, io.ErrClosedPipe) || isTimeout(err) {
						err = errStopped
					}
					b.err = err
					return 0, err
				}
			case <-b.idleEnd:
				select {
				case c := <-b.chunks: // arrived just now: still part of the body
					b.cur, b.curBuf = c, c
				default:
					b.err = io.EOF
					return 0, io.EOF
				}
			}
		}
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

// errStopped: the server stopped reading the body (producer gone, session
// superseded or idle too long).
var errStopped = errors.New("upload stopped")

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
