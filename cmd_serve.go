package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/kvsedge/kvsedge/cluster"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/tlsca"
	"github.com/kvsedge/kvsedge/serve"
	"github.com/spf13/pflag"
)

func runServe(args []string, _, stderr io.Writer) error {
	cfg, fs, err := parseConfig("serve", args, stderr, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	slog.SetDefault(log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveUntil(ctx, cfg, fs, log)
}

// serveUntil runs the appliance until ctx ends. fs holds the parsed flags,
// to reload the configuration file when it changes.
func serveUntil(ctx context.Context, cfg *Config, fs *pflag.FlagSet, log *slog.Logger) error {
	creds, generated, err := effectiveCredentials(cfg)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if cfg.profileApplied != "" {
		log.Info("hardware profile", "profile", cfg.profileApplied, "why", cfg.profileWhy, "cache_mib", cfg.Storage.CacheMiB,
			"memtable_mib", cfg.Storage.MemtableMiB, "ring_mib_per_stream", cfg.Media.RingMiBPerStream, "max_cameras", cfg.Media.MaxCameras,
			"sync_window", cfg.Storage.SyncWindow.String(), "memory_limit_mib", cfg.MemoryLimitMiB)
	}
	if cfg.MemoryLimitMiB > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMiB) << 20)
	}
	nodeName := cfg.Cluster.NodeName
	if nodeName == "" {
		nodeName, _ = os.Hostname()
	}
	nodeID := uint16(cfg.Cluster.NodeID)
	if nodeID == 0 && cfg.Cluster.Bind != "" {
		nodeID = cluster.NodeID(nodeName)
	}
	eng, err := engine.Open(engine.Options{
		Store: engine.StoreOptions{
			Dir:           cfg.DataDir,
			CacheBytes:    int64(cfg.Storage.CacheMiB) << 20,
			MemTableBytes: uint64(cfg.Storage.MemtableMiB) << 20,
			SyncWindow:    cfg.Storage.SyncWindow,
			SegmentBytes:  int64(cfg.Storage.SegmentMiB) << 20,
		},
		NodeID:             nodeID,
		Region:             cfg.Region,
		AccountID:          cfg.AccountID,
		RingBytesPerStream: cfg.Media.RingMiBPerStream << 20,
		Capacity: engine.CapacityOptions{
			DiskStat:     func() (uint64, uint64, error) { return diskSpace(cfg.DataDir) },
			MinFreeBytes: uint64(cfg.Storage.MinFreeMiB) << 20,
			Strategy:     map[string]string{"delete_oldest": engine.StrategyDeleteOldest, "refuse_new": engine.StrategyDenyNew}[cfg.Storage.OnFull],
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	defer eng.Close()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	opts := serve.Options{
		Logger:              log,
		DataEndpoint:        cfg.DataEndpoint,
		GetMediaIdleTimeout: cfg.Media.GetMediaIdleTimeout,
		PutMediaIdleClose:   cfg.Media.PutMediaIdleClose,
	}
	scheme := "http"
	if cfg.TLS.CertFile != "" {
		tc, err := tlsca.LoadServerTLSConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		opts.TLS, scheme = tc, "https"
	}
	if opts.DataEndpoint == "" {
		opts.DataEndpoint = deriveEndpoint(scheme, ln.Addr().(*net.TCPAddr))
	}
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
				"access_key_id", creds[0].AccessKeyID, "file", cfg.DataDir+"/"+generatedCredentialsFile)
		}
	}
	var peers *cluster.Cluster
	if cfg.Cluster.Bind != "" {
		key, _ := base64.StdEncoding.DecodeString(cfg.Cluster.Key) // validated
		peerTLS, err := peerTLSConfig(cfg.Cluster.CAFile)
		if err != nil {
			return err
		}
		c, err := cluster.Start(cluster.Options{
			NodeName: nodeName, Bind: cfg.Cluster.Bind, Advertise: cfg.Cluster.Advertise, Seeds: cfg.Cluster.Seeds, Key: key,
			APIURL: opts.DataEndpoint, FreeBytes: func() uint64 { return freeBytes(cfg.DataDir) }, Logger: log,
			FastFailureDetection: cfg.Cluster.FastFailureDetection, NodeID: nodeID,
			SnapshotPath: filepath.Join(cfg.DataDir, "serf.snapshot"),
		})
		if err != nil {
			return err
		}
		defer c.Close()
		c.StartReplication(cluster.ReplicationOptions{Engine: eng, Key: cluster.PeerKey(key), TLS: peerTLS, Factor: cfg.Cluster.ReplicationFactor})
		opts.Cluster, peers = c, c
		log.Info("cluster member", "node", nodeName, "node_id", nodeID, "gossip", cfg.Cluster.Bind, "seeds", len(cfg.Cluster.Seeds))
	}
	cams := ingest.NewManager(eng, log)
	defer cams.Close()
	if err := cams.SetMaxCameras(cfg.Media.MaxCameras); err != nil {
		return err
	}
	if peers != nil {
		// Each camera is recorded by its stream's home node only; the
		// others hold it in STANDBY and take over when the home dies.
		cams.SetGate(peers.Owns)
	}
	opts.Cameras = func() any { return cams.States() }
	if cfg.Demo {
		src, err := ingest.NewDemoSource(demoClip, demoFPS)
		if err != nil {
			return fmt.Errorf("demo camera: %w", err)
		}
		if err := cams.Apply(ingest.GroupDemo, []ingest.CameraConfig{{Stream: "demo", Source: src, Key: "demo", RetentionHours: 1,
			Tags: map[string]string{"kvsedge:demo": "true"}}}); err != nil {
			return err
		}
		log.Info("demo camera recording into stream \"demo\" (turn off with --demo=false or demo: false)")
	}
	if cc, err := fileCameras(cfg); err != nil {
		return err
	} else if err := cams.Apply(ingest.GroupFile, cc); err != nil {
		return err
	}
	bridge := newEdgeBridge(eng, cams, cfg.Secrets, log)
	// Background workers stop, and are waited for, before the store
	// closes (deferred calls run last-in first-out).
	var workers sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer workers.Wait()
	defer stopBackground()
	workers.Add(1)
	go func() { defer workers.Done(); bridge.run(bgCtx) }()
	if peers != nil {
		workers.Add(1)
		go func() { defer workers.Done(); followPlacement(bgCtx, peers, cams, log) }()
	}
	if path, _ := fs.GetString("config"); path != "" {
		stop, err := watchCameraFile(fs, path, cams, bridge, log)
		if err != nil {
			return fmt.Errorf("watching %s: %w", path, err)
		}
		defer stop()
	}
	opts.Metrics = newMetricsRegistry(&boxCollector{eng: eng, cams: cams, peers: peers})
	if peers != nil {
		opts.Readiness = map[string]serve.ReadinessCheck{"cluster": func() string {
			if !peers.HasQuorum() {
				return "this box has not joined the cluster, or sees fewer than half of its members"
			}
			return ""
		}}
	}
	srv, err := serve.New(eng, opts)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	workers.Add(1)
	go func() { defer workers.Done(); eng.RunRetention(bgCtx, cfg.Media.RetentionInterval) }()
	workers.Add(1)
	go func() { defer workers.Done(); eng.RunCapacity(bgCtx, cfg.Storage.CapacityInterval) }()
	log.Info("kvsedge serving", "version", version, "listen", ln.Addr().String(), "endpoint", opts.DataEndpoint,
		"data_dir", cfg.DataDir, "tls", opts.TLS != nil, "auth", !cfg.Auth.Disabled)

	select {
	case err := <-errc:
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Warn("shutdown", "err", err)
	}
	return nil
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

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	ho := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// freeBytes is the space left for unprivileged writers on dir's filesystem.
func freeBytes(dir string) uint64 {
	free, _, _ := diskSpace(dir)
	return free
}

// diskSpace is dir's filesystem's free space (for unprivileged writers) and
// size.
func diskSpace(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
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
