package engine

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kvsedge/kvsedge/lsm"
)

// Status is a stream's lifecycle state, as KVS names it.
type Status string

// Stream statuses. kvsedge creates streams ACTIVE at once: the real producer
// starts PutMedia right after CreateStream without polling.
const (
	StatusCreating Status = "CREATING"
	StatusActive   Status = "ACTIVE"
	StatusUpdating Status = "UPDATING"
	StatusDeleting Status = "DELETING"
)

// Storage tiers of StreamStorageConfiguration.
const (
	StorageTierHot  = "HOT"
	StorageTierWarm = "WARM"
)

// MaxRetentionHours is KVS's upper bound for DataRetentionInHours (10 years).
const MaxRetentionHours = 87600

// MaxTagsPerStream is KVS's limit of tags per resource.
const MaxTagsPerStream = 50

// StreamInfo is an immutable snapshot of a stream. Callers must not modify
// its maps or pointed-to configurations; the engine replaces the whole
// snapshot on every change.
//
// The JSON encoding of this struct is the version-1 stream record on disk
// (lsm/FORMAT.md, table 0x02); fields may be added, never renamed.
type StreamInfo struct {
	ID                   lsm.StreamID           `json:"id"`
	Name                 string                 `json:"name"`
	ARN                  string                 `json:"arn"`
	DeviceName           string                 `json:"device,omitempty"`
	MediaType            string                 `json:"media_type,omitempty"`
	KmsKeyID             string                 `json:"kms_key_id,omitempty"`
	Version              string                 `json:"version"`
	Status               Status                 `json:"status"`
	CreationTime         time.Time              `json:"created"`
	DataRetentionInHours int                    `json:"retention_hours"`
	StorageTier          string                 `json:"storage_tier,omitempty"`
	Tags                 map[string]string      `json:"tags,omitempty"`
	ImageGeneration      *ImageGenerationConfig `json:"image_generation,omitempty"`
	Notification         *NotificationConfig    `json:"notification,omitempty"`
	Edge                 *EdgeState             `json:"edge,omitempty"`
	// Modified orders a stream's replicated changes across cluster nodes
	// (epoch ms, strictly increasing per change): a peer's copy replaces
	// ours when its Modified is larger. Node-local state (the edge sync
	// and recorder status) does not advance it.
	Modified int64 `json:"modified_ms,omitempty"`
}

// ImageGenerationConfig is KVS's ImageGenerationConfiguration, stored as given.
type ImageGenerationConfig struct {
	Status            string            `json:"status"`
	ImageSelectorType string            `json:"selector"`
	DestinationURI    string            `json:"uri"`
	DestinationRegion string            `json:"region"`
	SamplingInterval  int               `json:"sampling_interval"`
	Format            string            `json:"format"`
	FormatConfig      map[string]string `json:"format_config,omitempty"`
	WidthPixels       int               `json:"width,omitempty"`
	HeightPixels      int               `json:"height,omitempty"`
}

// NotificationConfig is KVS's NotificationConfiguration, stored as given.
type NotificationConfig struct {
	Status         string `json:"status"`
	DestinationURI string `json:"uri"`
}

// clone returns a copy whose maps and configurations can be modified.
func (s *StreamInfo) clone() *StreamInfo {
	c := *s
	c.Tags = make(map[string]string, len(s.Tags))
	for k, v := range s.Tags {
		c.Tags[k] = v
	}
	if s.ImageGeneration != nil {
		ig := *s.ImageGeneration
		c.ImageGeneration = &ig
	}
	if s.Notification != nil {
		n := *s.Notification
		c.Notification = &n
	}
	if s.Edge != nil {
		e := *s.Edge
		c.Edge = &e
	}
	return &c
}

// recordVersion1 prefixes a JSON-encoded StreamInfo.
const recordVersion1 byte = 1

func encodeRecord(s *StreamInfo) ([]byte, error) {
	js, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding stream record %q: %w", s.Name, err)
	}
	return append([]byte{recordVersion1}, js...), nil
}

func decodeRecord(id lsm.StreamID, b []byte) (*StreamInfo, error) {
	if len(b) == 0 || b[0] != recordVersion1 {
		return nil, fmt.Errorf("stream record %d: unknown version", id)
	}
	var s StreamInfo
	if err := json.Unmarshal(b[1:], &s); err != nil {
		return nil, fmt.Errorf("stream record %d: %w", id, err)
	}
	if s.ID != id {
		return nil, fmt.Errorf("stream record %d: holds id %d", id, s.ID)
	}
	return &s, nil
}
