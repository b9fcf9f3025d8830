package e2e

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWitnessBreaksTheTie: two boxes and a witness (kvsedge witness). The
// witness never holds the stream. When the camera's home is cut off, only
// the other box — the side with the witness — records (without the
// witness both would: each sees half); after the heal the two boxes'
// lists converge with no fragment twice.
func TestWitnessBreaksTheTie(t *testing.T) {
	const n = 2
	nw, gossipProxies, apiProxies := proxiedNet(t, n)
	// The witness: the same key, the boxes as seeds, no store.
	wAddr := freeAddr(t)
	nw.witnesses = []string{wAddr}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	wcmd := exec.Command(kvsedgeBin, "witness")
	wcmd.Env = append(os.Environ(), "KVSEDGE_DATA_DIR="+filepath.Join(t.TempDir(), "witness"), "KVSEDGE_CLUSTER__BIND="+wAddr,
		"KVSEDGE_CLUSTER__NODE_NAME=w", "KVSEDGE_CLUSTER__KEY="+key, "KVSEDGE_CLUSTER__SEEDS="+strings.Join(nw.advertise, ","),
		"KVSEDGE_CLUSTER__FAST_FAILURE_DETECTION=true", "KVSEDGE_LOG__LEVEL=info")
	var wlog strings.Builder
	var wmu sync.Mutex
	wcmd.Stderr = writerFunc(func(b []byte) (int, error) { wmu.Lock(); defer wmu.Unlock(); return wlog.Write(b) })
	if err := wcmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wcmd.Process.Kill(); _ = wcmd.Wait() })

	ctx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	boxes := startCameraCluster(t, ctx, n, nw)
	home, other, _ := roles(t, boxes, boxes[0])
	within(t, "the home records cam", 30*time.Second, func() bool {
		st, k := cameraState(t, home.api(), "cam")
		return st == "RECORDING" && k >= 3
	})
	if strings.Contains(witnessLog(&wmu, &wlog), "error") && !strings.Contains(witnessLog(&wmu, &wlog), "kvsedge witness") {
		t.Fatalf("witness log:\n%s", witnessLog(&wmu, &wlog))
	}
	hi := slices.Index(boxes, home)
	beforeOnHome := fragmentSet(t, home.api(), "cam")

	gossipProxies[hi].Cut()
	apiProxies[hi].Cut()
	cut := time.Now()
	for {
		if time.Since(cut) > 60*time.Second {
			t.Fatalf("after the cut the side with the witness did not take over alone:\n%s", witnessLog(&wmu, &wlog))
		}
		hs, _ := cameraState(t, home.api(), "cam")
		ots, _ := cameraState(t, other.api(), "cam")
		if hs == "STANDBY" && ots == "RECORDING" {
			break
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Logf("cut: the cut-off home stopped and %s (with the witness) records, %v after the cut", other.name, time.Since(cut).Round(100*time.Millisecond))
	// Without the witness the home would never stop: each box sees half
	// of two and keeps its majority. (The cut is one-way — the proxies cut
	// what reaches the home, not what it sends — so later the home's serf
	// can refute its failure over a TCP push-pull it opens itself and the
	// sides flap, as TestClusterNetworkCut allows for; a real cut settles.)
	time.Sleep(2 * time.Second)
	duringCut := fragmentSet(t, other.api(), "cam")

	gossipProxies[hi].Heal()
	apiProxies[hi].Heal()
	stopCamera()
	var final []string
	within(t, "the boxes converge", 60*time.Second, func() bool {
		a, b := fragmentSet(t, home.api(), "cam"), fragmentSet(t, other.api(), "cam")
		final = a
		return slices.Equal(a, b)
	})
	for _, c := range []struct {
		what string
		set  []string
	}{{"listed by the home before the cut", beforeOnHome}, {"listed by " + other.name + " during the cut", duringCut}} {
		if miss, ok := subset(c.set, final); !ok {
			t.Fatalf("fragment %s (numbered by node %d), %s, is lost after the heal\nbefore the cut, the home listed %v\nduring the cut, %s listed %v\nafter the heal, both list %v\nplacement %+v\nwitness log:\n%s",
				miss, nodeOf(t, miss), c.what, beforeOnHome, other.name, duringCut, final, replication(t, other.api()).Streams, witnessLog(&wmu, &wlog))
		}
	}
	for i := 1; i < len(final); i++ {
		if final[i] == final[i-1] {
			t.Fatalf("fragment %s listed twice", final[i])
		}
	}
	// The witness holds nothing and is nobody's home or replica.
	st := replication(t, other.api())
	if len(st.Streams) != 1 || st.Streams[0].Home == "w" || slices.Contains(st.Streams[0].Replicas, "w") {
		t.Fatalf("placement includes the witness: %+v", st.Streams)
	}
}

func witnessLog(mu *sync.Mutex, b *strings.Builder) string {
	mu.Lock()
	defer mu.Unlock()
	return b.String()
}
