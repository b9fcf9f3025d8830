package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckCommand: `kvsedge check` refuses to run beside a serving box,
// finds a sound store sound, and names the fragment whose media a flipped
// byte damaged (exit status 1), in plain words.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	env := streamEnv(dir)
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	createStream(t, p.endpoint, "cam")
	capt := loadCapture(t, captures[0].file)
	if r := putMedia(t, p.endpoint, putMediaReq{Stream: "cam", TimecodeType: captures[0].tcType, Start: captures[0].start, Body: capt.Raw,
		Until: persistedAll(len(capt.Frags))}); len(r.events("PERSISTED")) != len(capt.Frags) {
		t.Fatalf("upload: %s", r.ackLog())
	}
	if _, stderr, code := kvsedgeCmd(t, env, "check"); code == 0 || !strings.Contains(stderr, "is in use by process") {
		t.Fatalf("check beside a running box: exit %d, %s", code, stderr)
	}
	p.stop(t)
	out, stderr, code := kvsedgeCmd(t, env, "check")
	if code != 0 || !strings.Contains(out, "no problems") {
		t.Fatalf("check of a sound store: exit %d\n%s%s", code, out, stderr)
	}
	// Flip a byte in the third fragment's media.
	third := capt.Frags[2]
	want := capt.Raw[third.Cluster.Blocks[0].ElemOff:third.Cluster.Blocks[len(third.Cluster.Blocks)-1].End]
	flipInSegments(t, dir, want)
	out, _, code = kvsedgeCmd(t, env, "check")
	if code != 1 || !strings.Contains(out, "1 problems") || !strings.Contains(out, "cam, fragment ") ||
		!strings.Contains(out, "media is unreadable") {
		t.Fatalf("check of a damaged store: exit %d\n%s", code, out)
	}
}

// flipInSegments flips a byte in the middle of media's copy in the box's
// segment files (the box stopped).
func flipInSegments(t *testing.T, dir string, media []byte) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "media", "*", "*.seg"))
	flipped := false
	for _, s := range segs {
		b, _ := os.ReadFile(s)
		if i := bytes.Index(b, media); i >= 0 {
			b[i+len(media)/2] ^= 0xFF
			if err := os.WriteFile(s, b, 0o600); err != nil {
				t.Fatal(err)
			}
			flipped = true
		}
	}
	if !flipped {
		t.Fatal("the fragment's blocks were not found in a segment")
	}
}
