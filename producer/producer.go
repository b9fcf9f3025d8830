// Package producer is a Go client for Kinesis Video Streams PutMedia that
// other programs can import: it works against kvsedge and against AWS.
//
// A Producer takes Matroska (an MKV file, a pipe from a muxer, or a stream
// built by a camera pipeline), cuts it into fragments at its clusters,
// uploads them over one long PutMedia request signed with SigV4, reads the
// acknowledgements while it uploads, and keeps every fragment until it is
// PERSISTED. When the connection fails (or an ERROR ack ends it) it
// reconnects with capped backoff and re-sends what was not PERSISTED, as
// the KVS C producer does; the server recognises re-sent fragments.
//
// Ack wire format: one JSON object per event,
// {"EventType":"PERSISTED","FragmentTimecode":1795579974135,"FragmentNumber":"…"}
// (shared/kvs-api.md §4.2); fragments are matched to acks by timecode.
package producer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/kvsedge/kvsedge/engine/mkv"
)

// emptyPayloadHash is what PutMedia is signed with: its body is streamed.
const emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Config configures a Producer.
type Config struct {
	// Endpoint is the PUT_MEDIA data endpoint (GetDataEndpoint), e.g.
	// http://127.0.0.1:8080.
	Endpoint string
	// StreamName names the stream.
	StreamName  string
	Region      string
	Credentials aws.CredentialsProvider
	// HTTPClient defaults to a client without timeouts (uploads are long).
	HTTPClient *http.Client
	// MaxBufferedBytes bounds fragments kept for re-sending; reading the
	// input blocks when it is reached. Default 64 MiB.
	MaxBufferedBytes int
	// MaxAttempts is how many connections in a row may fail before Put
	// gives up. Default 5.
	MaxAttempts int
	Logger      *slog.Logger
}

// Ack is one acknowledgement event.
type Ack struct {
	EventType        string
	FragmentTimecode uint64
	FragmentNumber   string
	ErrorId          int
	ErrorCode        string
}

// Options tune one Put.
type Options struct {
	// Absolute says cluster timecodes are epoch-based. Nil: decided from
	// the first cluster (after the year 2001 in ms means absolute).
	Absolute *bool
	// Start is the producer start time for relative timecodes (default:
	// when Put starts).
	Start time.Time
	// OnAck is called for every ack (from Put's goroutines, one at a time).
	OnAck func(Ack)
	// FragmentDuration, when positive, re-clusters the input (Recluster):
	// any Matroska or WebM, cut into fragments at video key frames at least
	// this long. Zero sends the input's clusters as they are, one fragment
	// each, with the Tags between them (input already shaped by a KVS
	// producer).
	FragmentDuration time.Duration
}

// Stats summarises a Put.
type Stats struct {
	Fragments, Persisted int
	Bytes                int64
	Reconnects           int
}

// Producer uploads to one stream.
type Producer struct {
	cfg Config
}

// New checks cfg and returns a Producer.
func New(cfg Config) (*Producer, error) {
	if cfg.Endpoint == "" || cfg.StreamName == "" || cfg.Credentials == nil {
		return nil, errors.New("producer: Endpoint, StreamName and Credentials are required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: false, Proxy: http.ProxyFromEnvironment}}
	}
	if cfg.MaxBufferedBytes == 0 {
		cfg.MaxBufferedBytes = 64 << 20
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Endpoint = strings.TrimRight(cfg.Endpoint, "/")
	return &Producer{cfg: cfg}, nil
}

// pending is a fragment waiting for PERSISTED.
type pending struct {
	header   *mkv.Header
	timecode uint64
	body     []byte // cluster + producer tags + end-of-fragment tag
}

// queue holds un-persisted fragments in order.
type queue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	frags    []*pending
	bytes    int
	max      int
	inputEOF bool
	err      error // fatal: stop everything
	added    chan struct{}
}

func (q *queue) push(ctx context.Context, p *pending) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes > 0 && q.bytes+len(p.body) > q.max && q.err == nil && ctx.Err() == nil {
		q.cond.Wait()
	}
	if q.err != nil {
		return q.err
	}
	q.frags = append(q.frags, p)
	q.bytes += len(p.body)
	q.notify()
	return nil
}

func (q *queue) notify() {
	select {
	case q.added <- struct{}{}:
	default:
	}
}

// persisted drops the fragment with timecode tc.
func (q *queue) persisted(tc uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, p := range q.frags {
		if p.timecode == tc {
			q.bytes -= len(p.body)
			q.frags = append(q.frags[:i], q.frags[i+1:]...)
			q.cond.Broadcast()
			q.notify()
			return true
		}
	}
	return false
}

func (q *queue) snapshot() (frags []*pending, done bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]*pending(nil), q.frags...), q.inputEOF && len(q.frags) == 0
}

// failure is the error that stopped everything, if any.
func (q *queue) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

func (q *queue) fail(err error) {
	q.mu.Lock()
	if q.err == nil {
		q.err = err
	}
	q.cond.Broadcast()
	q.mu.Unlock()
	q.notify()
}

// Put uploads everything r holds and returns once every fragment is
// PERSISTED (or ctx ends, or the server keeps failing).
func (p *Producer) Put(ctx context.Context, r io.Reader, opts Options) (Stats, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := &queue{max: p.cfg.MaxBufferedBytes, added: make(chan struct{}, 1)}
	q.cond = sync.NewCond(&q.mu)
	context.AfterFunc(ctx, func() { q.fail(ctx.Err()) })
	if opts.Start.IsZero() {
		opts.Start = time.Now()
	}
	var st Stats
	var stMu sync.Mutex
	absCh := make(chan bool, 1)
	readErr := make(chan error, 1)
	if opts.FragmentDuration > 0 {
		r = Recluster(r, opts.FragmentDuration)
	}
	go func() {
		readErr <- p.readInput(ctx, r, q, opts.Absolute, absCh, &st, &stMu)
	}()
	// stats reads st under its lock: the input reader updates it.
	stats := func() Stats {
		stMu.Lock()
		defer stMu.Unlock()
		return st
	}
	var absolute bool
	select {
	case absolute = <-absCh:
	case err := <-readErr:
		if err != nil {
			return stats(), err
		}
		return stats(), nil // empty input
	}
	failures := 0
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			stMu.Lock()
			st.Reconnects++
			stMu.Unlock()
		}
		progressed, err := p.connection(ctx, q, absolute, opts, &st, &stMu)
		if _, done := q.snapshot(); done {
			if e := <-readErr; e != nil {
				return stats(), e
			}
			return stats(), nil
		}
		if qerr := q.failure(); qerr != nil {
			return stats(), qerr
		}
		if progressed {
			failures = 0
		} else {
			failures++
		}
		if failures >= p.cfg.MaxAttempts {
			return stats(), fmt.Errorf("producer: giving up after %d failed connections: %w", failures, err)
		}
		backoff := min(time.Duration(1<<min(failures, 5))*200*time.Millisecond, 5*time.Second)
		backoff += time.Duration(rand.Int64N(int64(backoff / 2)))
		p.cfg.Logger.Info("PutMedia connection ended; reconnecting", "err", err, "in", backoff.String())
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return stats(), ctx.Err()
		}
	}
}

// readInput cuts the input into fragments.
func (p *Producer) readInput(ctx context.Context, r io.Reader, q *queue, abs *bool, absCh chan<- bool, st *Stats, stMu *sync.Mutex) error {
	rd := mkv.NewReader(r, mkv.Options{})
	decided := false
	defer func() {
		q.mu.Lock()
		q.inputEOF = true
		q.mu.Unlock()
		q.notify()
	}()
	for {
		ev, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			err = fmt.Errorf("producer: reading the input: %w", err)
			q.fail(err)
			return err
		}
		if ev != mkv.EventFragmentEnd {
			continue
		}
		f := rd.TakeFragment()
		if !decided {
			a := false
			if abs != nil {
				a = *abs
			} else {
				a = f.Timecode*f.Header.TimecodeScale/1_000_000 > 978307200000
			}
			absCh <- a
			decided = true
		}
		body := f.Buf
		if !f.EndOfFragment {
			body = mkv.AppendEndOfFragment(body)
		}
		if err := q.push(ctx, &pending{header: f.Header, timecode: f.Timecode, body: body}); err != nil {
			return err
		}
		stMu.Lock()
		st.Fragments++
		st.Bytes += int64(len(body))
		stMu.Unlock()
	}
}

// connection runs one PutMedia request: it sends the queued fragments and
// then new ones, and returns when the queue is drained and the input is
// done, or the connection fails. progressed reports a PERSISTED ack.
func (p *Producer) connection(ctx context.Context, q *queue, absolute bool, opts Options, st *Stats, stMu *sync.Mutex) (progressed bool, err error) {
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.Endpoint+"/putMedia", pr)
	if err != nil {
		return false, err
	}
	req.ContentLength = -1
	req.Header.Set("x-amzn-stream-name", p.cfg.StreamName)
	req.Header.Set("x-amzn-fragment-acknowledgment-required", "1")
	if absolute {
		req.Header.Set("x-amzn-fragment-timecode-type", "ABSOLUTE")
	} else {
		req.Header.Set("x-amzn-fragment-timecode-type", "RELATIVE")
	}
	req.Header.Set("x-amzn-producer-start-timestamp", strconv.FormatFloat(float64(opts.Start.UnixMilli())/1000, 'f', 3, 64))
	creds, err := p.cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return false, fmt.Errorf("producer: credentials: %w", err)
	}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptyPayloadHash, "kinesisvideo", p.cfg.Region, time.Now()); err != nil {
		return false, err
	}

	connCtx, stop := context.WithCancel(ctx)
	defer stop()
	writeErr := make(chan error, 1)
	go func() { writeErr <- p.writeBody(connCtx, pw, q) }()

	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		pw.CloseWithError(err)
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		stop()
		pw.CloseWithError(errors.New("refused"))
		err := fmt.Errorf("producer: PutMedia answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest {
			q.fail(err) // not worth retrying
		}
		return false, err
	}
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var a Ack
		if err := dec.Decode(&a); err != nil {
			stop()
			pw.CloseWithError(io.ErrClosedPipe)
			if _, done := q.snapshot(); done {
				return progressed, nil
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("producer: server ended the ack stream")
			}
			return progressed, err
		}
		if opts.OnAck != nil {
			opts.OnAck(a)
		}
		switch a.EventType {
		case "PERSISTED":
			if q.persisted(a.FragmentTimecode) {
				progressed = true
				stMu.Lock()
				st.Persisted++
				stMu.Unlock()
			}
		case "ERROR":
			p.cfg.Logger.Warn("PutMedia ERROR ack", "error_id", a.ErrorId, "code", a.ErrorCode, "timecode", a.FragmentTimecode)
			if a.ErrorId == 4006 || a.ErrorId == 4010 || a.ErrorId == 4012 || a.ErrorId == 4004 {
				// The content itself is refused: re-sending cannot help.
				q.fail(fmt.Errorf("producer: fragment %d refused: ErrorId %d %s", a.FragmentTimecode, a.ErrorId, a.ErrorCode))
			}
		}
		if _, done := q.snapshot(); done {
			stop()
			pw.Close()
			return true, nil
		}
	}
}

// writeBody writes the upload: each fragment preceded by its header when
// the header changes (the first fragment always).
func (p *Producer) writeBody(ctx context.Context, w *io.PipeWriter, q *queue) error {
	sent := map[*pending]bool{}
	var cur *mkv.Header
	for {
		frags, done := q.snapshot()
		if done {
			return w.Close()
		}
		if len(sent) > 2*len(frags)+16 {
			live := make(map[*pending]bool, len(frags))
			for _, f := range frags {
				if sent[f] {
					live[f] = true
				}
			}
			sent = live
		}
		wrote := false
		for _, f := range frags {
			if sent[f] {
				continue
			}
			if f.header != cur {
				if _, err := w.Write(f.header.Raw); err != nil {
					return err
				}
				cur = f.header
			}
			if _, err := w.Write(f.body); err != nil {
				return err
			}
			sent[f] = true
			wrote = true
		}
		if wrote {
			continue
		}
		select {
		case <-q.added:
		case <-ctx.Done():
			return w.CloseWithError(ctx.Err())
		}
	}
}
