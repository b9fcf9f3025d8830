package e2e

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
)

// fillDisk writes a file into dir until the filesystem is full (appending
// to the filler already there, if any).
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	for {
		if _, err := f.Write(buf[:4096]); err != nil {
			break
		}
	}
	_ = f.Sync()
	return path
}

// TestDiskFilledByAnotherWriter: something else fills the box's
// filesystem to the last byte. The box does not exit: CreateStream and
// PutMedia are refused with KVS's retriable errors, reads go on, /readyz
// says why; when the file goes, writing resumes by itself. Restarted on the
// still-full disk, it serves reads and stops on SIGTERM at once.
func TestDiskFilledByAnotherWriter(t *testing.T) {
	disk := smallDisk(t, 96)
	env := append(streamEnv(filepath.Join(disk, "data")), "KVSEDGE_STORAGE__MIN_FREE_MIB=8", "KVSEDGE_STORAGE__ON_FULL=refuse_new",
		"KVSEDGE_STORAGE__SEGMENT_MIB=2", "KVSEDGE_STORAGE__CAPACITY_INTERVAL=1s", "KVSEDGE_PROFILE=none")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep := p.endpoint
	c := newSDK(t, ep)
	rel := loadCapture(t, captures[1].file)
	body := rel.retimed(t, []int{0, 1, 2, 3, 4, 5}, 0)
	createStream(t, ep, "cam")
	if r := putMedia(t, ep, putMediaReq{Stream: "cam", TimecodeType: "RELATIVE", Start: "1795580000.000", Body: body,
		Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }}); len(r.events("PERSISTED")) != 6 {
		t.Fatalf("before the disk fills: %s", r.ackLog())
	}
	stored := fragmentSet(t, ep, "cam")

	filler := fillDisk(t, disk)
	// The first write after the disk filled finds it full and releases the
	// store's reserve: a small control-plane write has room (and Pebble
	// never meets ENOSPC).
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("early"), DataRetentionInHours: aws.Int32(1)}); err != nil {
		t.Fatalf("CreateStream with the reserve released: %v", err)
	}
	// The other writer takes that room too: now CreateStream is refused
	// with a retriable error, and the box lives.
	fillDisk(t, disk)
	_, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("new"), DataRetentionInHours: aws.Int32(1)})
	if code := apiErrorCode(err); code != "ClientLimitExceededException" {
		t.Fatalf("CreateStream on a full disk: %v (code %q)", err, code)
	}
	// PutMedia: ERROR 5001 for the first fragment, nothing else lost.
	r := putMedia(t, ep, putMediaReq{Stream: "cam", TimecodeType: "RELATIVE", Start: "1795580100.000", Body: body,
		Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }})
	if errs := r.events("ERROR"); len(errs) == 0 || errs[0].ErrorId != 5001 || len(r.events("PERSISTED")) != 0 {
		t.Fatalf("PutMedia on a full disk: %s", r.ackLog())
	}
	select {
	case <-p.exited:
		t.Fatalf("the box exited on a full disk:\n%s", p.logs.String())
	default:
	}
	if st, b := getJSON(t, ep+"/readyz"); st != 503 {
		t.Fatalf("/readyz on a full disk: %d %s", st, b)
	}
	if miss, ok := subset(stored, fragmentSet(t, ep, "cam")); !ok {
		t.Fatalf("fragment %s lost while the disk was full", miss)
	}
	if chunks := getFragmentList(t, ep, "cam", stored[:2]); len(chunks) != 2 {
		t.Fatalf("reads on a full disk: %d chunks", len(chunks))
	}

	// Restarted on the still-full disk: it serves reads, and stops at once.
	p.stop(t)
	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep = p.endpoint
	if miss, ok := subset(stored, fragmentSet(t, ep, "cam")); !ok {
		t.Fatalf("after a restart on a full disk, fragment %s is not listed", miss)
	}
	start := time.Now()
	p.stop(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("SIGTERM on a full disk took %v", d)
	}
	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	ep = p.endpoint

	// The file goes: writing resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// The box, read-only since its start, reopens its store to write
	// (in its process, on the same address: a moment without a listener).
	within(t, "writing resumes once the disk has room", 30*time.Second, func() bool {
		resp, err := http.Get(ep + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	c = newSDK(t, ep)
	if _, err := c.KV.CreateStream(sdkCtx(t), &kinesisvideo.CreateStreamInput{StreamName: aws.String("new"), DataRetentionInHours: aws.Int32(1)}); err != nil {
		t.Fatalf("CreateStream after space returned: %v", err)
	}
	if r := putMedia(t, ep, putMediaReq{Stream: "cam", TimecodeType: "RELATIVE", Start: "1795580200.000", Body: body,
		Until: func(a []ack) bool { return len(persistedOrError(a)) == 6 || firstError(a) }}); len(r.events("PERSISTED")) != 6 {
		t.Fatalf("after space returned: %s", r.ackLog())
	}
}
