package engine

import (
	"fmt"
	"time"
)

// EdgeConfig is KVS's EdgeConfig (StartEdgeConfigurationUpdate): which
// camera a hub device records into the stream, on what schedule, and how
// long it keeps local media. Its JSON form is the API's.
type EdgeConfig struct {
	HubDeviceArn   string          `json:"HubDeviceArn"`
	RecorderConfig RecorderConfig  `json:"RecorderConfig"`
	UploaderConfig *UploaderConfig `json:"UploaderConfig,omitempty"`
	DeletionConfig *DeletionConfig `json:"DeletionConfig,omitempty"`
}

// RecorderConfig names the media source.
type RecorderConfig struct {
	MediaSourceConfig MediaSourceConfig `json:"MediaSourceConfig"`
	ScheduleConfig    *ScheduleConfig   `json:"ScheduleConfig,omitempty"`
}

// MediaSourceConfig: the secret holding the camera URL.
type MediaSourceConfig struct {
	MediaUriSecretArn string `json:"MediaUriSecretArn"`
	MediaUriType      string `json:"MediaUriType"`
}

// ScheduleConfig is a Quartz cron expression and a duration.
type ScheduleConfig struct {
	ScheduleExpression string `json:"ScheduleExpression"`
	DurationInSeconds  int    `json:"DurationInSeconds"`
}

// UploaderConfig: when the hub uploads.
type UploaderConfig struct {
	ScheduleConfig ScheduleConfig `json:"ScheduleConfig"`
}

// DeletionConfig: local media retention.
type DeletionConfig struct {
	EdgeRetentionInHours *int             `json:"EdgeRetentionInHours,omitempty"`
	LocalSizeConfig      *LocalSizeConfig `json:"LocalSizeConfig,omitempty"`
	DeleteAfterUpload    *bool            `json:"DeleteAfterUpload,omitempty"`
}

// LocalSizeConfig caps local media.
type LocalSizeConfig struct {
	MaxLocalMediaSizeInMB *int   `json:"MaxLocalMediaSizeInMB,omitempty"`
	StrategyOnFullSize    string `json:"StrategyOnFullSize,omitempty"`
}

// Edge sync statuses (KVS SyncStatus).
const (
	EdgeSyncing    = "SYNCING"
	EdgeInSync     = "IN_SYNC"
	EdgeSyncFailed = "SYNC_FAILED"
)

// EdgeState is a stream's edge configuration and how applying it went.
type EdgeState struct {
	Config              EdgeConfig `json:"config"`
	Created             time.Time  `json:"created"`
	Updated             time.Time  `json:"updated"`
	SyncStatus          string     `json:"sync_status"`
	FailedStatusDetails string     `json:"failed_details,omitempty"`
	// Recorder status as the camera reports it (KVS LastRecorderStatus).
	RecorderStatus    string    `json:"recorder_status,omitempty"`
	RecorderDetails   string    `json:"recorder_details,omitempty"`
	RecorderCollected time.Time `json:"recorder_collected,omitzero"`
	RecorderUpdated   time.Time `json:"recorder_updated,omitzero"`
}

// Changes is signalled (coalesced) after any stream changes, so other
// parts (the camera manager) can reconcile with the registry.
func (e *Engine) Changes() <-chan struct{} { return e.changes }

func (e *Engine) notifyChange() {
	select {
	case e.changes <- struct{}{}:
	default:
	}
}

// SetEdgeConfig stores a stream's edge configuration, to be applied (sync
// status SYNCING until the camera manager reports). It needs data
// retention, as in KVS.
func (e *Engine) SetEdgeConfig(ref StreamRef, cfg EdgeConfig) (*StreamInfo, error) {
	now := e.opts.Clock.Now().UTC().Truncate(time.Millisecond)
	err := e.modify(ref, "", changeReplicated, func(s *StreamInfo) error {
		if s.DataRetentionInHours == 0 {
			return fmt.Errorf("%w: %s", ErrNoDataRetention, s.Name)
		}
		st := &EdgeState{Config: cfg, Created: now, Updated: now, SyncStatus: EdgeSyncing}
		if s.Edge != nil {
			st.Created = s.Edge.Created
		}
		s.Edge = st
		return nil
	})
	if err != nil {
		return nil, err
	}
	return e.Stream(ref)
}

// SetEdgeStatus records how applying the edge configuration went and the
// recorder's status (recorder "" keeps the recorder fields as they are).
// Nothing is written, and no change signalled, when nothing changes.
func (e *Engine) SetEdgeStatus(ref StreamRef, sync, failed, recorder, details string) error {
	info, err := e.Stream(ref)
	if err != nil {
		return err
	}
	ed := info.Edge
	if ed == nil {
		return nil
	}
	if recorder == "" {
		recorder, details = ed.RecorderStatus, ed.RecorderDetails
	}
	if ed.SyncStatus == sync && ed.FailedStatusDetails == failed && ed.RecorderStatus == recorder && ed.RecorderDetails == details {
		return nil
	}
	now := e.opts.Clock.Now().UTC().Truncate(time.Millisecond)
	return e.modify(ref, "", changeLocal, func(s *StreamInfo) error {
		if s.Edge == nil {
			return nil
		}
		s.Edge.SyncStatus, s.Edge.FailedStatusDetails = sync, failed
		if recorder != "" && (recorder != s.Edge.RecorderStatus || details != s.Edge.RecorderDetails) {
			s.Edge.RecorderStatus, s.Edge.RecorderDetails, s.Edge.RecorderUpdated = recorder, details, now
		}
		if recorder != "" {
			s.Edge.RecorderCollected = now
		}
		return nil
	})
}

// DeleteEdgeConfig removes a stream's edge configuration; its camera
// stops. The recorded media stays.
func (e *Engine) DeleteEdgeConfig(ref StreamRef) error {
	return e.modify(ref, "", changeReplicated, func(s *StreamInfo) error {
		if s.Edge == nil {
			return fmt.Errorf("%w: stream %s has no edge configuration", ErrConfigNotFound, s.Name)
		}
		s.Edge = nil
		return nil
	})
}

// EdgeStreams returns the streams that have an edge configuration, by name.
func (e *Engine) EdgeStreams() []*StreamInfo {
	all, _ := e.ListStreams("", "", 0)
	var out []*StreamInfo
	for _, s := range all {
		if s.Edge != nil {
			out = append(out, s)
		}
	}
	return out
}
