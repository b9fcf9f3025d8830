// Package app is kvsedge's composition root: the appliance in one process.
//
// Open builds it from a validated configuration, in this order, recording
// for each step how to undo it:
//
//  0. the data directory: created private (0700, umask 077) and locked, so
//     a second server on it is refused with the first one's PID;
//  1. credentials (configured, or generated once into the data directory)
//     and the Go memory limit of the hardware profile;
//  2. the engine over its store (engine.Open opens lsm);
//  3. the API listener, TLS and the authenticator;
//  4. the cluster member and its replication (with cluster.bind);
//  5. the camera manager, the demo camera, the file's cameras and the
//     edge agent (package ingest);
//  6. the HTTP server (package serve) with /metrics and /readyz;
//  7. the background loops: edge agent, placement, retention, capacity;
//     the configuration-file watcher (started before the server, whose
//     /readyz reports a file that could not be applied).
//
// Run serves the API until its context ends, then shuts the HTTP server
// down. Close undoes Open's steps in reverse order — loops stopped and
// waited for, cameras stopped, cluster left, listener closed, store
// closed last — so every user of the engine is gone before its store
// closes. The shutdown order is the list of steps, not an accident of
// deferred calls.
//
// Files: app.go (App; the start-up lines that say where the console is,
// how to sign in and the aws CLI's endpoint), cameras.go (the
// configuration file's cameras, with media.default_retention_hours, and its
// watcher), datadir.go (the data directory's lock), metrics.go (the
// Prometheus collector), metrics_live.go (the live tap's and WebRTC's
// metrics), disk.go (free space).
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsedge/kvsedge/cluster"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/tlsca"
	"github.com/kvsedge/kvsedge/internal/uplink"
	"github.com/kvsedge/kvsedge/serve"
)

// Options are what Open needs besides the configuration.
type Options struct {
	// Config is the loaded, validated configuration. Required.
	Config *config.Config
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Version is logged at start-up.
	Version string
	// ConfigFile, when set, is watched; on a change Reload loads the whole
	// configuration again and the cameras and secrets it names are applied.
	ConfigFile string
	Reload     func() (*config.Config, error)
}

// App is a running appliance. Call Close after Run has returned (or
// instead of Run): Close removes what the HTTP handlers use.
type App struct {
	cfg      *config.Config
	log      *slog.Logger
	version  string
	eng      *engine.Engine
	ln       net.Listener
	srv      *serve.Server
	cams     *ingest.Manager
	peers    *cluster.Cluster // nil without cluster.bind
	endpoint string
	tls      bool
	watch    *configWatch     // nil without a configuration file
	uploader *uplink.Uploader // nil without an upstream

	// steps undo Open, in Open's order; Close runs them backwards.
	steps []step
	// background loops (step 7) run under bg and are counted by workers.
	bg      context.CancelFunc
	workers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// step is one thing Open did and how to undo it.
type step struct {
	name string
	undo func() error
}

func (a *App) did(name string, undo func() error) { a.steps = append(a.steps, step{name, undo}) }

// Open builds the appliance. On error, everything it built is undone.
func Open(o Options) (*App, error) {
	if o.Config == nil {
		return nil, errors.New("app: no configuration")
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &App{cfg: o.Config, log: o.Logger, version: o.Version}
	if err := a.open(o); err != nil {
		_ = a.Close()
		return nil, err
	}
	return a, nil
}

func (a *App) open(o Options) error {
	cfg, log := a.cfg, a.log
	// 0. The data directory, private and ours alone.
	release, err := ClaimDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	a.did("data directory", release)
	// 1. Credentials and memory.
	creds, generated, err := config.EffectiveCredentials(cfg)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if cfg.ProfileApplied != "" {
		log.Info("hardware profile", "profile", cfg.ProfileApplied, "why", cfg.ProfileWhy, "cache_mib", cfg.Storage.CacheMiB,
			"memtable_mib", cfg.Storage.MemtableMiB, "ring_seconds", cfg.Media.RingSeconds, "media_memory_mib", cfg.MediaBudgetBytes()>>20,
			"max_cameras", cfg.Media.MaxCameras, "sync_window", cfg.Storage.SyncWindow.String(), "memory_limit_mib", cfg.MemoryLimitMiB)
	}
	if cfg.Media.RingMiBPerStream > 0 {
		log.Warn("media.ring_mib_per_stream is deprecated: the hot ring is sized in seconds (media.ring_seconds) within the media memory budget "+
			"(media.memory_budget_mib); it still caps each stream's ring", "ring_mib_per_stream", cfg.Media.RingMiBPerStream, "ring_seconds", cfg.Media.RingSeconds)
	}
	if os.Getenv("GOGC") == "" {
		prev := debug.SetGCPercent(cfg.GCPercent)
		a.did("gc percent", func() error { debug.SetGCPercent(prev); return nil })
	}
	if cfg.MemoryLimitMiB > 0 && os.Getenv("GOMEMLIMIT") == "" {
		prev := debug.SetMemoryLimit(int64(cfg.MemoryLimitMiB) << 20)
		a.did("memory limit", func() error { debug.SetMemoryLimit(prev); return nil })
	}

	// 2. Engine and store.
	nodeName := cfg.Cluster.NodeName
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}
	nodeID := uint16(cfg.Cluster.NodeID)
	if nodeID == 0 && cfg.Cluster.Bind != "" {
		nodeID = cluster.NodeID(nodeName)
	}
	dataDir := cfg.DataDir
	store := engine.StoreOptions{
		Dir:           dataDir,
		CacheBytes:    int64(cfg.Storage.CacheMiB) << 20,
		MemTableBytes: uint64(cfg.Storage.MemtableMiB) << 20,
		SyncWindow:    cfg.Storage.SyncWindow,
		SegmentBytes:  int64(cfg.Storage.SegmentMiB) << 20,
		ReserveBytes:  reserveBytes(cfg.Storage.ReserveMiB),
	}
	eopts := engine.Options{
		Store:              store,
		NodeID:             nodeID,
		Region:             cfg.Region,
		AccountID:          cfg.AccountID,
		RingDuration:       time.Duration(cfg.Media.RingSeconds) * time.Second,
		LiveKeepGOP:        cfg.WebRTC.KeepGOP,
		RingBytesPerStream: cfg.Media.RingMiBPerStream << 20,
		Media:              engine.MediaOptions{BudgetBytes: cfg.MediaBudgetBytes()},
		Capacity: engine.CapacityOptions{
			DiskStat:     func() (uint64, uint64, error) { return diskSpace(dataDir) },
			MinFreeBytes: uint64(cfg.Storage.MinFreeMiB) << 20,
			Strategy:     map[string]string{"delete_oldest": engine.StrategyDeleteOldest, "refuse_new": engine.StrategyDenyNew}[cfg.Storage.OnFull],
		},
		Logger: log,
	}
	a.eng, err = engine.Open(eopts)
	if errors.Is(err, engine.ErrStoreDamaged) && !cfg.Storage.NoAutoRepair {
		// A box that cannot open its index would fail at every start
		// (a crash loop under systemd): rebuild it from the segments,
		// as kvsedge repair does, keeping the old one aside.
		log.Error("the index is damaged and cannot be opened: rebuilding it from the media segments (the old index is kept aside)", "err", err)
		rep, rerr := engine.RepairStore(store, log)
		if rerr != nil {
			return fmt.Errorf("repairing the damaged index: %w (after: %w)", rerr, err)
		}
		log.Error("the index was rebuilt", "streams", rep.Streams, "fragments", rep.Fragments, "from_old_index", rep.FromOldIndex,
			"from_segments", rep.FromSegments, "old_index", rep.OldIndex, "set_aside", len(rep.Aside), "notes", strings.Join(rep.Notes, "; "))
		a.eng, err = engine.Open(eopts)
	}
	if err != nil {
		return err
	}
	a.did("store", a.eng.Close)

	// 3. Listener, TLS, authentication.
	a.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a.did("listener", func() error {
		if err := a.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	maxConns := cfg.HTTP.MaxConns
	if limit, ok := fileLimit(); ok && uint64(maxConns) > limit*3/4 {
		// Connections must run out before file descriptors do: the store,
		// its segments and the cameras need some, and a full descriptor
		// table makes accepts fail (retried, but connections then queue).
		maxConns = int(max(limit*3/4, 16))
		log.Warn("http.max_conns lowered to stay within the process's file limit", "max_conns", maxConns,
			"configured", cfg.HTTP.MaxConns, "file_limit", limit)
	}
	opts := serve.Options{
		Logger:              log,
		DataEndpoint:        cfg.DataEndpoint,
		GetMediaIdleTimeout: cfg.Media.GetMediaIdleTimeout,
		PutMediaIdleClose:   cfg.Media.PutMediaIdleClose,
		HeaderTimeout:       cfg.HTTP.HeaderTimeout,
		MaxConns:            maxConns,
		MaxConnsPerIP:       min(cfg.HTTP.MaxConnsPerIP, maxConns),
		WebRTC: serve.WebRTCOptions{Disabled: !cfg.WebRTC.Enabled, UDPPort: cfg.WebRTC.UDPPort, PublicIPs: cfg.WebRTC.PublicIPs,
			NoLoopback: !cfg.WebRTC.Loopback, MaxViewers: cfg.WebRTC.MaxViewers, ConnectTimeout: cfg.WebRTC.ConnectTimeout},
	}
	scheme := "http"
	if cfg.TLS.CertFile != "" {
		tc, err := tlsca.LoadServerTLSConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		opts.TLS, scheme, a.tls = tc, "https", true
	}
	if opts.DataEndpoint == "" {
		opts.DataEndpoint = deriveEndpoint(scheme, a.ln.Addr().(*net.TCPAddr))
	}
	a.endpoint = opts.DataEndpoint
	if cfg.Auth.Disabled {
		log.Warn("AUTHENTICATION IS OFF: every request is accepted unsigned; use only for local development")
	} else {
		keys := make(map[string]string, len(creds))
		for _, c := range creds {
			keys[c.AccessKeyID] = c.SecretAccessKey
		}
		opts.Auth = serve.NewSigV4Auth(keys, cfg.Auth.MaxSkew)
		if generated {
			log.Info("no credentials configured: using the key pair generated in the data directory; `kvsedge credentials` prints it",
				"access_key_id", creds[0].AccessKeyID, "file", filepath.Join(dataDir, config.GeneratedCredentialsFile))
		}
	}

	a.logWhereToGo(o.ConfigFile)

	// 4. Cluster.
	if cfg.Cluster.Bind != "" {
		peerTLS, err := peerTLSConfig(cfg.Cluster.CAFile)
		if err != nil {
			return err
		}
		key := cfg.Cluster.DecodedKey()
		a.peers, err = cluster.Start(cluster.Options{
			NodeName: nodeName, Bind: cfg.Cluster.Bind, Advertise: cfg.Cluster.Advertise, Seeds: cfg.Cluster.Seeds, Key: key,
			APIURL: opts.DataEndpoint, FreeBytes: func() uint64 { return freeBytes(dataDir) }, Logger: log,
			FastFailureDetection: cfg.Cluster.FastFailureDetection, NodeID: nodeID,
			SnapshotPath:          filepath.Join(dataDir, "serf.snapshot"),
			CredentialFingerprint: credFingerprint(key, creds, cfg.Auth.Disabled),
			MaxCameras:            cfg.Media.MaxCameras,
		})
		if err != nil {
			return err
		}
		a.did("cluster", a.peers.Close)
		a.peers.StartReplication(cluster.ReplicationOptions{Engine: a.eng, Key: cluster.PeerKey(key), TLS: peerTLS, Factor: cfg.Cluster.ReplicationFactor,
			Durability: cfg.Cluster.Durability, AckTimeout: cfg.Cluster.AckTimeout, DropAfter: cfg.Cluster.DropCopiesAfter})
		// PERSISTED waits for a replica (replicated durability); the
		// gate is removed before the cluster closes.
		a.eng.SetAckGate(a.peers.AckGate())
		a.did("ack gate", func() error { a.eng.SetAckGate(nil); return nil })
		opts.Cluster = a.peers
		opts.SessionKey = cluster.SessionKey(key) // session tokens open on every box
		log.Info("cluster member", "node", nodeName, "node_id", nodeID, "gossip", cfg.Cluster.Bind, "seeds", len(cfg.Cluster.Seeds))
	}

	// 5. Cameras.
	a.cams = ingest.NewManager(a.eng, log)
	a.cams.KeepHistory(filepath.Join(dataDir, "camera-history.json")) // the console's outages survive a restart
	a.did("cameras", func() error { a.cams.Close(); return nil })
	if err := a.cams.SetMaxCameras(cfg.Media.MaxCameras); err != nil {
		return err
	}
	if a.peers != nil {
		// Each camera is recorded by its stream's home node only; the
		// others hold it in STANDBY and take over when the home dies.
		a.cams.SetGate(a.peers.Owns)
		// Cameras are placed on boxes with room (media.max_cameras).
		a.cams.OnCameras(a.peers.SetCameraStreams)
	}
	opts.Cameras = a.cams.States
	opts.CameraChanges = a.cams.StateChanges
	if cfg.Demo {
		src, err := ingest.NewDemoSource(ingest.DemoClip, ingest.DemoFPS)
		if err != nil {
			return fmt.Errorf("demo camera: %w", err)
		}
		if err := a.cams.Apply(ingest.GroupDemo, []ingest.CameraConfig{{Stream: "demo", Source: src, Key: "demo", RetentionHours: 1,
			Tags: map[string]string{"kvsedge:demo": "true"}}}); err != nil {
			// Its stream could not be made (a full disk): the box serves
			// what it has; the camera starts with the next reopen.
			log.Warn("demo camera not started", "err", err)
		}
		log.Info("demo camera recording into stream \"demo\" (turn off with --demo=false or demo: false)")
	}
	cc, err := fileCameras(cfg)
	if err != nil {
		return err
	}
	if err := a.cams.Apply(ingest.GroupFile, cc); err != nil {
		log.Warn("some cameras of the configuration file are not started", "err", err)
	}
	edge := ingest.NewEdgeAgent(a.eng, a.cams, cfg.Secrets, log)

	// The uploader to the upstream KVS (started with the background loops).
	files := &uploadSet{}
	files.set(cfg)
	if cfg.Upstream.Enabled() {
		a.uploader, err = newUploader(a.eng, cfg, uploadStreams(a.eng, files), a)
		if err != nil {
			return err
		}
		opts.Uploads = a.uploader.Status
		log.Info("uploading to the upstream Kinesis Video Streams", "endpoint", cfg.Upstream.Endpoint, "region", cfg.Upstream.Region,
			"rate_mbps", cfg.Upstream.RateMbps)
	}

	// The configuration file's watcher (its problems show in /readyz).
	opts.Readiness = map[string]serve.ReadinessCheck{}
	opts.Alarms = map[string]serve.ReadinessCheck{"store": a.eng.StoreAlarm}
	if o.ConfigFile != "" && o.Reload != nil {
		w, stop, err := watchCameraFile(o.ConfigFile, o.Reload, a.cams, edge, log)
		if err != nil {
			return fmt.Errorf("watching %s: %w", o.ConfigFile, err)
		}
		w.onApply = files.set
		a.did("configuration watcher", func() error { stop(); return nil })
		opts.Readiness["config"] = w.Problem
		a.watch = w
	}

	// 6. HTTP server.
	collector := &boxCollector{eng: a.eng, cams: a.cams, peers: a.peers}
	if a.uploader != nil {
		collector.uploads = a.uploader.Status
	}
	reg := newMetricsRegistry(collector)
	reg.MustRegister(&liveCollector{eng: a.eng, srv: func() *serve.Server { return a.srv }})
	opts.Metrics = reg
	if a.peers != nil {
		peers := a.peers
		opts.Readiness["cluster"] = func() string {
			if why := peers.KeptOut(); why != "" {
				return why
			}
			if !peers.HasQuorum() {
				return "this box has not joined the cluster, or sees fewer than half of its members"
			}
			return ""
		}
		opts.Alarms["durability"] = peers.DurabilityAlarm
	}
	a.srv, err = serve.New(a.eng, opts)
	if err != nil {
		return err
	}
	collector.conns = a.srv.ConnStats

	// 7. Background loops, stopped and waited for before the cameras,
	// cluster and store they use close.
	bgCtx, cancel := context.WithCancel(context.Background())
	a.bg = cancel
	a.did("background loops", func() error { cancel(); a.workers.Wait(); return nil })
	a.goBackground(func() { edge.Run(bgCtx) })
	if a.uploader != nil {
		a.goBackground(func() { a.uploader.Run(bgCtx) })
	}
	if a.peers != nil {
		a.goBackground(func() { followPlacement(bgCtx, a.peers, a.cams, log) })
	}
	a.goBackground(func() { a.eng.RunRetention(bgCtx, cfg.Media.RetentionInterval) })
	a.goBackground(func() { a.eng.RunCapacity(bgCtx, cfg.Storage.CapacityInterval) })

	return nil
}

// logWhereToGo logs, among the first lines, where a person goes next: the
// console's URL and how to sign in, and the aws CLI's endpoint.
func (a *App) logWhereToGo(configFile string) {
	creds := "kvsedge credentials"
	switch {
	case configFile == config.DefaultFile:
		creds = "sudo kvsedge credentials" // the data directory is the service user's
	case configFile != "":
		abs, _ := filepath.Abs(configFile)
		creds += " --config " + abs
		if d := config.Default().DataDir; a.cfg.DataDir != d {
			dir, _ := filepath.Abs(a.cfg.DataDir)
			creds += " --data-dir " + dir
		}
	case a.cfg.DataDir != config.Default().DataDir:
		dir, _ := filepath.Abs(a.cfg.DataDir)
		creds += " --data-dir " + dir
	}
	signIn := "sign in with the key pair `" + creds + "` prints"
	if a.cfg.Auth.Disabled {
		signIn = "authentication is off: any key pair signs in"
	}
	a.log.Info("console: open "+a.endpoint+"/ in a browser; "+signIn, "console", a.endpoint+"/")
	a.log.Info(`aws CLI: eval "$(`+creds+`)"; aws --endpoint-url `+a.endpoint+" kinesisvideo list-streams", "endpoint", a.endpoint)
}

func (a *App) goBackground(f func()) {
	a.workers.Add(1)
	go func() { defer a.workers.Done(); f() }()
}

// Endpoint is the URL clients use (GetDataEndpoint's answer).
func (a *App) Endpoint() string { return a.endpoint }

// Addr is the API listener's address.
func (a *App) Addr() net.Addr { return a.ln.Addr() }

// Engine is the app's engine (for in-process tests and tools).
func (a *App) Engine() *engine.Engine { return a.eng }

// configWatch is the configuration file's watcher (nil without one).
func (a *App) configWatch() *configWatch { return a.watch }

// Cameras is the app's camera manager.
func (a *App) Cameras() *ingest.Manager { return a.cams }

// Run serves the API until ctx ends, then shuts the HTTP server down
// (connections get up to 5 s to finish). A serving error other than the
// shutdown is returned, and ErrReopen when a store opened read-only on a
// full disk can be written again.
func (a *App) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- a.srv.Serve(a.ln) }()
	a.log.Info("kvsedge serving", "version", a.version, "listen", a.ln.Addr().String(), "endpoint", a.endpoint,
		"data_dir", a.cfg.DataDir, "tls", a.tls, "auth", !a.cfg.Auth.Disabled)
	var reopen <-chan time.Time
	if a.eng.StoreReadOnly() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		reopen = t.C
	}
wait:
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serving: %w", err)
		case <-ctx.Done():
			break wait
		case <-reopen:
			if a.eng.StoreCanReopen() {
				a.log.Info("the store can be written again: reopening it read-write")
				a.shutdownServer()
				<-errc
				return ErrReopen
			}
		}
	}
	a.log.Info("shutting down")
	a.shutdownServer()
	<-errc
	return nil
}

// ErrReopen: Run ended because the app must be closed and opened again
// (its store was opened read-only on a full disk, and the disk has room
// now). The caller calls Close, then Open with the same options.
var ErrReopen = errors.New("app: reopen to write: the disk has room again")

// shutdownServer stops the HTTP server (connections get up to 5 s).
func (a *App) shutdownServer() {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.log.Warn("shutdown", "err", err)
	}
}

// Close undoes Open, last step first, and reports every step that failed.
func (a *App) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		for i := len(a.steps) - 1; i >= 0; i-- {
			if err := a.steps[i].undo(); err != nil {
				errs = append(errs, fmt.Errorf("closing %s: %w", a.steps[i].name, err))
			}
		}
		a.steps = nil
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

// deriveEndpoint turns the bound address into the URL clients should use:
// an unspecified host (0.0.0.0, ::) becomes this box's first non-loopback
// address, so GetDataEndpoint answers something a camera on the LAN can
// reach.
func deriveEndpoint(scheme string, addr *net.TCPAddr) string {
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = primaryAddress()
	}
	return scheme + "://" + net.JoinHostPort(host, strconv.Itoa(addr.Port))
}

func primaryAddress() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// followPlacement re-applies the camera gate when the membership changes,
// and every second (a node that has just started waits to settle).
func followPlacement(ctx context.Context, c *cluster.Cluster, cams *ingest.Manager, log *slog.Logger) {
	changes := c.Subscribe()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-t.C:
		}
		if err := cams.Reevaluate(); err != nil {
			log.Warn("starting cameras", "err", err)
		}
	}
}

// peerTLSConfig trusts caFile (PEM) for peers' HTTPS, or the system roots.
func peerTLSConfig(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster.ca_file: %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// reserveBytes is storage.reserve_mib for the store: 0 MiB is none (-1).
func reserveBytes(mib int) int64 {
	if mib == 0 {
		return -1
	}
	return int64(mib) << 20
}

// credFingerprint is the fingerprint of the box's key set that the cluster
// compares ("auth-disabled" when any key is accepted).
func credFingerprint(key []byte, creds []config.Credential, authDisabled bool) string {
	if authDisabled {
		return "auth-disabled"
	}
	return config.CredentialFingerprint(key, creds)
}
