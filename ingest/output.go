package ingest

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/internal/fragment"
)

// engineOutput feeds a Fragmenter's fragments into an engine ingest
// session, the path PutMedia takes: StartFragment numbers the fragment,
// Receive publishes it to live readers, and a persister goroutine makes it
// durable, so a slow disk never stalls the camera's read loop longer than
// the queue allows.
type engineOutput struct {
	sess     *engine.IngestSession
	log      *slog.Logger
	num      fragment.Number
	serverMs int64
	queue    chan received
	done     chan struct{}
	once     sync.Once
	onStored func(fragment.Meta)
}

// received is a fragment waiting for the disk, with when it was complete.
type received struct {
	f  *engine.Fragment
	at time.Time
}

// persistQueue bounds fragments waiting for the disk per camera.
const persistQueue = 8

// persistObserver, when set (by benchmarks, before cameras start), is
// told each camera fragment's time from complete to durable: what a
// PERSISTED ack would wait.
var persistObserver func(time.Duration)

func newEngineOutput(sess *engine.IngestSession, log *slog.Logger, onStored func(fragment.Meta)) *engineOutput {
	o := &engineOutput{sess: sess, log: log, queue: make(chan received, persistQueue), done: make(chan struct{}), onStored: onStored}
	go o.persist()
	return o
}

// Buffers is where the camera's fragments are assembled: the engine's
// media memory, as a camera (engine.MediaCamera).
func (o *engineOutput) Buffers() mkv.Buffers { return o.sess.Buffers(engine.MediaCamera) }

// LiveFrame hands each frame to the stream's live subscribers as it is
// written (engine.IngestSession.LiveFrame), before its fragment completes.
func (o *engineOutput) LiveFrame(h *mkv.Header, b mkv.Block) { o.sess.LiveFrame(h, b) }

func (o *engineOutput) StartFragment() error {
	var err error
	o.num, o.serverMs, err = o.sess.StartFragment()
	return err
}

func (o *engineOutput) Fragment(f *mkv.Fragment) error {
	at := time.Now()
	rec, err := o.sess.Receive(o.num, o.serverMs, int64(f.Timecode), f)
	if err != nil {
		return err
	}
	if rec.Duplicate {
		rec.Release() // a camera's fragments are new; nothing waits on this
		return nil
	}
	o.queue <- received{f: rec.Fragment, at: at}
	return nil
}

func (o *engineOutput) persist() {
	defer close(o.done)
	for r := range o.queue {
		meta := r.f.Meta
		if err := o.sess.Persist(r.f); err != nil {
			if !errors.Is(err, engine.ErrStreamDeleted) {
				o.log.Warn("persisting a camera fragment failed", "number", meta.Number.String(), "err", err)
			}
			continue
		}
		if persistObserver != nil {
			persistObserver(time.Since(r.at))
		}
		if o.onStored != nil {
			o.onStored(meta)
		}
	}
}

// close waits for queued fragments to be stored.
func (o *engineOutput) close() {
	o.once.Do(func() { close(o.queue) })
	<-o.done
}
