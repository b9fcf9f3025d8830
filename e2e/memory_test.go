package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/engine/mkv"
	"github.com/kvsedge/kvsedge/hwprofiles"
	"github.com/kvsedge/kvsedge/internal/mkvcheck"
	"github.com/kvsedge/kvsedge/producer"
)

// TestMemoryBudgetHoldsEightBigUploads is issue 13's memory test on the
// smallest profile (pi-zero-2w: a 96 MiB media budget beside a 160 MiB Go
// limit): 8 producers upload a 48 MB fragment each, at once — 384 MB, 4×
// the budget; before the budget this took the process to 610 MB. The
// box's resident memory (VmHWM, its peak) stays within the media budget
// plus a stated constant for everything else (Go heap, stacks, binary);
// uploads beyond the budget are refused with ERROR 5000 (retriable), the
// box never exits, and once the producers have re-sent what was refused,
// every fragment is PERSISTED and readable exactly once (ListFragments and
// GetMedia).
func TestMemoryBudgetHoldsEightBigUploads(t *testing.T) {
	const (
		uploads   = 8
		perUpload = 1
		frameSize = 500_000
		frames    = 96 // 48 MB a fragment, 9.6 s of "video"
		// rssOverBudget is what the box may hold beyond its media budget:
		// the Go heap (metadata, connections, Pebble's 8 MiB cache and
		// memtables, 8 uploads' 3×64 KiB body buffers), goroutine stacks
		// and the binary's pages (measured: 25–40 MiB).
		rssOverBudget = 64 << 20
	)
	prof, _ := hwprofiles.ByName("pi-zero-2w")
	budget := int64(prof.MediaMemoryMiB) << 20

	dir := t.TempDir()
	// Production buffers (reused, not guarded): the memory measured is
	// what a box holds.
	env := append(streamEnv(dir), "KVSEDGE_PROFILE=pi-zero-2w", "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=300ms", "KVSEDGE_MEDIA_DEBUG=0")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := newSDK(t, ep)
	for i := 0; i < uploads; i++ {
		if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String(fmt.Sprintf("big%d", i)),
			DataRetentionInHours: aws.Int32(24)}); err != nil {
			t.Fatal(err)
		}
	}

	// Two 48 MB fragments (the same for every stream: deduplication is per
	// stream), absolute timecodes 10 s apart.
	hdr, err := mkv.BuildHeader([]mkv.TrackSpec{{Number: 1, Type: mkv.TrackVideo, CodecID: mkv.CodecH264,
		CodecPrivate: []byte{1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 4, 0x68, 0xee, 0x3c, 0x80}, Width: 1280, Height: 720}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).UnixMilli()
	body := bytes.NewBuffer(append([]byte(nil), hdr.Raw...))
	var want []string // each fragment's cluster digest
	frame := make([]byte, frameSize)
	for k := 0; k < perUpload; k++ {
		var b mkv.FragmentBuilder
		tc := base + int64(k)*10_000
		if err := b.Start(hdr, tc, frames*(frameSize+16)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < frames; i++ {
			for j := 0; j < frameSize; j += 8 {
				binary.BigEndian.PutUint64(frame[j:], uint64(k)<<48|uint64(i)<<32|uint64(j))
			}
			if err := b.AddBlock(0, tc+int64(i)*100, i == 0, frame); err != nil {
				t.Fatal(err)
			}
		}
		f, err := b.Finish()
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, clusterDigest(t, f.Buf[:f.ClusterLen]))
		body.Write(f.Buf)
	}
	if body.Len() < perUpload*48_000_000 {
		t.Fatalf("body of %d bytes", body.Len())
	}

	// The box's memory, sampled while it works; /readyz while refusing.
	pid := p.cmd.Process.Pid
	var maxRSS atomic.Int64
	var readyzMemory atomic.Value
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss, _ := procMemory(pid); rss > maxRSS.Load() {
				maxRSS.Store(rss)
			}
			if readyzMemory.Load() == nil {
				if resp, err := http.Get(ep + "/readyz"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), "media memory budget full") {
						readyzMemory.Store(string(b))
					}
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
		}
	}()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		errAcks  = map[int]int{}
		persist  = map[string]map[uint64]string{} // stream → timecode → number
		putStats = make([]producer.Stats, uploads)
		putErrs  = make([]error, uploads)
	)
	for i := 0; i < uploads; i++ {
		stream := fmt.Sprintf("big%d", i)
		persist[stream] = map[uint64]string{}
		pr, err := producer.New(producer.Config{Endpoint: ep, StreamName: stream, Region: "us-west-2",
			Credentials: credentials.NewStaticCredentialsProvider(e2eAKID, e2eSecret, ""), MaxAttempts: 1000})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			putStats[i], putErrs[i] = pr.Put(ctx, bytes.NewReader(body.Bytes()), producer.Options{OnAck: func(a producer.Ack) {
				mu.Lock()
				defer mu.Unlock()
				switch a.EventType {
				case "ERROR":
					errAcks[a.ErrorId]++
				case "PERSISTED":
					if prev, ok := persist[stream][a.FragmentTimecode]; ok && prev != a.FragmentNumber {
						t.Errorf("%s: fragment %d PERSISTED as %s and as %s", stream, a.FragmentTimecode, prev, a.FragmentNumber)
					}
					persist[stream][a.FragmentTimecode] = a.FragmentNumber
				}
			}})
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(stop)
	<-sampled
	rss, hwm := procMemory(pid)
	select {
	case <-p.exited:
		t.Fatalf("the box exited:\n%s", p.logs.String())
	default:
	}
	for i, err := range putErrs {
		if err != nil || putStats[i].Persisted != perUpload {
			t.Fatalf("upload %d: %v (stats %+v); ERROR acks by id %v", i, err, putStats[i], errAcks)
		}
	}
	t.Logf("%d uploads of %d × %d MB in %v; ERROR acks by id %v; box RSS peak %d MiB sampled, VmHWM %d MiB, %d MiB after; media budget %d MiB",
		uploads, perUpload, frames*frameSize/1_000_000, took.Round(time.Millisecond), errAcks, maxRSS.Load()>>20, hwm>>20, rss>>20, budget>>20)

	// Refused, retriably, and said so.
	if errAcks[5000] == 0 {
		t.Fatalf("no upload was refused (ERROR 5000) although 8× the budget arrived at once: %v", errAcks)
	}
	for id := range errAcks {
		if id != 5000 {
			t.Fatalf("ERROR acks other than 5000: %v", errAcks)
		}
	}
	metrics := getText(t, ep+"/metrics")
	if v := textMetric(metrics, `kvsedge_media_memory_refusals_total{holder="upload"}`); v < 1 {
		t.Fatalf("refusals metric %v:\n%s", v, grepLines(metrics, "kvsedge_media_memory"))
	}
	if textMetric(metrics, "kvsedge_media_memory_budget_bytes") != float64(budget) {
		t.Fatalf("budget metric:\n%s", grepLines(metrics, "kvsedge_media_memory"))
	}
	if readyzMemory.Load() == nil {
		t.Error("/readyz never reported the memory refusals")
	}
	if !strings.Contains(p.logs.String(), "media memory budget full") {
		t.Error("the log does not say why uploads were refused")
	}
	// Within the budget.
	if hwm > budget+rssOverBudget {
		t.Fatalf("box peak RSS (VmHWM) %d MiB > media budget %d MiB + %d MiB", hwm>>20, budget>>20, rssOverBudget>>20)
	}

	// Every fragment stored and readable exactly once.
	readStart := time.Now()
	defer func() { t.Logf("read back in %v", time.Since(readStart).Round(time.Millisecond)) }()
	for i := 0; i < uploads; i++ {
		stream := fmt.Sprintf("big%d", i)
		frags := c.listFragments(t, stream)
		if len(frags) != perUpload {
			t.Fatalf("%s: ListFragments has %d fragments, want %d", stream, len(frags), perUpload)
		}
		seen := map[int64]bool{}
		for _, f := range frags {
			ms := aws.ToTime(f.ProducerTimestamp).UnixMilli()
			if seen[ms] || (ms-base)%10_000 != 0 || aws.ToString(f.FragmentNumber) != persist[stream][uint64(ms)] {
				t.Fatalf("%s: fragment %s at %d (PERSISTED %v)", stream, aws.ToString(f.FragmentNumber), ms, persist[stream])
			}
			seen[ms] = true
		}
		var out bytes.Buffer
		c.getMedia(t, stream, "EARLIEST", &out)
		chunks := mkvcheck.Complete(mkvcheck.MustParseMedia(t, out.Bytes()))
		if len(chunks) != perUpload {
			t.Fatalf("%s: GetMedia returned %d whole fragments, want %d", stream, len(chunks), perUpload)
		}
		for k, ch := range chunks {
			if len(ch.Clusters) != 1 || ch.Clusters[0].Digest() != want[k] {
				t.Fatalf("%s: GetMedia fragment %d is not the one sent", stream, k)
			}
		}
	}
	if st, _ := getJSON(t, ep+"/healthz"); st != http.StatusOK {
		t.Fatalf("/healthz %d after the uploads", st)
	}
	_, hwm = procMemory(pid)
	t.Logf("after reading every fragment back: VmHWM %d MiB", hwm>>20)
	if hwm > budget+rssOverBudget {
		t.Fatalf("box peak RSS (VmHWM) %d MiB > media budget %d MiB + %d MiB after the reads", hwm>>20, budget>>20, rssOverBudget>>20)
	}
}

// clusterDigest is the digest of one whole Cluster element's blocks.
func clusterDigest(t *testing.T, cluster []byte) string {
	t.Helper()
	els, err := mkvcheck.Walk(cluster)
	if err != nil || len(els) != 1 {
		t.Fatalf("a cluster of %d elements: %v", len(els), err)
	}
	cl, err := mkvcheck.ParseCluster(cluster, els[0])
	if err != nil {
		t.Fatal(err)
	}
	return cl.Digest()
}

// procMemory is a process's resident memory now and at its peak
// (VmRSS, VmHWM).
func procMemory(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

func getText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
