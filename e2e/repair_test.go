package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDamagedStoreRepair damages a box's store three ways — a flipped byte
// in a media segment, flipped bytes in every table of the index, the index
// directory deleted — and checks what `kvsedge check` says of each, that
// `kvsedge repair` (or the box itself, at start) rebuilds the index from
// the segments with every intact fragment listed and readable again, the
// damaged one's bytes set aside, and that the box never fails to start.
func TestDamagedStoreRepair(t *testing.T) {
	dir := t.TempDir()
	// GetMedia from EARLIEST ends 2 s after the live edge goes quiet.
	env := append(streamEnv(dir), "KVSEDGE_MEDIA__GET_MEDIA_IDLE_TIMEOUT=2s")
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	createStream(t, p.endpoint, "cam")
	capt := loadCapture(t, captures[0].file)
	if r := putMedia(t, p.endpoint, putMediaReq{Stream: "cam", TimecodeType: captures[0].tcType, Start: captures[0].start, Body: capt.Raw,
		Until: persistedAll(len(capt.Frags))}); len(r.events("PERSISTED")) != len(capt.Frags) {
		t.Fatalf("upload: %s", r.ackLog())
	}
	totalFrames := 0
	for _, f := range capt.Frags {
		totalFrames += len(f.Cluster.Blocks)
	}
	p.stop(t)

	// 1. A flipped byte in the third fragment's media.
	third := capt.Frags[2]
	want := capt.Raw[third.Cluster.Blocks[0].ElemOff:third.Cluster.Blocks[len(third.Cluster.Blocks)-1].End]
	flipInSegments(t, dir, want)
	out, _, code := kvsedgeCmd(t, env, "check")
	if code != 1 || !strings.Contains(out, "media is unreadable") {
		t.Fatalf("check after a flipped media byte: exit %d\n%s", code, out)
	}
	out, stderr, code := kvsedgeCmd(t, env, "repair")
	if code != 0 || !strings.Contains(out, "the index was rebuilt") || !strings.Contains(out, "set aside: ") ||
		!strings.Contains(out, "1 streams (cam)") {
		t.Fatalf("repair: exit %d\n%s%s", code, out, stderr)
	}
	aside, _ := filepath.Glob(filepath.Join(dir, "lost+found", "*"))
	if len(aside) != 1 {
		t.Fatalf("lost+found holds %v", aside)
	}
	out, _, code = kvsedgeCmd(t, env, "check")
	if code != 0 || !strings.Contains(out, "no problems") || !strings.Contains(out, "fragments") {
		t.Fatalf("check after repair: exit %d\n%s", code, out)
	}
	intactFrames := totalFrames - len(third.Cluster.Blocks)
	readAll := func(what string) {
		t.Helper()
		p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
		defer p.stop(t)
		got, problems, listed := eoReadListed(t, p.endpoint, "cam")
		if listed != len(capt.Frags)-1 || len(got) != intactFrames || len(problems) > 0 {
			t.Fatalf("%s: %d fragments listed (want %d), %d frames read (want %d), %v", what, listed, len(capt.Frags)-1, len(got), intactFrames, problems)
		}
		earliest, _ := eoReadEarliest(t, p.endpoint, "cam")
		if len(earliest) != intactFrames {
			t.Fatalf("%s: GetMedia EARLIEST read %d frames, want %d", what, len(earliest), intactFrames)
		}
	}
	readAll("after repairing a flipped media byte")

	// 2. Flipped bytes in every table of the index: check names the
	// damage; the box, started on it, rebuilds it and serves.
	tables, _ := filepath.Glob(filepath.Join(dir, "index", "*.sst"))
	if len(tables) == 0 {
		t.Fatal("the repaired index has no table")
	}
	for _, tp := range tables {
		b, _ := os.ReadFile(tp)
		for i := 64; i < len(b)/2; i += 61 {
			b[i] ^= 0x5A
		}
		if err := os.WriteFile(tp, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, stderr, code = kvsedgeCmd(t, env, "check")
	if code == 0 || !strings.Contains(out+stderr, "damaged") {
		t.Fatalf("check of a damaged index: exit %d\n%s%s", code, out, stderr)
	}
	before, _ := filepath.Glob(filepath.Join(dir, "index.damaged-*"))
	readAll("after the box rebuilt a damaged index at start")
	after, _ := filepath.Glob(filepath.Join(dir, "index.damaged-*"))
	if len(after) != len(before)+1 {
		t.Fatalf("the box did not set the damaged index aside: %v, then %v", before, after)
	}

	// 3. The index deleted: the box starts, lists nothing, and says why in
	// /readyz; kvsedge repair brings every fragment back.
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	p = startKvsedge(t, env, "--listen", "127.0.0.1:0")
	_, body := getJSON(t, p.endpoint+"/readyz")
	if !strings.Contains(body, "kvsedge repair") || !strings.Contains(body, "alarms") {
		t.Fatalf("/readyz without the index: %s", body)
	}
	p.stop(t)
	if out, stderr, code := kvsedgeCmd(t, env, "repair"); code != 0 || !strings.Contains(out, "1 streams (cam)") {
		t.Fatalf("repair of a lost index: exit %d\n%s%s", code, out, stderr)
	}
	readAll("after repairing a deleted index")
}
