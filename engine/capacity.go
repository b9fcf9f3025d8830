package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The capacity controller keeps the store within the disk: retention by
// bytes per stream and by minimum free disk space (retention by time is
// retention.go), with KVS edge's two strategies when a limit is reached —
// delete the oldest media, or refuse new media (StartFragment answers
// ErrStorageFull: PutMedia sends ERROR acks, cameras pause with an alarm).
//
// Safety rules:
//   - Fragments under a hold (the stream tag kvsedge:hold: "true" for the
//     whole stream, or "<RFC 3339>/<RFC 3339>" for a server-time range) are
//     never deleted, by time or by capacity. Deletion removes a stream's
//     oldest media only (a prefix), so a range hold also keeps everything
//     after the range until the tag goes.
//   - Deletion follows the index, oldest first, and a sweep deletes at most
//     a quarter of what the index accounts for. When the index accounts for
//     less than half of the media on disk (a lost or replaced index), the
//     controller deletes nothing and refuses new media instead: an index
//     that lost its entries is not mistaken for an empty store.
//   - Data in progress counts: fragments received but not yet stored are
//     added to the space needed.

// ErrStorageFull: the box refuses new media (minimum free space or a
// stream's byte limit reached under the refuse-new strategy).
var ErrStorageFull = errors.New("engine: storage full: new media is refused")

// Tags that steer the capacity controller.
const (
	// TagHold keeps fragments from deletion: "true" (or "all") for the whole
	// stream, or "<start>/<end>" (RFC 3339) for a server-time range.
	TagHold = "kvsedge:hold"
	// TagMaxMiB caps a stream's stored media (MiB), when its edge
	// configuration's LocalSizeConfig does not.
	TagMaxMiB = "kvsedge:max-mib"
)

// Strategies when a limit is reached (KVS edge's StrategyOnFullSize).
const (
	StrategyDeleteOldest = "DELETE_OLDEST_MEDIA"
	StrategyDenyNew      = "DENY_NEW_MEDIA"
)

// CapacityOptions configures the controller.
type CapacityOptions struct {
	// DiskStat reports the data directory's free and total bytes (free as
	// an unprivileged writer sees it). Nil turns the free-space rule off.
	DiskStat func() (free, total uint64, err error)
	// MinFreeBytes is the free space the box keeps.
	MinFreeBytes uint64
	// Strategy is StrategyDeleteOldest (default) or StrategyDenyNew.
	Strategy string
}

// CapacityReport is the outcome of the last sweep.
type CapacityReport struct {
	At               time.Time `json:"at"`
	FreeBytes        uint64    `json:"free_bytes"`
	TotalBytes       uint64    `json:"total_bytes"`
	MinFreeBytes     uint64    `json:"min_free_bytes"`
	IndexedBytes     int64     `json:"indexed_bytes"`
	PendingBytes     int64     `json:"pending_bytes"`
	Strategy         string    `json:"strategy"`
	Refusing         bool      `json:"refusing"`
	Alarm            string    `json:"alarm,omitempty"`
	DeletedFragments int       `json:"deleted_fragments"`
	DeletedBytes     int64     `json:"deleted_bytes"`
	// IngestBytesPerSecond is the recent rate of stored media; with it,
	// SecondsToFull forecasts when free space reaches the minimum (-1: not
	// filling).
	IngestBytesPerSecond float64 `json:"ingest_bytes_per_second"`
	SecondsToFull        float64 `json:"seconds_to_full"`
}

type capacityState struct {
	mu sync.Mutex
	// A deletion episode: sweeps that delete while free space stays below
	// the minimum. Deletion stops (and new media is refused) once an
	// episode deleted a quarter of what the index held at its start
	// without free space rising: something else is filling the disk, or
	// the deleted media shares segments still in use.
	episodeFree    uint64
	episodeDeleted int64
	episodeBudget  int64
	report         CapacityReport
	counted        bool // stream byte counters initialised
	lastIn         uint64
	lastAt         time.Time
	rate           float64
	alarmLog       string
}

// hold is a stream's hold, parsed from its tag.
type hold struct {
	all          bool
	fromMs, toMs int64
}

func parseHold(info *StreamInfo) (hold, bool) {
	v, ok := info.Tags[TagHold]
	if !ok {
		return hold{}, false
	}
	v = strings.TrimSpace(v)
	if strings.EqualFold(v, "true") || strings.EqualFold(v, "all") || v == "" {
		return hold{all: true}, true
	}
	a, b, ok := strings.Cut(v, "/")
	from, err1 := time.Parse(time.RFC3339, strings.TrimSpace(a))
	to, err2 := time.Parse(time.RFC3339, strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil {
		return hold{all: true}, true // unreadable: hold everything, to be safe
	}
	return hold{fromMs: from.UnixMilli(), toMs: to.UnixMilli()}, true
}

// deletionCutoff limits a deletion cutoff (delete fragments with server
// time < cutoff) so that no held fragment goes; ok false: nothing may go.
func deletionCutoff(info *StreamInfo, cutoff int64) (int64, bool) {
	h, held := parseHold(info)
	if !held {
		return cutoff, true
	}
	if h.all {
		return 0, false
	}
	if h.fromMs < cutoff {
		// The hold reaches into what would go: keep from its start.
		cutoff = h.fromMs
	}
	return cutoff, cutoff > math.MinInt64
}

// streamLimit is a stream's byte limit and strategy (0: none).
func streamLimit(info *StreamInfo) (int64, string) {
	if info.Edge != nil && info.Edge.Config.DeletionConfig != nil && info.Edge.Config.DeletionConfig.LocalSizeConfig != nil {
		lc := info.Edge.Config.DeletionConfig.LocalSizeConfig
		if lc.MaxLocalMediaSizeInMB != nil && *lc.MaxLocalMediaSizeInMB > 0 {
			st := lc.StrategyOnFullSize
			if st != StrategyDenyNew {
				st = StrategyDeleteOldest
			}
			return int64(*lc.MaxLocalMediaSizeInMB) << 20, st
		}
	}
	if v, ok := info.Tags[TagMaxMiB]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			return n << 20, StrategyDeleteOldest
		}
	}
	return 0, ""
}

// Capacity returns the last sweep's report.
func (e *Engine) Capacity() CapacityReport {
	e.cap.mu.Lock()
	rep := e.cap.report
	e.cap.mu.Unlock()
	// The store's own guard sees a disk filled by anyone, at once
	// (lsm/space.go); the controller only at its next sweep.
	if sp := e.db.Space(); sp.Refusing {
		rep.Refusing = true
		alarm := fmt.Sprintf("the disk is full (%d MiB free): new media and changes are refused until space returns", sp.AvailBytes>>20)
		if e.db.ReadOnly() {
			alarm = fmt.Sprintf("the disk was full at start (%d MiB free): the store is read-only, reads are served; it reopens to write once space returns", sp.AvailBytes>>20)
		}
		if rep.Alarm != "" {
			alarm += "; " + rep.Alarm
		}
		rep.Alarm = alarm
	}
	return rep
}

// RunCapacity sweeps every interval until ctx ends.
func (e *Engine) RunCapacity(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		e.SweepCapacity()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.capacityKick:
		}
	}
}

// KickCapacity makes the controller sweep now (a write failed for lack
// of space).
func (e *Engine) KickCapacity() {
	select {
	case e.capacityKick <- struct{}{}:
	default:
	}
}

func (e *Engine) allStreams() []*stream {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]*stream, 0, len(e.mu.byID))
	for _, s := range e.mu.byID {
		out = append(out, s)
	}
	return out
}

// SweepCapacity applies the byte and free-space rules once.
func (e *Engine) SweepCapacity() CapacityReport {
	e.cap.mu.Lock()
	defer e.cap.mu.Unlock()
	o := e.opts.Capacity
	now := e.opts.Clock.Now()
	rep := CapacityReport{At: now, MinFreeBytes: o.MinFreeBytes, Strategy: o.Strategy, SecondsToFull: -1}
	streams := e.allStreams()
	if !e.cap.counted {
		ok := true
		for _, s := range streams {
			// Exclusive: no Persist or import lands between the scan and
			// the store of its result.
			s.persistMu.Lock()
			b, _, err := e.db.StreamMediaBytes(s.id)
			if err == nil {
				s.bytes.Store(b)
			}
			s.persistMu.Unlock()
			if err != nil {
				ok = false
				e.opts.Logger.Warn("counting a stream's stored bytes (retried at the next sweep)", "stream", s.info.Load().Name, "err", err)
			}
		}
		e.cap.counted = ok
	}
	var indexed int64
	for _, s := range streams {
		indexed += s.bytes.Load()
		rep.PendingBytes += s.ring.unsettledBytes()
	}

	// Per-stream byte limits.
	for _, s := range streams {
		info := s.info.Load()
		limit, strategy := streamLimit(info)
		if limit == 0 {
			s.denied.Store(false)
			continue
		}
		used := s.bytes.Load()
		switch {
		case used <= limit*95/100:
			s.denied.Store(false)
		case used > limit && strategy == StrategyDenyNew:
			if !s.denied.Swap(true) {
				e.opts.Logger.Warn("stream over its byte limit: refusing new media", "stream", info.Name, "bytes", used, "limit", limit)
			}
		case used > limit:
			n, b := e.deleteOldest(s, used-limit)
			rep.DeletedFragments += n
			rep.DeletedBytes += b
		}
	}

	// Free space.
	var alarm string
	refusing := false
	if o.DiskStat != nil {
		free, total, err := o.DiskStat()
		if err != nil {
			alarm = "cannot read the disk's free space: " + err.Error()
		} else {
			rep.FreeBytes, rep.TotalBytes = free, total
			need := o.MinFreeBytes + uint64(rep.PendingBytes)
			if free < need {
				short := int64(need - free)
				switch {
				case o.Strategy == StrategyDenyNew:
					refusing = true
					alarm = fmt.Sprintf("free space %d MiB is below the minimum of %d MiB: new media is refused", free>>20, o.MinFreeBytes>>20)
				default:
					onDisk, err := e.db.MediaDiskBytes()
					if err == nil && onDisk > 64<<20 && indexed*2 < onDisk {
						refusing = true
						alarm = fmt.Sprintf("the index accounts for %d MiB of the %d MiB of media on disk: deleting nothing, refusing new media (has the index been lost?)", indexed>>20, onDisk>>20)
						break
					}
					if e.cap.episodeBudget == 0 || free > e.cap.episodeFree {
						// A new episode, or free space rose since: the
						// deletions work.
						e.cap.episodeFree, e.cap.episodeDeleted, e.cap.episodeBudget = free, 0, max(indexed/4, 1)
					}
					if e.cap.episodeDeleted >= e.cap.episodeBudget {
						refusing = true
						alarm = fmt.Sprintf("deleted %d MiB of the oldest media without free space rising above %d MiB: deleting nothing more, refusing new media (is something else filling the disk?)",
							e.cap.episodeDeleted>>20, free>>20)
						break
					}
					n, b := e.deleteOldestGlobal(streams, short+16<<20, e.cap.episodeBudget-e.cap.episodeDeleted)
					e.cap.episodeDeleted += b
					rep.DeletedFragments += n
					rep.DeletedBytes += b
					if n == 0 {
						refusing = true
						alarm = fmt.Sprintf("free space %d MiB is below the minimum of %d MiB and nothing more may be deleted (holds, or nothing stored): new media is refused", free>>20, o.MinFreeBytes>>20)
					}
				}
			} else if e.cap.episodeBudget = 0; e.full.Load() && free < need+max(o.MinFreeBytes/20, 8<<20) {
				// Hysteresis: stay refusing until clearly above the minimum.
				refusing = true
				alarm = e.cap.report.Alarm
			}
		}
	}
	if refusing != e.full.Load() || alarm != e.cap.alarmLog {
		if refusing {
			e.opts.Logger.Error("storage alarm", "alarm", alarm)
		} else if e.full.Load() {
			e.opts.Logger.Info("storage alarm cleared: new media is accepted again", "free_bytes", rep.FreeBytes)
		}
		e.cap.alarmLog = alarm
	}
	e.full.Store(refusing)
	rep.Refusing, rep.Alarm = refusing, alarm
	for _, s := range streams {
		rep.IndexedBytes += s.bytes.Load()
	}

	// Forecast from the rate of stored media.
	st := e.Stats()
	in := st.BytesPersisted + st.BytesImported
	if !e.cap.lastAt.IsZero() {
		if dt := now.Sub(e.cap.lastAt).Seconds(); dt > 0 {
			r := float64(in-e.cap.lastIn) / dt
			if e.cap.rate == 0 {
				e.cap.rate = r
			} else {
				e.cap.rate = 0.7*e.cap.rate + 0.3*r
			}
		}
	}
	e.cap.lastIn, e.cap.lastAt = in, now
	rep.IngestBytesPerSecond = e.cap.rate
	if rep.TotalBytes > 0 && e.cap.rate > 0 && rep.FreeBytes > o.MinFreeBytes {
		rep.SecondsToFull = float64(rep.FreeBytes-o.MinFreeBytes) / e.cap.rate
	} else if rep.TotalBytes > 0 && e.cap.rate > 0 {
		rep.SecondsToFull = 0
	}
	e.cap.report = rep
	return rep
}

// deleteOldest deletes a stream's oldest fragments until at least want
// bytes went (holds respected), a minute of media at a time.
func (e *Engine) deleteOldest(s *stream, want int64) (int, int64) {
	var n int
	var b int64
	for b < want {
		dn, db, ok := e.deleteStep(s)
		if !ok {
			break
		}
		n, b = n+dn, b+db
	}
	return n, b
}

// deleteOldestGlobal deletes the oldest fragments of the whole box, stream
// by stream by age, until want bytes went or limit was reached.
func (e *Engine) deleteOldestGlobal(streams []*stream, want, limit int64) (int, int64) {
	var n int
	var b int64
	skip := map[*stream]bool{}
	for b < want && b < limit {
		var oldest *stream
		var oldestMs int64
		for _, s := range streams {
			if skip[s] || s.deleted.Load() {
				continue
			}
			m, ok, err := e.db.FirstFragment(s.id)
			if err != nil || !ok {
				skip[s] = true
				continue
			}
			if oldest == nil || m.ServerMs < oldestMs {
				oldest, oldestMs = s, m.ServerMs
			}
		}
		if oldest == nil {
			break
		}
		dn, db, ok := e.deleteStep(oldest)
		if !ok {
			skip[oldest] = true
			continue
		}
		n, b = n+dn, b+db
	}
	return n, b
}

// deleteStep deletes the stream's oldest minute of fragments (at least
// one fragment), unless held; ok is false when nothing could go.
func (e *Engine) deleteStep(s *stream) (int, int64, bool) {
	info := s.info.Load()
	first, ok, err := e.db.FirstFragment(s.id)
	if err != nil || !ok {
		return 0, 0, false
	}
	cutoff, allowed := deletionCutoff(info, first.ServerMs+60_000)
	if !allowed || cutoff <= first.ServerMs {
		return 0, 0, false
	}
	e.countNotUploaded(s, cutoff)
	s.persistMu.RLock()
	n, b, err := e.db.DeleteBefore(s.id, cutoff)
	s.persistMu.RUnlock()
	s.bytes.Add(-b) // what was deleted, even if removing its segments failed
	if err != nil {
		e.opts.Logger.Warn("capacity: deleting old media failed", "stream", info.Name, "err", err)
		return 0, 0, false
	}
	if n > 0 {
		e.opts.Logger.Info("capacity: deleted the oldest media", "stream", info.Name, "fragments", n, "bytes", b)
	}
	return n, b, n > 0
}

// admit reports whether the stream may take new media now.
func (e *Engine) admit(s *stream) error {
	if e.full.Load() {
		return ErrStorageFull
	}
	if err := e.db.MediaSpace(); err != nil {
		// Something filled the disk faster than the controller's interval
		// (lsm/space.go): refuse, and let the controller look now.
		e.KickCapacity()
		return fmt.Errorf("%w: %w", ErrStorageFull, err)
	}
	if s.denied.Load() {
		return fmt.Errorf("%w: stream %s is at its byte limit", ErrStorageFull, s.info.Load().Name)
	}
	return nil
}

// StoredBytes is the media the index holds, over all streams (counted
// from the store at the first capacity sweep, kept current since).
func (e *Engine) StoredBytes() int64 {
	var n int64
	for _, s := range e.allStreams() {
		n += s.bytes.Load()
	}
	return n
}
