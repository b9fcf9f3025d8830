package engine

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// UploadProgress is the newest fragment of the stream that an upstream KVS
// acknowledged PERSISTED (zero: none), stored durably by SetUploadProgress
// (lsm/FORMAT.md, meta "upload/<sid>"). The uploader (internal/uplink)
// resumes after it.
func (e *Engine) UploadProgress(ref StreamRef) (fragment.Number, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return fragment.Number{}, err
	}
	n, err := e.db.UploadProgress(s.id)
	if err != nil {
		return n, fmt.Errorf("engine: %w", err)
	}
	return n, nil
}

// SetUploadProgress records, synced, that the upstream PERSISTED the
// stream's fragments up to n.
func (e *Engine) SetUploadProgress(ref StreamRef, n fragment.Number) error {
	s, _, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if err := e.db.PutUploadProgress(s.id, n); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// WaitStored waits until the fragment's Persist finished, and reports
// whether it is in the archive: nil when stored (fragments read from the
// archive are), an error when storing failed or ctx ended first. An
// uploader sends only stored fragments, so what it sends upstream is what
// this box keeps.
func (f *Fragment) WaitStored(ctx context.Context) error {
	if f.persisted == nil {
		return nil
	}
	select {
	case <-f.persisted:
		if f.persistErr != nil {
			return fmt.Errorf("engine: fragment %s was not stored: %w", f.Meta.Number, f.persistErr)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DeleteUploaded deletes the stream's stored fragments that arrived before
// fragment n (whose upstream PERSISTED the uploader recorded: KVS's
// DeletionConfig.DeleteAfterUpload). Server times do not decrease in number
// order, so these are fragments numbered before n (those that share n's
// server millisecond, and n itself, stay until a later call). A hold (the kvsedge:hold tag) wins: held media is
// kept. It never reaches a fragment the upstream did not persist, so only
// retention and capacity can delete media that was never uploaded.
func (e *Engine) DeleteUploaded(ref StreamRef, n fragment.Number) (int, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return 0, err
	}
	m, err := e.db.FragmentMeta(s.id, n)
	if errors.Is(err, lsm.ErrNotFound) {
		return 0, nil // already gone (retention)
	}
	if err != nil {
		return 0, fmt.Errorf("engine: %w", err)
	}
	cutoff, allowed := deletionCutoff(s.info.Load(), m.ServerMs)
	if !allowed {
		return 0, nil
	}
	s.persistMu.RLock()
	deleted, b, err := e.db.DeleteBefore(s.id, cutoff)
	s.persistMu.RUnlock()
	s.bytes.Add(-b)
	if err != nil {
		return deleted, fmt.Errorf("engine: %w", err)
	}
	return deleted, nil
}

// countNotUploaded counts, before retention or the capacity controller
// deletes the stream's fragments older than cutoffMs, those the upstream
// has not persisted (numbered after the stream's upload progress), into
// lostBeforeUpload. Streams that never uploaded anything are not counted
// (nothing says they are meant to).
func (e *Engine) countNotUploaded(s *stream, cutoffMs int64) {
	p, err := e.db.UploadProgress(s.id)
	if err != nil || p.IsZero() {
		return
	}
	var n uint64
	_ = e.db.ScanTime(s.id, fragment.ByServerTime, math.MinInt64, cutoffMs-1, nil, func(m fragment.Meta) bool {
		if m.Number.Compare(p) > 0 {
			n++
		}
		return true
	})
	if n > 0 {
		s.lostBeforeUpload.Add(n)
		e.opts.Logger.Warn("media deleted before it was uploaded (retention or capacity)", "stream", s.info.Load().Name, "fragments", n)
	}
}

// LostBeforeUpload reports, per stream name, the fragments deleted by
// retention or capacity before the upstream persisted them, since start.
func (e *Engine) LostBeforeUpload() map[string]uint64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := map[string]uint64{}
	for _, s := range e.mu.byID {
		if n := s.lostBeforeUpload.Load(); n > 0 {
			out[s.info.Load().Name] = n
		}
	}
	return out
}

// OldestStoredAfter returns the meta of the stream's first stored fragment
// numbered after n (ok false when none), reading index keys only, never
// media: the uploader's lag (the age of the oldest fragment not yet
// uploaded) is asked for on every status read.
func (e *Engine) OldestStoredAfter(ref StreamRef, n fragment.Number) (m fragment.Meta, ok bool, err error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return m, false, err
	}
	var first fragment.Number
	if err := e.db.FragmentNumbers(s.id, n, func(x fragment.Number) bool { first = x; return false }); err != nil {
		return m, false, fmt.Errorf("engine: %w", err)
	}
	if first.IsZero() {
		return m, false, nil
	}
	m, err = e.db.FragmentMeta(s.id, first)
	if errors.Is(err, lsm.ErrNotFound) {
		return m, false, nil // deleted meanwhile
	}
	if err != nil {
		return m, false, fmt.Errorf("engine: %w", err)
	}
	return m, true, nil
}
