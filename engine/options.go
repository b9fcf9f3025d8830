package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/kvsedge/kvsedge/lsm"
)

// Options configures an Engine.
type Options struct {
	// Region is used in ARNs. It defaults to "us-east-1".
	Region string
	// AccountID is the 12-digit account used in ARNs. It defaults to
	// "000000000000".
	AccountID string
	// MaxStreams caps the number of streams (KVS: 10,000 per account and
	// region). It defaults to 10,000.
	MaxStreams int
	// NodeID is this node's id in fragment numbers (lsm/FORMAT.md); nodes
	// of one cluster need distinct ids.
	NodeID uint16
	// RingDuration is how much of each stream's newest video its hot ring
	// keeps for live readers (ring.go): sized in time, its bytes follow
	// the stream's bitrate. It defaults to 4 s (two 2 s fragments: the
	// newest, where live readers start, and the one before it). Readers
	// further behind, and an HLS live playlist's older segments, read the
	// archive.
	RingDuration time.Duration
	// RingBytesPerStream optionally caps each stream's hot ring in bytes
	// as well (0: no cap beyond the media budget).
	RingBytesPerStream int
	// LiveKeepGOP is how long after its last live subscriber left a
	// stream's live tap goes on keeping a copy of its newest GOP (live.go),
	// so that a next subscriber starts at once at the newest key frame;
	// past it (and before any subscriber) the tap copies nothing and a new
	// subscriber starts at the next key frame. The copy costs a stream its
	// GOP's bytes in the media budget (about 0.5–1 MiB at 2 Mbit/s) and a
	// memcpy of every frame: a box recording cameras nobody watches pays
	// neither. It defaults to 10 min; negative: always kept.
	LiveKeepGOP time.Duration
	// Media configures the media memory: the budget every media byte is
	// counted against (media.go).
	Media MediaOptions
	// Capacity configures the capacity controller (capacity.go).
	Capacity CapacityOptions
	// Store configures the store Open opens.
	Store StoreOptions
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

var (
	regionPattern  = regexp.MustCompile(`^[a-z]{2,}(-[a-z]+)+-[0-9]+$`)
	accountPattern = regexp.MustCompile(`^[0-9]{12}$`)
)

// ValidRegion reports whether s is a region name like us-east-1.
func ValidRegion(s string) bool { return regionPattern.MatchString(s) }

// ValidAccountID reports whether s is a 12-digit account id.
func ValidAccountID(s string) bool { return accountPattern.MatchString(s) }

// EnsureDefaults fills unset fields.
func (o *Options) EnsureDefaults() {
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.AccountID == "" {
		o.AccountID = "000000000000"
	}
	if o.MaxStreams == 0 {
		o.MaxStreams = 10000
	}
	if o.RingDuration == 0 {
		o.RingDuration = 4 * time.Second
	}
	if o.LiveKeepGOP == 0 {
		o.LiveKeepGOP = 10 * time.Minute
	}
	if o.Clock == nil {
		o.Clock = SystemClock
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Capacity.Strategy == "" {
		o.Capacity.Strategy = StrategyDeleteOldest
	}
}

// Validate reports every invalid field.
func (o *Options) Validate() error {
	var errs []error
	if !regionPattern.MatchString(o.Region) {
		errs = append(errs, fmt.Errorf("region %q is not a region name like us-east-1", o.Region))
	}
	if !accountPattern.MatchString(o.AccountID) {
		errs = append(errs, fmt.Errorf("account id %q is not 12 digits", o.AccountID))
	}
	if o.Capacity.Strategy != StrategyDeleteOldest && o.Capacity.Strategy != StrategyDenyNew {
		errs = append(errs, fmt.Errorf("capacity strategy %q is not %s or %s", o.Capacity.Strategy, StrategyDeleteOldest, StrategyDenyNew))
	}
	errs = append(errs, o.Store.validate()...)
	if o.MaxStreams < 1 {
		errs = append(errs, fmt.Errorf("max streams %d must be at least 1", o.MaxStreams))
	}
	if o.RingDuration < 0 || o.RingBytesPerStream < 0 {
		errs = append(errs, fmt.Errorf("ring of %v and %d bytes: neither may be negative", o.RingDuration, o.RingBytesPerStream))
	}
	if o.Media.BudgetBytes < 0 {
		errs = append(errs, fmt.Errorf("media memory budget %d bytes is negative", o.Media.BudgetBytes))
	}
	return errors.Join(errs...)
}

// StoreOptions configures the fragment store (package lsm) that Open opens.
// Zero values take lsm's defaults.
type StoreOptions struct {
	// Dir is the data directory. Required by Open.
	Dir string
	// CacheBytes is Pebble's block cache (default 32 MiB).
	CacheBytes int64
	// MemTableBytes is one Pebble memtable (default 16 MiB).
	MemTableBytes uint64
	// SyncWindow groups the syncs of fragments finishing within it (SD
	// cards); zero syncs each fragment at once.
	SyncWindow time.Duration
	// SegmentBytes is the size of one media segment file (default 64 MiB).
	SegmentBytes int64
	// ReserveBytes is the reserve file that gives the store room when the
	// disk is found full (lsm/space.go; default 16 MiB, negative: none).
	ReserveBytes int64
}

func (s StoreOptions) lsmOptions(log *slog.Logger) lsm.Options {
	return lsm.Options{Dir: s.Dir, CacheBytes: s.CacheBytes, MemTableBytes: s.MemTableBytes,
		SyncWindow: s.SyncWindow, SegmentBytes: s.SegmentBytes, ReserveBytes: s.ReserveBytes, Logger: log}
}

func (s StoreOptions) validate() []error {
	var errs []error
	if s.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("store cache %d bytes is negative", s.CacheBytes))
	}
	if s.SyncWindow < 0 {
		errs = append(errs, fmt.Errorf("store sync window %v is negative", s.SyncWindow))
	}
	if s.SegmentBytes < 0 {
		errs = append(errs, fmt.Errorf("store segment size %d bytes is negative", s.SegmentBytes))
	}
	return errs
}
