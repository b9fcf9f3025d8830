package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
)

// TestGortsplibClientAllocatesEverySecond proves what keeps a recorded
// camera's steady state from allocating nothing at all: gortsplib's
// Client replaces its read-timeout timer with a new time.NewTimer every
// checkTimeoutPeriod (1 s, unexported: client.go runInner; gortsplib v5's
// main branch does the same), 3 allocations each (a Timer and its
// channel's), whatever the stream carries. Our receive path allocates
// nothing per packet or frame (TestTappedReadAllocatesNothing,
// TestPacedConnReadAllocatesNothing, TestCameraPathAllocatesNothing);
// this is per connection and second:
// ≈ 0.12 allocations per frame at 25 fps, most of BenchmarkRecorder's
// allocs/frame. The library has no option for it, and forking it for
// that is not worth it.
//
// It runs bare gortsplib clients (none of our code) against a camera that
// sends nothing after PLAY, in a child process so that no other test's
// allocations count. It fails when gortsplib stops allocating per
// second, so the claim above gets revisited.
func TestGortsplibClientAllocatesEverySecond(t *testing.T) {
	if os.Getenv("KVSEDGE_GORTSPLIB_ALLOCS_CHILD") == "1" {
		gortsplibIdleAllocs(t)
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGortsplibClientAllocatesEverySecond$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KVSEDGE_GORTSPLIB_ALLOCS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var perSec float64 = -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var v string
		if _, err := fmt.Sscanf(sc.Text(), "allocations per client-second: %s", &v); err == nil {
			perSec, _ = strconv.ParseFloat(v, 64)
		}
	}
	if perSec < 0 {
		t.Fatalf("the child printed no figure:\n%s", out)
	}
	t.Logf("gortsplib client, idle stream: %.2f allocations per client-second", perSec)
	if perSec < 2 {
		t.Fatalf("an idle gortsplib client allocates %.2f objects per second (expected ≈ 3, its per-second timer): the library changed; revisit the allocation notes (this test's comment, ingest/doc.go's)", perSec)
	}
}

// gortsplibIdleAllocs is the child: clients playing a silent camera; it
// prints the process's allocations per client and second.
func gortsplibIdleAllocs(t *testing.T) {
	const clients, window = 4, 4 * time.Second
	cam := startRFCCamera(t, 0)
	cam.silent = true
	u, err := base.ParseURL(cam.url())
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.TransportTCP
	for range clients {
		c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Transport: &tcp, ReadTimeout: time.Minute}
		if err := c.Start2(); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		desc, _, err := c.Describe(u)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetupAll(desc.BaseURL, desc.Medias); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Play(nil); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // past every client's first tick
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	time.Sleep(window)
	runtime.ReadMemStats(&m1)
	fmt.Printf("allocations per client-second: %.2f\n", float64(m1.Mallocs-m0.Mallocs)/clients/window.Seconds())
}
