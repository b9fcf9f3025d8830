package ingest

import (
	"errors"
	"log/slog"
	"sync"

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
	queue    chan *engine.Fragment
	done     chan struct{}
	once     sync.Once
	onStored func(fragment.Meta)
}

// persistQueue bounds fragments waiting for the disk per camera.
const persistQueue = 8

func newEngineOutput(sess *engine.IngestSession, log *slog.Logger, onStored func(fragment.Meta)) *engineOutput {
	o := &engineOutput{sess: sess, log: log, queue: make(chan *engine.Fragment, persistQueue), done: make(chan struct{}), onStored: onStored}
	go o.persist()
	return o
}

// Buffers is where the camera's fragments are assembled: the engine's
// media memory, as a camera (engine.MediaCamera).
func (o *engineOutput) Buffers() mkv.Buffers { return o.sess.Buffers(engine.MediaCamera) }

func (o *engineOutput) StartFragment() error {
	var err error
	o.num, o.serverMs, err = o.sess.StartFragment()
	return err
}

func (o *engineOutput) Fragment(f *mkv.Fragment) error {
	rec, err := o.sess.Receive(o.num, o.serverMs, int64(f.Timecode), f)
	if err != nil {
		return err
	}
	if rec.Duplicate {
		rec.Release() // a camera's fragments are new; nothing waits on this
		return nil
	}
	o.queue <- rec.Fragment
	return nil
}

func (o *engineOutput) persist() {
	defer close(o.done)
	for f := range o.queue {
		meta := f.Meta
		if err := o.sess.Persist(f); err != nil {
			if !errors.Is(err, engine.ErrStreamDeleted) {
				o.log.Warn("persisting a camera fragment failed", "number", meta.Number.String(), "err", err)
			}
			continue
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
