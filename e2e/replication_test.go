package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/ingest"
	"github.com/kvsedge/kvsedge/internal/fixture"
	fragnum "github.com/kvsedge/kvsedge/internal/fragment"
	"github.com/kvsedge/kvsedge/internal/netcut"
	"github.com/kvsedge/kvsedge/internal/rtsptest"
)

// clusterBox is one kvsedge process of a test cluster.
type clusterBox struct {
	name string
	env  []string
	args []string
	p    *proc
	// direct is the box's own API address when peers reach it through a
	// proxy (the network-cut test); else its endpoint.
	direct string
}

func (b *clusterBox) start(t *testing.T) {
	t.Helper()
	b.p = startKvsedge(t, b.env, b.args...)
}

// api is where the test reaches the box.
func (b *clusterBox) api() string {
	if b.direct != "" {
		return b.direct
	}
	return b.p.endpoint
}

// clusterNet says how boxes reach each other: each binds gossip[i]; with
// proxies, it advertises advertise[i], listens on listen[i] and tells
// peers endpoint[i].
type clusterNet struct {
	gossip, advertise, listen, endpoint []string
	// witnesses are gossip addresses of witnesses (kvsedge witness): seeds
	// of every box, and members it must see.
	witnesses []string
	// env is added to every box's environment.
	env []string
	// cameras are more cameras beside "cam" (stream names), each with its
	// own simulated camera on the relay.
	cameras []string
}

type replState struct {
	Streams []struct {
		Stream, Home  string
		Replicas      []string
		Holds         bool
		MissingHere   int    `json:"missing_here"`
		Imported      uint64 `json:"imported"`
		ImportedBytes uint64 `json:"imported_bytes"`
		LagP50        int64  `json:"lag_p50_ms"`
		LagP99        int64  `json:"lag_p99_ms"`
		Samples       int    `json:"lag_samples"`
	}
}

func replication(t testing.TB, endpoint string) replState {
	t.Helper()
	var st replState
	if status, raw := callJSON(t, endpoint, "/describeReplication", map[string]any{}, &st); status != 200 {
		t.Fatalf("describeReplication: %d %s", status, raw)
	}
	return st
}

type memberList struct {
	Members []struct{ Name, Status string }
}

func aliveMembers(t *testing.T, endpoint string) int {
	t.Helper()
	var m memberList
	if status, raw := callJSON(t, endpoint, "/listClusterMembers", map[string]any{}, &m); status != 200 {
		t.Fatalf("listClusterMembers: %d %s", status, raw)
	}
	n := 0
	for _, x := range m.Members {
		if x.Status == "alive" {
			n++
		}
	}
	return n
}

// cameraState is the state of stream's camera on a box ("" if none).
func cameraState(t *testing.T, endpoint, stream string) (string, int) {
	t.Helper()
	var cs cameraStates
	if status, raw := callJSON(t, endpoint, "/listCameras", map[string]any{}, &cs); status != 200 {
		t.Fatalf("listCameras: %d %s", status, raw)
	}
	for _, c := range cs.Cameras {
		if c.Stream == stream {
			return c.State, c.Fragments
		}
	}
	return "", 0
}

// fragmentSet lists every fragment number of stream through endpoint.
func fragmentSet(t *testing.T, endpoint, stream string) []string {
	t.Helper()
	return sortedNumbers(listAllRaw(t, endpoint, stream, 0, time.Now().Add(time.Hour).UnixMilli()))
}

func within(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func subset(a, b []string) (string, bool) {
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			return x, false
		}
	}
	return "", true
}

func nodeOf(t *testing.T, number string) uint16 {
	t.Helper()
	n, err := fragnum.ParseNumber(number)
	if err != nil {
		t.Fatal(err)
	}
	return n.Node()
}

// startCameraCluster starts a relay publishing the demo clip as "cam" and
// n boxes sharing one camera file, joined with fast failure detection.
// gossip[i] is what box i binds; advertise[i] (if set) what it tells peers.
func startCameraCluster(t *testing.T, ctx context.Context, n int, nw clusterNet) []*clusterBox {
	t.Helper()
	names := append([]string{"cam"}, nw.cameras...)
	rl := publishCameras(ctx, t, fixture.DemoClipPath(), 15, names...)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kvsedge.yaml")
	cfg := "cameras:\n"
	for _, name := range names {
		cfg += "  - stream: " + name + "\n    url: " + rl.URL(name) + "\n    transport: tcp\n    retention_hours: 2\n    fragment_duration: 1s\n"
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	boxes := make([]*clusterBox, n)
	for i := range boxes {
		name := fmt.Sprintf("n%d", i+1)
		var seeds []string
		for j := range n {
			if j != i {
				if nw.advertise != nil {
					seeds = append(seeds, nw.advertise[j])
				} else {
					seeds = append(seeds, nw.gossip[j])
				}
			}
		}
		seeds = append(seeds, nw.witnesses...)
		env := append(streamEnv(filepath.Join(dir, name)),
			"KVSEDGE_CLUSTER__BIND="+nw.gossip[i], "KVSEDGE_CLUSTER__NODE_NAME="+name, "KVSEDGE_CLUSTER__KEY="+key,
			"KVSEDGE_CLUSTER__SEEDS="+strings.Join(seeds, ","), "KVSEDGE_CLUSTER__FAST_FAILURE_DETECTION=true")
		env = append(env, nw.env...)
		boxes[i] = &clusterBox{name: name, env: env, args: []string{"--listen", "127.0.0.1:0", "--config", cfgPath}}
		if nw.advertise != nil {
			boxes[i].env = append(env, "KVSEDGE_CLUSTER__ADVERTISE="+nw.advertise[i])
			boxes[i].args = []string{"--listen", nw.listen[i], "--data-endpoint", nw.endpoint[i], "--config", cfgPath}
			boxes[i].direct = "http://" + nw.listen[i]
		}
	}
	for _, b := range boxes {
		b.start(t)
	}
	t.Cleanup(func() {
		if !t.Failed() || os.Getenv("KVSEDGE_CLUSTER_LOGS") == "" {
			return
		}
		for _, b := range boxes {
			if b.p != nil {
				t.Logf("%s's log:\n%s", b.name, b.p.logs.String())
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for joined := false; !joined; time.Sleep(250 * time.Millisecond) {
		joined = true
		for _, b := range boxes {
			if aliveMembers(t, b.api()) != n+len(nw.witnesses) {
				joined = false
			}
		}
		if !joined && time.Now().After(deadline) {
			for _, b := range boxes {
				t.Logf("%s:\n%s", b.name, b.p.logs.String())
			}
			t.Fatal("the boxes did not all join")
		}
	}
	return boxes
}

// roles finds cam's home and replicas as the boxes report them.
func roles(t *testing.T, boxes []*clusterBox, asker *clusterBox) (home, replica, other *clusterBox) {
	t.Helper()
	var home0, replica0 string
	within(t, "cam is placed", 20*time.Second, func() bool {
		for _, s := range replication(t, asker.api()).Streams {
			if s.Stream == "cam" && len(s.Replicas) == 1 {
				home0, replica0 = s.Home, s.Replicas[0]
				return true
			}
		}
		return false
	})
	for _, b := range boxes {
		switch b.name {
		case home0:
			home = b
		case replica0:
			replica = b
		default:
			other = b
		}
	}
	if home == nil || replica == nil {
		t.Fatalf("cam's placement (home %s, replica %s) names unknown boxes", home0, replica0)
	}
	return home, replica, other
}

// TestClusterReplicationKillAndRestart: three boxes as three processes
// share a camera. Its home records it and the others stand by; its
// replica copies every fragment; all three list and read the stream.
// kill -9 of the home: what was replicated stays readable, recording
// resumes on the survivor that is next in the placement, with larger
// fragment numbers. The killed box restarts, takes its camera back without
// two boxes ever recording it at once, and the holders converge on the same
// fragments.
func TestClusterReplicationKillAndRestart(t *testing.T) {
	ctx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	boxes := startCameraCluster(t, ctx, 3, clusterNet{gossip: []string{freeAddr(t), freeAddr(t), freeAddr(t)}})
	home, replica, other := roles(t, boxes, boxes[0])
	within(t, "the home records cam", 30*time.Second, func() bool {
		st, n := cameraState(t, home.p.endpoint, "cam")
		return st == "RECORDING" && n >= 3
	})
	for _, b := range []*clusterBox{replica, other} {
		if st, _ := cameraState(t, b.p.endpoint, "cam"); st != "STANDBY" {
			t.Fatalf("%s: cam is %q on a box that is not its home", b.name, st)
		}
	}
	within(t, "the replica copies cam", 20*time.Second, func() bool {
		st := replication(t, replica.p.endpoint)
		return len(st.Streams) == 1 && st.Streams[0].Holds && st.Streams[0].Imported >= 3
	})
	// Every box lists the stream: the holders from their own store, the
	// third by forwarding to a holder.
	onHome := fragmentSet(t, home.p.endpoint, "cam")
	for _, b := range []*clusterBox{replica, other} {
		got := fragmentSet(t, b.p.endpoint, "cam")
		if len(got) < 3 {
			t.Fatalf("%s lists %d fragments of cam", b.name, len(got))
		}
		// Listed a moment later than the home's list, it holds at least
		// what the home had, minus at most the fragment being replicated.
		if miss, ok := subset(onHome[:len(onHome)-1], got); !ok {
			t.Fatalf("%s does not list %s that the home listed before", b.name, miss)
		}
	}
	// Media read through the box that does not hold the stream.
	chunks := getFragmentList(t, other.p.endpoint, "cam", onHome[:2])
	if len(chunks) != 2 || chunks[0].FragmentNumber() != onHome[0] || chunks[1].FragmentNumber() != onHome[1] {
		t.Fatalf("GetMediaForFragmentList through %s: %d chunks", other.name, len(chunks))
	}

	// HLS and GetClip through the box that does not hold the stream: the
	// session URL names a holder, which ffprobe plays from.
	rng := map[string]any{"StartTimestamp": time.Now().Add(-5 * time.Minute).Unix(), "EndTimestamp": time.Now().Unix()}
	var hls struct{ HLSStreamingSessionURL string }
	if st, raw := callJSON(t, other.api(), "/getHLSStreamingSessionURL", map[string]any{"StreamName": "cam", "PlaybackMode": "ON_DEMAND",
		"HLSFragmentSelector": map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng}}, &hls); st != 200 {
		t.Fatalf("GetHLSStreamingSessionURL through %s: %d %s", other.name, st, raw)
	}
	if !strings.HasPrefix(hls.HLSStreamingSessionURL, home.p.endpoint) && !strings.HasPrefix(hls.HLSStreamingSessionURL, replica.p.endpoint) {
		t.Fatalf("HLS session URL %q does not name a holder", hls.HLSStreamingSessionURL)
	}
	if out, err := exec.Command(fixture.Tool(t, "ffprobe"), "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", hls.HLSStreamingSessionURL).Output(); err != nil || !strings.Contains(string(out), "h264") {
		t.Fatalf("ffprobe of the HLS session: %v %q", err, out)
	}
	clipReq := signedJSONRequest(context.Background(), t, other.api(), "/getClip", map[string]any{"StreamName": "cam",
		"ClipFragmentSelector": map[string]any{"FragmentSelectorType": "SERVER_TIMESTAMP", "TimestampRange": rng}})
	clipResp, err := http.DefaultClient.Do(clipReq)
	if err != nil {
		t.Fatal(err)
	}
	clip, _ := io.ReadAll(clipResp.Body)
	clipResp.Body.Close()
	if clipResp.StatusCode != 200 || clipResp.Header.Get("Content-Type") != "video/mp4" || len(clip) < 12 || string(clip[4:8]) != "ftyp" {
		t.Fatalf("GetClip through %s: %d %s, %d bytes", other.name, clipResp.StatusCode, clipResp.Header.Get("Content-Type"), len(clip))
	}
	// The node-to-node path refuses requests without a peer signature,
	// even when they carry a client's valid SigV4 signature.
	unsigned, _ := http.Get(other.api() + "/kvsedge-peer/v1/numbers?stream=cam")
	unsigned.Body.Close()
	clientSigned, err := http.DefaultClient.Do(signedJSONRequest(context.Background(), t, other.api(), "/kvsedge-peer/v1/forward/listFragments",
		map[string]any{"StreamName": "cam"}))
	if err != nil {
		t.Fatal(err)
	}
	clientSigned.Body.Close()
	if unsigned.StatusCode != http.StatusForbidden || clientSigned.StatusCode != http.StatusForbidden {
		t.Fatalf("peer path without a peer signature: %d, with only a client signature: %d", unsigned.StatusCode, clientSigned.StatusCode)
	}

	// kill -9 the home while it records.
	before := fragmentSet(t, replica.p.endpoint, "cam")
	homeNode := nodeOf(t, onHome[0])
	home.p.kill()
	killed := time.Now()
	within(t, "recording resumes on the replica", 20*time.Second, func() bool {
		st, n := cameraState(t, replica.p.endpoint, "cam")
		return st == "RECORDING" && n >= 1
	})
	t.Logf("recording resumed on %s %v after the kill", replica.name, time.Since(killed).Round(100*time.Millisecond))
	if st, _ := cameraState(t, other.p.endpoint, "cam"); st == "RECORDING" {
		t.Fatalf("%s records cam too", other.name)
	}
	var after []string
	within(t, "new fragments from the survivor", 20*time.Second, func() bool {
		after = fragmentSet(t, replica.p.endpoint, "cam")
		return len(after) > 0 && nodeOf(t, after[len(after)-1]) != homeNode
	})
	if miss, ok := subset(before, after); !ok {
		t.Fatalf("fragment %s, replicated before the kill, is gone from %s", miss, replica.name)
	}
	if after[len(after)-1] <= before[len(before)-1] {
		t.Fatalf("the survivor's fragment %s does not follow %s", after[len(after)-1], before[len(before)-1])
	}
	// The takeover shows as a gap in server time between the last
	// fragment the survivor copied and its first own one.
	all := listAllRaw(t, replica.p.endpoint, "cam", 0, time.Now().Add(time.Hour).UnixMilli())
	slices.SortFunc(all, func(a, b fragment) int { return strings.Compare(a.FragmentNumber, b.FragmentNumber) })
	for i := 1; i < len(all); i++ {
		prev, next := all[i-1], all[i]
		if nodeOf(t, prev.FragmentNumber) == homeNode && nodeOf(t, next.FragmentNumber) != homeNode {
			gap := next.ServerTimestamp - prev.ServerTimestamp - float64(prev.FragmentLengthInMilliseconds)/1000
			t.Logf("gap in ListFragments at the takeover: %.1f s", gap)
			if gap < 0.5 {
				t.Fatalf("no gap at the takeover: %+v then %+v", prev, next)
			}
			break
		}
	}
	within(t, "the third box reads the whole archive", 20*time.Second, func() bool {
		_, ok := subset(before, fragmentSet(t, other.p.endpoint, "cam"))
		return ok
	})

	// The killed box comes back: it catches up and takes its camera back;
	// the survivor records until the home's first fragment reaches it
	// (make before break: TestClusterHandBack checks the frames), so two
	// boxes record cam at once for a few seconds at most.
	home.start(t)
	back := false
	deadline := time.Now().Add(40 * time.Second)
	var overlapSince time.Time
	for !back {
		if time.Now().After(deadline) {
			t.Fatal("the restarted home did not take its camera back")
		}
		recorders := []string{}
		for _, b := range boxes {
			if st, _ := cameraState(t, b.p.endpoint, "cam"); st == "RECORDING" || st == "CONNECTING" {
				recorders = append(recorders, b.name)
			}
		}
		if len(recorders) > 1 && overlapSince.IsZero() {
			overlapSince = time.Now()
		}
		if len(recorders) > 1 && time.Since(overlapSince) > 10*time.Second {
			t.Fatalf("cam recorded by %v at once for 10 s", recorders)
		}
		back = len(recorders) == 1 && recorders[0] == home.name
		time.Sleep(200 * time.Millisecond)
	}
	// Stop the camera and let the holders converge.
	stopCamera()
	within(t, "the camera stops", 20*time.Second, func() bool {
		st, _ := cameraState(t, home.p.endpoint, "cam")
		return st == "RETRYING" || st == "CONNECTING"
	})
	var final []string
	within(t, "the holders converge", 40*time.Second, func() bool {
		a, b := fragmentSet(t, home.p.endpoint, "cam"), fragmentSet(t, replica.p.endpoint, "cam")
		st := replication(t, home.p.endpoint)
		final = a
		return slices.Equal(a, b) && len(st.Streams) == 1 && st.Streams[0].Holds && st.Streams[0].MissingHere == 0
	})
	if miss, ok := subset(after, final); !ok {
		t.Fatalf("fragment %s is missing after the restart", miss)
	}
	for i := 1; i < len(final); i++ {
		if final[i] == final[i-1] {
			t.Fatalf("fragment %s listed twice", final[i])
		}
	}
	if got := fragmentSet(t, other.p.endpoint, "cam"); !slices.Equal(got, final) {
		t.Fatalf("%s lists %d fragments, the holders %d", other.name, len(got), len(final))
	}
}

// getFragmentList reads fragments with GetMediaForFragmentList.
func getFragmentList(t *testing.T, endpoint, stream string, numbers []string) []*mediaChunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := getMediaStream(ctx, t, endpoint, "/getMediaForFragmentList", map[string]any{"StreamName": stream, "Fragments": numbers}, nil, nil)
	return m.complete()
}

// TestClusterNetworkCut: the camera's home is cut off from the two other
// boxes (gossip and HTTP, through loopback proxies) while it records.
// The cut-off box, without a majority, stops recording; the majority side
// takes the camera over; the two record at once for no longer than the
// failure-detection window. After the cut heals, the home takes its
// camera back, and the holders converge on the same fragments: none of
// those recorded before or during the cut is lost, none is duplicated.
func TestClusterNetworkCut(t *testing.T) {
	const n = 3
	nw, gossipProxies, apiProxies := proxiedNet(t, n)
	ctx, stopCamera := context.WithCancel(context.Background())
	defer stopCamera()
	boxes := startCameraCluster(t, ctx, n, nw)
	home, replica, _ := roles(t, boxes, boxes[0])
	within(t, "the home records cam", 30*time.Second, func() bool {
		st, n := cameraState(t, home.api(), "cam")
		return st == "RECORDING" && n >= 3
	})
	within(t, "the replica copies cam", 20*time.Second, func() bool {
		st := replication(t, replica.api())
		return len(st.Streams) == 1 && st.Streams[0].Holds && st.Streams[0].Imported >= 3
	})
	hi := slices.Index(boxes, home)
	beforeOnHome := fragmentSet(t, home.api(), "cam")

	// Cut the home off. Poll both sides: how long do both record?
	gossipProxies[hi].Cut()
	apiProxies[hi].Cut()
	cut := time.Now()
	var both time.Duration
	var bothSince time.Time
	homeStopped, takenOver := false, false
	for !(homeStopped && takenOver) {
		// The proxies cut what reaches the home, not what it sends: its
		// serf still reconnects out through a peer's proxy (TCP push-pull)
		// now and then, and the two sides flap until failure detection
		// wins again. A real cut (both ways) settles in seconds; the
		// window allows for the flapping.
		if time.Since(cut) > 60*time.Second {
			t.Fatalf("after the cut: home stopped %v, majority took over %v", homeStopped, takenOver)
		}
		hs, _ := cameraState(t, home.api(), "cam")
		rs, _ := cameraState(t, replica.api(), "cam")
		homeStopped = hs == "STANDBY"
		takenOver = rs == "RECORDING"
		if !homeStopped && rs != "STANDBY" {
			if bothSince.IsZero() {
				bothSince = time.Now()
			}
			both = max(both, time.Since(bothSince))
		} else {
			bothSince = time.Time{}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("cut: the home stopped and %s took over %v after the cut; both recorded for %v", replica.name, time.Since(cut).Round(100*time.Millisecond), both.Round(100*time.Millisecond))
	// Fast failure detection declares a box dead in about a second or two;
	// the window allows for a loaded test machine.
	if both > 6*time.Second {
		t.Fatalf("two boxes recorded cam at once for %v", both)
	}
	var duringCut []string
	within(t, "the majority records", 20*time.Second, func() bool {
		duringCut = fragmentSet(t, replica.api(), "cam")
		return nodeOf(t, duringCut[len(duringCut)-1]) != nodeOf(t, beforeOnHome[len(beforeOnHome)-1]) // the home's (a box alone may have recorded first while the cluster formed)
	})
	// Still cut off, the home's gossip flaps (it hears its peers now and
	// then through its own TCP push-pull); it must not take its camera
	// back while the others cannot reach it: both recording again counts
	// against the same window.
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		hs, _ := cameraState(t, home.api(), "cam")
		rs, _ := cameraState(t, replica.api(), "cam")
		if hs != "STANDBY" && rs != "STANDBY" {
			if bothSince.IsZero() {
				bothSince = time.Now()
			}
			both = max(both, time.Since(bothSince))
		} else {
			bothSince = time.Time{}
		}
	}
	t.Logf("cut: 10 s more cut off; both recorded for at most %v at a time", both.Round(100*time.Millisecond))
	if both > 6*time.Second {
		t.Fatalf("two boxes recorded cam at once for %v during the cut", both)
	}
	onHomeAtHeal := fragmentSet(t, home.api(), "cam")

	// Heal: the home rejoins and records at once; the majority's recorder
	// goes on until the home's first fragment reaches it (make before
	// break), then stops: two at once for a few seconds only (polled).
	gossipProxies[hi].Heal()
	apiProxies[hi].Heal()
	healed := time.Now()
	var overlap time.Duration
	var overlapSince time.Time
	for back := false; !back; time.Sleep(150 * time.Millisecond) {
		if time.Since(healed) > 40*time.Second {
			t.Fatal("the home did not take its camera back after the cut healed")
		}
		var recorders []string
		for _, b := range boxes {
			if st, _ := cameraState(t, b.api(), "cam"); st == "RECORDING" || st == "CONNECTING" {
				recorders = append(recorders, b.name)
			}
		}
		if len(recorders) > 1 {
			if overlapSince.IsZero() {
				overlapSince = time.Now()
			}
			overlap = time.Since(overlapSince)
		}
		back = len(recorders) == 1 && recorders[0] == home.name
	}
	t.Logf("healed: the home records alone %v after the heal; two recorded at once for %v", time.Since(healed).Round(100*time.Millisecond), overlap.Round(100*time.Millisecond))
	if overlap > 10*time.Second {
		t.Fatalf("two boxes recorded cam at once for %v after the heal", overlap)
	}

	stopCamera()
	var final []string
	within(t, "the holders converge", 40*time.Second, func() bool {
		a, b := fragmentSet(t, home.api(), "cam"), fragmentSet(t, replica.api(), "cam")
		final = a
		st := replication(t, home.api())
		return slices.Equal(a, b) && len(st.Streams) == 1 && st.Streams[0].Holds && st.Streams[0].MissingHere == 0
	})
	for _, set := range [][]string{beforeOnHome, duringCut, onHomeAtHeal} {
		if miss, ok := subset(set, final); !ok {
			t.Fatalf("fragment %s is lost after the heal", miss)
		}
	}
	for i := 1; i < len(final); i++ {
		if final[i] == final[i-1] {
			t.Fatalf("fragment %s listed twice", final[i])
		}
	}
	// The hand-back after the heal recorded no frame twice. Before it, the
	// two sides recorded at once while failure detection settled (the
	// cut-off home does not yet know it is cut off: its own look, reused
	// for a second, asks its peers to reach it back): frames of that
	// window may be listed twice, no more than the 6 s the window may
	// last (checked above by polling, which can miss a stint: the frames
	// are the truth).
	list := listAllRaw(t, home.api(), "cam", 0, time.Now().Add(time.Hour).UnixMilli())
	got, problems, _ := readListed(t, home.api(), "cam", list)
	if len(problems) > 0 {
		t.Fatalf("reading cam: %s", strings.Join(problems, "; "))
	}
	var beforeHeal, afterHeal []eoGot
	for _, g := range got {
		if g.Key.Ms < healed.UnixMilli() {
			beforeHeal = append(beforeHeal, g)
		} else {
			afterHeal = append(afterHeal, g)
		}
	}
	if twice := framesTwice(afterHeal); len(twice) > 0 {
		t.Fatalf("%d frames listed twice after the heal: %s", len(twice), strings.Join(twice[:min(len(twice), 10)], "; "))
	}
	// 15 frames a second (startCameraCluster's camera).
	if twice, most := framesTwice(beforeHeal), 6*15; len(twice) > most {
		t.Fatalf("%d frames of the cut listed twice (polled overlap %v), more than %d: %s", len(twice), both, most, strings.Join(twice[:min(len(twice), 10)], "; "))
	} else {
		t.Logf("frames of the cut listed twice (polled overlap %v): %d", both.Round(100*time.Millisecond), len(twice))
	}
}

// publishCameras starts an RTSP relay and, until ctx ends, one simulated
// camera per path looping the H.264 clip at fps.
func publishCameras(ctx context.Context, tb testing.TB, clip string, fps int, paths ...string) *rtsptest.Relay {
	tb.Helper()
	return publishCamerasSpread(ctx, tb, clip, fps, 0, paths...)
}

// publishCamerasSpread is publishCameras with camera i started i·spread/n
// after the first (0: all at once).
func publishCamerasSpread(ctx context.Context, tb testing.TB, clip string, fps int, spread time.Duration, paths ...string) *rtsptest.Relay {
	tb.Helper()
	aus, sps, pps := loadClip(tb, clip, fps)
	rl := rtsptest.StartRelay(tb, "")
	for i, p := range paths {
		go func() {
			if spread > 0 {
				select {
				case <-time.After(time.Duration(i) * spread / time.Duration(len(paths))):
				case <-ctx.Done():
					return
				}
			}
			rtsptest.Publish(ctx, tb, rl.URL(p), aus, sps, pps, fps, 0)
		}()
	}
	return rl
}

// loadClip reads an H.264 clip file into the access units a looping
// camera sends and its parameter sets.
func loadClip(tb testing.TB, clip string, fps int) (aus [][][]byte, sps, pps []byte) {
	tb.Helper()
	data, err := os.ReadFile(clip)
	if err != nil {
		tb.Fatal(err)
	}
	src, err := ingest.NewDemoSource(data, float64(fps))
	if err != nil {
		tb.Fatal(err)
	}
	aus, _, sps, pps = src.Clip()
	return aus, sps, pps
}

// proxiedNet gives n boxes gossip and API addresses behind netcut proxies,
// so that a test can cut one box off (Cut on both of its proxies).
func proxiedNet(t *testing.T, n int) (nw clusterNet, gossipProxies, apiProxies []*netcut.Proxy) {
	t.Helper()
	for range n {
		g, l := freeAddr(t), freeAddr(t)
		gp, err := netcut.Listen("127.0.0.1:0", g)
		if err != nil {
			t.Fatal(err)
		}
		ap, err := netcut.ListenTCP("127.0.0.1:0", l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gp.Close(); ap.Close() })
		gossipProxies, apiProxies = append(gossipProxies, gp), append(apiProxies, ap)
		nw.gossip, nw.advertise = append(nw.gossip, g), append(nw.advertise, gp.Addr())
		nw.listen, nw.endpoint = append(nw.listen, l), append(nw.endpoint, "http://"+ap.Addr())
	}
	return nw, gossipProxies, apiProxies
}
