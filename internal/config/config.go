// Package config is kvsedge's configuration: the YAML file, the environment
// and the flags layered over the built-in defaults and the hardware
// profile's budgets (koanf), validated as a whole with every bad key
// reported, and the access keys the box accepts (configured, or generated
// once into the data directory).
package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/structs"
	"github.com/knadh/koanf/v2"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/hwprofiles"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/spf13/pflag"
)

// Config is kvsedge's whole configuration. Sources, lowest precedence first:
// built-in defaults < YAML file (--config) < environment (KVSEDGE_…, "__"
// nests: KVSEDGE_TLS__CERT_FILE) < command-line flags that were set.
type Config struct {
	// Listen is the API's address. Default 127.0.0.1:8080.
	Listen string `koanf:"listen" yaml:"listen"`
	// DataDir holds the store (and generated credentials). Default ./data.
	DataDir string `koanf:"data_dir" yaml:"data_dir"`
	// DataEndpoint is what GetDataEndpoint returns (scheme://host[:port]).
	// Default: derived from the bound listen address and TLS.
	DataEndpoint string `koanf:"data_endpoint" yaml:"data_endpoint"`
	// Region and AccountID appear in ARNs.
	Region    string `koanf:"region" yaml:"region"`
	AccountID string `koanf:"account_id" yaml:"account_id"`
	// AccessKeyID and SecretAccessKey are one key pair (the environment's
	// KVSEDGE_ACCESS_KEY_ID / KVSEDGE_SECRET_ACCESS_KEY); Credentials holds
	// more. With none configured and auth on, a pair is generated once and
	// kept in <data_dir>/credentials.yaml.
	AccessKeyID     string        `koanf:"access_key_id" yaml:"access_key_id"`
	SecretAccessKey string        `koanf:"secret_access_key" yaml:"secret_access_key"`
	Credentials     []Credential  `koanf:"credentials" yaml:"credentials"`
	Auth            AuthConfig    `koanf:"auth" yaml:"auth"`
	TLS             TLSConfig     `koanf:"tls" yaml:"tls"`
	Log             LogConfig     `koanf:"log" yaml:"log"`
	Storage         StorageConfig `koanf:"storage" yaml:"storage"`
	HTTP            HTTPConfig    `koanf:"http" yaml:"http"`
	Media           MediaConfig   `koanf:"media" yaml:"media"`
	// WebRTC is the low-latency live view (WHEP).
	WebRTC WebRTCConfig `koanf:"webrtc" yaml:"webrtc"`
	// Upstream is the Kinesis Video Streams endpoint the box uploads its
	// recordings to (cameras with an upload block, streams with an edge
	// UploaderConfig); unset: nothing is uploaded.
	Upstream UpstreamConfig `koanf:"upstream" yaml:"upstream"`
	// Demo records the built-in demo clip into a "demo" stream, so a new
	// box has something to watch. Default: on when no configuration file
	// is given, off when one is (unless it says demo: true).
	Demo bool `koanf:"demo" yaml:"demo"`
	// Cameras are recorded forever; the file is watched and changes apply
	// without a restart.
	Cameras []CameraFileConfig `koanf:"cameras" yaml:"cameras"`
	// Secrets are named values (camera URLs with credentials) that the
	// edge configuration API's MediaUriSecretArn refers to by name (the
	// last component of the ARN). Redacted in `kvsedge config`.
	Secrets map[string]string `koanf:"secrets" yaml:"secrets"`
	Cluster ClusterConfig     `koanf:"cluster" yaml:"cluster"`
	// Profile names the hardware profile whose budgets are the defaults of
	// storage.cache_mib, storage.memtable_mib, storage.sync_window,
	// media.ring_seconds, media.memory_budget_mib, media.max_cameras and
	// memory_limit_mib
	// (`kvsedge profiles` lists them): auto (detected from the board), a
	// profile's name, or none (the built-in defaults).
	Profile string `koanf:"profile" yaml:"profile"`
	// MemoryLimitMiB is the Go runtime's soft memory limit (0: none; the
	// GOMEMLIMIT environment variable wins). Media is outside the Go heap:
	// media.memory_budget_mib bounds it.
	MemoryLimitMiB int `koanf:"memory_limit_mib" yaml:"memory_limit_mib"`
	// GCPercent is the Go collector's heap growth between collections
	// (GOGC; the GOGC environment variable wins). The heap holds metadata
	// and short-lived garbage only (media is outside it): mostly
	// gortsplib's one new buffer per RTP packet it reads, ~1.4 KB for
	// every packet of every camera. At Go's 100 that garbage lets the heap
	// double its live size between collections; 50 keeps it at 1.5×:
	// 0.1–0.3 MiB less RSS per camera at 16 cameras (the heap's idle pages
	// 4.0 → 1.4 MiB), for a collection twice as often of a live heap of
	// ~8 MiB, its CPU within the runs' noise (issue 14:
	// BenchmarkVsMediaMTX, BenchmarkRecorder).
	GCPercent int `koanf:"gc_percent" yaml:"gc_percent"`
	// ProfileApplied and ProfileWhy say which hardware profile was applied
	// and why (set by Load; "" for none).
	ProfileApplied string `koanf:"-" yaml:"-"`
	ProfileWhy     string `koanf:"-" yaml:"-"`
}

// ClusterConfig joins this box to peer boxes (serf gossip). Without Bind
// the box is a cluster of one.
type ClusterConfig struct {
	// Bind is the gossip address (host:port; UDP and TCP), e.g. 0.0.0.0:7946.
	Bind string `koanf:"bind" yaml:"bind,omitempty"`
	// Advertise is the address peers reach this box at, if not Bind.
	Advertise string `koanf:"advertise" yaml:"advertise,omitempty"`
	// Seeds are gossip addresses of other members.
	Seeds []string `koanf:"seeds" yaml:"seeds,omitempty"`
	// Key encrypts gossip: base64 of 16, 24 or 32 bytes, the same on
	// every member.
	Key string `koanf:"key" yaml:"key,omitempty"`
	// NodeName is unique in the cluster (default: the host name).
	NodeName string `koanf:"node_name" yaml:"node_name,omitempty"`
	// NodeID is this box's id in fragment numbers (default: derived from
	// the node name); members need distinct ids.
	NodeID int `koanf:"node_id" yaml:"node_id,omitempty"`
	// FastFailureDetection detects a dead box in about a second instead of
	// serf's LAN default of about six (more gossip traffic; for a few
	// boxes on one LAN). Every built-in hardware profile turns it on (a
	// site's LAN); profile none leaves it off.
	FastFailureDetection bool `koanf:"fast_failure_detection" yaml:"fast_failure_detection,omitempty"`
	// ReplicationFactor is how many boxes hold each stream (its home and
	// replicas) unless the stream's kvsedge:replication-factor tag says
	// otherwise. Default 2.
	ReplicationFactor int `koanf:"replication_factor" yaml:"replication_factor,omitempty"`
	// Durability is when PERSISTED is sent for streams without the
	// kvsedge:durability tag: "replicated" (once the fragment is durable
	// on this box and on a replica), "local" (once durable on this box),
	// or empty: replicated when the cluster has two boxes or more.
	Durability string `koanf:"durability" yaml:"durability,omitempty"`
	// AckTimeout bounds how long a replicated PERSISTED waits for a
	// replica before the stream falls back to local acks (default 3s).
	AckTimeout time.Duration `koanf:"ack_timeout" yaml:"ack_timeout,omitempty"`
	// DropCopiesAfter is how long a box stays outside a stream's placement
	// (it stood in for a failed holder that is back) before it deletes
	// its copy, once the holders have every fragment. Default 1m.
	DropCopiesAfter time.Duration `koanf:"drop_copies_after" yaml:"drop_copies_after,omitempty"`
	// CAFile is the PEM certificate authority that peers' HTTPS
	// certificates chain to (the site's `kvsedge cert` CA); default: the
	// system's roots.
	CAFile string `koanf:"ca_file" yaml:"ca_file,omitempty"`
}

// DecodedKey is Key decoded (Validate checked it); nil when unset.
func (c ClusterConfig) DecodedKey() []byte {
	k, err := base64.StdEncoding.DecodeString(c.Key)
	if err != nil {
		return nil
	}
	return k
}

// listKeys are the list-valued keys, comma-separated in the environment.
var listKeys = map[string]bool{"cluster.seeds": true, "upstream.streams": true}

// CameraFileConfig is one camera in the configuration file.
type CameraFileConfig struct {
	Stream string `koanf:"stream" yaml:"stream"`
	// URL is rtsp:// or rtsps:// (credentials in the user info); or
	// Device is a V4L2 device (/dev/video0) of a USB camera that encodes
	// MJPEG or H.264, captured at Width×Height (0: the largest offered).
	URL    string `koanf:"url" yaml:"url,omitempty"`
	Device string `koanf:"device" yaml:"device,omitempty"`
	Width  int    `koanf:"width" yaml:"width,omitempty"`
	Height int    `koanf:"height" yaml:"height,omitempty"`
	// Transport is auto (TCP; UDP if the camera refuses TCP), tcp or
	// udp. Over TCP the video's packets skip gortsplib's per-packet
	// buffers (ingest/rtptap.go) and the socket is read on the box-wide
	// pace (ingest/readpace.go).
	Transport   string `koanf:"transport" yaml:"transport,omitempty"`
	InsecureTLS bool   `koanf:"insecure_tls" yaml:"insecure_tls,omitempty"`
	// RetentionHours is the stream's retention when the camera creates it;
	// unset (nil): media.default_retention_hours; 0: live only, nothing
	// kept.
	RetentionHours   *int              `koanf:"retention_hours" yaml:"retention_hours,omitempty"`
	Tags             map[string]string `koanf:"tags" yaml:"tags,omitempty"`
	FragmentDuration time.Duration     `koanf:"fragment_duration" yaml:"fragment_duration,omitempty"`
	// Upload, when present, uploads the camera's stream to the upstream
	// (the upstream section).
	Upload *CameraUploadConfig `koanf:"upload" yaml:"upload,omitempty"`
}

// CameraUploadConfig is a camera's upload block: present means upload;
// continuously, or with Schedule (a Quartz cron expression, as KVS's
// UploaderConfig) only in windows of DurationSeconds from each firing.
type CameraUploadConfig struct {
	Enabled         *bool  `koanf:"enabled" yaml:"enabled,omitempty"`
	Schedule        string `koanf:"schedule" yaml:"schedule,omitempty"`
	DurationSeconds int    `koanf:"duration_seconds" yaml:"duration_seconds,omitempty"`
	// DeleteAfterUpload deletes local media once the upstream PERSISTED it
	// (holds still win; media never uploaded is not deleted this way).
	DeleteAfterUpload bool `koanf:"delete_after_upload" yaml:"delete_after_upload,omitempty"`
}

// UploadEnabled reports whether the camera's stream is uploaded.
func (c CameraFileConfig) UploadEnabled() bool {
	return c.Upload != nil && (c.Upload.Enabled == nil || *c.Upload.Enabled)
}

// UpstreamConfig names the upstream KVS (internal/uplink).
type UpstreamConfig struct {
	// Region selects the real service (https://kinesisvideo.<region>.amazonaws.com);
	// Endpoint overrides it (another kvsedge, a test server).
	Region   string `koanf:"region" yaml:"region,omitempty"`
	Endpoint string `koanf:"endpoint" yaml:"endpoint,omitempty"`
	// AccessKeyID, SecretAccessKey and SessionToken are static
	// credentials; without them the AWS SDK's default chain is used (the
	// AWS_* environment variables, the shared credentials and config
	// files, AWS_PROFILE), as the AWS CLI does. Redacted in `kvsedge config`.
	AccessKeyID     string `koanf:"access_key_id" yaml:"access_key_id,omitempty"`
	SecretAccessKey string `koanf:"secret_access_key" yaml:"secret_access_key,omitempty"`
	SessionToken    string `koanf:"session_token" yaml:"session_token,omitempty"`
	// CAFile is a PEM bundle trusted besides the system's (an upstream
	// kvsedge with its local CA).
	CAFile string `koanf:"ca_file" yaml:"ca_file,omitempty"`
	// RateMbps caps the upload rate of all streams together, in Mbit/s
	// (0: no cap), so the site's uplink is never saturated.
	RateMbps float64 `koanf:"rate_mbps" yaml:"rate_mbps,omitempty"`
	// Streams are uploaded continuously besides the cameras with an
	// upload block (streams that PutMedia producers fill, for example).
	Streams []string `koanf:"streams" yaml:"streams,omitempty"`
}

// Enabled reports whether an upstream is configured.
func (u UpstreamConfig) Enabled() bool { return u.Region != "" || u.Endpoint != "" }

// MediaConfig tunes the media data path.
type MediaConfig struct {
	// MemoryBudgetMiB bounds every media byte the box holds: fragments
	// arriving (PutMedia, cameras, replicas), in the hot rings, waiting to
	// be stored, and read back for readers. Over it, the rings give back
	// fragments early, then new media is refused (PutMedia: a retriable
	// ERROR ack). 0: derived, half of memory_limit_mib when that is set,
	// else 256 MiB. It is outside the Go heap, on top of memory_limit_mib.
	MemoryBudgetMiB int `koanf:"memory_budget_mib" yaml:"memory_budget_mib"`
	// RingSeconds is how much of each stream's newest video its hot ring
	// keeps in memory for live readers (its bytes follow the stream's
	// bitrate); readers further behind read the archive. A recorded
	// stream nobody has read for a minute keeps none of its stored video
	// in memory.
	RingSeconds int `koanf:"ring_seconds" yaml:"ring_seconds"`
	// RingMiBPerStream is deprecated (the ring is sized in seconds within
	// the memory budget); when set it still caps each stream's ring in
	// MiB. 0: no cap.
	RingMiBPerStream int `koanf:"ring_mib_per_stream" yaml:"ring_mib_per_stream,omitempty"`
	// GetMediaIdleTimeout ends a GetMedia session that waited this long
	// at the live edge without a new fragment (below the aws CLI's 60 s
	// read timeout; clients resume with the continuation token).
	GetMediaIdleTimeout time.Duration `koanf:"get_media_idle_timeout" yaml:"get_media_idle_timeout"`
	// PutMediaIdleClose ends an upload that sent nothing for this long.
	PutMediaIdleClose time.Duration `koanf:"put_media_idle_close" yaml:"put_media_idle_close"`
	// MaxCameras is how many cameras the box records at once (0: no
	// limit); more wait in STANDBY.
	MaxCameras int `koanf:"max_cameras" yaml:"max_cameras"`
	// RetentionInterval is how often expired fragments are deleted.
	RetentionInterval time.Duration `koanf:"retention_interval" yaml:"retention_interval"`
	// DefaultRetentionHours is the retention of a stream a configured
	// camera creates when the camera does not say retention_hours.
	DefaultRetentionHours int `koanf:"default_retention_hours" yaml:"default_retention_hours"`
}

// MediaBudgetBytes is the media memory budget: media.memory_budget_mib,
// or when that is 0 half of memory_limit_mib (at least 64 MiB), or
// 256 MiB without either.
func (c *Config) MediaBudgetBytes() int64 {
	switch {
	case c.Media.MemoryBudgetMiB > 0:
		return int64(c.Media.MemoryBudgetMiB) << 20
	case c.MemoryLimitMiB > 0:
		return int64(max(c.MemoryLimitMiB/2, 64)) << 20
	}
	return 256 << 20
}

// Credential is one access key pair.
type Credential struct {
	AccessKeyID     string `koanf:"access_key_id" yaml:"access_key_id"`
	SecretAccessKey string `koanf:"secret_access_key" yaml:"secret_access_key"`
}

// AuthConfig controls SigV4 checking.
type AuthConfig struct {
	// Disabled turns authentication off (local development only).
	Disabled bool `koanf:"disabled" yaml:"disabled"`
	// MaxSkew is how far a request's X-Amz-Date may be from our clock.
	// Default 5m, as AWS.
	MaxSkew time.Duration `koanf:"max_skew" yaml:"max_skew"`
}

// TLSConfig enables HTTPS when both files are set (see `kvsedge cert`).
type TLSConfig struct {
	CertFile string `koanf:"cert_file" yaml:"cert_file"`
	KeyFile  string `koanf:"key_file" yaml:"key_file"`
}

// LogConfig sets the log level (debug, info, warn, error) and format (text,
// json).
type LogConfig struct {
	Level  string `koanf:"level" yaml:"level"`
	Format string `koanf:"format" yaml:"format"`
}

// SlogLevel is Level as a slog.Level (Validate checked it).
func (c LogConfig) SlogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// HTTPConfig bounds the API's connections, so a flood of idle or slow
// connections never ends the process or starves cameras and uploads.
type HTTPConfig struct {
	// MaxConns caps connections served at once (more are answered 503);
	// MaxConnsPerIP caps one client address's (more are closed at once).
	MaxConns      int `koanf:"max_conns" yaml:"max_conns"`
	MaxConnsPerIP int `koanf:"max_conns_per_ip" yaml:"max_conns_per_ip"`
	// HeaderTimeout closes a new connection that sends nothing within it,
	// and one whose request head (and JSON body) did not arrive within it
	// of its first byte; uploads and media reads are bounded by
	// their progress instead (media.put_media_idle_close,
	// media.get_media_idle_timeout).
	HeaderTimeout time.Duration `koanf:"header_timeout" yaml:"header_timeout"`
}

// WebRTCConfig is the WHEP live view (serve/whep.go): frames go to
// browsers as they arrive, H.264 passed through; viewers fall back to HLS
// when it cannot connect.
type WebRTCConfig struct {
	Enabled bool `koanf:"enabled" yaml:"enabled"`
	// UDPPort carries every viewer's media on one UDP port (for a
	// firewall rule); 0: an ephemeral port per viewer.
	UDPPort int `koanf:"udp_port" yaml:"udp_port"`
	// PublicIPs are advertised instead of the box's own addresses (a box
	// behind 1:1 NAT).
	PublicIPs []string `koanf:"public_ips" yaml:"public_ips"`
	// Loopback offers 127.0.0.1 too (a browser on the box itself).
	Loopback bool `koanf:"loopback" yaml:"loopback"`
	// MaxViewers caps WebRTC viewers at once; more are sent to HLS.
	MaxViewers int `koanf:"max_viewers" yaml:"max_viewers"`
	// ConnectTimeout ends a viewer whose connection is not up within it.
	ConnectTimeout time.Duration `koanf:"connect_timeout" yaml:"connect_timeout"`
	// KeepGOP is how long after a stream's last live viewer left the box
	// keeps a copy of its newest GOP, so the next viewer's picture starts
	// at once; later (and for a camera nobody has watched) a viewer waits
	// for the camera's next key frame, and the box copies nothing (the
	// copy costs each stream its GOP's bytes of media memory). -1s: always.
	KeepGOP time.Duration `koanf:"keep_gop" yaml:"keep_gop"`
}

// StorageConfig sizes the Pebble store.
type StorageConfig struct {
	CacheMiB    int `koanf:"cache_mib" yaml:"cache_mib"`
	MemtableMiB int `koanf:"memtable_mib" yaml:"memtable_mib"`
	// SyncWindow groups the syncs of fragments stored within it (SD
	// cards); 0 syncs each fragment at once.
	SyncWindow time.Duration `koanf:"sync_window" yaml:"sync_window"`
	// SegmentMiB is the size of the media segment files (each is
	// preallocated; retention frees whole segments).
	SegmentMiB int `koanf:"segment_mib" yaml:"segment_mib"`
	// ReserveMiB is a file kept in the data directory and deleted when the
	// disk is found full (filled by something else), so the store always
	// has room to record what it must; 0 keeps none.
	ReserveMiB int `koanf:"reserve_mib" yaml:"reserve_mib"`
	// NoAutoRepair: a store whose index is too damaged to open is left
	// as it is and the server does not start (the default rebuilds the
	// index from the segment files at start, as kvsedge repair does,
	// keeping the old index and any unindexable bytes aside).
	NoAutoRepair bool `koanf:"no_auto_repair" yaml:"no_auto_repair"`
	// MinFreeMiB is the free disk space the box keeps; OnFull is what it
	// does when a limit is reached: delete_oldest (oldest media, except
	// streams on hold, goes) or refuse_new (PutMedia gets ERROR acks,
	// cameras pause with an alarm).
	MinFreeMiB int    `koanf:"min_free_mib" yaml:"min_free_mib"`
	OnFull     string `koanf:"on_full" yaml:"on_full"`
	// CapacityInterval is how often the capacity controller runs.
	CapacityInterval time.Duration `koanf:"capacity_interval" yaml:"capacity_interval"`
}

// DefaultFile is the configuration file every command reads when neither
// --config nor KVSEDGE_CONFIG names one and it exists (the Debian package
// installs it), so `kvsedge credentials` finds the box the service runs.
const DefaultFile = "/etc/kvsedge/kvsedge.yaml"

// Default is the built-in configuration.
func Default() Config {
	return Config{
		Listen:    "127.0.0.1:8080",
		DataDir:   "./data",
		Region:    "us-east-1",
		AccountID: "000000000000",
		Auth:      AuthConfig{MaxSkew: 5 * time.Minute},
		Log:       LogConfig{Level: "info", Format: "text"},
		Storage: StorageConfig{CacheMiB: 32, MemtableMiB: 16, SegmentMiB: 64, ReserveMiB: 16, MinFreeMiB: 256, OnFull: "delete_oldest",
			CapacityInterval: 10 * time.Second},
		HTTP:      HTTPConfig{MaxConns: 4096, MaxConnsPerIP: 512, HeaderTimeout: 10 * time.Second},
		WebRTC:    WebRTCConfig{Enabled: true, Loopback: true, MaxViewers: 64, ConnectTimeout: 15 * time.Second, KeepGOP: 10 * time.Minute},
		Demo:      true,
		Profile:   "auto",
		GCPercent: 50,
		Media: MediaConfig{
			// Two 2 s fragments: the one live readers start from and the
			// one before it; HLS playlists and readers further behind read
			// the archive.
			RingSeconds:         4,
			GetMediaIdleTimeout: 50 * time.Second,
			PutMediaIdleClose:   30 * time.Second,
			RetentionInterval:   time.Minute,
			// A day: what a camera records is there the next morning.
			DefaultRetentionHours: 24,
		},
	}
}

// Flags declares the flags every command that reads the configuration
// accepts. flagKeys maps each flag to its configuration key.
var flagKeys = map[string]string{
	"listen":        "listen",
	"data-dir":      "data_dir",
	"data-endpoint": "data_endpoint",
	"region":        "region",
	"account-id":    "account_id",
	"tls-cert":      "tls.cert_file",
	"tls-key":       "tls.key_file",
	"no-auth":       "auth.disabled",
	"log-level":     "log.level",
	"demo":          "demo",
	"profile":       "profile",
}

func Flags(fs *pflag.FlagSet) {
	d := Default()
	fs.String("config", "", "YAML configuration file")
	fs.String("listen", d.Listen, "API listen address (host:port)")
	fs.String("data-dir", d.DataDir, "data directory")
	fs.String("data-endpoint", "", "URL GetDataEndpoint returns (default: derived from --listen)")
	fs.String("region", d.Region, "region used in ARNs")
	fs.String("account-id", d.AccountID, "12-digit account id used in ARNs")
	fs.String("tls-cert", "", "TLS certificate file (PEM); enables HTTPS with --tls-key")
	fs.String("tls-key", "", "TLS private key file (PEM)")
	fs.Bool("no-auth", false, "turn SigV4 authentication off (local development only)")
	fs.String("log-level", d.Log.Level, "log level: debug, info, warn, error")
	fs.Bool("demo", true, "record the built-in demo clip into the stream \"demo\" (default: on without --config)")
	fs.String("profile", d.Profile, "hardware profile: auto, none, or a name from `kvsedge profiles`")
}

// Load layers defaults, the file named by --config, the environment
// and the flags that were set, then validates the result.
func Load(fs *pflag.FlagSet, environ []string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(structs.Provider(Default(), "koanf"), nil); err != nil {
		return nil, fmt.Errorf("loading defaults: %w", err)
	}
	// explicit: keys set by the file, the environment or a flag, which a
	// hardware profile's defaults do not override.
	explicit := map[string]bool{}
	if path, _ := fs.GetString("config"); path != "" {
		fk := koanf.New(".")
		if err := fk.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("config: reading %s: %w", path, err)
		}
		if !fk.Exists("demo") {
			_ = fk.Set("demo", false) // a configured box records only its cameras
		}
		if err := k.Merge(fk); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		for _, key := range fk.Keys() {
			explicit[key] = true
		}
	}
	envProvider := env.Provider(".", env.Opt{ // listKeys: comma-separated
		Prefix: "KVSEDGE_",
		TransformFunc: func(key, value string) (string, any) {
			key = strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, "KVSEDGE_")), "__", ".")
			if listKeys[key] {
				// Lists are comma-separated in the environment.
				var items []string
				for _, v := range strings.Split(value, ",") {
					if v = strings.TrimSpace(v); v != "" {
						items = append(items, v)
					}
				}
				return key, items
			}
			return key, value
		},
		EnvironFunc: func() []string { return environ },
	})
	ek := koanf.New(".")
	if err := ek.Load(envProvider, nil); err != nil {
		return nil, fmt.Errorf("config: reading environment: %w", err)
	}
	if err := k.Merge(ek); err != nil {
		return nil, fmt.Errorf("config: reading environment: %w", err)
	}
	for _, key := range ek.Keys() {
		explicit[key] = true
	}
	flagProvider := posflag.ProviderWithFlag(fs, ".", k, func(f *pflag.Flag) (string, any) {
		key, ok := flagKeys[f.Name]
		if !ok {
			return "", nil
		}
		return key, posflag.FlagVal(fs, f)
	})
	if err := k.Load(flagProvider, nil); err != nil {
		return nil, fmt.Errorf("config: reading flags: %w", err)
	}
	fs.Visit(func(f *pflag.Flag) {
		if key, ok := flagKeys[f.Name]; ok {
			explicit[key] = true
		}
	})
	applied, why, err := applyProfile(k, explicit, hwprofiles.ReadBoard)
	if err != nil {
		return nil, err
	}
	var c Config
	if err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c.ProfileApplied, c.ProfileWhy = applied, why
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// applyProfile sets the chosen hardware profile's budgets on k, for every
// key not set explicitly, and returns the profile's name and why it was
// chosen ("" for none).
func applyProfile(k *koanf.Koanf, explicit map[string]bool, board func() hwprofiles.Board) (string, string, error) {
	name := k.String("profile")
	var p hwprofiles.Profile
	var why string
	switch name {
	case "none":
		return "", "", nil
	case "auto", "":
		b := board()
		p, why = hwprofiles.Detect(b)
		why = "auto: " + why
	default:
		var ok bool
		if p, ok = hwprofiles.ByName(name); !ok {
			return "", "", fmt.Errorf("invalid configuration: profile: %q is not auto, none or one of %s", name, strings.Join(hwprofiles.Names(), ", "))
		}
		why = "configured"
	}
	for key, v := range map[string]any{
		"storage.cache_mib":              p.CacheMiB,
		"storage.memtable_mib":           p.MemtableMiB,
		"storage.sync_window":            p.SyncWindow.String(),
		"media.ring_seconds":             p.RingSeconds,
		"media.memory_budget_mib":        p.MediaMemoryMiB,
		"media.max_cameras":              p.MaxCameras,
		"memory_limit_mib":               p.MemoryLimitMiB,
		"http.max_conns":                 p.MaxConns,
		"cluster.fast_failure_detection": p.FastFailureDetection,
	} {
		if !explicit[key] {
			if err := k.Set(key, v); err != nil {
				return "", "", fmt.Errorf("config: profile %s: %w", p.Name, err)
			}
		}
	}
	return p.Name, why, nil
}

var (
	streamNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)
	accessKeyPattern  = regexp.MustCompile(`^[A-Za-z0-9_]{3,128}$`)
)

// Validate reports every invalid key, one line each, naming the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key string, format string, args ...any) error {
		return fmt.Errorf("invalid configuration: %s: %s", key, fmt.Sprintf(format, args...))
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, bad("listen", "%q is not host:port", c.Listen))
	}
	if c.DataDir == "" {
		errs = append(errs, bad("data_dir", "must not be empty"))
	}
	if c.DataEndpoint != "" {
		u, err := url.Parse(c.DataEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			errs = append(errs, bad("data_endpoint", "%q is not scheme://host[:port] with scheme http or https and no path", c.DataEndpoint))
		}
		c.DataEndpoint = strings.TrimSuffix(c.DataEndpoint, "/")
	}
	if !engine.ValidRegion(c.Region) {
		errs = append(errs, bad("region", "%q is not a region name like us-east-1", c.Region))
	}
	if !engine.ValidAccountID(c.AccountID) {
		errs = append(errs, bad("account_id", "%q is not a 12-digit account id", c.AccountID))
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, bad("access_key_id", "access_key_id and secret_access_key must be set together"))
	}
	if c.AccessKeyID != "" && !accessKeyPattern.MatchString(c.AccessKeyID) {
		errs = append(errs, bad("access_key_id", "%q must be 3–128 letters, digits or underscores", c.AccessKeyID))
	}
	seen := map[string]bool{c.AccessKeyID: c.AccessKeyID != ""}
	for i, cr := range c.Credentials {
		key := fmt.Sprintf("credentials[%d]", i)
		if !accessKeyPattern.MatchString(cr.AccessKeyID) {
			errs = append(errs, bad(key+".access_key_id", "%q must be 3–128 letters, digits or underscores", cr.AccessKeyID))
		}
		if cr.SecretAccessKey == "" {
			errs = append(errs, bad(key+".secret_access_key", "must not be empty"))
		}
		if seen[cr.AccessKeyID] {
			errs = append(errs, bad(key+".access_key_id", "%q is configured twice", cr.AccessKeyID))
		}
		seen[cr.AccessKeyID] = true
	}
	if c.Auth.MaxSkew < time.Second || c.Auth.MaxSkew > time.Hour {
		errs = append(errs, bad("auth.max_skew", "%s must be between 1s and 1h", c.Auth.MaxSkew))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, bad("tls.cert_file", "tls.cert_file and tls.key_file must be set together"))
	}
	for key, f := range map[string]string{"tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, bad(key, "%v", unwrapPathError(err)))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, bad("log.format", "%q is not one of text, json", c.Log.Format))
	}
	if c.Storage.CacheMiB < 1 || c.Storage.CacheMiB > 1<<16 {
		errs = append(errs, bad("storage.cache_mib", "%d is outside 1…65536", c.Storage.CacheMiB))
	}
	if c.Storage.MemtableMiB < 1 || c.Storage.MemtableMiB > 4096 {
		errs = append(errs, bad("storage.memtable_mib", "%d is outside 1…4096", c.Storage.MemtableMiB))
	}
	if c.Media.RingMiBPerStream < 0 || c.Media.RingMiBPerStream > 4096 {
		errs = append(errs, bad("media.ring_mib_per_stream", "%d is outside 0…4096 (deprecated: media.ring_seconds)", c.Media.RingMiBPerStream))
	}
	if c.Media.RingSeconds < 1 || c.Media.RingSeconds > 3600 {
		errs = append(errs, bad("media.ring_seconds", "%d is outside 1…3600", c.Media.RingSeconds))
	}
	if c.Media.MemoryBudgetMiB != 0 && (c.Media.MemoryBudgetMiB < 16 || c.Media.MemoryBudgetMiB > 1<<20) {
		errs = append(errs, bad("media.memory_budget_mib", "%d is outside 16…1048576 (0: derived from memory_limit_mib)", c.Media.MemoryBudgetMiB))
	}
	if c.Media.GetMediaIdleTimeout < 100*time.Millisecond || c.Media.GetMediaIdleTimeout > time.Hour {
		errs = append(errs, bad("media.get_media_idle_timeout", "%v is outside 100ms…1h", c.Media.GetMediaIdleTimeout))
	}
	if c.Media.PutMediaIdleClose < time.Second || c.Media.PutMediaIdleClose > time.Hour {
		errs = append(errs, bad("media.put_media_idle_close", "%v is outside 1s…1h", c.Media.PutMediaIdleClose))
	}
	if c.Storage.SegmentMiB < 1 || c.Storage.SegmentMiB > 1024 {
		errs = append(errs, bad("storage.segment_mib", "%d is outside 1…1024", c.Storage.SegmentMiB))
	}
	if c.HTTP.MaxConns < 1 || c.HTTP.MaxConns > 1<<20 {
		errs = append(errs, bad("http.max_conns", "%d is outside 1…1048576", c.HTTP.MaxConns))
	}
	if c.HTTP.MaxConnsPerIP < 1 || c.HTTP.MaxConnsPerIP > c.HTTP.MaxConns {
		errs = append(errs, bad("http.max_conns_per_ip", "%d is outside 1…http.max_conns (%d)", c.HTTP.MaxConnsPerIP, c.HTTP.MaxConns))
	}
	if c.WebRTC.UDPPort < 0 || c.WebRTC.UDPPort > 65535 {
		errs = append(errs, bad("webrtc.udp_port", "%d is outside 0…65535", c.WebRTC.UDPPort))
	}
	for i, ip := range c.WebRTC.PublicIPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, bad(fmt.Sprintf("webrtc.public_ips[%d]", i), "%q is not an IP address", ip))
		}
	}
	if c.WebRTC.MaxViewers < 1 || c.WebRTC.MaxViewers > 100000 {
		errs = append(errs, bad("webrtc.max_viewers", "%d is outside 1…100000", c.WebRTC.MaxViewers))
	}
	if c.WebRTC.KeepGOP == 0 || c.WebRTC.KeepGOP > 24*time.Hour {
		errs = append(errs, bad("webrtc.keep_gop", "%v is not a duration up to 24h (-1s: always)", c.WebRTC.KeepGOP))
	}
	if c.WebRTC.ConnectTimeout < time.Second || c.WebRTC.ConnectTimeout > 5*time.Minute {
		errs = append(errs, bad("webrtc.connect_timeout", "%v is outside 1s…5m", c.WebRTC.ConnectTimeout))
	}
	if c.HTTP.HeaderTimeout < 100*time.Millisecond || c.HTTP.HeaderTimeout > time.Hour {
		errs = append(errs, bad("http.header_timeout", "%v is outside 100ms…1h", c.HTTP.HeaderTimeout))
	}
	if u := c.Upstream; u.Endpoint != "" {
		if pu, err := url.Parse(u.Endpoint); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			errs = append(errs, bad("upstream.endpoint", "%q is not an http(s) URL", u.Endpoint))
		}
	}
	if c.Upstream.RateMbps < 0 {
		errs = append(errs, bad("upstream.rate_mbps", "%v is negative", c.Upstream.RateMbps))
	}
	if (c.Upstream.AccessKeyID == "") != (c.Upstream.SecretAccessKey == "") {
		errs = append(errs, bad("upstream.access_key_id", "give both access_key_id and secret_access_key, or neither (the AWS default chain)"))
	}
	if c.Storage.ReserveMiB < 0 || c.Storage.ReserveMiB > 4096 {
		errs = append(errs, bad("storage.reserve_mib", "%d is outside 0…4096", c.Storage.ReserveMiB))
	}
	if c.Storage.MinFreeMiB < 0 {
		errs = append(errs, bad("storage.min_free_mib", "%d is negative", c.Storage.MinFreeMiB))
	}
	if c.Storage.OnFull != "delete_oldest" && c.Storage.OnFull != "refuse_new" {
		errs = append(errs, bad("storage.on_full", "%q is not delete_oldest or refuse_new", c.Storage.OnFull))
	}
	if c.Storage.CapacityInterval < time.Second || c.Storage.CapacityInterval > time.Hour {
		errs = append(errs, bad("storage.capacity_interval", "%v is outside 1s…1h", c.Storage.CapacityInterval))
	}
	if c.Storage.SyncWindow < 0 || c.Storage.SyncWindow > 5*time.Second {
		errs = append(errs, bad("storage.sync_window", "%v is outside 0…5s", c.Storage.SyncWindow))
	}
	if c.Media.MaxCameras < 0 {
		errs = append(errs, bad("media.max_cameras", "%d is negative", c.Media.MaxCameras))
	}
	if c.GCPercent < 10 || c.GCPercent > 1000 {
		errs = append(errs, bad("gc_percent", "%d is outside 10…1000", c.GCPercent))
	}
	if c.MemoryLimitMiB < 0 {
		errs = append(errs, bad("memory_limit_mib", "%d is negative", c.MemoryLimitMiB))
	}
	if c.Media.DefaultRetentionHours < 0 || c.Media.DefaultRetentionHours > 87600 {
		errs = append(errs, bad("media.default_retention_hours", "%d is outside 0…87600", c.Media.DefaultRetentionHours))
	}
	if c.Media.RetentionInterval < time.Second || c.Media.RetentionInterval > 24*time.Hour {
		errs = append(errs, bad("media.retention_interval", "%v is outside 1s…24h", c.Media.RetentionInterval))
	}
	if c.Cluster.Bind != "" {
		if _, _, err := net.SplitHostPort(c.Cluster.Bind); err != nil {
			errs = append(errs, bad("cluster.bind", "%q is not host:port", c.Cluster.Bind))
		}
		if c.Cluster.Key == "" {
			errs = append(errs, bad("cluster.key", "is required with cluster.bind: it encrypts gossip and authenticates replication between boxes (make one with: head -c 32 /dev/urandom | base64)"))
		}
	}
	if c.Cluster.DropCopiesAfter < 0 {
		errs = append(errs, bad("cluster.drop_copies_after", "%s is negative", c.Cluster.DropCopiesAfter))
	}
	if c.Cluster.ReplicationFactor < 0 || c.Cluster.ReplicationFactor > 16 {
		errs = append(errs, bad("cluster.replication_factor", "%d is outside 1…16", c.Cluster.ReplicationFactor))
	}
	if c.Cluster.Key != "" {
		k, err := base64.StdEncoding.DecodeString(c.Cluster.Key)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			errs = append(errs, bad("cluster.key", "must be base64 of 16, 24 or 32 bytes"))
		}
	}
	if d := c.Cluster.Durability; d != "" && d != "replicated" && d != "local" {
		errs = append(errs, bad("cluster.durability", "%q is neither replicated nor local", d))
	}
	if c.Cluster.AckTimeout < 0 || c.Cluster.AckTimeout > time.Minute {
		errs = append(errs, bad("cluster.ack_timeout", "%v is outside 0…1m", c.Cluster.AckTimeout))
	}
	if c.Cluster.NodeID < 0 || c.Cluster.NodeID > 65535 {
		errs = append(errs, bad("cluster.node_id", "%d is outside 0…65535", c.Cluster.NodeID))
	}
	streams := map[string]bool{}
	for i, cam := range c.Cameras {
		key := fmt.Sprintf("cameras[%d]", i)
		if cam.UploadEnabled() && !c.Upstream.Enabled() {
			errs = append(errs, bad(key+".upload", "needs the upstream section (upstream.region or upstream.endpoint)"))
		}
		if u := cam.Upload; u != nil && u.Schedule != "" && u.DurationSeconds <= 0 {
			errs = append(errs, bad(key+".upload.duration_seconds", "a schedule needs a positive window length"))
		}
		if !streamNamePattern.MatchString(cam.Stream) || len(cam.Stream) > 256 {
			errs = append(errs, bad(key+".stream", "%q is not a stream name ([a-zA-Z0-9_.-], 1–256)", cam.Stream))
		}
		if streams[cam.Stream] || (c.Demo && cam.Stream == "demo") {
			errs = append(errs, bad(key+".stream", "%q has another camera", cam.Stream))
		}
		streams[cam.Stream] = true
		if _, err := CameraSource(cam); err != nil {
			errs = append(errs, bad(key+".url", "%v", err))
		}
		if cam.RetentionHours != nil && (*cam.RetentionHours < 0 || *cam.RetentionHours > 87600) {
			errs = append(errs, bad(key+".retention_hours", "%d is outside 0…87600", *cam.RetentionHours))
		}
		if cam.FragmentDuration != 0 && (cam.FragmentDuration < time.Second || cam.FragmentDuration > 10*time.Second) {
			errs = append(errs, bad(key+".fragment_duration", "%v is outside 1s…10s", cam.FragmentDuration))
		}
	}
	return errors.Join(errs...)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

// AllCredentials returns every configured key pair.
func (c *Config) AllCredentials() []Credential {
	out := append([]Credential(nil), c.Credentials...)
	if c.AccessKeyID != "" {
		out = append(out, Credential{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey})
	}
	return out
}

// CameraRetentionHours is the retention of the stream cam creates: its
// retention_hours, else media.default_retention_hours.
func (c *Config) CameraRetentionHours(cam CameraFileConfig) int {
	if cam.RetentionHours != nil {
		return *cam.RetentionHours
	}
	return c.Media.DefaultRetentionHours
}

// Redacted returns a copy safe to print: secrets replaced.
func (c *Config) Redacted() Config {
	r := *c
	const mask = "<redacted>"
	if r.SecretAccessKey != "" {
		r.SecretAccessKey = mask
	}
	r.Credentials = make([]Credential, len(c.Credentials))
	for i, cr := range c.Credentials {
		r.Credentials[i] = Credential{AccessKeyID: cr.AccessKeyID, SecretAccessKey: mask}
	}
	r.Cameras = make([]CameraFileConfig, len(c.Cameras))
	for i, cam := range c.Cameras {
		cam.URL = ingest.Redact(cam.URL)
		r.Cameras[i] = cam
	}
	if r.Cluster.Key != "" {
		r.Cluster.Key = mask
	}
	if r.Upstream.SecretAccessKey != "" {
		r.Upstream.SecretAccessKey = mask
	}
	if r.Upstream.SessionToken != "" {
		r.Upstream.SessionToken = mask
	}
	if len(c.Secrets) > 0 {
		r.Secrets = make(map[string]string, len(c.Secrets))
		for k := range c.Secrets {
			r.Secrets[k] = mask
		}
	}
	return r
}
