package e2e

import (
	"debug/elf"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// TestArm64BinaryUnderQemu builds the release binaries for the boards —
// linux/arm64, and linux/arm (GOARM=7) with KVSEDGE_TEST_ARMV7 — checks that they are static ELF
// executables for the right machine, and runs the arm64 one under qemu user
// emulation: it must serve the signed KVS API and exit cleanly on SIGTERM.
func TestArm64BinaryUnderQemu(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two cross binaries and runs one under emulation")
	}
	qemu := fixture.Tool(t, "qemu-aarch64-static")
	start := time.Now()

	// Cross-build both binaries at once (what `make release` builds, flags
	// included).
	dir := t.TempDir()
	arm64Bin := filepath.Join(dir, "kvsedge-linux-arm64")
	armv7Bin := filepath.Join(dir, "kvsedge-linux-armv7")
	builds := []struct {
		out string
		env []string
	}{
		{arm64Bin, []string{"GOOS=linux", "GOARCH=arm64"}},
	}
	// The 32-bit build doubles a cold CI machine's compile time; it is
	// checked when KVSEDGE_TEST_ARMV7 is set (make release-test sets it).
	if os.Getenv("KVSEDGE_TEST_ARMV7") != "" {
		builds = append(builds, struct {
			out string
			env []string
		}{armv7Bin, []string{"GOOS=linux", "GOARCH=arm", "GOARM=7"}})
	}
	errs := make([]string, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", b.out, "github.com/kvsedge/kvsedge")
			cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), b.env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = strings.Join(b.env, " ") + ": " + err.Error() + "\n" + string(out)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != "" {
			t.Fatalf("go build %s", e)
		}
	}
	t.Logf("cross builds: %v", time.Since(start).Round(time.Millisecond))

	checkStaticELF(t, arm64Bin, elf.EM_AARCH64, elf.ELFCLASS64)
	if len(builds) > 1 {
		checkStaticELF(t, armv7Bin, elf.EM_ARM, elf.ELFCLASS32)
	}

	// The armv7 binary runs too, when qemu-arm-static is there (optional).
	if qemuArm, err := exec.LookPath("qemu-arm-static"); err == nil && len(builds) > 1 {
		out, err := exec.Command(qemuArm, armv7Bin, "help").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "usage: kvsedge") {
			t.Fatalf("armv7 binary under qemu-arm-static: %v\n%s", err, out)
		}
	}

	// Serve under emulation.
	dataDir := t.TempDir()
	served := time.Now()
	p := startUnderQemu(t, qemu, arm64Bin, []string{
		"KVSEDGE_ACCESS_KEY_ID=" + e2eAKID,
		"KVSEDGE_SECRET_ACCESS_KEY=" + e2eSecret,
		"KVSEDGE_REGION=us-west-2",
		"KVSEDGE_ACCOUNT_ID=111122223333",
	}, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--demo=false")
	t.Logf("arm64 serving under qemu after %v at %s", time.Since(served).Round(time.Millisecond), p.endpoint)

	var created struct{ StreamARN string }
	if status, raw := callJSON(t, p.endpoint, "/createStream", map[string]any{
		"StreamName": "pi-cam", "DataRetentionInHours": 24, "MediaType": "video/h264",
	}, &created); status != 200 {
		t.Fatalf("CreateStream: %d %s", status, raw)
	}
	if !strings.HasPrefix(created.StreamARN, "arn:aws:kinesisvideo:us-west-2:111122223333:stream/pi-cam/") {
		t.Fatalf("CreateStream ARN %q", created.StreamARN)
	}
	var listed struct {
		StreamInfoList []struct{ StreamName, StreamARN string }
	}
	if status, raw := callJSON(t, p.endpoint, "/listStreams", map[string]any{}, &listed); status != 200 {
		t.Fatalf("ListStreams: %d %s", status, raw)
	}
	if len(listed.StreamInfoList) != 1 || listed.StreamInfoList[0].StreamName != "pi-cam" ||
		listed.StreamInfoList[0].StreamARN != created.StreamARN {
		t.Fatalf("ListStreams: %+v", listed.StreamInfoList)
	}
	var described describeOut
	if status, raw := callJSON(t, p.endpoint, "/describeStream", map[string]any{"StreamName": "pi-cam"}, &described); status != 200 {
		t.Fatalf("DescribeStream: %d %s", status, raw)
	}
	if si := described.StreamInfo; si.StreamARN != created.StreamARN || si.Status != "ACTIVE" ||
		si.DataRetentionInHours != 24 || si.MediaType != "video/h264" {
		t.Fatalf("DescribeStream: %+v", si)
	}
	// An unsigned request is refused: authentication is on.
	resp, err := http.Post(p.endpoint+"/listStreams", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("x-amzn-ErrorType") != "MissingAuthenticationTokenException" {
		t.Fatalf("unsigned ListStreams: %d %s, want 403 MissingAuthenticationTokenException", resp.StatusCode, resp.Header.Get("x-amzn-ErrorType"))
	}

	stopped := time.Now()
	p.stop(t)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("kvsedge under qemu exited with %d after SIGTERM:\n%s", code, p.logs.String())
	}
	t.Logf("stopped cleanly in %v; whole test %v", time.Since(stopped).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// checkStaticELF checks that path is a static Linux executable for machine.
func checkStaticELF(t *testing.T, path string, machine elf.Machine, class elf.Class) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
	defer f.Close()
	if f.Machine != machine || f.Class != class || f.Type != elf.ET_EXEC {
		t.Fatalf("%s: machine %v class %v type %v, want %v %v %v",
			filepath.Base(path), f.Machine, f.Class, f.Type, machine, class, elf.ET_EXEC)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("%s: has a %v program header: not a static binary", filepath.Base(path), p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Fatalf("%s: links %v", filepath.Base(path), libs)
	}
}

// startUnderQemu is startKvsedge for a foreign binary run by qemu user
// emulation, with a longer start-up allowance.
func startUnderQemu(t *testing.T, qemu, bin string, env []string, args ...string) *proc {
	t.Helper()
	return startServing(t, exec.Command(qemu, append([]string{bin}, args...)...), env, 45*time.Second)
}
