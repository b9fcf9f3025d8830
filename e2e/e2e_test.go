package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/fixture"
)

// The tests in this file run the real binary, built once by TestMain.
var kvsedgeBin string

func TestMain(m *testing.M) {
	if os.Getenv(floodHelperEnv) != "" {
		// A flood helper process of TestConnectionFloodFullSize.
		os.Exit(floodHelperMain())
	}
	if os.Getenv(putMediaHelperEnv) != "" {
		// The PutMedia client of BenchmarkPutMediaVsDD.
		os.Exit(putMediaHelperMain())
	}
	flag.Parse()
	if testing.Short() {
		// Every test here runs the binary: none is short.
		fmt.Println("e2e: skipped in -short mode (these tests build and run the binary)")
		os.Exit(0)
	}
	// The binaries these tests run read only the configuration they are
	// given: not a machine's /etc/kvsedge/kvsedge.yaml (set but empty: none).
	os.Setenv("KVSEDGE_CONFIG", "")
	dir, err := os.MkdirTemp("", "kvsedge-e2e")
	if err != nil {
		panic(err)
	}
	kvsedgeBin = filepath.Join(dir, "kvsedge")
	build := exec.Command("go", "build", "-o", kvsedgeBin, "github.com/kvsedge/kvsedge")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building kvsedge: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	e2eAKID   = "AKIDE2ETEST"
	e2eSecret = "e2e-secret-key-0123456789"
)

// proc is a running kvsedge process.
type proc struct {
	cmd      *exec.Cmd
	endpoint string
	logs     *syncBuffer
	exited   chan struct{}
}

// syncBuffer collects a process's log lines; the reader goroutine writes
// while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) WriteString(v string) {
	s.mu.Lock()
	s.b.WriteString(v)
	s.mu.Unlock()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingLine = regexp.MustCompile(`msg="kvsedge serving" .*endpoint=(\S+)`)

// startKvsedge runs `kvsedge serve` with args and env and waits until it
// logs that it is serving.
func startKvsedge(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	return startServing(t, exec.Command(kvsedgeBin, append([]string{"serve"}, args...)...), env, 30*time.Second)
}

// startServing starts cmd (a kvsedge, perhaps under an emulator) with env
// and waits up to within for its "kvsedge serving" log line.
func startServing(t testing.TB, cmd *exec.Cmd, env []string, within time.Duration) *proc {
	t.Helper()
	cmd.Env = append(append(os.Environ(), "KVSEDGE_LOG__LEVEL=info"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &syncBuffer{}, exited: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.logs.WriteString(line + "\n")
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	select {
	case p.endpoint = <-found:
	case <-p.exited:
		t.Fatalf("%s exited before serving:\n%s", filepath.Base(cmd.Path), p.logs.String())
	case <-time.After(within):
		t.Fatalf("%s did not start serving:\n%s", filepath.Base(cmd.Path), p.logs.String())
	}
	return p
}

func (p *proc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("kvsedge did not stop on SIGTERM")
	}
}

func (p *proc) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	<-p.exited
}

// kvsedgeCmd runs a kvsedge subcommand and returns stdout, stderr, and the
// exit code.
func kvsedgeCmd(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(kvsedgeBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// awsCLI runs the aws CLI against endpoint and decodes its JSON output into
// out (when out is not nil). The CLI takes a second or more a call: it is
// for the compatibility tour, TestAWSCLITour; other tests drive boxes with
// aws-sdk-go-v2 (sdk_test.go).
func awsCLI(t *testing.T, endpoint string, extraEnv []string, out any, args ...string) {
	t.Helper()
	stdout, stderr, err := awsCLIRaw(t, endpoint, extraEnv, args...)
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(stdout), out); err != nil {
			t.Fatalf("aws %s: output %q: %v", strings.Join(args, " "), stdout, err)
		}
	}
}

func awsCLIRaw(t *testing.T, endpoint string, extraEnv []string, args ...string) (string, string, error) {
	t.Helper()
	bin := fixture.Tool(t, "aws")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--endpoint-url", endpoint, "--output", "json")...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(),
		"HOME="+home, "AWS_CONFIG_FILE="+filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(home, "none"),
		"AWS_ACCESS_KEY_ID="+e2eAKID, "AWS_SECRET_ACCESS_KEY="+e2eSecret, "AWS_DEFAULT_REGION=us-west-2",
		"AWS_MAX_ATTEMPTS=1", "AWS_PAGER=")
	cmd.Env = append(cmd.Env, extraEnv...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}
