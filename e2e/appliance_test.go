package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads a box's /metrics with the Prometheus text parser.
func scrape(t testing.TB, endpoint string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(endpoint + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return fams
}

// metricValue is the value of the family's sample whose labels include
// want (gauge, counter or histogram count).
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func getJSON(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsHealthAndReadiness: a box recording its demo camera exports
// Prometheus metrics that parse and say what it does, and answers its
// liveness and readiness probes without credentials.
func TestMetricsHealthAndReadiness(t *testing.T) {
	env := append(streamEnv(t.TempDir()), "KVSEDGE_DEMO=true")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	var fams map[string]*dto.MetricFamily
	within(t, "the demo camera's fragments show in /metrics", 30*time.Second, func() bool {
		fams = scrape(t, p.endpoint)
		v, _ := metricValue(fams, "kvsedge_persisted_fragments_total", nil)
		return v >= 2
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"kvsedge_persist_latency_seconds", nil, 2},
		{"kvsedge_store_write_seconds", map[string]string{"step": "append"}, 2},
		{"kvsedge_store_write_seconds", map[string]string{"step": "media_sync"}, 2},
		{"kvsedge_store_write_seconds", map[string]string{"step": "index_commit"}, 2},
		{"kvsedge_ingest_bytes_total", nil, 1},
		{"kvsedge_camera_state", map[string]string{"stream": "demo", "state": "RECORDING"}, 1},
		{"kvsedge_camera_fps", map[string]string{"stream": "demo"}, 1},
		{"kvsedge_ring_bytes", nil, 0}, // nobody reads the demo: its ring may hold nothing (below)
		{"kvsedge_disk_free_bytes", nil, 1},
		{"kvsedge_disk_size_bytes", nil, 1},
		{"kvsedge_stored_media_bytes", nil, 1},
		{"kvsedge_store_write_amplification", nil, 1},
		{"kvsedge_store_written_bytes_total", map[string]string{"kind": "media"}, 1},
		{"go_goroutines", nil, 1},
	} {
		v, ok := metricValue(fams, c.name, c.labels)
		if !ok || v < c.min {
			t.Errorf("%s%v = %v (present %v), want ≥ %v", c.name, c.labels, v, ok, c.min)
		}
	}
	// A ring keeps its seconds while someone reads the stream: after a
	// live reader got a fragment, the ring holds media.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ms := getMediaStream(ctx, t, p.endpoint, "/getMedia", map[string]any{"StreamName": "demo", "StartSelector": map[string]any{"StartSelectorType": "NOW"}},
		func(c []*mediaChunk) bool { return len(c) >= 1 }, nil)
	if len(ms.complete()) < 1 {
		t.Fatalf("a live GetMedia of the demo got no fragment: status %d, %v", ms.Status, ms.EndErr)
	}
	within(t, "the ring of a stream being read holds media", 10*time.Second, func() bool {
		v, _ := metricValue(scrape(t, p.endpoint), "kvsedge_ring_bytes", nil)
		return v >= 1
	})
	// A new store had nothing to index again at start (lsm/replay.go).
	if v, ok := metricValue(fams, "kvsedge_store_replayed_fragments", nil); !ok || v != 0 {
		t.Errorf("kvsedge_store_replayed_fragments = %v (present %v) on a new store, want 0", v, ok)
	}
	if v, ok := metricValue(fams, "kvsedge_storage_refusing_new_media", nil); !ok || v != 0 {
		t.Errorf("refusing = %v %v", v, ok)
	}
	out, errOut, code := kvsedgeCmd(t, env, "capacity", "--endpoint", p.endpoint)
	var cp struct {
		FreeBytes    uint64 `json:"free_bytes"`
		MinFreeBytes uint64 `json:"min_free_bytes"`
		Strategy     string `json:"strategy"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &cp) != nil || cp.FreeBytes == 0 || cp.MinFreeBytes != 8<<20 || cp.Strategy != "DELETE_OLDEST_MEDIA" {
		t.Fatalf("kvsedge capacity: %d %s %s", code, out, errOut)
	}
	if st, body := getJSON(t, p.endpoint+"/healthz"); st != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", st, body)
	}
	if st, body := getJSON(t, p.endpoint+"/readyz"); st != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz: %d %s", st, body)
	}
}

// smallDisk mounts a tmpfs of the given size and returns its path. It
// needs root: skipped for other users; as root a mount that fails is a
// skip on a developer's machine (a container without the right to mount)
// and a failure in CI, which runs as root and must run these tests.
func smallDisk(t *testing.T, mib int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a size-limited tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot mount a size-limited tmpfs as root: %v %s", err, out)
		}
		t.Skipf("cannot mount a size-limited tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// ballast fills the filesystem at dir with a file until about leave bytes
// are free: it measures again after writing and corrects, since the
// filesystem's own accounting (pages, inodes) and the box's writes move
// free space too. Callers still check what they need against the
// controller's own reading (capacitySweptAfter).
func ballast(t *testing.T, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var size int64
	for range 5 {
		diff := freeBytes(t, dir) - leave
		if diff > -64<<10 && diff < 64<<10 {
			break
		}
		switch {
		case diff > 0:
			if _, err := f.WriteAt(make([]byte, diff), size); err != nil {
				t.Fatalf("writing the ballast: %v", err)
			}
			size += diff
		default:
			size = max(size+diff, 0)
			if err := f.Truncate(size); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path
}

// capacityReport is /describeCapacity's answer (engine.CapacityReport).
type capacityReport struct {
	At               time.Time `json:"at"`
	FreeBytes        uint64    `json:"free_bytes"`
	MinFreeBytes     uint64    `json:"min_free_bytes"`
	PendingBytes     int64     `json:"pending_bytes"`
	Refusing         bool      `json:"refusing"`
	Alarm            string    `json:"alarm"`
	DeletedFragments int       `json:"deleted_fragments"`
	DeletedBytes     int64     `json:"deleted_bytes"`
}

// capacitySweptAfter waits for a capacity sweep that started after since
// and returns its report: the state the controller acted on once whatever
// the test did before since had landed.
func capacitySweptAfter(t *testing.T, endpoint string, since time.Time) capacityReport {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var rep capacityReport
		if st, raw := callJSON(t, endpoint, "/describeCapacity", map[string]any{}, &rep); st != 200 {
			t.Fatalf("describeCapacity: %d %s", st, raw)
		}
		if rep.At.After(since) {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("no capacity sweep after %s within 20 s (last at %s)", since.Format(time.RFC3339Nano), rep.At.Format(time.RFC3339Nano))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDiskFullRefuseNewThenRecover: on a 64 MiB filesystem with the
// refuse-new strategy, uploads are stored until free space reaches the
// minimum; then PutMedia gets ERROR acks (5001), /readyz says why, the
// stored fragments stay readable; once space is freed, uploads are stored
// again.
//
// The controller decides at each sweep (every second), so the test waits
// for a sweep after each upload rather than for a time: an upload starts
// either with free space above the minimum, or with the box refusing.
func TestDiskFullRefuseNewThenRecover(t *testing.T) {
	disk := smallDisk(t, 64)
	const minFree = 10 << 20
	env := append(streamEnv(filepath.Join(disk, "data")), "KVSEDGE_STORAGE__MIN_FREE_MIB=10", "KVSEDGE_STORAGE__ON_FULL=refuse_new",
		"KVSEDGE_STORAGE__SEGMENT_MIB=2", "KVSEDGE_STORAGE__RESERVE_MIB=2", "KVSEDGE_STORAGE__CAPACITY_INTERVAL=1s", "KVSEDGE_MEDIA__RING_MIB_PER_STREAM=4",
		"KVSEDGE_PROFILE=none")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep := p.endpoint
	rel := loadCapture(t, captures[1].file)
	body := rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0)
	size := int64(len(body)) // about 5 MB
	createStream(t, ep, "cam")
	upload := func(i int) *putMediaResult {
		return putMedia(t, ep, putMediaReq{Stream: "cam", TimecodeType: "RELATIVE", Start: fmt.Sprintf("%d.000", 1795580000+i*20),
			Body: body, Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }})
	}
	// Room for the first upload twice over (a sweep in the middle of it
	// counts the data not yet stored as needed too), plus slack for the
	// store's own files; the next few uploads reach the minimum.
	fill := ballast(t, disk, minFree+2*size+4<<20)
	if rep := capacitySweptAfter(t, ep, time.Now()); rep.Refusing || rep.FreeBytes < minFree+2*uint64(size) {
		t.Fatalf("before the first upload: %+v", rep)
	}
	first := upload(0)
	if n := len(first.events("PERSISTED")); n != 6 {
		t.Fatalf("first upload: %d PERSISTED: %s", n, first.ackLog())
	}
	stored := fragmentSet(t, ep, "cam")
	var refused *putMediaResult
	for i := 1; refused == nil; i++ {
		rep := capacitySweptAfter(t, ep, time.Now())
		if i > 10 {
			t.Fatalf("free space does not reach the minimum after %d uploads: %+v", i, rep)
		}
		t.Logf("upload %d: %d MiB free, refusing %v", i, rep.FreeBytes>>20, rep.Refusing)
		r := upload(i)
		errs := r.events("ERROR")
		switch {
		case rep.Refusing:
			// The controller saw free space below the minimum: the
			// upload is refused from its first fragment.
			if len(errs) == 0 || errs[0].ErrorId != 5001 || len(r.events("PERSISTED")) != 0 {
				t.Fatalf("upload while refusing (%s): %s", rep.Alarm, r.ackLog())
			}
			refused = r
		case len(errs) > 0:
			// A sweep in the middle of the upload.
			if errs[0].ErrorId != 5001 {
				t.Fatalf("refused with ErrorId %d, want 5001: %s", errs[0].ErrorId, r.ackLog())
			}
			refused = r
		case len(r.events("PERSISTED")) != 6:
			t.Fatalf("upload %d with %d MiB free: %s", i, rep.FreeBytes>>20, r.ackLog())
		default:
			stored = fragmentSet(t, ep, "cam")
		}
	}
	within(t, "/readyz says why the box is not ready", 10*time.Second, func() bool {
		st, body := getJSON(t, ep+"/readyz")
		return st == 503 && strings.Contains(body, "refused")
	})
	// What was stored stays readable.
	got := fragmentSet(t, ep, "cam")
	if miss, ok := subset(stored, got); !ok {
		t.Fatalf("fragment %s lost while the disk was full", miss)
	}
	chunks := getFragmentList(t, ep, "cam", got[:2])
	if len(chunks) != 2 {
		t.Fatalf("GetMediaForFragmentList while full: %d chunks", len(chunks))
	}
	// Free the space: ingest resumes by itself.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	within(t, "ingest resumes once space is freed", 30*time.Second, func() bool {
		st, _ := getJSON(t, ep+"/readyz")
		return st == 200
	})
	if r := upload(100); len(r.events("PERSISTED")) != 6 {
		t.Fatalf("after freeing space: %s", r.ackLog())
	}
}

// persistedOrError are the PERSISTED and ERROR acks.
func persistedOrError(acks []ack) []ack {
	var out []ack
	for _, a := range acks {
		if a.EventType == "PERSISTED" || a.EventType == "ERROR" {
			out = append(out, a)
		}
	}
	return out
}

// TestDiskFullDeleteOldestKeepsHolds: with the delete-oldest strategy, a
// filling disk deletes the oldest media of streams not on hold, ingest goes
// on, and a held stream keeps every fragment.
//
// The controller deletes a stream's oldest minute at a time, and all of
// the test's uploads fall within a minute: a deletion takes all that cam
// has stored. So the test uploads, waiting for a sweep after each, until
// cam's oldest fragment is gone, then once more: that upload, into the
// room the deletion made, must be kept whole (deletion does not run on
// into new media).
func TestDiskFullDeleteOldestKeepsHolds(t *testing.T) {
	disk := smallDisk(t, 64)
	env := append(streamEnv(filepath.Join(disk, "data")), "KVSEDGE_STORAGE__MIN_FREE_MIB=10", "KVSEDGE_STORAGE__ON_FULL=delete_oldest",
		"KVSEDGE_STORAGE__SEGMENT_MIB=2", "KVSEDGE_STORAGE__RESERVE_MIB=2", "KVSEDGE_STORAGE__CAPACITY_INTERVAL=1s", "KVSEDGE_MEDIA__RING_MIB_PER_STREAM=4",
		"KVSEDGE_PROFILE=none")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep := p.endpoint
	rel := loadCapture(t, captures[1].file)
	body := rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0)
	createStream(t, ep, "held")
	createStream(t, ep, "cam")
	if st, raw := callJSON(t, ep, "/tagStream", map[string]any{"StreamName": "held", "Tags": map[string]string{"kvsedge:hold": "true"}}, nil); st != 200 {
		t.Fatalf("tagStream: %d %s", st, raw)
	}
	upload := func(stream string, i int) *putMediaResult {
		return putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: fmt.Sprintf("%d.000", 1795580000+i*20),
			Body: body, Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }})
	}
	if r := upload("held", 0); len(r.events("PERSISTED")) != 6 {
		t.Fatalf("held: %s", r.ackLog())
	}
	heldSet := fragmentSet(t, ep, "held")
	// About 5 MB per upload into a disk with 14 MiB above the minimum:
	// without deletion the fourth would not fit.
	ballast(t, disk, 24<<20)
	var first []string
	deleted := false
	for i := 1; ; i++ {
		if i > 16 {
			t.Fatalf("the oldest fragment of cam is still there after %d uploads into a full disk", i-1)
		}
		r := upload("cam", i)
		if len(r.events("PERSISTED")) != 6 {
			t.Fatalf("upload %d to cam: %s", i, r.ackLog())
		}
		if i == 1 {
			first = fragmentSet(t, ep, "cam")
		}
		rep := capacitySweptAfter(t, ep, time.Now())
		if rep.Refusing {
			t.Fatalf("refusing after upload %d: %+v", i, rep)
		}
		now := fragmentSet(t, ep, "cam")
		t.Logf("upload %d: %d MiB free, cam keeps %d fragments", i, rep.FreeBytes>>20, len(now))
		if !deleted {
			_, kept := subset(first[:1], now)
			deleted = !kept
			continue
		}
		var newest []string
		for _, a := range r.events("PERSISTED") {
			newest = append(newest, a.FragmentNumber)
		}
		slices.Sort(newest)
		if miss, ok := subset(newest, now); !ok || len(now) < 6 {
			t.Fatalf("cam keeps %d fragments, not %s of the upload after the deletion: deletion ran away", len(now), miss)
		}
		break
	}
	if got := fragmentSet(t, ep, "held"); len(got) != len(heldSet) {
		t.Fatalf("the held stream has %d fragments, had %d", len(got), len(heldSet))
	}
	var cp struct {
		Refusing     bool  `json:"refusing"`
		DeletedBytes int64 `json:"deleted_bytes"`
	}
	if st, raw := callJSON(t, ep, "/describeCapacity", map[string]any{}, &cp); st != 200 || cp.Refusing {
		t.Fatalf("describeCapacity: %d %s", st, raw)
	}
}
