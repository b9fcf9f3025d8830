// Package status holds the report types that one package produces and
// others show: a camera's state and its changes (ingest), a cluster
// member and a stream's replication state (cluster). serve puts them on the wire as JSON and the
// app exports them as metrics, without serve importing ingest or cluster.
// It is a leaf: it imports only the standard library.
package status

import "time"

// Camera is what an operator sees of one camera (package ingest records
// it; the API, the console and the metrics show it). State is one of
// ingest's State* values.
type Camera struct {
	Stream        string    `json:"stream"`
	Source        string    `json:"source"`
	State         string    `json:"state"`
	Since         time.Time `json:"since"`
	LastError     string    `json:"last_error,omitempty"`
	LastFrame     time.Time `json:"last_frame,omitzero"`
	BitrateBps    float64   `json:"bitrate_bps"`
	FPS           float64   `json:"fps"`
	Fragments     uint64    `json:"fragments"`
	Reconnects    int       `json:"reconnects"`
	LastFragment  string    `json:"last_fragment,omitempty"`
	DroppedFrames int       `json:"dropped_frames"`
	// RetentionHours is the stream's DataRetentionInHours (-1: the stream
	// could not be read); Retention says it in words: "24 h", or
	// LiveOnly when the stream keeps nothing (retention 0: live readers
	// only, HLS and GetClip have nothing to play).
	RetentionHours int    `json:"retention_hours"`
	Retention      string `json:"retention,omitempty"`
}

// CameraChange is one change of a camera's state (package ingest keeps
// the newest of each configured camera in memory, from the box's start;
// the console draws outages from them).
type CameraChange struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
	Error string    `json:"error,omitempty"`
}

// LiveOnly is Camera.Retention of a camera whose stream keeps no media.
const LiveOnly = "live only, nothing kept"

// Member is what one cluster node knows of another (package cluster).
type Member struct {
	Name      string `json:"name"`
	Addr      string `json:"addr"`
	Status    string `json:"status"` // alive, leaving, left, failed
	APIURL    string `json:"api_url,omitempty"`
	Profile   string `json:"profile,omitempty"`
	FreeBytes uint64 `json:"free_bytes,omitempty"`
	Self      bool   `json:"self,omitempty"`
	NodeID    uint16 `json:"node_id"`
	// Witness: a tie-breaker (`kvsedge witness`) that counts for quorum
	// and holds no stream.
	Witness bool `json:"witness,omitempty"`
	// Credentials fingerprints the box's API key set (config.
	// CredentialFingerprint); StartedMs is when its process started.
	Credentials string `json:"credentials,omitempty"`
	StartedMs   int64  `json:"started_ms,omitempty"`
	// KeptOut: its key set differs from the cluster's (that of the
	// longest-running box): it is nobody's home or replica.
	KeptOut bool `json:"kept_out,omitempty"`
	// MaxCameras is how many cameras the box records at once
	// (media.max_cameras; 0: no limit): camera placement skips a box
	// that is full.
	MaxCameras int `json:"max_cameras,omitempty"`
}

// StreamReplication is one stream's replication state on this node
// (package cluster).
type StreamReplication struct {
	Stream   string   `json:"stream"`
	Home     string   `json:"home"`
	Replicas []string `json:"replicas"`
	// Holds: this node is one of the stream's holders and its archive is
	// whole (compared with every other holder since the last change).
	Holds    bool   `json:"holds"`
	Factor   int    `json:"replication_factor"`
	LastSync string `json:"last_sync,omitempty"`
	// MissingHere: fragments the last comparison found on other holders
	// and not here (they are fetched right after).
	MissingHere int `json:"missing_here"`
	// UnderReplicated: fragments this node holds that another holder
	// lacked at the last comparison (newest ones may just be on their way).
	UnderReplicated int `json:"under_replicated"`
	// Imported and ImportedBytes count the fragments (and their media
	// bytes) copied here from peers since start.
	Imported      uint64 `json:"imported"`
	ImportedBytes uint64 `json:"imported_bytes"`
	// LagP50Ms/LagP99Ms: from a fragment being complete on the node that
	// ingested it to durable here, over the newest tail samples.
	LagP50Ms int64 `json:"lag_p50_ms"`
	LagP99Ms int64 `json:"lag_p99_ms"`
	Samples  int   `json:"lag_samples"`

	// What PERSISTED means for the fragments this node ingested (its
	// home's view; empty on a box that ingested none since start).
	// Durability is the mode the stream asks for: "replicated" (PERSISTED
	// once a replica holds the fragment durably too) or "local".
	Durability string `json:"durability,omitempty"`
	// LocalAcksSince/LocalAcksWhy: set while a replicated stream falls
	// back to local acks (no replica alive, or none confirmed in time).
	LocalAcksSince string `json:"local_acks_since,omitempty"`
	LocalAcksWhy   string `json:"local_acks_why,omitempty"`
	// Fragments made durable here since start, by what their PERSISTED
	// meant: confirmed by a replica, local by choice, local by fallback
	// (cameras, which send no acks, are counted alike).
	AcksReplicated uint64 `json:"acks_replicated"`
	AcksLocal      uint64 `json:"acks_local"`
	AcksFallback   uint64 `json:"acks_fallback"`
	// ConfirmedThrough is the newest fragment a replica reported durable
	// (ConfirmedBy); ConfirmP50Ms/P99Ms: from durable here to the
	// replica's report, over recent fragments.
	ConfirmedThrough string `json:"confirmed_through,omitempty"`
	ConfirmedBy      string `json:"confirmed_by,omitempty"`
	ConfirmP50Ms     int64  `json:"confirm_p50_ms,omitempty"`
	ConfirmP99Ms     int64  `json:"confirm_p99_ms,omitempty"`
}

// Upload is one stream's upload to the upstream KVS (package
// internal/uplink).
type Upload struct {
	Stream string `json:"stream"`
	// State is "uploading", "idle" (caught up), "waiting" (backing off
	// after an error) or "starting".
	State string `json:"state"`
	// UploadedThrough is the newest fragment the upstream PERSISTED.
	UploadedThrough string    `json:"uploaded_through,omitempty"`
	UploadedAt      time.Time `json:"uploaded_at,omitzero"`
	Fragments       int64     `json:"fragments"`
	Bytes           int64     `json:"bytes"`
	Sessions        int64     `json:"sessions"`
	Retries         int64     `json:"retries"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
	// UserError: the last error is the configuration's (credentials
	// refused, …: KVS's USER_ERROR) rather than an outage.
	UserError bool `json:"user_error,omitempty"`
	// OldestPendingMs is the server time of the oldest stored fragment
	// not yet uploaded (0: none); LagSeconds its age.
	OldestPendingMs int64   `json:"oldest_pending_ms,omitempty"`
	LagSeconds      float64 `json:"lag_seconds"`
}
