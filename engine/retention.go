package engine

import (
	"context"
	"time"
)

// KickRetention makes the retention sweeper run now.
func (e *Engine) KickRetention() {
	select {
	case e.retentionKick <- struct{}{}:
	default:
	}
}

// RunRetention deletes, every interval (and when kicked), the fragments of
// each stream whose server timestamp is older than its retention, until
// ctx ends. Streams with retention 0 keep nothing in the archive.
func (e *Engine) RunRetention(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		e.SweepRetention()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.retentionKick:
		}
	}
}

// preparedIdle is how long a stream appends nothing before its prepared
// next segment (a preallocated file) is dropped by the retention sweep.
const preparedIdle = 5 * time.Minute

// SweepRetention runs one retention pass over every stream, and drops the
// prepared segments of streams idle for preparedIdle.
func (e *Engine) SweepRetention() {
	if n := e.db.DropIdlePreparedSegments(preparedIdle); n > 0 {
		e.opts.Logger.Info("dropped the prepared segments of idle streams", "streams", n)
	}
	e.mu.RLock()
	streams := make([]*stream, 0, len(e.mu.byID))
	for _, s := range e.mu.byID {
		streams = append(streams, s)
	}
	e.mu.RUnlock()
	now := e.opts.Clock.Now()
	for _, s := range streams {
		info := s.info.Load()
		if info.DataRetentionInHours == 0 || s.deleted.Load() {
			continue
		}
		cutoff, allowed := deletionCutoff(info, now.Add(-time.Duration(info.DataRetentionInHours)*time.Hour).UnixMilli())
		if !allowed {
			continue // the whole stream is on hold
		}
		e.countNotUploaded(s, cutoff)
		s.persistMu.RLock()
		n, b, err := e.db.DeleteBefore(s.id, cutoff)
		s.persistMu.RUnlock()
		s.bytes.Add(-b) // what was deleted, even if removing its segments failed
		if err != nil {
			e.opts.Logger.Warn("retention sweep failed", "stream", info.Name, "err", err)
			continue
		}
		if n > 0 {
			e.opts.Logger.Info("retention deleted fragments", "stream", info.Name, "fragments", n)
		}
	}
}
