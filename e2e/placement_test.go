package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestClusterPlacementMaxCameras: three boxes that record one camera each
// (media.max_cameras: 1) share three cameras whose streams all rank the
// same box first. Each box records exactly one: placement passes over a
// full box instead of leaving cameras in STANDBY everywhere.
func TestClusterPlacementMaxCameras(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// cam1, cam2 and cam3 all rank n1 first (rendezvous over n1..n3).
	cams := []string{"cam1", "cam2", "cam3"}
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, cams...)
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("cameras:\n")
	for _, c := range cams {
		fmt.Fprintf(&cfg, "  - stream: %s\n    url: %s\n    transport: tcp\n    retention_hours: 1\n    fragment_duration: 1s\n", c, rl.URL(c))
	}
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	gossip := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var boxes []*clusterBox
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		var seeds []string
		for j, g := range gossip {
			if j != i {
				seeds = append(seeds, g)
			}
		}
		b := &clusterBox{name: name, args: []string{"--listen", "127.0.0.1:0", "--config", cfgPath},
			env: append(streamEnv(filepath.Join(dir, name)), "KVSEDGE_CLUSTER__BIND="+gossip[i], "KVSEDGE_CLUSTER__NODE_NAME="+name,
				"KVSEDGE_CLUSTER__KEY="+key, "KVSEDGE_CLUSTER__SEEDS="+strings.Join(seeds, ","), "KVSEDGE_MEDIA__MAX_CAMERAS=1")}
		b.start(t)
		boxes = append(boxes, b)
	}
	recording := func(b *clusterBox) []string {
		var cs cameraStates
		if status, raw := callJSON(t, b.api(), "/listCameras", map[string]any{}, &cs); status != 200 {
			t.Fatalf("listCameras: %d %s", status, raw)
		}
		var out []string
		for _, c := range cs.Cameras {
			if c.State == "RECORDING" {
				out = append(out, c.Stream)
			}
		}
		return out
	}
	var got [][]string
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = got[:0]
		ok := true
		seen := map[string]bool{}
		for _, b := range boxes {
			r := recording(b)
			got = append(got, r)
			ok = ok && len(r) == 1
			for _, s := range r {
				seen[s] = true
			}
		}
		if ok && len(seen) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("each box should record one of the three cameras: %v", got)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("recording: n1 %v, n2 %v, n3 %v", got[0], got[1], got[2])
	// It stays so (no camera flips between boxes).
	time.Sleep(3 * time.Second)
	for i, b := range boxes {
		if r := recording(b); len(r) != 1 || r[0] != got[i][0] {
			t.Fatalf("%s now records %v, before %v", b.name, r, got[i])
		}
	}
}
