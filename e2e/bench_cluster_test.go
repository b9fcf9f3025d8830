package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/internal/netcut"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// BenchmarkClusterReplication runs three kvsedge processes recording 16
// simulated 2 Mbit/s cameras (each recorded by its stream's home, copied
// to one replica), and reports, over a 30 s window:
//
//   - lag-p50-ms / lag-p99-ms: replication lag, from a fragment complete on
//     its home to durable on its replica (the median of the streams' p50s
//     and the largest of their p99s);
//   - overhead-%: bytes on the node-to-node path (counted by loopback
//     proxies in front of every box's API, which only peers use) beyond
//     the media bytes replicated: framing, HTTP, registry polls,
//     anti-entropy listings, keepalives;
//
// then kills (SIGKILL) the box that is home to most cameras and reports
// failover-s: the time until the last of its cameras records on a
// survivor (fast failure detection). Run with -benchtime 1x.
func BenchmarkClusterReplication(b *testing.B) {
	const cams, window = 16, 30 * time.Second
	clip, fps := clusterBenchClip(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var names []string
	var camCfg strings.Builder
	camCfg.WriteString("cameras:\n")
	for i := range cams {
		names = append(names, fmt.Sprintf("cam%02d", i))
	}
	rl := publishCameras(ctx, b, clip, fps, names...)
	for _, name := range names {
		fmt.Fprintf(&camCfg, "  - stream: %s\n    url: %s\n    transport: tcp\n    retention_hours: 1\n", name, rl.URL(name))
	}
	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	if err := os.WriteFile(cfgPath, []byte(camCfg.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	var gossip []string
	for range 3 {
		gossip = append(gossip, freeAddr(b))
	}
	boxes := make([]*clusterBox, 3)
	var proxies []*netcut.Proxy
	for i := range boxes {
		listen := freeAddr(b)
		px, err := netcut.ListenTCP("127.0.0.1:0", listen)
		if err != nil {
			b.Fatal(err)
		}
		defer px.Close()
		proxies = append(proxies, px)
		name := fmt.Sprintf("n%d", i+1)
		var seeds []string
		for j, g := range gossip {
			if j != i {
				seeds = append(seeds, g)
			}
		}
		env := append(streamEnv(filepath.Join(dir, name)),
			"KVSEDGE_CLUSTER__BIND="+gossip[i], "KVSEDGE_CLUSTER__NODE_NAME="+name, "KVSEDGE_CLUSTER__KEY="+key,
			"KVSEDGE_CLUSTER__SEEDS="+strings.Join(seeds, ","), "KVSEDGE_CLUSTER__FAST_FAILURE_DETECTION=true")
		boxes[i] = &clusterBox{name: name, env: env, direct: "http://" + listen,
			args: []string{"--listen", listen, "--data-endpoint", "http://" + px.Addr(), "--config", cfgPath}}
		boxes[i].p = startKvsedge(b, env, boxes[i].args...)
	}
	waitB(b, "every camera records", 60*time.Second, func() bool {
		n := 0
		for _, bx := range boxes {
			var cs cameraStates
			callJSON(b, bx.api(), "/listCameras", map[string]any{}, &cs)
			for _, c := range cs.Cameras {
				if c.State == "RECORDING" && c.Fragments >= 2 {
					n++
				}
			}
		}
		return n == cams
	})
	// Let every replica catch up and start tailing before the window.
	time.Sleep(5 * time.Second)
	type snap struct {
		peerBytes  int64
		mediaBytes uint64
	}
	take := func() snap {
		var s snap
		for i, bx := range boxes {
			to, from := proxies[i].TCPBytes()
			s.peerBytes += to + from
			for _, st := range replication(b, bx.api()).Streams {
				s.mediaBytes += st.ImportedBytes
			}
		}
		return s
	}
	s0 := take()
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	s1 := take()
	var p50s, p99s []int64
	for _, bx := range boxes {
		for _, st := range replication(b, bx.api()).Streams {
			if st.Samples > 0 && st.Imported > 0 {
				p50s, p99s = append(p50s, st.LagP50), append(p99s, st.LagP99)
			}
		}
	}
	if len(p50s) < cams {
		b.Fatalf("lag samples from %d streams, want %d", len(p50s), cams)
	}
	slices.Sort(p50s)
	slices.Sort(p99s)
	media := float64(s1.mediaBytes - s0.mediaBytes)
	peer := float64(s1.peerBytes - s0.peerBytes)
	if media == 0 {
		b.Fatal("nothing replicated in the window")
	}
	b.ReportMetric(float64(p50s[len(p50s)/2]), "lag-p50-ms")
	b.ReportMetric(float64(p99s[len(p99s)-1]), "lag-p99-ms")
	b.ReportMetric(100*(peer-media)/media, "overhead-%")
	b.ReportMetric(media*8/window.Seconds()/1e6, "replicated-Mbit/s")

	// Failover: kill the box that is home to most cameras.
	homes := map[string][]string{}
	for _, st := range replication(b, boxes[0].api()).Streams {
		homes[st.Home] = append(homes[st.Home], st.Stream)
	}
	var victim *clusterBox
	for _, bx := range boxes {
		if victim == nil || len(homes[bx.name]) > len(homes[victim.name]) {
			victim = bx
		}
	}
	moved := homes[victim.name]
	victim.p.kill()
	killed := time.Now()
	waitB(b, "the killed box's cameras record elsewhere", 60*time.Second, func() bool {
		n := 0
		for _, bx := range boxes {
			if bx == victim {
				continue
			}
			var cs cameraStates
			callJSON(b, bx.api(), "/listCameras", map[string]any{}, &cs)
			for _, c := range cs.Cameras {
				if c.State == "RECORDING" && slices.Contains(moved, c.Stream) {
					n++
				}
			}
		}
		return n == len(moved)
	})
	b.ReportMetric(time.Since(killed).Seconds(), "failover-s")
	b.ReportMetric(float64(len(moved)), "cameras-moved")
}

func waitB(b *testing.B, what string, d time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// clusterBenchClip is the 2 Mbit/s clip of the simulated cameras (the
// 400 kbit/s demo clip without ffmpeg).
func clusterBenchClip(b *testing.B) (string, int) {
	return rtsptest.Clip2Mbit(b, fixture.DemoClipPath(), 15)
}
