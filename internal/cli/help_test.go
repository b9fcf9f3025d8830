package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvsedge/kvsedge/internal/status"
)

// serverOnlyFlags are configuration flags only serve and config take: a
// client command's help must not list them.
var serverOnlyFlags = []string{"--listen", "--tls-cert", "--tls-key", "--no-auth", "--demo", "--profile", "--account-id", "--data-endpoint", "--log-level"}

// TestTopLevelHelpListsCommands: `kvsedge --help`, `-h` and `help` list
// every command with its summary (not serve's flags).
func TestTopLevelHelpListsCommands(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		var out, errb bytes.Buffer
		if code := Run("test", args, &out, &errb); code != 0 {
			t.Fatalf("kvsedge %v: exit %d, %s", args, code, errb.String())
		}
		for _, c := range commands() {
			if !strings.Contains(out.String(), "  "+c.name+" ") || !strings.Contains(out.String(), c.summary) {
				t.Errorf("kvsedge %v does not list %s:\n%s", args, c.name, out.String())
			}
		}
		if strings.Contains(out.String(), "--listen") {
			t.Errorf("kvsedge %v lists serve's flags:\n%s", args, out.String())
		}
	}
}

// TestEachCommandsHelp: every command's --help (and `kvsedge help NAME`)
// shows its usage, its own flags only and one example, on stdout, exit 0.
func TestEachCommandsHelp(t *testing.T) {
	own := map[string][]string{
		"serve":       {"--config", "--listen", "--data-dir", "--tls-cert", "--no-auth", "--demo", "--profile"},
		"config":      {"--config", "--listen", "--data-dir"},
		"credentials": {"--config", "--data-dir"},
		"cert":        {"--config", "--data-dir", "--name", "--remove-name", "--dir", "--days"},
		"put-media":   {"--stream", "--endpoint", "--ca-bundle", "--fragment-duration", "--keep-clusters"},
		"get-media":   {"--stream", "--endpoint", "--start", "--output", "--follow"},
		"hls-url":     {"--stream", "--endpoint", "--mode", "--from", "--to", "--discontinuity-mode"},
		"cameras":     {"--config", "--data-dir", "--endpoint", "--json"},
		"members":     {"--endpoint"},
		"replication": {"--endpoint"},
		"export":      {"--stream", "--from", "--to", "--format", "--dir", "--workers", "--batch"},
		"capacity":    {"--endpoint"},
		"check":       {"--config", "--data-dir"},
		"repair":      {"--config", "--data-dir"},
		"uploads":     {"--endpoint"},
		"witness":     {"--config", "--data-dir"},
		"profiles":    {},
		"version":     {},
	}
	for _, c := range commands() {
		want, ok := own[c.name]
		if !ok {
			t.Errorf("command %s: this test does not know its flags", c.name)
			continue
		}
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			var out, errb bytes.Buffer
			if code := Run("test", args, &out, &errb); code != 0 {
				t.Errorf("kvsedge %v: exit %d, stderr %q", args, code, errb.String())
				continue
			}
			h := out.String()
			flags := h
			if i := strings.Index(h, "\nflags:\n"); i >= 0 {
				flags = h[i:]
				if j := strings.Index(flags, "\nexample:"); j >= 0 {
					flags = flags[:j]
				}
			} else {
				flags = ""
			}
			hasFlag := func(f string) bool { return strings.Contains(flags, f+" ") || strings.Contains(flags, f+"[") }
			if !strings.HasPrefix(h, "kvsedge "+c.name+": "+c.summary) || !strings.Contains(h, "usage: kvsedge "+c.name) {
				t.Errorf("kvsedge %v: no summary and usage line:\n%s", args, h)
			}
			ex := examples[c.name]
			if ex == "" || strings.Count(h, "example:\n") != 1 || !strings.Contains(h, "example:\n  "+ex+"\n") {
				t.Errorf("kvsedge %v: not one example:\n%s", args, h)
			}
			for _, f := range want {
				if !hasFlag(f) {
					t.Errorf("kvsedge %v: flag %s missing:\n%s", args, f, h)
				}
			}
			if c.name != "serve" && c.name != "config" {
				for _, f := range serverOnlyFlags {
					if hasFlag(f) {
						t.Errorf("kvsedge %v lists the server flag %s:\n%s", args, f, h)
					}
				}
			}
			if errb.Len() != 0 {
				t.Errorf("kvsedge %v wrote to stderr: %q", args, errb.String())
			}
		}
	}
	for name := range examples {
		found := false
		for _, c := range commands() {
			found = found || c.name == name
		}
		if !found {
			t.Errorf("an example for %s, which is no command", name)
		}
	}
}

// TestClientCommandsNeverCreateCredentials: credentials and the client
// commands run where no box has served print a clear error, exit 1, and
// leave the directory as it was; given the box's data directory by flag,
// environment or configuration file they all find the same key pair.
func TestClientCommandsNeverCreateCredentials(t *testing.T) {
	t.Setenv("KVSEDGE_CONFIG", "") // no /etc/kvsedge/kvsedge.yaml from the machine
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	for _, args := range [][]string{
		{"credentials"},
		{"cameras"},
		{"capacity"},
		{"members", "--endpoint", "http://127.0.0.1:1"},
		{"get-media", "--stream", "s", "--endpoint", "http://127.0.0.1:1"},
		{"export", "--stream", "s", "--from", "2026-01-01T00:00:00Z", "--endpoint", "http://127.0.0.1:1"},
		{"hls-url", "--stream", "s", "--endpoint", "http://127.0.0.1:1"},
	} {
		var out, errb bytes.Buffer
		if code := Run("test", args, &out, &errb); code != 1 {
			t.Errorf("kvsedge %v: exit %d, want 1", args, code)
		}
		if !strings.Contains(errb.String(), "no key pair in data/credentials.yaml: it is created by `kvsedge serve`") ||
			!strings.Contains(errb.String(), "--data-dir") {
			t.Errorf("kvsedge %v: stderr %q does not say where the key pair is missing and how to find the box", args, errb.String())
		}
		if ents, _ := os.ReadDir(elsewhere); len(ents) != 0 {
			t.Fatalf("kvsedge %v created %v", args, ents)
		}
	}

	// A box's data directory, with the key pair serve generated (the same
	// file format config.EffectiveCredentials writes).
	box := t.TempDir()
	data := filepath.Join(box, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	key := "access_key_id: AKKVSEDGETESTKEY0001\nsecret_access_key: s3cret\n"
	if err := os.WriteFile(filepath.Join(data, "credentials.yaml"), []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(box, "kvsedge.yaml")
	if err := os.WriteFile(cfgFile, []byte("data_dir: "+data+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := "export AWS_ACCESS_KEY_ID=AKKVSEDGETESTKEY0001\nexport AWS_SECRET_ACCESS_KEY=s3cret\nexport AWS_DEFAULT_REGION=us-east-1\n"
	for _, c := range []struct {
		what string
		env  map[string]string
		args []string
	}{
		{"--data-dir", nil, []string{"--data-dir", data}},
		{"KVSEDGE_DATA_DIR", map[string]string{"KVSEDGE_DATA_DIR": data}, nil},
		{"--config", nil, []string{"--config", cfgFile}},
		{"KVSEDGE_CONFIG", map[string]string{"KVSEDGE_CONFIG": cfgFile}, nil},
	} {
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		var out, errb bytes.Buffer
		if code := Run("test", append([]string{"credentials"}, c.args...), &out, &errb); code != 0 || out.String() != want {
			t.Errorf("credentials with %s: exit %d, %q %q", c.what, code, out.String(), errb.String())
		}
		for k := range c.env {
			os.Unsetenv(k)
		}
		t.Setenv("KVSEDGE_CONFIG", "")
	}
}

// TestCertNamesAddToTheDefaults: --name adds to the box's own names and
// the current certificate's; only --remove-name takes one away.
func TestCertNamesAddToTheDefaults(t *testing.T) {
	defaults := []string{"localhost", "box", "127.0.0.1", "::1", "192.0.2.7"}
	got := certNames(defaults, nil, []string{"camera-box.lan"}, nil)
	if want := append(append([]string(nil), defaults...), "camera-box.lan"); !reflect.DeepEqual(got, want) {
		t.Fatalf("--name camera-box.lan: %v, want %v", got, want)
	}
	// Renewing keeps the names the certificate had.
	if got := certNames(defaults, got, nil, nil); !reflect.DeepEqual(got, append(append([]string(nil), defaults...), "camera-box.lan")) {
		t.Fatalf("renewal: %v", got)
	}
	got = certNames(defaults, got, []string{"nvr.lan", "LOCALHOST"}, []string{"Camera-Box.lan", "::1"})
	if want := []string{"localhost", "box", "127.0.0.1", "192.0.2.7", "nvr.lan"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("--remove-name: %v, want %v", got, want)
	}
}

// TestCamerasTableSaysLiveOnly: `kvsedge cameras` prints one row a camera,
// and a camera whose stream keeps nothing says so.
func TestCamerasTableSaysLiveOnly(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	err := printCameras(&b, []status.Camera{
		{Stream: "desk", State: "RECORDING", RetentionHours: 0, Retention: status.LiveOnly, FPS: 15, BitrateBps: 800_000, Fragments: 3, LastFrame: now.Add(-time.Second), Source: "rtsp://cam/1"},
		{Stream: "lobby", State: "RETRYING", RetentionHours: 24, Retention: "24 h", LastError: "connection refused", Source: "rtsp://cam/2"},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "STREAM") ||
		!strings.Contains(lines[1], "desk") || !strings.Contains(lines[1], "live only, nothing kept") || !strings.Contains(lines[1], "1s ago") ||
		!strings.Contains(lines[2], "lobby") || !strings.Contains(lines[2], "24 h") || !strings.Contains(lines[2], "connection refused") {
		t.Fatalf("cameras table:\n%s", b.String())
	}
}
