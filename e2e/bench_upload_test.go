package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/fixture"
	"github.com/kvsedge/kvsedge/producer"
)

// BenchmarkUploadRateCap: a box holding a backlog (the real producer's
// relative capture stored UPLOAD_BACKLOG_COPIES times, default 4: ~21 MB,
// 40 s of video) starts uploading it to a second box with upstream.rate_mbps
// 8. Metrics: the achieved rate over the catch-up (bytes sent ÷ time from
// the first to the last uploaded byte, Mbit/s) and its ratio to the cap
// (goal: within 10 %).
func BenchmarkUploadRateCap(b *testing.B) {
	const capMbps = 8.0
	copies := 4
	if v := os.Getenv("UPLOAD_BACKLOG_COPIES"); v != "" {
		fmt.Sscan(v, &copies)
	}
	body, err := os.ReadFile(fixture.Path(fixture.RelativeH264AAC + ".mkv"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		up := startKvsedge(b, streamEnv(b.TempDir()), "--listen", "127.0.0.1:0")
		dir := b.TempDir()
		env := streamEnv(filepath.Join(dir, "data"))
		// 1. The backlog, recorded with no upstream.
		p := startKvsedge(b, env, "--listen", "127.0.0.1:0")
		kv := newSDK(b, p.endpoint).KV
		if _, err := kv.CreateStream(sdkCtx(b), &kinesisvideo.CreateStreamInput{StreamName: aws.String("backlog"), DataRetentionInHours: aws.Int32(24)}); err != nil {
			b.Fatal(err)
		}
		prod, err := producer.New(producer.Config{Endpoint: p.endpoint, StreamName: "backlog", Region: "us-west-2",
			Credentials: credentials.NewStaticCredentialsProvider(e2eAKID, e2eSecret, "")})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now().Add(-time.Hour)
		for i := range copies {
			if _, err := prod.Put(context.Background(), bytes.NewReader(body), producer.Options{Start: start.Add(time.Duration(i) * 11 * time.Second)}); err != nil {
				b.Fatal(err)
			}
		}
		p.stop(b)
		// 2. The same box with an upstream at 8 Mbit/s.
		cfgPath := filepath.Join(dir, "kvsedge.yaml")
		cfg := fmt.Sprintf("upstream:\n  endpoint: %s\n  region: us-west-2\n  access_key_id: %s\n  secret_access_key: %s\n  rate_mbps: %v\n  streams: [backlog]\n",
			up.endpoint, e2eAKID, e2eSecret, capMbps)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			b.Fatal(err)
		}
		p = startKvsedge(b, append(env, "KVSEDGE_DEMO=false"), "--listen", "127.0.0.1:0", "--config", cfgPath)
		type upl struct {
			Uploads []struct {
				Bytes     int64   `json:"bytes"`
				Fragments int64   `json:"fragments"`
				Lag       float64 `json:"lag_seconds"`
				State     string  `json:"state"`
			}
		}
		read := func() (int64, int64, string) {
			var u upl
			callJSON(b, p.endpoint, "/describeUploads", map[string]any{}, &u)
			if len(u.Uploads) == 0 {
				return 0, 0, ""
			}
			return u.Uploads[0].Bytes, u.Uploads[0].Fragments, u.Uploads[0].State
		}
		var t0, t1 time.Time
		var first, last int64
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			n, frags, state := read()
			if n > 0 && t0.IsZero() {
				t0, first = time.Now(), n
			}
			if n > last {
				t1, last = time.Now(), n
			}
			if state == "idle" && frags >= int64(copies*6) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		p.stop(b)
		up.stop(b)
		if t1.Sub(t0) <= 0 {
			b.Fatal("nothing was uploaded")
		}
		mbps := float64(last-first) * 8 / 1e6 / t1.Sub(t0).Seconds()
		b.ReportMetric(mbps, "Mbit/s")
		b.ReportMetric(mbps/capMbps, "rate/cap")
		b.ReportMetric(float64(last)/1e6, "MB")
	}
}
