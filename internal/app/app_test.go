package app

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/engine"
	"github.com/kvsedge/kvsedge/internal/config"
	"github.com/kvsedge/kvsedge/internal/fragment"
	"go.uber.org/goleak"
)

// libraryGoroutines are goroutines the App does not own: fasthttp's
// process-wide Date-header ticker (started once, never stopped), and its
// worker pool's cleaner, which sees the pool stopped only after its
// current sleep of MaxIdleWorkerDuration (10 s) and then returns.
var libraryGoroutines = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
}

// TestAppRecordsDemoServesAndClosesClean: the appliance in this process
// opens on its defaults, records the demo camera, answers a signed
// ListStreams, and closes with no goroutine left behind.
func TestAppRecordsDemoServesAndClosesClean(t *testing.T) {
	defer goleak.VerifyNone(t, libraryGoroutines...)
	cfg := config.Default()
	cfg.Listen, cfg.DataDir, cfg.Profile = "127.0.0.1:0", t.TempDir(), "none"
	cfg.AccessKeyID, cfg.SecretAccessKey = "AKIDAPPTEST", "app-test-secret"
	a, err := Open(Options{Config: &cfg, Logger: slog.New(slog.DiscardHandler), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// The demo camera records: a fragment is listed within its first
	// fragments' time.
	deadline := time.Now().Add(20 * time.Second)
	var listed []fragment.Meta
	for len(listed) == 0 && time.Now().Before(deadline) {
		listed, _, err = a.Engine().ListFragments(engine.StreamRef{Name: "demo"}, fragment.ByServerTime, 0, time.Now().Add(time.Hour).UnixMilli(), nil, 10)
		if err != nil && time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(listed) == 0 {
		t.Fatalf("the demo camera stored no fragment in 20 s: %+v", a.Cameras().States())
	}

	tr := &http.Transport{}
	kvs := kinesisvideo.New(kinesisvideo.Options{Region: "us-east-1", BaseEndpoint: aws.String(a.Endpoint()), HTTPClient: &http.Client{Transport: tr},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDAPPTEST", "app-test-secret", "")})
	out, err := kvs.ListStreams(ctx, &kinesisvideo.ListStreamsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.StreamInfoList) != 1 || aws.ToString(out.StreamInfoList[0].StreamName) != "demo" {
		t.Fatalf("ListStreams: %+v", out.StreamInfoList)
	}
	bad := kinesisvideo.New(kinesisvideo.Options{Region: "us-east-1", BaseEndpoint: aws.String(a.Endpoint()), HTTPClient: &http.Client{Transport: tr},
		Credentials: credentials.NewStaticCredentialsProvider("AKIDAPPTEST", "wrong-secret", "")})
	if _, err := bad.ListStreams(ctx, &kinesisvideo.ListStreamsInput{}); err == nil {
		t.Fatal("a request signed with the wrong secret was served")
	}
	tr.CloseIdleConnections()

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestAppOpenRefusesBadConfigAndUndoes: Open validates the whole
// configuration, and an Open that fails part-way leaves nothing running.
func TestAppOpenRefusesBadConfigAndUndoes(t *testing.T) {
	defer goleak.VerifyNone(t, libraryGoroutines...)
	cfg := config.Default()
	cfg.Listen, cfg.DataDir, cfg.Profile, cfg.Region = "127.0.0.1:0", t.TempDir(), "none", "Mars"
	if _, err := Open(Options{Config: &cfg, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("region Mars accepted")
	}
	// The store opens, then the listen address is taken: the store must be
	// closed again (a second Open of the same directory succeeds).
	cfg = config.Default()
	cfg.DataDir, cfg.Profile, cfg.Demo = t.TempDir(), "none", false
	first := cfg
	first.Listen = "127.0.0.1:0"
	a, err := Open(Options{Config: &first, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	taken := a.Addr().String()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	holder := cfg
	holder.DataDir, holder.Listen = t.TempDir(), taken
	h, err := Open(Options{Config: &holder, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	second := cfg
	second.Listen = taken
	if _, err := Open(Options{Config: &second, Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Fatal("a taken listen address was accepted")
	}
	third := cfg
	third.Listen = "127.0.0.1:0"
	b, err := Open(Options{Config: &third, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("the store was left open by the failed Open: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestDataDirectoryIsPrivateAndOneServersAlone: the data directory and what
// the box writes there are its owner's only, and a second box on the same
// directory is refused with the first one's process id.
func TestDataDirectoryIsPrivateAndOneServersAlone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := config.Default()
	cfg.Listen, cfg.DataDir, cfg.Profile, cfg.Demo = "127.0.0.1:0", dir, "none", false
	a, err := Open(Options{Config: &cfg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	second := cfg
	_, err = Open(Options{Config: &second, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("is in use by process %d", os.Getpid())) {
		t.Fatalf("second box on the same directory: %v", err)
	}
	if _, err := a.Engine().CreateStream(engine.CreateStreamInput{Name: "s", DataRetentionInHours: 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	seen := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s is %v: readable by others", path, perm)
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen < 5 {
		t.Fatalf("only %d entries in the data directory", seen)
	}
	// Closed, the directory is free again.
	b, err := Open(Options{Config: &second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	b.Close()
}
