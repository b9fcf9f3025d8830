package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/kinesisvideo"
	"github.com/kvsedge/kvsedge/internal/config"
)

func TestConfigCommandRedacts(t *testing.T) {
	out, _, code := kvsedgeCmd(t, []string{"KVSEDGE_ACCESS_KEY_ID=SHOWNKEY", "KVSEDGE_SECRET_ACCESS_KEY=hidden-secret-value"}, "config", "--listen", "127.0.0.1:9999")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(out, "listen: 127.0.0.1:9999") || !strings.Contains(out, "SHOWNKEY") || strings.Contains(out, "hidden-secret-value") {
		t.Fatalf("config output:\n%s", out)
	}
	_, stderr, code := kvsedgeCmd(t, nil, "serve", "--account-id", "12")
	if code == 0 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "account_id") {
		t.Fatalf("invalid config start-up: exit %d, %q", code, stderr)
	}
	out, _, code = kvsedgeCmd(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "kvsedge ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

// TestGeneratedCredentials: the first serve generates a key pair in the
// data directory (0600) and its first log lines say where the console is,
// how to sign in and the aws CLI's endpoint; `kvsedge credentials` prints
// the pair (before serve it creates none and says why); a second serve on
// the directory is told which process holds it.
func TestGeneratedCredentials(t *testing.T) {
	dir := t.TempDir()
	env := []string{"KVSEDGE_DATA_DIR=" + dir}
	if out, errOut, code := kvsedgeCmd(t, env, "credentials"); code != 1 || out != "" || !strings.Contains(errOut, "created by `kvsedge serve` on its first start") {
		t.Fatalf("credentials before the first serve: exit %d, %q, %q", code, out, errOut)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("credentials before the first serve created %v", ents)
	}
	p := startKvsedge(t, env, "--listen", "127.0.0.1:0")
	lines := strings.SplitN(p.logs.String(), "\n", 7)
	first := strings.Join(lines[:min(len(lines), 6)], "\n")
	for _, w := range []string{
		"console: open " + p.endpoint + "/ in a browser; sign in with the key pair `kvsedge credentials --data-dir " + dir + "` prints",
		"aws --endpoint-url " + p.endpoint + " kinesisvideo list-streams",
	} {
		if !strings.Contains(first, w) {
			t.Errorf("the first log lines do not say %q:\n%s", w, first)
		}
	}
	_, errOut, code := kvsedgeCmd(t, env, "serve", "--listen", "127.0.0.1:0")
	if want := fmt.Sprintf("data directory %s is in use by process %d", dir, p.cmd.Process.Pid); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("a second serve on the data directory: exit %d, %q; want %q", code, errOut, want)
	}
	out, _, code := kvsedgeCmd(t, env, "credentials")
	if code != 0 || !strings.Contains(out, "export AWS_ACCESS_KEY_ID=AKKVSEDGE") {
		t.Fatalf("credentials: %d %q", code, out)
	}
	st, err := os.Stat(filepath.Join(dir, config.GeneratedCredentialsFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", err, st)
	}
	out2, _, _ := kvsedgeCmd(t, env, "credentials")
	if out2 != out {
		t.Fatalf("credentials changed between runs:\n%s\n%s", out, out2)
	}
	// The server started without configured keys accepts the generated pair.
	var akid, secret string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "export AWS_ACCESS_KEY_ID="); ok {
			akid = v
		}
		if v, ok := strings.CutPrefix(line, "export AWS_SECRET_ACCESS_KEY="); ok {
			secret = v
		}
	}
	if akid == "" || secret == "" {
		t.Fatalf("credentials printed no key pair:\n%s", out)
	}
	if _, err := newSDKWith(t, p.endpoint, sdkOptions{AKID: akid, Secret: secret}).KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{}); err != nil {
		t.Fatalf("the generated key pair: %v", err)
	}
	_, err = newSDK(t, p.endpoint).KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{})
	if code := apiErrorCode(err); code != "UnrecognizedClientException" {
		t.Fatalf("other key: error code %q (%v), want UnrecognizedClientException", code, err)
	}
}

func TestNoAuthSaysSo(t *testing.T) {
	p := startKvsedge(t, []string{"KVSEDGE_DATA_DIR=" + t.TempDir()}, "--listen", "127.0.0.1:0", "--no-auth")
	if !strings.Contains(p.logs.String(), "AUTHENTICATION IS OFF") {
		t.Fatalf("no warning:\n%s", p.logs.String())
	}
	if _, err := newSDKWith(t, p.endpoint, sdkOptions{Secret: "anything"}).KV.ListStreams(sdkCtx(t), &kinesisvideo.ListStreamsInput{}); err != nil {
		t.Fatalf("--no-auth refused a request: %v", err)
	}
}
