package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestCrashSuite kills (SIGKILL) the box over and over while four
// producers upload into four streams at once, and after each restart
// checks that the store opens, that every fragment ever acknowledged
// PERSISTED is listed, and that the newest of them read back whole. It
// runs KVSEDGE_CRASH_CYCLES cycles (`make crash` runs 50); the default
// test run does 2.
func TestCrashSuite(t *testing.T) {
	cycles := 2
	if v := os.Getenv("KVSEDGE_CRASH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("KVSEDGE_CRASH_CYCLES=%q", v)
		}
		cycles = n
	}
	dir := t.TempDir()
	env := append(streamEnv(filepath.Join(dir, "data")), "KVSEDGE_STORAGE__SEGMENT_MIB=8")
	rel := loadCapture(t, captures[1].file)
	streams := []string{"c0", "c1", "c2", "c3"}
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	for _, s := range streams {
		createStream(t, p.endpoint, s)
	}
	persisted := map[string]map[string]bool{} // stream → fragment numbers acknowledged PERSISTED
	for _, s := range streams {
		persisted[s] = map[string]bool{}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	upload := 0
	for cycle := 0; cycle < cycles; cycle++ {
		// Four producers, each uploading the capture again and again.
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, s := range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					mu.Lock()
					upload++
					start := fmt.Sprintf("%d.000", 1795580000+upload*20)
					mu.Unlock()
					res := putMedia(t, p.endpoint, putMediaReq{Stream: s, TimecodeType: "RELATIVE", Start: start,
						Body:         rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0),
						Plan:         evenChunks(len(rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0)), 64<<10, 20*time.Millisecond),
						TolerateDown: true,
						OnAck: func(a ack) {
							if a.EventType == "PERSISTED" {
								mu.Lock()
								persisted[s][a.FragmentNumber] = true
								mu.Unlock()
							}
						}})
					if res.ReadErr != nil || res.Status != 200 {
						return // the box went down
					}
				}
			}()
		}
		time.Sleep(time.Duration(1500+rng.IntN(2500)) * time.Millisecond)
		close(stop)
		p.kill()
		wg.Wait()

		p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
		total := 0
		for _, s := range streams {
			listed := fragmentSet(t, p.endpoint, s)
			have := map[string]bool{}
			for _, n := range listed {
				have[n] = true
			}
			var newest string
			for n := range persisted[s] {
				total++
				if !have[n] {
					t.Fatalf("cycle %d: fragment %s of %s was acknowledged PERSISTED and is gone after the kill", cycle, n, s)
				}
				if n > newest {
					newest = n
				}
			}
			if newest != "" {
				chunks := getFragmentList(t, p.endpoint, s, []string{newest})
				if len(chunks) != 1 || chunks[0].FragmentNumber() != newest {
					t.Fatalf("cycle %d: the newest PERSISTED fragment of %s does not read back", cycle, s)
				}
			}
		}
		t.Logf("cycle %d: killed and restarted; %d PERSISTED fragments all present", cycle, total)
	}
}
