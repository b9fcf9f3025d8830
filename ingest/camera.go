package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/status"
)

// Source is a camera feed. Run delivers media to the fragmenter until the
// feed ends, fails or ctx ends; the camera reconnects by calling Run again.
type Source interface {
	// Describe names the source for logs and state, without credentials.
	Describe() string
	Run(ctx context.Context, fr *Fragmenter, tl *timeline, st *feedStats) error
}

// Camera states.
const (
	StateConnecting = "CONNECTING"
	StateRecording  = "RECORDING"
	StateRetrying   = "RETRYING"
	StateStopped    = "STOPPED"
	// StateStandby: configured here, recorded by another node of the
	// cluster (LastError says which, or why not here).
	StateStandby = "STANDBY"
	// StatePaused: the box refuses new media (storage full under the
	// refuse-new strategy, or the stream at its byte limit); the camera
	// retries every few seconds and resumes by itself.
	StatePaused = "PAUSED"
)

// feedStats counts a feed's frames for the state and the stall detector.
type feedStats struct {
	mu        sync.Mutex
	lastFrame time.Time
	lastVideo time.Time
	lastAudio time.Time
	winStart  time.Time
	winBytes  int
	winFrames int
	bitrate   float64
	fps       float64
	hasVideo  bool
	// log is the camera's logger, for sources that report events.
	log *slog.Logger
}

func (s *feedStats) frame(video bool, bytes int) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFrame = now
	if video {
		s.lastVideo, s.hasVideo = now, true
		s.winFrames++
	} else {
		s.lastAudio = now
	}
	if s.winStart.IsZero() {
		s.winStart = now
	}
	s.winBytes += bytes
	if d := now.Sub(s.winStart); d >= 2*time.Second {
		s.bitrate = float64(s.winBytes*8) / d.Seconds()
		s.fps = float64(s.winFrames) / d.Seconds()
		s.winStart, s.winBytes, s.winFrames = now, 0, 0
	}
}

// stalled reports why the feed looks dead, if it does: no frame at all
// for timeout, or (with video) audio flowing but no video for timeout.
func (s *feedStats) stalled(since time.Time, timeout time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	last := s.lastFrame
	if last.IsZero() {
		last = since
	}
	if now.Sub(last) > timeout {
		return fmt.Errorf("stalled: no media for %s", now.Sub(last).Round(time.Second))
	}
	if s.hasVideo && now.Sub(s.lastVideo) > timeout {
		return fmt.Errorf("video track stopped: no video for %s while audio flows", now.Sub(s.lastVideo).Round(time.Second))
	}
	return nil
}

// CameraConfig is one camera to record.
type CameraConfig struct {
	Stream string
	// Source builds the feed (RTSP, USB, demo).
	Source Source
	// Key identifies the configuration: a camera is restarted when it
	// changes.
	Key string
	// RetentionHours and Tags are used when the stream must be created.
	RetentionHours   int
	Tags             map[string]string
	FragmentDuration time.Duration
	// StallTimeout: a feed without media this long is reconnected.
	// Default 10 s.
	StallTimeout time.Duration
	// MaxBackoff caps the wait between reconnects. Default 30 s.
	MaxBackoff time.Duration
}

// camera records one source into one stream, forever.
type camera struct {
	cfg    CameraConfig
	eng    *engine.Engine
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	// hist is the Manager's record of state changes (history.go).
	hist *stateHistory

	mu    sync.Mutex
	state status.Camera // LastFragment is set from lastFragment by snapshot
	stats *feedStats
	// lastFragment is the newest stored fragment's number (zero: none yet),
	// kept as a number so that storing a fragment allocates no string.
	lastFragment fragment.Number

	// handBack: the stream's home took the camera back and this box goes
	// on recording until the home's first fragment arrives (manager.go);
	// handedOver: it did, and this camera stopped storing.
	handBack, handedOver atomic.Bool
}

// errHandedOver ends a connection whose stream the home records now.
var errHandedOver = errors.New("handed back to the stream's home, which records it now")

func (c *camera) setState(state string, err error) {
	now := time.Now()
	errText := ""
	if err != nil {
		errText = err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state.State != state {
		c.state.Since = now
	}
	c.state.State = state
	if err != nil {
		c.state.LastError = errText
	}
	if c.hist != nil {
		c.hist.record(c.cfg.Stream, state, now, errText)
	}
}

func (c *camera) snapshot() status.Camera {
	c.mu.Lock()
	st := c.state
	last := c.lastFragment
	stats := c.stats
	c.mu.Unlock()
	if last != (fragment.Number{}) {
		st.LastFragment = last.String()
	}
	if stats != nil {
		stats.mu.Lock()
		st.LastFrame, st.BitrateBps, st.FPS = stats.lastFrame, stats.bitrate, stats.fps
		stats.mu.Unlock()
	}
	return st
}

// run is the reconnect loop: capped exponential backoff with jitter, reset
// after a connection that recorded for a while.
func (c *camera) run(ctx context.Context) {
	defer close(c.done)
	tl := &timeline{now: time.Now}
	backoff := time.Second
	maxBackoff := c.cfg.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	backoff = min(backoff, maxBackoff)
	for attempt := 0; ; attempt++ {
		c.setState(StateConnecting, nil)
		started := time.Now()
		err := c.connection(ctx, tl)
		if ctx.Err() != nil {
			c.setState(StateStopped, nil)
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		c.mu.Lock()
		c.state.Reconnects++
		c.mu.Unlock()
		if errors.Is(err, errHandedOver) {
			// The manager stops the camera at its next look (a second);
			// if the home died meanwhile and it does not, record again.
			c.setState(StateStandby, err)
			c.log.Info("camera handed back to the stream's home")
			select {
			case <-ctx.Done():
				c.setState(StateStopped, nil)
				return
			case <-time.After(3 * time.Second):
			}
			continue
		}
		if errors.Is(err, engine.ErrStorageFull) {
			c.setState(StatePaused, err)
			c.log.Error("camera paused: the box refuses new media", "err", err)
			select {
			case <-ctx.Done():
				c.setState(StateStopped, nil)
				return
			case <-time.After(5 * time.Second):
			}
			continue
		}
		c.setState(StateRetrying, err)
		wait := backoff + rand.N(backoff/2+1)
		c.log.Warn("camera feed ended; retrying", "err", err, "in", wait.Round(time.Millisecond).String())
		select {
		case <-ctx.Done():
			c.setState(StateStopped, nil)
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// connection runs the source once, with a stall watchdog.
func (c *camera) connection(ctx context.Context, tl *timeline) error {
	sess, err := c.eng.BeginIngest(engine.StreamRef{Name: c.cfg.Stream})
	if err != nil {
		return err
	}
	defer sess.Close()
	out := newEngineOutput(sess, c.log, func(m fragment.Meta) {
		c.mu.Lock()
		c.state.Fragments++
		c.lastFragment = m.Number
		c.mu.Unlock()
	})
	fr := NewFragmenter(out, c.cfg.FragmentDuration)
	fr.keyCut, out.handBack = &c.handBack, &c.handBack
	c.handedOver.Store(false)
	stats := &feedStats{log: c.log}
	c.mu.Lock()
	c.stats = stats
	c.mu.Unlock()

	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out.homeFirst = homeFirstKey(c.eng, c.cfg.Stream)
	out.handedOver = func(int64) {
		c.handedOver.Store(true)
		cancel(errHandedOver)
	}
	go func() { // the engine ended the session (stream deleted, taken over)
		select {
		case <-sess.Done():
			cancel(sess.Err())
		case <-cctx.Done():
		}
	}()
	started := time.Now()
	go func() { // stall detector
		t := alignedTicker(time.Second, cctx.Done())
		if t == nil {
			return
		}
		defer t.Stop()
		for {
			select {
			case <-cctx.Done():
				return
			case <-t.C:
				if err := stats.stalled(started, c.cfg.StallTimeout); err != nil {
					cancel(err)
					return
				}
				stats.mu.Lock()
				recording := !stats.lastFrame.IsZero()
				stats.mu.Unlock()
				if recording {
					c.setState(StateRecording, nil)
				}
			}
		}
	}()
	tl.reset()
	err = c.cfg.Source.Run(cctx, fr, tl, stats)
	if ferr := fr.Flush(); ferr != nil && err == nil {
		err = ferr
	}
	out.close()
	c.mu.Lock()
	c.state.DroppedFrames += fr.DroppedUnits
	c.mu.Unlock()
	if cause := context.Cause(cctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	if err == nil {
		err = errors.New("feed ended")
	}
	return err
}
