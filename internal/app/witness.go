package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/kvsedge/kvsedge/cluster"
	"github.com/kvsedge/kvsedge/internal/config"
)

// RunWitness runs a cluster witness until ctx ends: a member of the gossip
// (cfg.Cluster: bind, seeds, key, node name) that counts for quorum and
// holds nothing — no store, no cameras, no API. With two boxes and a
// witness, a cut leaves exactly one side with a majority, so exactly one
// side records. Its only file is serf's snapshot in cfg.DataDir (so a
// restarted witness still counts the members it knew).
func RunWitness(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if cfg.Cluster.Bind == "" || len(cfg.Cluster.Seeds) == 0 {
		return errors.New("a witness needs cluster.bind and cluster.seeds (the boxes' gossip addresses)")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	name := cfg.Cluster.NodeName
	if name == "" {
		h, _ := os.Hostname()
		name = h + "-witness"
	}
	c, err := cluster.Start(cluster.Options{
		NodeName: name, Bind: cfg.Cluster.Bind, Advertise: cfg.Cluster.Advertise, Seeds: cfg.Cluster.Seeds,
		Key: cfg.Cluster.DecodedKey(), FastFailureDetection: cfg.Cluster.FastFailureDetection, Witness: true,
		SnapshotPath: filepath.Join(cfg.DataDir, "witness.snapshot"), Logger: log,
	})
	if err != nil {
		return err
	}
	defer c.Close()
	log.Info("kvsedge witness", "node", name, "gossip", cfg.Cluster.Bind, "seeds", strings.Join(cfg.Cluster.Seeds, ","))
	changes := c.Subscribe()
	last := ""
	for {
		var parts []string
		for _, m := range c.Members() {
			role := "box"
			if m.Witness {
				role = "witness"
			}
			parts = append(parts, fmt.Sprintf("%s(%s,%s)", m.Name, role, m.Status))
		}
		if now := strings.Join(parts, " "); now != last {
			log.Info("members", "members", now, "quorum", c.HasQuorum())
			last = now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		}
	}
}
