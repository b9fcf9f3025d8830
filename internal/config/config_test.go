package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func loadFor(t *testing.T, env []string, args ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, env)
}

func TestConfigLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kvsedge.yaml")
	err := os.WriteFile(file, []byte(`
listen: 0.0.0.0:9000
data_dir: /from/file
region: eu-central-1
account_id: "111111111111"
credentials:
  - access_key_id: FILEKEY1
    secret_access_key: filesecret1
  - access_key_id: FILEKEY2
    secret_access_key: filesecret2
auth:
  max_skew: 2m
log:
  level: debug
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}

	// Defaults alone.
	c, err := loadFor(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./data" || c.Region != "us-east-1" || c.Auth.MaxSkew != 5*time.Minute || c.Log.Level != "info" {
		t.Fatalf("defaults: %+v", c)
	}

	// File over defaults, env over file, flags over env.
	env := []string{"KVSEDGE_DATA_DIR=/from/env", "KVSEDGE_REGION=ap-south-1", "KVSEDGE_ACCESS_KEY_ID=ENVKEY", "KVSEDGE_SECRET_ACCESS_KEY=envsecret",
		"KVSEDGE_LOG__LEVEL=warn", "OTHER_VAR=x"}
	c, err = loadFor(t, env, "--config", file, "--region", "us-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:9000" {
		t.Errorf("listen from file: %q", c.Listen)
	}
	if c.DataDir != "/from/env" {
		t.Errorf("data_dir from env: %q", c.DataDir)
	}
	if c.Region != "us-west-1" {
		t.Errorf("region from flag: %q", c.Region)
	}
	if c.AccountID != "111111111111" || c.Auth.MaxSkew != 2*time.Minute || c.Log.Level != "warn" {
		t.Errorf("file/env values: %+v", c)
	}
	creds := c.AllCredentials()
	if len(creds) != 3 || creds[2].AccessKeyID != "ENVKEY" || creds[0].SecretAccessKey != "filesecret1" {
		t.Errorf("credentials: %+v", creds)
	}
	r := c.Redacted()
	if strings.Contains(r.SecretAccessKey+r.Credentials[0].SecretAccessKey+r.Credentials[1].SecretAccessKey, "secret") {
		t.Errorf("redacted config shows secrets: %+v", r)
	}
	if c.SecretAccessKey != "envsecret" {
		t.Error("Redacted() modified the original")
	}
}

func TestConfigInvalidNamesTheKey(t *testing.T) {
	cases := []struct {
		env  []string
		args []string
		key  string
	}{
		{nil, []string{"--account-id", "123"}, "account_id"},
		{nil, []string{"--region", "Mars"}, "region"},
		{nil, []string{"--listen", "nowhere"}, "listen"},
		{nil, []string{"--data-endpoint", "ftp://x"}, "data_endpoint"},
		{nil, []string{"--data-endpoint", "http://x:1/path"}, "data_endpoint"},
		{[]string{"KVSEDGE_ACCESS_KEY_ID=ONLYKEY"}, nil, "access_key_id"},
		{[]string{"KVSEDGE_AUTH__MAX_SKEW=1ms"}, nil, "auth.max_skew"},
		{[]string{"KVSEDGE_LOG__LEVEL=loud"}, nil, "log.level"},
		{nil, []string{"--tls-cert", "/does/not/exist.pem", "--tls-key", "/does/not/exist.key"}, "tls."},
		{nil, []string{"--tls-cert", "/x.pem"}, "tls.cert_file"},
		{[]string{"KVSEDGE_CLUSTER__BIND=127.0.0.1:7946"}, nil, "cluster.key"},
		{[]string{"KVSEDGE_CLUSTER__REPLICATION_FACTOR=40"}, nil, "cluster.replication_factor"},
		{[]string{"KVSEDGE_CLUSTER__DURABILITY=twice"}, nil, "cluster.durability"},
		{[]string{"KVSEDGE_CLUSTER__ACK_TIMEOUT=2h"}, nil, "cluster.ack_timeout"},
		{nil, []string{"--profile", "pi-one"}, "profile"},
		{[]string{"KVSEDGE_STORAGE__SYNC_WINDOW=1m"}, nil, "storage.sync_window"},
		{[]string{"KVSEDGE_GC_PERCENT=0"}, nil, "gc_percent"},
	}
	for _, tc := range cases {
		_, err := loadFor(t, tc.env, tc.args...)
		if err == nil {
			t.Errorf("%v %v: accepted", tc.env, tc.args)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "invalid configuration: "+tc.key) {
			t.Errorf("%v %v: %q does not name %s", tc.env, tc.args, msg, tc.key)
		}
		for _, line := range strings.Split(msg, "\n") {
			if !strings.HasPrefix(line, "invalid configuration: ") {
				t.Errorf("%v %v: line %q does not name its key", tc.env, tc.args, line)
			}
		}
	}
	// Every bad key is reported, not only the first.
	_, err := loadFor(t, []string{"KVSEDGE_LOG__LEVEL=loud", "KVSEDGE_STORAGE__ON_FULL=panic"}, "--account-id", "123", "--region", "Mars")
	if err == nil {
		t.Fatal("four bad keys accepted")
	}
	for _, key := range []string{"account_id", "region", "log.level", "storage.on_full"} {
		if !strings.Contains(err.Error(), "invalid configuration: "+key+": ") {
			t.Errorf("%q does not report %s", err, key)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Errorf("%d lines for 4 bad keys: %q", n, err)
	}
}

// TestConfigProfileLayers: a hardware profile's budgets sit between the
// built-in defaults and the file, environment and flags.
func TestConfigProfileLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "kvsedge.yaml")
	if err := os.WriteFile(file, []byte("storage: {memtable_mib: 6}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadFor(t, []string{"KVSEDGE_MEDIA__MAX_CAMERAS=3"}, "--profile", "pi-zero-2w", "--config", file)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProfileApplied != "pi-zero-2w" || c.Storage.CacheMiB != 8 || c.Media.RingSeconds != 4 || c.Media.MemoryBudgetMiB != 96 ||
		c.MediaBudgetBytes() != 96<<20 || c.Storage.SyncWindow != 250*time.Millisecond || c.MemoryLimitMiB != 160 || c.HTTP.MaxConns != 1024 ||
		!c.Cluster.FastFailureDetection {
		t.Fatalf("profile values not applied: %+v", c)
	}
	if c, err := loadFor(t, []string{"KVSEDGE_HTTP__MAX_CONNS=700"}, "--profile", "pi-zero-2w"); err != nil {
		t.Fatal(err)
	} else if c.HTTP.MaxConns != 700 {
		t.Fatalf("an explicit http.max_conns must win over the profile: %+v", c.HTTP)
	}
	if c, err := loadFor(t, []string{"KVSEDGE_CLUSTER__FAST_FAILURE_DETECTION=false"}, "--profile", "pi-zero-2w"); err != nil {
		t.Fatal(err)
	} else if c.Cluster.FastFailureDetection {
		t.Fatal("an explicit cluster.fast_failure_detection: false must win over the profile")
	}
	if c.Storage.MemtableMiB != 6 || c.Media.MaxCameras != 3 {
		t.Fatalf("the file and the environment must win over the profile: memtable %d, cameras %d", c.Storage.MemtableMiB, c.Media.MaxCameras)
	}
	c, err = loadFor(t, nil, "--profile", "none")
	if err != nil {
		t.Fatal(err)
	}
	if d := Default(); c.ProfileApplied != "" || c.Storage != d.Storage || c.Media.MaxCameras != 0 || c.MemoryLimitMiB != 0 || c.Cluster.FastFailureDetection {
		t.Fatalf("profile none: %+v", c)
	}
	c, err = loadFor(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProfileApplied == "" || !strings.HasPrefix(c.ProfileWhy, "auto: ") {
		t.Fatalf("auto profile: %q %q", c.ProfileApplied, c.ProfileWhy)
	}
}

func TestConfigSeedsFromEnvironmentAreCommaSeparated(t *testing.T) {
	c, err := loadFor(t, []string{"KVSEDGE_CLUSTER__SEEDS=10.0.0.1:7946, 10.0.0.2:7946,"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Cluster.Seeds) != 2 || c.Cluster.Seeds[0] != "10.0.0.1:7946" || c.Cluster.Seeds[1] != "10.0.0.2:7946" {
		t.Fatalf("seeds %q", c.Cluster.Seeds)
	}
}
