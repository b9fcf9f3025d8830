package e2e

import (
	"encoding/base64"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
)

// TestClusterOneSetOfKeys: two boxes started on their defaults with one
// cluster key generate the same key pair, so the pair `kvsedge credentials`
// prints on one works on the other; a third box configured with another
// key set is kept out (its /readyz says why) and the others stay ready.
func TestClusterOneSetOfKeys(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	gossip := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	root := t.TempDir()
	envFor := func(i int, ownKeys bool) []string {
		var env []string
		for _, e := range streamEnv(filepath.Join(root, string(rune('a'+i)))) {
			if ownKeys || !(strings.HasPrefix(e, "KVSEDGE_ACCESS_KEY_ID=") || strings.HasPrefix(e, "KVSEDGE_SECRET_ACCESS_KEY=")) {
				env = append(env, e)
			}
		}
		var seeds []string
		for j, g := range gossip {
			if j != i {
				seeds = append(seeds, g)
			}
		}
		return append(env, "KVSEDGE_CLUSTER__BIND="+gossip[i], "KVSEDGE_CLUSTER__NODE_NAME=n"+string(rune('1'+i)),
			"KVSEDGE_CLUSTER__KEY="+key, "KVSEDGE_CLUSTER__SEEDS="+strings.Join(seeds, ","), "KVSEDGE_CLUSTER__FAST_FAILURE_DETECTION=true")
	}
	a := startKvsedge(t, envFor(0, false), "--listen", "127.0.0.1:0")
	b := startKvsedge(t, envFor(1, false), "--listen", "127.0.0.1:0")
	ready := func(p *proc) bool {
		_, body := getJSON(t, p.endpoint+"/readyz")
		return strings.Contains(body, `"ready":true`)
	}
	within(t, "the two boxes are ready", 30*time.Second, func() bool { return ready(a) && ready(b) })
	pair := func(env []string) (string, string) {
		t.Helper()
		out, errOut, code := kvsedgeCmd(t, env, "credentials")
		if code != 0 {
			t.Fatalf("credentials: %d %s", code, errOut)
		}
		var akid, secret string
		for _, line := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(line, "export AWS_ACCESS_KEY_ID="); ok {
				akid = v
			}
			if v, ok := strings.CutPrefix(line, "export AWS_SECRET_ACCESS_KEY="); ok {
				secret = v
			}
		}
		return akid, secret
	}
	akA, skA := pair(envFor(0, false))
	akB, skB := pair(envFor(1, false))
	if akA == "" || akA != akB || skA != skB {
		t.Fatalf("two boxes of one cluster generated different keys: %s / %s", akA, akB)
	}
	// The pair printed on box A works on box B.
	onB := newSDKWith(t, b.endpoint, sdkOptions{AKID: akA, Secret: skA})
	if _, err := onB.KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{}); err != nil {
		t.Fatalf("box A's key on box B: %v", err)
	}

	// A third box with its own keys joins the gossip and is kept out.
	c := startKvsedge(t, envFor(2, true), "--listen", "127.0.0.1:0")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, body := getJSON(t, c.endpoint+"/readyz")
		if strings.Contains(body, "API keys differ from the cluster") {
			t.Logf("the box with other keys: %s", body)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a box with another key set was not kept out: %s\n%s", body, c.logs.String())
		}
		time.Sleep(250 * time.Millisecond)
	}
	within(t, "the boxes with the cluster's keys stay ready", 10*time.Second, func() bool { return ready(a) && ready(b) })
	for _, p := range []*proc{a, b} {
		if _, body := getJSON(t, p.endpoint+"/readyz"); strings.Contains(body, "API keys differ") {
			t.Fatalf("a box with the cluster's keys is kept out: %s", body)
		}
	}
}
