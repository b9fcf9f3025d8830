// Package uplink uploads the box's recordings to an upstream Kinesis Video
// Streams endpoint (the real service, or another kvsedge), as the KVS Edge
// Agent does, and loses nothing across outages.
//
// For each stream chosen for upload (Config.Streams: cameras with an
// upload block, streams with an edge UploaderConfig) a worker:
//
//  1. makes sure the upstream stream exists (DescribeStream; CreateStream
//     with the local stream's media type and retention when it does not),
//     and asks GetDataEndpoint for PUT_MEDIA, as the SDKs do;
//  2. reads the stream's durable upload progress (engine.UploadProgress:
//     the newest fragment the upstream acknowledged PERSISTED) and opens a
//     cursor after it: the archive oldest first, then live;
//  3. feeds the stored fragments (only fragments this box stored:
//     Fragment.WaitStored) to a producer.Producer as one Matroska stream,
//     each cluster re-timed to its ABSOLUTE producer timestamp
//     (mkv.AppendRetimed), so the upstream archive has the true times;
//  4. on each PERSISTED ack, records the progress (synced) up to that
//     fragment.
//
// The producer keeps every fragment until PERSISTED and re-sends what was
// not acknowledged after a reconnect; the upstream recognises re-sends (KVS
// and kvsedge both match them by producer timestamp). When a session fails
// (an outage, an ERROR ack that the producer gives up on, a restart of
// either box), the worker backs off and starts again from the durable
// progress: nothing is skipped, and what is sent again is only what was
// not acknowledged.
//
// Order and rate: within a stream, fragments go oldest first, because the
// upstream needs a stream's producer timestamps to increase within a
// PutMedia session and an archive without holes; the live edge of a
// stream therefore waits behind its own backlog. Across streams one
// box-wide token bucket (Config.RateBitsPerSecond) is shared, each worker
// taking tokens per write, so one stream's catch-up cannot starve another
// stream's live edge, and the site's uplink is never saturated.
package uplink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	kvtypes "github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/schedule"
	"github.com/kvsedge/kvsedge/internal/status"
	"github.com/kvsedge/kvsedge/producer"
	"golang.org/x/time/rate"
)

// Config configures an Uploader.
type Config struct {
	// Endpoint is the upstream's control-plane URL; empty: the real
	// service's endpoint for Region.
	Endpoint    string
	Region      string
	Credentials aws.CredentialsProvider
	// HTTPClient carries every upstream request (its TLS settings hold an
	// optional CA); default: http.DefaultTransport without timeouts.
	HTTPClient *http.Client
	// RateBitsPerSecond caps the upload rate of all streams together
	// (0: no cap).
	RateBitsPerSecond int64
	// Streams returns the local streams to upload, with their schedules;
	// it is called at every scan.
	Streams func() []Target
	// Scan is how often Streams is called (default 5 s); RetryMin and
	// RetryMax bound a worker's backoff after a failed session (1 s, 60 s).
	Scan, RetryMin, RetryMax time.Duration
	Logger                   *slog.Logger
}

// Target is one stream to upload and when: with a schedule (KVS's
// UploaderConfig.ScheduleConfig: a Quartz expression and a window in
// seconds) only inside its windows; without one, continuously.
type Target struct {
	Stream          string
	Schedule        string
	DurationSeconds int
	// DeleteAfterUpload deletes local media once the upstream PERSISTED it
	// (KVS's DeletionConfig.DeleteAfterUpload; holds still win).
	DeleteAfterUpload bool
}

// Status is one stream's upload state.
type Status = status.Upload

// Uploader runs the upload workers.
type Uploader struct {
	eng     *engine.Engine
	cfg     Config
	limiter *rate.Limiter
	kv      *kinesisvideo.Client

	mu      sync.Mutex
	workers map[string]*worker
}

// burst is the token bucket's depth: one write to the producer takes at
// most this many bytes' worth of tokens.
const burst = 256 << 10

// New checks cfg and returns an Uploader (Run starts it).
func New(eng *engine.Engine, cfg Config) (*Uploader, error) {
	if cfg.Region == "" && cfg.Endpoint == "" {
		return nil, errors.New("uplink: a region or an endpoint is required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Credentials == nil {
		return nil, errors.New("uplink: credentials are required")
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if cfg.Scan <= 0 {
		cfg.Scan = 5 * time.Second
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Streams == nil {
		cfg.Streams = func() []Target { return nil }
	}
	u := &Uploader{eng: eng, cfg: cfg, workers: map[string]*worker{}}
	if cfg.RateBitsPerSecond > 0 {
		u.limiter = rate.NewLimiter(rate.Limit(float64(cfg.RateBitsPerSecond)/8), burst)
	}
	opts := kinesisvideo.Options{Region: cfg.Region, Credentials: cfg.Credentials, HTTPClient: cfg.HTTPClient}
	if cfg.Endpoint != "" {
		opts.BaseEndpoint = aws.String(cfg.Endpoint)
	}
	u.kv = kinesisvideo.New(opts)
	return u, nil
}

// Run scans for streams to upload until ctx ends, starting a worker for
// each new one and stopping those no longer chosen; it returns when every
// worker has stopped.
func (u *Uploader) Run(ctx context.Context) {
	var wg sync.WaitGroup
	cancels := map[string]context.CancelFunc{}
	t := time.NewTicker(u.cfg.Scan)
	defer t.Stop()
	for {
		want := map[string]Target{}
		for _, tg := range u.cfg.Streams() {
			want[tg.Stream] = tg
		}
		for name, cancel := range cancels {
			tg, ok := want[name]
			if ok && u.workerFor(name).target == tg {
				continue
			}
			// Gone, or its schedule changed: stop it (a changed one
			// starts again below).
			cancel()
			delete(cancels, name)
			u.mu.Lock()
			delete(u.workers, name)
			u.mu.Unlock()
		}
		for name, tg := range want {
			if cancels[name] != nil {
				continue
			}
			wctx, cancel := context.WithCancel(ctx)
			cancels[name] = cancel
			w := &worker{u: u, stream: name, target: tg}
			w.status.Stream, w.status.State = name, "starting"
			if tg.Schedule != "" {
				sch, err := schedule.Parse(tg.Schedule, tg.DurationSeconds)
				if err != nil {
					w.status.State, w.status.LastError, w.status.UserError, w.status.LastErrorAt = "waiting", err.Error(), true, time.Now()
					u.cfg.Logger.Error("upload schedule refused: nothing is uploaded for this stream", "stream", name, "err", err)
				}
				w.schedule = sch
			}
			u.mu.Lock()
			u.workers[name] = w
			u.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.run(wctx)
			}()
		}
		select {
		case <-ctx.Done():
			for _, c := range cancels {
				c()
			}
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

func (u *Uploader) workerFor(name string) *worker {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.workers[name]
}

// Status reports every worker's state, by stream name.
func (u *Uploader) Status() []Status {
	u.mu.Lock()
	ws := make([]*worker, 0, len(u.workers))
	for _, w := range u.workers {
		ws = append(ws, w)
	}
	u.mu.Unlock()
	out := make([]Status, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.snapshot(u.eng))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

// worker uploads one stream.
type worker struct {
	u      *Uploader
	stream string
	target Target
	// schedule is nil for a continuous upload (or a refused expression,
	// when the target has one: then nothing is uploaded).
	schedule *schedule.Schedule

	mu     sync.Mutex
	status Status
}

func (w *worker) update(fn func(*Status)) {
	w.mu.Lock()
	fn(&w.status)
	w.mu.Unlock()
}

func (w *worker) snapshot(eng *engine.Engine) Status {
	w.mu.Lock()
	st := w.status
	w.mu.Unlock()
	// Lag: the age of the oldest stored fragment not yet uploaded (index
	// keys only: this runs on every status read).
	ref := engine.StreamRef{Name: w.stream}
	if n, err := eng.UploadProgress(ref); err == nil {
		if m, ok, err := eng.OldestStoredAfter(ref, n); err == nil && ok {
			st.OldestPendingMs = m.ServerMs
			st.LagSeconds = time.Since(time.UnixMilli(m.ServerMs)).Seconds()
		}
	}
	if st.State == "uploading" && st.OldestPendingMs == 0 {
		st.State = "idle"
	}
	return st
}

func startAfter(n fragment.Number) engine.Start {
	if n.IsZero() {
		return engine.Start{Kind: engine.StartEarliest}
	}
	return engine.Start{Kind: engine.StartAfter, Number: n}
}

func (w *worker) run(ctx context.Context) {
	log := w.u.cfg.Logger.With("stream", w.stream, "component", "uplink")
	if w.target.Schedule != "" && w.schedule == nil {
		<-ctx.Done() // a refused schedule: Status says why
		return
	}
	backoff := w.u.cfg.RetryMin
	for ctx.Err() == nil {
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if w.schedule != nil {
			open, ends, next := w.schedule.Window(time.Now())
			if !open {
				w.update(func(s *Status) { s.State = "scheduled" })
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				continue
			}
			sctx, cancel = context.WithDeadline(ctx, ends)
		}
		w.update(func(s *Status) { s.State = "uploading"; s.Sessions++ })
		progressed, err := w.session(sctx, log)
		windowOver := sctx.Err() != nil && ctx.Err() == nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if windowOver {
			// The window closed: what was not PERSISTED goes in the next.
			log.Info("upload window closed", "schedule", w.schedule.String())
			backoff = w.u.cfg.RetryMin
			continue
		}
		if progressed {
			backoff = w.u.cfg.RetryMin
		}
		var ue userError
		w.update(func(s *Status) {
			s.State, s.Retries = "waiting", s.Retries+1
			if err != nil {
				s.LastError, s.LastErrorAt = err.Error(), time.Now()
				s.UserError = errors.As(err, &ue)
			}
		})
		log.Warn("upload session ended; resuming from the last fragment the upstream persisted", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, w.u.cfg.RetryMax)
	}
}

// userError marks a failure the configuration causes (KVS's USER_ERROR:
// credentials refused, stream unusable), as opposed to an outage.
type userError struct{ error }

func (e userError) Unwrap() error { return e.error }

// sent is one fragment handed to the producer, awaiting PERSISTED.
type sent struct {
	tc     uint64
	number fragment.Number
}

// session uploads until something fails; progressed says whether any
// fragment was PERSISTED.
func (w *worker) session(ctx context.Context, log *slog.Logger) (progressed bool, err error) {
	ref := engine.StreamRef{Name: w.stream}
	info, err := w.u.eng.Stream(ref)
	if err != nil {
		return false, fmt.Errorf("local stream: %w", err)
	}
	ep, err := w.prepareUpstream(ctx, info)
	if err != nil {
		return false, err
	}
	from, err := w.u.eng.UploadProgress(ref)
	if err != nil {
		return false, err
	}
	cur, err := w.u.eng.OpenCursor(ref, startAfter(from))
	if err != nil {
		return false, err
	}
	prod, err := producer.New(producer.Config{Endpoint: ep, StreamName: w.stream, Region: w.u.cfg.Region,
		Credentials: w.u.cfg.Credentials, HTTPClient: w.u.cfg.HTTPClient, MaxAttempts: 3, Logger: log})
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	var (
		mu      sync.Mutex
		pending []sent
	)
	feedErr := make(chan error, 1)
	go func() {
		err := w.feed(sctx, cur, pw, func(s sent) {
			mu.Lock()
			pending = append(pending, s)
			mu.Unlock()
		})
		_ = pw.CloseWithError(err)
		feedErr <- err
	}()
	var ackErr error
	onAck := func(a producer.Ack) {
		if a.EventType != "PERSISTED" || ackErr != nil {
			return
		}
		mu.Lock()
		i := 0
		for i < len(pending) && pending[i].tc <= a.FragmentTimecode {
			i++
		}
		if i == 0 {
			mu.Unlock()
			return
		}
		done := pending[i-1]
		pending = pending[i:]
		mu.Unlock()
		if err := w.u.eng.SetUploadProgress(ref, done.number); err != nil {
			ackErr = err
			cancel()
			return
		}
		progressed = true
		if w.target.DeleteAfterUpload {
			if n, err := w.u.eng.DeleteUploaded(ref, done.number); err != nil {
				log.Warn("deleting uploaded media", "err", err)
			} else if n > 0 {
				log.Debug("deleted uploaded media", "fragments", n)
			}
		}
		w.update(func(s *Status) {
			s.UploadedThrough, s.UploadedAt, s.Fragments = done.number.String(), time.Now(), s.Fragments+int64(i)
		})
	}
	abs := true
	_, err = prod.Put(sctx, pr, producer.Options{Absolute: &abs, OnAck: onAck})
	cancel()
	_ = pr.CloseWithError(context.Canceled)
	ferr := <-feedErr
	switch {
	case ackErr != nil:
		return progressed, fmt.Errorf("recording upload progress: %w", ackErr)
	case err != nil:
		return progressed, fmt.Errorf("upstream PutMedia: %w", err)
	case ferr != nil && !errors.Is(ferr, context.Canceled):
		return progressed, ferr
	}
	return progressed, errors.New("upstream PutMedia ended")
}

// prepareUpstream makes sure the upstream stream exists and returns its
// PUT_MEDIA data endpoint.
func (w *worker) prepareUpstream(ctx context.Context, info *engine.StreamInfo) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := w.u.kv.DescribeStream(cctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(w.stream)})
	var nf *kvtypes.ResourceNotFoundException
	if errors.As(err, &nf) {
		in := &kinesisvideo.CreateStreamInput{StreamName: aws.String(w.stream), DataRetentionInHours: aws.Int32(int32(max(info.DataRetentionInHours, 1)))}
		if info.MediaType != "" {
			in.MediaType = aws.String(info.MediaType)
		}
		if _, cerr := w.u.kv.CreateStream(cctx, in); cerr != nil {
			var inUse *kvtypes.ResourceInUseException
			if !errors.As(cerr, &inUse) {
				return "", classify(fmt.Errorf("creating the upstream stream: %w", cerr))
			}
		}
		w.u.cfg.Logger.Info("created the upstream stream", "stream", w.stream, "retention_hours", max(info.DataRetentionInHours, 1))
		err = nil
	}
	if err != nil {
		return "", classify(fmt.Errorf("describing the upstream stream: %w", err))
	}
	out, err := w.u.kv.GetDataEndpoint(cctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(w.stream), APIName: kvtypes.APINamePutMedia})
	if err != nil {
		return "", classify(fmt.Errorf("GetDataEndpoint: %w", err))
	}
	return aws.ToString(out.DataEndpoint), nil
}

// classify marks errors the configuration causes.
func classify(err error) error {
	var (
		ac  *kvtypes.AccessDeniedException
		nae *kvtypes.NotAuthorizedException
	)
	if errors.As(err, &ac) || errors.As(err, &nae) {
		return userError{err}
	}
	var he interface{ HTTPStatusCode() int }
	if errors.As(err, &he) && (he.HTTPStatusCode() == http.StatusForbidden || he.HTTPStatusCode() == http.StatusUnauthorized) {
		return userError{err}
	}
	return err
}

// feed writes the stream's stored fragments after the cursor's position to
// w as Matroska, each cluster at its absolute producer timecode, until ctx
// ends or the cursor fails.
func (w *worker) feed(ctx context.Context, cur *engine.Cursor, out io.Writer, onSent func(sent)) error {
	var (
		lastHeader *engine.Header
		buf        []byte
	)
	for {
		f, err := cur.Next(ctx, 0)
		var ue *engine.UnreadableError
		switch {
		case errors.As(err, &ue):
			w.u.cfg.Logger.Error("a stored fragment is unreadable and is not uploaded", "stream", w.stream, "number", ue.Number.String())
			continue
		case err != nil:
			return err
		}
		if err := f.WaitStored(ctx); err != nil {
			f.Release()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			continue // not kept here: not uploaded
		}
		h, herr := f.Header.Tracks()
		if herr != nil {
			f.Release()
			return fmt.Errorf("fragment %s: %w", f.Meta.Number, herr)
		}
		scale := h.TimecodeScale
		if scale == 0 {
			scale = 1_000_000
		}
		tc := uint64(f.Meta.ProducerMs) * 1_000_000 / scale
		buf = buf[:0]
		if f.Header != lastHeader {
			buf = append(buf, f.Header.Raw...)
			lastHeader = f.Header
		}
		buf, err = mkv.AppendRetimed(buf, f.Media, int(f.Meta.ClusterLen), tc)
		s := sent{tc: tc, number: f.Meta.Number}
		f.Release()
		if err != nil {
			return fmt.Errorf("fragment %s: %w", s.number, err)
		}
		onSent(s)
		for b := buf; len(b) > 0; {
			n := min(len(b), burst)
			if w.u.limiter != nil {
				if err := w.u.limiter.WaitN(ctx, n); err != nil {
					return err
				}
			}
			if _, err := out.Write(b[:n]); err != nil {
				return err
			}
			w.update(func(st *Status) { st.Bytes += int64(n) })
			b = b[n:]
		}
	}
}
