package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
		{"kvsedge_ingest_bytes_total", nil, 1},
		{"kvsedge_camera_state", map[string]string{"stream": "demo", "state": "RECORDING"}, 1},
		{"kvsedge_camera_fps", map[string]string{"stream": "demo"}, 1},
		{"kvsedge_ring_bytes", nil, 1},
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

// smallDisk mounts a tmpfs of the given size (root only; skipped
// elsewhere) and returns its path.
func smallDisk(t *testing.T, mib int) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a size-limited tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// ballast fills the filesystem at dir until leave bytes are free.
func ballast(t *testing.T, dir string, leave int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	path := filepath.Join(dir, "ballast")
	if free > leave {
		if err := os.WriteFile(path, make([]byte, free-leave), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestDiskFullRefuseNewThenRecover: on a 64 MiB filesystem with the
// refuse-new strategy, uploads are stored until free space reaches the
// minimum; then PutMedia gets ERROR acks (5001), /readyz says why, the
// stored fragments stay readable; once space is freed, uploads are stored
// again.
func TestDiskFullRefuseNewThenRecover(t *testing.T) {
	disk := smallDisk(t, 64)
	env := append(streamEnv(filepath.Join(disk, "data")), "KVSEDGE_STORAGE__MIN_FREE_MIB=10", "KVSEDGE_STORAGE__ON_FULL=refuse_new",
		"KVSEDGE_STORAGE__SEGMENT_MIB=2", "KVSEDGE_STORAGE__CAPACITY_INTERVAL=1s", "KVSEDGE_MEDIA__RING_MIB_PER_STREAM=4",
		"KVSEDGE_PROFILE=none")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep := p.endpoint
	rel := loadCapture(t, captures[1].file)
	createStream(t, ep, "cam")
	// Leave 14 MiB free: one 5 MB upload fits, the next crosses the minimum.
	fill := ballast(t, disk, 14<<20)
	upload := func(i int) *putMediaResult {
		return putMedia(t, ep, putMediaReq{Stream: "cam", TimecodeType: "RELATIVE", Start: fmt.Sprintf("%d.000", 1795580000+i*20),
			Body: rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0), Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }})
	}
	first := upload(0)
	if n := len(first.events("PERSISTED")); n != 6 {
		t.Fatalf("first upload: %d PERSISTED: %s", n, first.ackLog())
	}
	stored := fragmentSet(t, ep, "cam")
	var refused *putMediaResult
	within(t, "uploads are refused once free space is below the minimum", 30*time.Second, func() bool {
		r := upload(len(stored) + 1)
		if errs := r.events("ERROR"); len(errs) > 0 {
			if errs[0].ErrorId != 5001 {
				t.Fatalf("refused with ErrorId %d, want 5001: %s", errs[0].ErrorId, r.ackLog())
			}
			refused = r
			return true
		}
		stored = fragmentSet(t, ep, "cam")
		return false
	})
	_ = refused
	if st, body := getJSON(t, ep+"/readyz"); st != 503 || !strings.Contains(body, "refused") {
		t.Fatalf("/readyz while full: %d %s", st, body)
	}
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
func TestDiskFullDeleteOldestKeepsHolds(t *testing.T) {
	disk := smallDisk(t, 64)
	env := append(streamEnv(filepath.Join(disk, "data")), "KVSEDGE_STORAGE__MIN_FREE_MIB=10", "KVSEDGE_STORAGE__ON_FULL=delete_oldest",
		"KVSEDGE_STORAGE__SEGMENT_MIB=2", "KVSEDGE_STORAGE__CAPACITY_INTERVAL=1s", "KVSEDGE_MEDIA__RING_MIB_PER_STREAM=4",
		"KVSEDGE_PROFILE=none")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep := p.endpoint
	rel := loadCapture(t, captures[1].file)
	createStream(t, ep, "held")
	createStream(t, ep, "cam")
	if st, raw := callJSON(t, ep, "/tagStream", map[string]any{"StreamName": "held", "Tags": map[string]string{"kvsedge:hold": "true"}}, nil); st != 200 {
		t.Fatalf("tagStream: %d %s", st, raw)
	}
	upload := func(stream string, i int) *putMediaResult {
		return putMedia(t, ep, putMediaReq{Stream: stream, TimecodeType: "RELATIVE", Start: fmt.Sprintf("%d.000", 1795580000+i*20),
			Body: rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0), Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }})
	}
	if r := upload("held", 0); len(r.events("PERSISTED")) != 6 {
		t.Fatalf("held: %s", r.ackLog())
	}
	heldSet := fragmentSet(t, ep, "held")
	ballast(t, disk, 24<<20)
	// About 5 MB per upload into a disk with 14 MiB above the minimum:
	// without deletion the fourth would not fit.
	var first []string
	for i := 1; i <= 8; i++ {
		r := upload("cam", i)
		if len(r.events("PERSISTED")) != 6 {
			t.Fatalf("upload %d to cam: %s", i, r.ackLog())
		}
		if i == 1 {
			first = fragmentSet(t, ep, "cam")
		}
		time.Sleep(1500 * time.Millisecond) // let the controller run
	}
	now := fragmentSet(t, ep, "cam")
	if _, ok := subset(first[:1], now); ok {
		t.Fatalf("the oldest fragment of cam is still there after 8 uploads into a full disk (%d fragments)", len(now))
	}
	if len(now) < 6 {
		t.Fatalf("cam keeps %d fragments: deletion ran away", len(now))
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
