package engine

import (
	"crypto/rand"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kvsedge/kvsedge/lsm"
)

// Engine is the stream registry. It is safe for concurrent use.
//
// Locks: see "Locks" in the package comment (doc.go) for the whole order.
// Readers take only mu (read) to find a stream and then load its snapshot
// atomically.
type Engine struct {
	opts    Options
	db      *lsm.DB
	ownsDB  bool
	metrics metrics
	headers headerCache
	// mem holds every media byte (media.go); readBufs are its buffers for
	// archive reads.
	mem      *MediaMemory
	readBufs lsm.Buffers
	// retentionKick wakes the retention sweeper early (a retention
	// decrease deletes now-expired data at once, as KVS does).
	retentionKick chan struct{}
	// changes is signalled after any stream change (see Changes).
	changes chan struct{}
	// Capacity controller (capacity.go): full is set while new media is
	// refused for lack of space.
	cap          capacityState
	capacityKick chan struct{}
	full         atomic.Bool
	// gate is what PERSISTED acks wait on (ackgate.go; nil: none).
	gate atomic.Pointer[AckGate]

	// writeMu serialises every mutation, across its synced write, so checks
	// and the write they guard are atomic (one winner per name).
	writeMu sync.Mutex

	mu struct {
		sync.RWMutex
		byName map[string]*stream
		byID   map[lsm.StreamID]*stream
		// tombs are deleted streams' ARNs (→ epoch ms), kept so peers
		// learn of deletions (replica.go).
		tombs map[string]int64
	}
}

// stream is the registry's entry for one stream.
type stream struct {
	id      lsm.StreamID
	info    atomic.Pointer[StreamInfo]
	ring    *ring
	live    *liveTap // frames to live subscribers as they arrive (live.go)
	ingest  ingestState
	deleted atomic.Bool
	// persistMu: Persist holds it shared across its check of deleted and
	// its write; DeleteStream holds it exclusively while removing the data.
	persistMu sync.RWMutex
	// bytes is the media the index holds for the stream (capacity.go);
	// denied: the stream is at its byte limit under DENY_NEW_MEDIA.
	bytes  atomic.Int64
	denied atomic.Bool
	// sizeHint is the size of the stream's last fragment, or what a
	// refused one had reached (IngestSession.FragmentSizeHint).
	sizeHint atomic.Int64
	// lostBeforeUpload counts fragments retention or the capacity
	// controller deleted before the upstream persisted them (upload.go).
	lostBeforeUpload atomic.Uint64
	// tagged: a producer of this stream ended a fragment with the
	// AWS_KINESISVIDEO_END_OF_FRAGMENT tag, so a fragment without it at an
	// idle close is unfinished (remembered across uploads).
	tagged atomic.Bool
	// importedServerMs is the newest server time of a fragment imported
	// from a peer since start: an own fragment's copy search reads the
	// server-time index only near imports (resend.go, nearCopy).
	importedServerMs atomic.Int64
	// importMu makes the check for an existing copy and the storing (a
	// replica's import) or publishing (an ingested fragment, Receive) of
	// a fragment one step per stream, so a fragment fetched by two pullers,
	// or finished by two uploads, at once is stored once.
	importMu sync.Mutex
}

func (e *Engine) newStream(id lsm.StreamID, info *StreamInfo) *stream {
	s := &stream{id: id, ring: newRing(e.opts.RingDuration, e.opts.RingBytesPerStream, e.opts.Clock), live: newLiveTap(e.mem, e.opts.Clock, e.opts.LiveKeepGOP)}
	s.info.Store(info)
	return s
}

// Open opens the store in opts.Store.Dir (package lsm) and loads every
// stream from it. Close closes both.
func Open(opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	db, err := lsm.Open(opts.Store.lsmOptions(opts.Logger))
	if err != nil {
		return nil, err
	}
	e, err := openOn(db, opts)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	e.ownsDB = true
	return e, nil
}

// Close closes the store when Open opened it and gives the media memory's
// cached buffers back. Callers stop every user of the engine (servers,
// cameras, background loops) first.
func (e *Engine) Close() error {
	for _, s := range e.allStreams() {
		s.ring.close()
		s.live.close()
	}
	if held := e.mem.release(); held > 0 {
		e.opts.Logger.Warn("media buffers still held when the engine closed", "bytes", held)
	}
	if !e.ownsDB {
		return nil
	}
	return e.db.Close()
}

// Media is the engine's media memory: the buffers every media byte lives
// in, and their budget (media.go).
func (e *Engine) Media() *MediaMemory { return e.mem }

// openOn loads every stream from an open db, which the caller keeps
// (tests open stores on crashable filesystems).
func openOn(db *lsm.DB, opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e := &Engine{opts: opts, db: db, retentionKick: make(chan struct{}, 1), changes: make(chan struct{}, 1), capacityKick: make(chan struct{}, 1)}
	e.mem = newMediaMemory(opts.Media, opts.Logger)
	e.mem.shed = e.shedRings
	e.readBufs = &readBuffers{m: e.mem}
	e.headers.m = make(map[headerKey]*Header)
	e.mu.byName = make(map[string]*stream)
	e.mu.byID = make(map[lsm.StreamID]*stream)
	recs, err := db.Streams()
	if err != nil {
		return nil, fmt.Errorf("engine: loading streams: %w", err)
	}
	if e.mu.tombs, err = db.Tombstones(); err != nil {
		return nil, fmt.Errorf("engine: loading tombstones: %w", err)
	}
	for _, r := range recs {
		info, err := decodeRecord(r.ID, r.Value)
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		if _, gone := e.mu.tombs[info.ARN]; gone {
			// A crash inside DeleteStream, after its tombstone: finish it.
			if db.ReadOnly() {
				opts.Logger.Warn("a deletion left unfinished by a crash waits until the disk has room", "stream", info.Name)
				continue
			}
			if err := db.DeleteStream(r.ID); err != nil {
				return nil, fmt.Errorf("engine: finishing the deletion of %s: %w", info.Name, err)
			}
			continue
		}
		s := e.newStream(r.ID, info)
		e.mu.byName[info.Name] = s
		e.mu.byID[r.ID] = s
	}
	opts.Logger.Info("stream registry loaded", "streams", len(recs))
	return e, nil
}

// StoreReadOnly reports a store opened read-only because the disk was
// full at start (lsm/space.go): reads are served, writes refused.
func (e *Engine) StoreReadOnly() bool { return e.db.ReadOnly() }

// StoreCanReopen reports, for a read-only store, that the disk has room
// again: the owner closes the engine and opens it again to write.
func (e *Engine) StoreCanReopen() bool { return e.db.ReadOnlyCanWrite() }

// StoreHealth is the store's damage report (lsm/health.go): corruption met
// at run time, media the index does not know, an index open read-only after
// repeated fatal errors, and fragments readers skipped as unreadable.
type StoreHealth struct {
	Corruptions         uint64
	LastCorruption      string
	UnknownMediaDirs    int
	FatalReadOnly       string
	UnreadableFragments uint64
}

// StoreHealth reports damage found since Open.
func (e *Engine) StoreHealth() StoreHealth {
	h := e.db.Health()
	return StoreHealth{Corruptions: h.Corruptions, LastCorruption: h.LastCorruption, UnknownMediaDirs: len(h.UnknownMedia),
		FatalReadOnly: h.FatalReadOnly, UnreadableFragments: e.metrics.unreadable.Load()}
}

// StoreAlarm says in plain words what is wrong with the store ("" when
// nothing is): what /readyz shows.
func (e *Engine) StoreAlarm() string {
	h := e.StoreHealth()
	var parts []string
	if h.FatalReadOnly != "" {
		parts = append(parts, "the index failed fatally more than once in 10 minutes and is open read-only (writes refused; "+
			"it is retried read-write 10 minutes after the last failure): "+h.FatalReadOnly)
	}
	if h.UnknownMediaDirs > 0 {
		parts = append(parts, fmt.Sprintf("%d streams' media directories are not in the index (was the index lost?): stop the box and run kvsedge repair", h.UnknownMediaDirs))
	}
	if h.Corruptions > 0 {
		parts = append(parts, fmt.Sprintf("the index is damaged (%d times met; last: %s): stop the box, run kvsedge check, then kvsedge repair", h.Corruptions, h.LastCorruption))
	}
	if h.UnreadableFragments > 0 {
		parts = append(parts, fmt.Sprintf("%d stored fragments were unreadable and skipped: stop the box and run kvsedge check", h.UnreadableFragments))
	}
	return strings.Join(parts, "; ")
}

// Region and AccountID are those the engine puts in ARNs.
func (e *Engine) Region() string    { return e.opts.Region }
func (e *Engine) AccountID() string { return e.opts.AccountID }

// StreamRef names a stream by name, by ARN, or both (then both must agree).
type StreamRef struct {
	Name string
	ARN  string
}

func (r StreamRef) String() string {
	if r.ARN != "" {
		return r.ARN
	}
	return r.Name
}

// lookup resolves ref. REQUIRES: nothing; takes mu for reading.
func (e *Engine) lookup(ref StreamRef) (*stream, *StreamInfo, error) {
	if ref.Name == "" && ref.ARN == "" {
		return nil, nil, ErrStreamNameRequired
	}
	name := ref.Name
	if ref.ARN != "" {
		p, err := ParseARN(ref.ARN)
		if err != nil {
			return nil, nil, err
		}
		if ref.Name != "" && ref.Name != p.Name {
			return nil, nil, fmt.Errorf("%w: name %q does not match ARN %s", ErrStreamNotFound, ref.Name, ref.ARN)
		}
		name = p.Name
	}
	e.mu.RLock()
	s := e.mu.byName[name]
	e.mu.RUnlock()
	if s == nil {
		return nil, nil, fmt.Errorf("%w: %s", ErrStreamNotFound, ref)
	}
	info := s.info.Load()
	if ref.ARN != "" && info.ARN != ref.ARN {
		return nil, nil, fmt.Errorf("%w: %s", ErrStreamNotFound, ref)
	}
	return s, info, nil
}

// Stream returns the current snapshot of a stream.
func (e *Engine) Stream(ref StreamRef) (*StreamInfo, error) {
	_, info, err := e.lookup(ref)
	return info, err
}

// ListStreams returns streams whose names start with prefix and sort after
// `after`, in name order, at most limit of them, and whether more remain.
func (e *Engine) ListStreams(prefix, after string, limit int) ([]*StreamInfo, bool) {
	e.mu.RLock()
	names := make([]string, 0, len(e.mu.byName))
	for n := range e.mu.byName {
		if strings.HasPrefix(n, prefix) && n > after {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	more := false
	if limit > 0 && len(names) > limit {
		names, more = names[:limit], true
	}
	out := make([]*StreamInfo, len(names))
	for i, n := range names {
		out[i] = e.mu.byName[n].info.Load()
	}
	e.mu.RUnlock()
	return out, more
}

// CreateStreamInput is a validated CreateStream request.
type CreateStreamInput struct {
	Name, DeviceName, MediaType, KmsKeyID string
	DataRetentionInHours                  int
	Tags                                  map[string]string
	StorageTier                           string
}

// CreateStream registers a new ACTIVE stream and returns it.
func (e *Engine) CreateStream(in CreateStreamInput) (*StreamInfo, error) {
	if in.DataRetentionInHours < 0 || in.DataRetentionInHours > MaxRetentionHours {
		return nil, fmt.Errorf("%w: %d hours is outside 0…%d", ErrInvalidRetention, in.DataRetentionInHours, MaxRetentionHours)
	}
	if len(in.Tags) > MaxTagsPerStream {
		return nil, fmt.Errorf("%w: %d tags, at most %d", ErrTooManyTags, len(in.Tags), MaxTagsPerStream)
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.mu.RLock()
	_, exists := e.mu.byName[in.Name]
	count := len(e.mu.byName)
	e.mu.RUnlock()
	if exists {
		return nil, fmt.Errorf("%w: %s", ErrStreamExists, in.Name)
	}
	if count >= e.opts.MaxStreams {
		return nil, fmt.Errorf("%w: %d streams", ErrTooManyStreams, count)
	}
	id, err := e.db.AllocStreamID()
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	now := e.opts.Clock.Now().UTC().Truncate(1e6) // ARNs and CreationTime carry ms
	kms := in.KmsKeyID
	if kms == "" {
		kms = fmt.Sprintf("arn:aws:kms:%s:%s:alias/aws/kinesisvideo", e.opts.Region, e.opts.AccountID)
	}
	tier := in.StorageTier
	if tier == "" {
		tier = StorageTierHot
	}
	info := &StreamInfo{
		ID:                   id,
		Name:                 in.Name,
		ARN:                  StreamARN(e.opts.Region, e.opts.AccountID, in.Name, now.UnixMilli()),
		DeviceName:           in.DeviceName,
		MediaType:            in.MediaType,
		KmsKeyID:             kms,
		Version:              newVersion(),
		Status:               StatusActive,
		CreationTime:         now,
		DataRetentionInHours: in.DataRetentionInHours,
		StorageTier:          tier,
		Tags:                 make(map[string]string, len(in.Tags)),
		Modified:             now.UnixMilli(),
	}
	for k, v := range in.Tags {
		info.Tags[k] = v
	}
	if err := e.persist(info); err != nil {
		return nil, err
	}
	s := e.newStream(id, info)
	e.mu.Lock()
	e.mu.byName[info.Name] = s
	e.mu.byID[id] = s
	e.mu.Unlock()
	e.opts.Logger.Info("stream created", "stream", info.Name, "sid", id, "retention_hours", info.DataRetentionInHours)
	return info, nil
}

func (e *Engine) persist(info *StreamInfo) error {
	rec, err := encodeRecord(info)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	if err := e.db.PutStream(info.ID, rec); err != nil {
		return fmt.Errorf("engine: storing stream %q: %w", info.Name, err)
	}
	return nil
}

// update applies change to a copy of the stream's snapshot under writeMu,
// gives it a new Version, persists it and publishes it. If currentVersion is
// not empty it must equal the stream's Version.
func (e *Engine) update(ref StreamRef, currentVersion string, change func(*StreamInfo) error) error {
	return e.modify(ref, currentVersion, changeVersioned, change)
}

// changeKind says what a change advances.
type changeKind int

const (
	// changeVersioned: a new Version and Modified (KVS's versioned
	// description).
	changeVersioned changeKind = iota
	// changeReplicated: Modified only (state KVS keeps outside the
	// version, such as the edge configuration, that peers still copy).
	changeReplicated
	// changeLocal: neither (this node's own state: edge sync status).
	changeLocal
)

// nextModified returns a Modified stamp later than prev.
func (e *Engine) nextModified(prev int64) int64 {
	return max(e.opts.Clock.Now().UnixMilli(), prev+1)
}

// modify is update with a choice of what the change advances.
func (e *Engine) modify(ref StreamRef, currentVersion string, kind changeKind, change func(*StreamInfo) error) error {
	defer e.notifyChange()
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	s, info, err := e.lookup(ref)
	if err != nil {
		return err
	}
	if currentVersion != "" && currentVersion != info.Version {
		return fmt.Errorf("%w: stream %s is at version %s, not %s", ErrVersionMismatch, info.Name, info.Version, currentVersion)
	}
	next := info.clone()
	if err := change(next); err != nil {
		return err
	}
	if kind == changeVersioned {
		next.Version = newVersion()
	}
	if kind != changeLocal {
		next.Modified = e.nextModified(info.Modified)
	}
	if err := e.persist(next); err != nil {
		return err
	}
	s.info.Store(next)
	return nil
}

// UpdateStream changes DeviceName and/or MediaType (nil leaves a field as is).
func (e *Engine) UpdateStream(ref StreamRef, currentVersion string, deviceName, mediaType *string) error {
	return e.update(ref, currentVersion, func(s *StreamInfo) error {
		if deviceName != nil {
			s.DeviceName = *deviceName
		}
		if mediaType != nil {
			s.MediaType = *mediaType
		}
		return nil
	})
}

// UpdateDataRetention adds (increase) or subtracts hours from the stream's
// retention. The result must stay within 0…MaxRetentionHours.
func (e *Engine) UpdateDataRetention(ref StreamRef, currentVersion string, increase bool, hours int) error {
	if hours < 1 {
		return fmt.Errorf("%w: change of %d hours", ErrInvalidRetention, hours)
	}
	err := e.update(ref, currentVersion, func(s *StreamInfo) error {
		n := s.DataRetentionInHours - hours
		if increase {
			n = s.DataRetentionInHours + hours
		}
		if n < 0 || n > MaxRetentionHours {
			return fmt.Errorf("%w: %d%+d hours is outside 0…%d", ErrInvalidRetention,
				s.DataRetentionInHours, n-s.DataRetentionInHours, MaxRetentionHours)
		}
		s.DataRetentionInHours = n
		return nil
	})
	if err == nil && !increase {
		e.KickRetention()
	}
	return err
}

// SetStorageTier changes the stream's DefaultStorageTier.
func (e *Engine) SetStorageTier(ref StreamRef, currentVersion, tier string) error {
	return e.update(ref, currentVersion, func(s *StreamInfo) error {
		s.StorageTier = tier
		return nil
	})
}

// TagStream adds or replaces tags; the result may hold at most
// MaxTagsPerStream tags.
func (e *Engine) TagStream(ref StreamRef, tags map[string]string) error {
	return e.update(ref, "", func(s *StreamInfo) error {
		for k, v := range tags {
			s.Tags[k] = v
		}
		if len(s.Tags) > MaxTagsPerStream {
			return fmt.Errorf("%w: the stream would have %d tags, at most %d", ErrTooManyTags, len(s.Tags), MaxTagsPerStream)
		}
		return nil
	})
}

// UntagStream removes tags by key; unknown keys are ignored.
func (e *Engine) UntagStream(ref StreamRef, keys []string) error {
	return e.update(ref, "", func(s *StreamInfo) error {
		for _, k := range keys {
			delete(s.Tags, k)
		}
		return nil
	})
}

// SetImageGeneration stores (or with nil, deletes) the image generation
// configuration. Enabling it needs data retention, as in KVS.
func (e *Engine) SetImageGeneration(ref StreamRef, cfg *ImageGenerationConfig) error {
	return e.update(ref, "", func(s *StreamInfo) error {
		if cfg != nil && s.DataRetentionInHours == 0 {
			return fmt.Errorf("%w: %s", ErrNoDataRetention, s.Name)
		}
		s.ImageGeneration = cfg
		return nil
	})
}

// SetNotification stores (or with nil, deletes) the notification
// configuration. It needs data retention, as in KVS.
func (e *Engine) SetNotification(ref StreamRef, cfg *NotificationConfig) error {
	return e.update(ref, "", func(s *StreamInfo) error {
		if cfg != nil && s.DataRetentionInHours == 0 {
			return fmt.Errorf("%w: %s", ErrNoDataRetention, s.Name)
		}
		s.Notification = cfg
		return nil
	})
}

// DeleteStream removes the stream named by its ARN and all its data. If
// currentVersion is not empty it must match.
func (e *Engine) DeleteStream(arn, currentVersion string) error {
	defer e.notifyChange()
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	s, info, err := e.lookup(StreamRef{ARN: arn})
	if err != nil {
		return err
	}
	if currentVersion != "" && currentVersion != info.Version {
		return fmt.Errorf("%w: stream %s is at version %s, not %s", ErrVersionMismatch, info.Name, info.Version, currentVersion)
	}
	return e.deleteLocked(s, info, e.opts.Clock.Now().UnixMilli())
}

// deleteLocked deletes a stream: a tombstone first (synced, so the
// deletion survives a crash and reaches peers), then its data.
// REQUIRES: writeMu.
func (e *Engine) deleteLocked(s *stream, info *StreamInfo, atMs int64) error {
	if err := e.db.PutTombstone(info.ARN, atMs); err != nil {
		return fmt.Errorf("engine: deleting stream %q: %w", info.Name, err)
	}
	e.mu.Lock()
	e.mu.tombs[info.ARN] = atMs
	e.mu.Unlock()
	// Stop ingest first and wait for any Persist in flight, so nothing is
	// written for the stream after its data is gone.
	s.deleted.Store(true)
	s.ingest.mu.Lock()
	if s.ingest.active != nil {
		s.ingest.active.end()
	}
	s.ingest.mu.Unlock()
	s.persistMu.Lock()
	err := e.db.DeleteStream(s.id)
	s.persistMu.Unlock()
	if err != nil {
		s.deleted.Store(false)
		return fmt.Errorf("engine: deleting stream %q: %w", info.Name, err)
	}
	e.mu.Lock()
	delete(e.mu.byName, info.Name)
	delete(e.mu.byID, s.id)
	e.mu.Unlock()
	s.ring.close()
	s.live.close()
	e.opts.Logger.Info("stream deleted", "stream", info.Name, "sid", s.id)
	return nil
}

// versionAlphabet is KVS's Version charset [a-zA-Z0-9].
const versionAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newVersion returns a fresh random 20-character Version string.
func newVersion() string {
	var b [20]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	for i := range b {
		b[i] = versionAlphabet[int(b[i])%len(versionAlphabet)]
	}
	return string(b[:])
}
