package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/kvsedge/kvsedge/lsm"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func openMem(t *testing.T, fs vfs.FS) (*lsm.DB, *Engine) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	db, err := lsm.Open(lsm.Options{Dir: "/d", FS: fs, Logger: log, CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	e, err := openOn(db, Options{Region: "eu-west-1", AccountID: "123456789012", Logger: log,
		Clock: fixedClock{time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	return db, e
}

func TestCreateDescribeAndReload(t *testing.T) {
	fs := vfs.NewMem()
	db, e := openMem(t, fs)
	info, err := e.CreateStream(CreateStreamInput{Name: "cam", DataRetentionInHours: 2, Tags: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if info.ARN != "arn:aws:kinesisvideo:eu-west-1:123456789012:stream/cam/1795600800123" {
		t.Fatalf("ARN %s", info.ARN)
	}
	if info.Status != StatusActive || len(info.Version) != 20 || info.StorageTier != StorageTierHot {
		t.Fatalf("new stream %+v", info)
	}
	if err := e.TagStream(StreamRef{Name: "cam"}, map[string]string{"c": "d"}); err != nil {
		t.Fatal(err)
	}
	// The snapshot handed out earlier is immutable.
	if len(info.Tags) != 1 {
		t.Fatalf("old snapshot changed: %v", info.Tags)
	}
	cur, _ := e.Stream(StreamRef{ARN: info.ARN})
	if cur.Version == info.Version || len(cur.Tags) != 2 {
		t.Fatalf("after tagging %+v", cur)
	}
	_ = db.Close()

	db, e = openMem(t, fs)
	defer db.Close()
	again, err := e.Stream(StreamRef{Name: "cam"})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*again) != fmt.Sprint(*cur) {
		t.Fatalf("reload:\n%+v\n%+v", again, cur)
	}
}

func TestConcurrentCreateHasOneWinner(t *testing.T) {
	db, e := openMem(t, vfs.NewMem())
	defer db.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, losses := 0, 0
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.CreateStream(CreateStreamInput{Name: "same"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, ErrStreamExists):
				losses++
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || losses != 15 {
		t.Fatalf("wins %d losses %d", wins, losses)
	}
}

func TestRetentionAndVersionRules(t *testing.T) {
	db, e := openMem(t, vfs.NewMem())
	defer db.Close()
	info, _ := e.CreateStream(CreateStreamInput{Name: "r", DataRetentionInHours: 10})
	ref := StreamRef{Name: "r"}
	if err := e.UpdateDataRetention(ref, info.Version, false, 11); !errors.Is(err, ErrInvalidRetention) {
		t.Fatalf("decrease below 0: %v", err)
	}
	if err := e.UpdateDataRetention(ref, info.Version, true, MaxRetentionHours); !errors.Is(err, ErrInvalidRetention) {
		t.Fatalf("increase past max: %v", err)
	}
	if err := e.UpdateDataRetention(ref, "stale", true, 1); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("stale version: %v", err)
	}
	if err := e.UpdateDataRetention(ref, info.Version, false, 10); err != nil {
		t.Fatal(err)
	}
	cur, _ := e.Stream(ref)
	if cur.DataRetentionInHours != 0 {
		t.Fatalf("retention %d", cur.DataRetentionInHours)
	}
	if err := e.SetNotification(ref, &NotificationConfig{Status: "ENABLED", DestinationURI: "x:y"}); !errors.Is(err, ErrNoDataRetention) {
		t.Fatalf("notification without retention: %v", err)
	}
	if err := e.DeleteStream(strings.Replace(cur.ARN, "/r/", "/other/", 1), ""); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("delete by wrong ARN: %v", err)
	}
	if err := e.DeleteStream(cur.ARN, info.Version); !errors.Is(err, ErrVersionMismatch) {
		t.Fatalf("delete with old version: %v", err)
	}
	if err := e.DeleteStream(cur.ARN, cur.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Stream(ref); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestStreamLimit(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	db, err := lsm.Open(lsm.Options{Dir: "/d", FS: vfs.NewMem(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e, err := openOn(db, Options{MaxStreams: 2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := e.CreateStream(CreateStreamInput{Name: fmt.Sprint("s", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.CreateStream(CreateStreamInput{Name: "s2"}); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("third stream: %v", err)
	}
}

func TestParseARN(t *testing.T) {
	p, err := ParseARN("arn:aws:kinesisvideo:us-east-1:123456789012:stream/cam.1_x-y/1700000000000")
	if err != nil || p.Name != "cam.1_x-y" || p.CreationMillis != 1700000000000 || p.ResourceType != "stream" {
		t.Fatalf("%+v %v", p, err)
	}
	for _, bad := range []string{"", "arn:aws:s3:::b", "arn:aws:kinesisvideo:r:1:stream/x", "arn:aws:kinesisvideo:r:1:stream/x/y", "arn:aws:kinesisvideo:r:1:stream//1"} {
		if _, err := ParseARN(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}
