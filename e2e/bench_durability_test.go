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

	"github.com/kvsedge/kvsedge/cluster"
)

// BenchmarkClusterDurability runs three kvsedge processes taking 16 live
// PutMedia uploads at once (producer.Producer, 2 Mbit/s, fragments of
// 500 ms, each to its stream's home), half of the streams with replicated
// durability and half with local, and reports over a 30 s window the
// PERSISTED latency of each (from the fragment's last byte handed to the
// producer to its PERSISTED ack): repl-p50-ms, repl-p99-ms, local-p50-ms,
// local-p99-ms, p99-ratio (goal ≤ 2), and load1, the machine's one-minute
// load average at the end. Run with -benchtime 1x.
func BenchmarkClusterDurability(b *testing.B) {
	const streams, window = 16, 30 * time.Second
	dir := b.TempDir()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	var gossip []string
	for range 3 {
		gossip = append(gossip, freeAddr(b))
	}
	byName := map[string]*clusterBox{}
	var boxes []*clusterBox
	for i := range 3 {
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
		bx := &clusterBox{name: name, env: env}
		bx.p = startKvsedge(b, env, "--listen", "127.0.0.1:0")
		boxes = append(boxes, bx)
		byName[name] = bx
	}
	waitB(b, "the boxes join", 30*time.Second, func() bool {
		for _, bx := range boxes {
			var m memberList
			callJSON(b, bx.api(), "/listClusterMembers", map[string]any{}, &m)
			n := 0
			for _, x := range m.Members {
				if x.Status == "alive" {
					n++
				}
			}
			if n != 3 {
				return false
			}
		}
		return true
	})
	mode := map[string]string{}
	for i := range streams {
		name := fmt.Sprintf("s%02d", i)
		mode[name] = cluster.DurabilityReplicated
		if i%2 == 1 {
			mode[name] = cluster.DurabilityLocal
		}
		if code, raw := callJSON(b, boxes[0].api(), "/createStream", map[string]any{"StreamName": name, "DataRetentionInHours": 1,
			"Tags": map[string]string{cluster.TagDurability: mode[name]}}, nil); code != 200 {
			b.Fatalf("createStream: %d %s", code, raw)
		}
	}
	// Every stream placed, and held by its replica, before uploads start.
	home := map[string]*clusterBox{}
	waitB(b, "every stream held by its replica", 60*time.Second, func() bool {
		held := 0
		for _, bx := range boxes {
			var st struct {
				Streams []struct {
					Stream, Home string
					Replicas     []string
					Holds        bool
				}
			}
			callJSON(b, bx.api(), "/describeReplication", map[string]any{}, &st)
			for _, s := range st.Streams {
				if len(s.Replicas) == 1 && s.Replicas[0] == bx.name && s.Holds {
					held++
					home[s.Stream] = byName[s.Home]
				}
			}
		}
		return held == streams
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prods := map[string]*liveProducer{}
	for name := range mode {
		prods[name] = startLiveProducer(ctx, b, home[name].api(), name, 500*time.Millisecond, 12500)
	}
	time.Sleep(5 * time.Second) // warm up: connections, rings, replicas' tails
	for _, lp := range prods {
		lp.mu.Lock()
		lp.latency = lp.latency[:0]
		lp.mu.Unlock()
	}
	b.ResetTimer()
	time.Sleep(window)
	b.StopTimer()
	lat := map[string][]time.Duration{}
	errs := 0
	for name, lp := range prods {
		lp.mu.Lock()
		lat[mode[name]] = append(lat[mode[name]], lp.latency...)
		for _, n := range lp.errs {
			errs += n
		}
		lp.mu.Unlock()
	}
	cancel()
	for _, lp := range prods {
		<-lp.done
	}
	q := func(m string, p int) float64 {
		l := lat[m]
		slices.Sort(l)
		return float64(l[min(len(l)-1, len(l)*p/100)].Microseconds()) / 1000
	}
	for _, m := range []string{cluster.DurabilityReplicated, cluster.DurabilityLocal} {
		if len(lat[m]) < 100 {
			b.Fatalf("%d PERSISTED acks of %s streams in the window", len(lat[m]), m)
		}
	}
	var fallback uint64
	for _, bx := range boxes {
		for name, m := range mode {
			if m == cluster.DurabilityReplicated && home[name] == bx {
				fallback += replOn(b, bx.api(), name).AcksFallback
			}
		}
	}
	b.ReportMetric(q(cluster.DurabilityReplicated, 50), "repl-p50-ms")
	b.ReportMetric(q(cluster.DurabilityReplicated, 99), "repl-p99-ms")
	b.ReportMetric(q(cluster.DurabilityLocal, 50), "local-p50-ms")
	b.ReportMetric(q(cluster.DurabilityLocal, 99), "local-p99-ms")
	b.ReportMetric(q(cluster.DurabilityReplicated, 99)/q(cluster.DurabilityLocal, 99), "p99-ratio")
	b.ReportMetric(float64(len(lat[cluster.DurabilityReplicated])), "repl-acks")
	b.ReportMetric(float64(fallback), "repl-fallback-acks")
	b.ReportMetric(float64(errs), "error-acks")
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		var l1 float64
		if _, err := fmt.Sscan(string(la), &l1); err == nil {
			b.ReportMetric(l1, "load1")
		}
	}
}
