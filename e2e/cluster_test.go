package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo/types"
	"github.com/chromedp/chromedp"
	"github.com/kvsedge/kvsedge/internal/fixture"
)

// handedOut holds every address freeAddr returned in this process.
var handedOut sync.Map

// freeAddr returns a loopback address free now for TCP and for UDP, and
// never returned before in this process. Free for both: a gossip address
// takes both (memberlist), and the kernel hands out TCP ports a UDP
// socket may hold (a netcut proxy's relay sockets, a WebRTC peer's): a
// box given such a port exits at once (seen in CI as "kvsedge exited
// before serving"). Never returned before: the kernel hands a port just
// closed out again, and two boxes given one address collide (CI once gave
// box a's HTTP port to box b's gossip in the README's cluster). Below the
// kernel's ephemeral range (ip_local_port_range), which it hands out on
// its own to every connection a test makes and every listener on port 0:
// a port taken from that range was still seen taken by another socket
// before the box bound it ("bind: address already in use").
func freeAddr(t testing.TB) string {
	t.Helper()
	lo := ephemeralLow()
	for range 200 {
		addr := "127.0.0.1:0"
		if lo > freePortsFrom+1000 {
			addr = "127.0.0.1:" + strconv.Itoa(freePortsFrom+rand.IntN(lo-freePortsFrom))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		addr = l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
	t.Fatal("no loopback port free for both TCP and UDP")
	return ""
}

// freePortsFrom is the lowest port freeAddr hands out (above the
// well-known and most registered services' ports).
const freePortsFrom = 20000

// ephemeralLow is the first port of the kernel's ephemeral range (0 when
// unknown: freeAddr then asks the kernel for a port).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}

// TestTwoBoxCluster: two kvsedge processes join through a seed with a
// gossip key, each lists both members, streams created on one appear on
// the other, and GetDataEndpoint(PUT_MEDIA) sends a stream's producer to
// its home node, the same from either box.
func TestTwoBoxCluster(t *testing.T) {
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	gA, gB := freeAddr(t), freeAddr(t)
	envA := append(streamEnv(t.TempDir()), "KVSEDGE_CLUSTER__BIND="+gA, "KVSEDGE_CLUSTER__NODE_NAME=box-a", "KVSEDGE_CLUSTER__KEY="+key)
	envB := append(streamEnv(t.TempDir()), "KVSEDGE_CLUSTER__BIND="+gB, "KVSEDGE_CLUSTER__NODE_NAME=box-b", "KVSEDGE_CLUSTER__KEY="+key,
		"KVSEDGE_CLUSTER__SEEDS="+gA)
	a := startKvsedge(t, envA, "--listen", "127.0.0.1:0")
	b := startKvsedge(t, envB, "--listen", "127.0.0.1:0")

	type members struct {
		Members []struct {
			Name, Status string
			APIURL       string `json:"api_url"`
		}
	}
	list := func(env []string, ep string) members {
		out, errOut, code := kvsedgeCmd(t, env, "members", "--endpoint", ep)
		var m members
		if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("kvsedge members: %d %s %s", code, out, errOut)
		}
		return m
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ma, mb := list(envA, a.endpoint), list(envB, b.endpoint)
		if len(ma.Members) == 2 && len(mb.Members) == 2 && ma.Members[0].Status == "alive" && ma.Members[1].Status == "alive" {
			if ma.Members[0].Name != "box-a" || ma.Members[0].APIURL != a.endpoint || ma.Members[1].APIURL != b.endpoint {
				t.Fatalf("members seen by a: %+v", ma.Members)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the boxes did not join: %+v / %+v", ma, mb)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// Streams spread over both homes, and both boxes agree (Go SDK).
	ca, cb := newSDK(t, a.endpoint).KV, newSDK(t, b.endpoint).KV
	ctx := context.Background()
	endpoint := func(c *kinesisvideo.Client, name string, api types.APIName) string {
		out, err := c.GetDataEndpoint(ctx, &kinesisvideo.GetDataEndpointInput{StreamName: aws.String(name), APIName: api})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.DataEndpoint)
	}
	// Streams are created on a; b learns them from a (registry
	// replication) with the same ARNs.
	arns := map[string]string{}
	for i := 0; i < 16; i++ {
		name := fmt.Sprintf("cam-%d", i)
		out, err := ca.CreateStream(ctx, &kinesisvideo.CreateStreamInput{StreamName: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		arns[name] = aws.ToString(out.StreamARN)
	}
	deadline = time.Now().Add(15 * time.Second)
	for name, arn := range arns {
		for {
			d, err := cb.DescribeStream(ctx, &kinesisvideo.DescribeStreamInput{StreamName: aws.String(name)})
			if err == nil {
				if got := aws.ToString(d.StreamInfo.StreamARN); got != arn {
					t.Fatalf("%s is %s on b, %s on a", name, got, arn)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach b: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	homes := map[string]int{}
	for i := 0; i < 16; i++ {
		name := fmt.Sprintf("cam-%d", i)
		ea, eb := endpoint(ca, name, types.APINamePutMedia), endpoint(cb, name, types.APINamePutMedia)
		if ea != eb || (ea != a.endpoint && ea != b.endpoint) {
			t.Fatalf("%s: home %q from a, %q from b", name, ea, eb)
		}
		homes[ea]++
		if g := endpoint(cb, name, types.APINameGetMedia); g != b.endpoint {
			t.Fatalf("GET_MEDIA of %s from b: %s", name, g)
		}
	}
	if len(homes) != 2 {
		t.Fatalf("12 streams all homed on one box: %v", homes)
	}
	// The console of b shows both boxes and the 16 streams' placement.
	consoleWait(t, b.endpoint, "the cluster panel lists both boxes and 16 streams", `(() => {
		const m = [...document.querySelectorAll('#member-rows tr')].map(r => r.textContent);
		const r = document.querySelectorAll('#repl-rows tr').length;
		return !document.getElementById('cluster').hidden && m.length === 2 && m.every(x => x.includes('alive')) &&
			m.some(x => x.includes('box-b (this box)')) && r === 16; })()`)
	// A box leaving is seen by the other.
	a.stop(t)
	deadline = time.Now().Add(15 * time.Second)
	for {
		mb := list(envB, b.endpoint)
		if len(mb.Members) == 2 && (mb.Members[0].Status == "left" || mb.Members[0].Status == "failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("box-a's departure not seen: %+v", mb)
		}
		time.Sleep(300 * time.Millisecond)
	}
	for i := 0; i < 16; i++ {
		if e := endpoint(cb, fmt.Sprintf("cam-%d", i), types.APINamePutMedia); e != b.endpoint {
			t.Fatalf("with box-a gone, cam-%d's home is %s", i, e)
		}
	}
}

// consoleWait signs in to a box's console in headless Chromium and waits
// until the JavaScript condition holds.
func consoleWait(t *testing.T, endpoint, what, cond string) {
	t.Helper()
	chromium := fixture.Tool(t, "chromium")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	if err := chromedp.Do(ctx, chromedp.Navigate(endpoint+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")),
		chromedp.SendKeys(chromedp.CSS("#akid"), e2eAKID), chromedp.SendKeys(chromedp.CSS("#secret"), e2eSecret),
		chromedp.SetValue(chromedp.CSS("#region"), "us-west-2"), chromedp.Click(chromedp.CSS("#login-form button"))); err != nil {
		t.Fatalf("console sign-in: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('cluster').outerHTML`))
			t.Fatalf("console: %s: not within 30s: %s", what, html)
		}
		time.Sleep(300 * time.Millisecond)
	}
}
