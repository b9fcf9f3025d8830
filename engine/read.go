package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/lsm"
)

// ErrFragmentNotFound: a fragment number that the stream does not hold.
var ErrFragmentNotFound = errors.New("engine: fragment not found")

// UnreadableError is returned by Cursor.Next for a stored fragment whose
// media cannot be read back intact; the cursor has moved past it, so the
// next call goes on with the fragment after.
type UnreadableError struct {
	Number fragment.Number
	Err    error
}

func (e *UnreadableError) Error() string {
	return fmt.Sprintf("engine: fragment %s is unreadable: %v", e.Number, e.Err)
}

func (e *UnreadableError) Unwrap() error { return e.Err }

// ErrIdle is returned by Cursor.Next when no fragment arrived within the
// idle time at the live edge.
var ErrIdle = errors.New("engine: no new fragment within the idle time")

type headerKey struct {
	sid lsm.StreamID
	id  uint64
}

// headerCache shares Header values among sessions and readers.
type headerCache struct {
	mu sync.Mutex
	m  map[headerKey]*Header
}

// maxCachedHeaders bounds the cache; headers are a few hundred bytes.
const maxCachedHeaders = 4096

func (e *Engine) headerFor(s *stream, id uint64, raw []byte) *Header {
	k := headerKey{s.id, id}
	e.headers.mu.Lock()
	defer e.headers.mu.Unlock()
	if h, ok := e.headers.m[k]; ok {
		return h
	}
	if len(e.headers.m) >= maxCachedHeaders {
		for k := range e.headers.m {
			delete(e.headers.m, k)
			break
		}
	}
	h := &Header{ID: id, Raw: append([]byte(nil), raw...)}
	e.headers.m[k] = h
	return h
}

// storedHeader returns a header of the archive.
func (e *Engine) storedHeader(s *stream, id uint64) (*Header, error) {
	k := headerKey{s.id, id}
	e.headers.mu.Lock()
	h, ok := e.headers.m[k]
	e.headers.mu.Unlock()
	if ok {
		return h, nil
	}
	raw, err := e.db.Header(s.id, id)
	if err != nil {
		return nil, fmt.Errorf("engine: header %x of stream %d: %w", id, s.id, err)
	}
	h = e.headerFor(s, id, raw)
	h.stored.Store(true)
	return h, nil
}

func (e *Engine) archived(s *stream, m fragment.Meta, media []byte) (*Fragment, error) {
	h, err := e.storedHeader(s, m.HeaderID)
	if err != nil {
		e.mem.Free(media)
		return nil, err
	}
	// The media buffer came from the media memory (readBufs) and is freed
	// with the last Release.
	f := &Fragment{Meta: m, Header: h, Media: media, mem: e.mem}
	f.refs.Store(1)
	return f, nil
}

// Fragment returns one fragment by number, from the ring or the archive,
// retained for the caller.
func (e *Engine) Fragment(ref StreamRef, n fragment.Number) (*Fragment, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	s.ring.read()
	if f := s.ring.find(n); f != nil {
		return f, nil
	}
	m, media, err := e.db.Fragment(s.id, n, e.readBufs)
	if errors.Is(err, lsm.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrFragmentNotFound, n)
	}
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	return e.archived(s, m, media)
}

// HasFragment reports whether the stream holds fragment n (in the ring or
// the archive).
func (e *Engine) HasFragment(ref StreamRef, n fragment.Number) (bool, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return false, err
	}
	if f := s.ring.find(n); f != nil {
		f.Release()
		return true, nil
	}
	ok, err := e.db.HasFragment(s.id, n)
	if err != nil {
		return false, fmt.Errorf("engine: %w", err)
	}
	return ok, nil
}

// StartKind is where a Cursor begins.
type StartKind int

const (
	// StartNow: the next fragment to arrive.
	StartNow StartKind = iota
	// StartEarliest: the oldest fragment held.
	StartEarliest
	// StartAfter: the first fragment after Number.
	StartAfter
	// StartServerTime / StartProducerTime: the fragment containing Ms, or
	// the first after it.
	StartServerTime
	StartProducerTime
)

// Start positions a Cursor.
type Start struct {
	Kind   StartKind
	Number fragment.Number
	Ms     int64
}

// Cursor walks a stream's fragments in number order: the archive first,
// then the hot ring, then live as fragments arrive, without a gap or a
// duplicate at the seams.
type Cursor struct {
	e     *Engine
	s     *stream
	after fragment.Number
}

// OpenCursor positions a cursor on a stream.
func (e *Engine) OpenCursor(ref StreamRef, st Start) (*Cursor, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	c := &Cursor{e: e, s: s}
	switch st.Kind {
	case StartEarliest:
	case StartAfter:
		c.after = st.Number
	case StartNow:
		if c.after, err = e.newestHeld(s); err != nil {
			return nil, err
		}
	case StartServerTime, StartProducerTime:
		n, ok, err := e.fragmentAt(s, st.Kind == StartServerTime, st.Ms)
		if err != nil {
			return nil, err
		}
		if ok {
			c.after = predecessor(n)
		} else {
			// Nothing at or after the time yet: start live.
			if c.after, err = e.newestHeld(s); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// newestHeld is the newest fragment's number, in the ring or else the
// archive (an unread ring may hold none: dropUnread).
func (e *Engine) newestHeld(s *stream) (fragment.Number, error) {
	if n := s.ring.newest(); !n.IsZero() {
		return n, nil
	}
	m, ok, err := e.db.LastFragment(s.id)
	if err != nil {
		return fragment.Number{}, fmt.Errorf("engine: %w", err)
	}
	if !ok {
		return fragment.Number{}, nil
	}
	return m.Number, nil
}

// predecessor returns a number just below n, so "after predecessor(n)"
// starts at n.
func predecessor(n fragment.Number) fragment.Number {
	for i := len(n) - 1; i >= 0; i-- {
		n[i]--
		if n[i] != 0xFF {
			break
		}
	}
	return n
}

// fragmentAt finds the fragment containing ms (its start ≤ ms < start +
// duration), else the first starting after ms, in the archive and then the
// ring.
func (e *Engine) fragmentAt(s *stream, server bool, ms int64) (fragment.Number, bool, error) {
	idx := fragment.ByProducerTime
	if server {
		idx = fragment.ByServerTime
	}
	stamp := func(m *fragment.Meta) int64 {
		if server {
			return m.ServerMs
		}
		return m.ProducerMs
	}
	m, ok, err := e.db.LastAtOrBefore(s.id, idx, ms)
	if err != nil {
		return fragment.Number{}, false, fmt.Errorf("engine: %w", err)
	}
	if ok && stamp(&m)+int64(m.DurationMs) > ms {
		return m.Number, true, nil
	}
	var found fragment.Number
	have := false
	err = e.db.ScanTime(s.id, idx, ms, 1<<62, nil, func(m fragment.Meta) bool {
		found, have = m.Number, true
		return false
	})
	if err != nil {
		return fragment.Number{}, false, fmt.Errorf("engine: %w", err)
	}
	if have {
		return found, true, nil
	}
	s.ring.each(func(f *Fragment) bool {
		t := stamp(&f.Meta)
		if t+int64(f.Meta.DurationMs) > ms {
			found, have = f.Meta.Number, true
			return false
		}
		return true
	})
	return found, have, nil
}

// Next returns the next fragment, retained (the caller Releases it),
// waiting at the live edge up to idle (0: until ctx ends). It returns
// ErrIdle, ErrStreamDeleted or ctx's error.
func (c *Cursor) Next(ctx context.Context, idle time.Duration) (*Fragment, error) {
	var timer <-chan time.Time
	if idle > 0 {
		t := time.NewTimer(idle)
		defer t.Stop()
		timer = t.C
	}
	r := c.s.ring
	r.read()
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return nil, ErrStreamDeleted
		}
		notify := r.waitChanLocked()
		var oldest fragment.Number
		if len(r.frags) > 0 {
			oldest = r.frags[0].Meta.Number
		}
		if len(r.frags) > 0 && oldest.Compare(c.after) <= 0 {
			// Inside the ring: it holds every fragment from oldest on.
			if f := r.firstAfterLocked(c.after); f != nil {
				f.Retain()
				r.mu.Unlock()
				c.after = f.Meta.Number
				return f, nil
			}
			r.mu.Unlock()
		} else {
			r.mu.Unlock()
			// Before the ring (or the ring is empty): the archive holds
			// what lies between.
			m, media, ok, err := c.e.db.NextFragment(c.s.id, c.after, oldest, c.e.readBufs)
			if err != nil && !errors.Is(err, ErrMemoryFull) && !m.Number.IsZero() && m.Number.Compare(c.after) > 0 {
				// Its record is intact but its media is not (a flipped
				// byte, a damaged segment): the reader skips it and goes
				// on; the caller says so where it stands.
				c.after = m.Number
				c.e.metrics.unreadable.Add(1)
				c.e.opts.Logger.Error("a stored fragment is unreadable and skipped (kvsedge check reports the damage)",
					"stream", c.s.info.Load().Name, "number", m.Number.String(), "err", err)
				return nil, &UnreadableError{Number: m.Number, Err: err}
			}
			if err != nil {
				return nil, fmt.Errorf("engine: %w", err)
			}
			if ok {
				f, err := c.e.archived(c.s, m, media)
				if err != nil {
					return nil, err
				}
				c.after = m.Number
				return f, nil
			}
			r.mu.Lock()
			if len(r.frags) > 0 && r.frags[0].Meta.Number == oldest {
				f := r.firstAfterLocked(c.after)
				if f != nil {
					f.Retain()
					r.mu.Unlock()
					c.after = f.Meta.Number
					return f, nil
				}
			}
			// Moved: its oldest changed, or it was emptied (shed,
			// dropUnread: what it held is in the archive now).
			changed := (len(r.frags) > 0 && r.frags[0].Meta.Number != oldest) || (len(r.frags) == 0 && !oldest.IsZero())
			r.mu.Unlock()
			if changed {
				continue // the ring moved while we looked at the archive
			}
		}
		select {
		case <-notify:
			r.read() // a reader waiting at the live edge reads the ring
		case <-timer:
			return nil, ErrIdle
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Position is the number of the last fragment Next returned (or the
// starting point).
func (c *Cursor) Position() fragment.Number { return c.after }

// Newest is the number of the newest fragment the stream has received.
func (c *Cursor) Newest() fragment.Number { return c.s.ring.newest() }

// TimeSelector chooses the index ListFragments scans.
type TimeSelector = fragment.TimeIndex

// ListFragments returns up to limit fragments whose timestamp (producer or
// server, per idx) lies in [startMs, endMs], resuming after cursor, and
// the cursor to resume from (nil at the end).
func (e *Engine) ListFragments(ref StreamRef, idx fragment.TimeIndex, startMs, endMs int64, cursor *fragment.TimeCursor, limit int) ([]fragment.Meta, *fragment.TimeCursor, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	if limit < 1 {
		limit = 1
	}
	var out []fragment.Meta
	more := false
	err = e.db.ScanTime(s.id, idx, startMs, endMs, cursor, func(m fragment.Meta) bool {
		if len(out) == limit {
			more = true
			return false
		}
		out = append(out, m)
		return true
	})
	if err != nil {
		return nil, nil, fmt.Errorf("engine: %w", err)
	}
	if !more {
		return out, nil, nil
	}
	last := out[len(out)-1]
	next := &fragment.TimeCursor{Ms: last.ServerMs, Number: last.Number}
	if idx == fragment.ByProducerTime {
		next.Ms = last.ProducerMs
	}
	return out, next, nil
}

// SessionHeader returns the stream's session header id (a fragment's
// Meta.HeaderID) from the header cache or the archive, without reading
// any fragment.
func (e *Engine) SessionHeader(ref StreamRef, id uint64) (*Header, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	return e.storedHeader(s, id)
}

// HeaderLen is the length of a stored session header (0 if unknown), for
// reporting chunk sizes.
func (e *Engine) HeaderLen(ref StreamRef, id uint64) int {
	s, _, err := e.lookup(ref)
	if err != nil {
		return 0
	}
	h, err := e.storedHeader(s, id)
	if err != nil {
		return 0
	}
	return len(h.Raw)
}

// SessionKey is the store's secret for signing playback session tokens.
func (e *Engine) SessionKey() ([]byte, error) { return e.db.SessionKey() }

// Recent returns the stream's newest fragments (at most n), oldest first:
// those in the hot ring (the live edge, before they are even durable) and,
// when the ring holds fewer, the newest stored ones.
func (e *Engine) Recent(ref StreamRef, n int) ([]fragment.Meta, error) {
	s, _, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	var out []fragment.Meta
	s.ring.each(func(f *Fragment) bool {
		out = append(out, f.Meta)
		return true
	})
	if len(out) < n {
		// Stored fragments of the last day, by server time.
		now := e.opts.Clock.Now().UnixMilli()
		var stored []fragment.Meta
		// The newest n stored (the ring's are among them or newer).
		err := e.db.ScanTimeBackward(s.id, fragment.ByServerTime, now-24*3600*1000, now+60_000, func(m fragment.Meta) bool {
			stored = append(stored, m)
			return len(stored) < n
		})
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		seen := make(map[fragment.Number]bool, len(out))
		for _, m := range out {
			seen[m.Number] = true
		}
		for _, m := range stored {
			if !seen[m.Number] {
				out = append(out, m)
			}
		}
		slices.SortFunc(out, func(a, b fragment.Meta) int { return a.Number.Compare(b.Number) })
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out, nil
}

// ScanFragments calls fn for the fragments whose timestamp (per idx) lies
// in [startMs, endMs], in time order, until fn returns false.
func (e *Engine) ScanFragments(ref StreamRef, idx fragment.TimeIndex, startMs, endMs int64, fn func(fragment.Meta) bool) error {
	s, _, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if err := e.db.ScanTime(s.id, idx, startMs, endMs, nil, fn); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}
